"""The worker's committer: computed videos wait in the job's segment with their leases held and marked, are
published together, and an entry the store refuses fails alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.launch.worker import Committer, VideoResult
from pipeline.store import Store
from pipeline.store.leases import Heartbeat, Lease, acquire


def _claim(store: Store, cuid: str, vhash: str) -> Lease:
    claim = acquire(store.leases(cuid), vhash, 60.0)
    assert isinstance(claim, Lease)
    return claim


def test_waiting_videos_are_published_together_and_a_refused_one_fails_alone(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.zarr")
    store.ensure()
    heartbeat = Heartbeat(60.0)
    results: list[VideoResult] = []
    committer = Committer(store, store.writer("cfg"), heartbeat, results)
    good, bad = "a" * 32, "b" * 32
    claims = {h: _claim(store, "cfg", h) for h in (good, bad)}
    for h in (good, bad):
        heartbeat.hold(claims[h])
    committer.add(VideoResult("/v/good.mp4", good, "computed"), claims[good], np.ones((2, 3), np.float32),
                  {"times": [0.0, 0.5, 1.0]})  # fmt: skip
    attrs_bad = {"times": [0.0, 0.5, 1.0], "not json": object()}  # the manifest cannot hold it
    committer.add(VideoResult("/v/bad.mp4", bad, "computed"), claims[bad], np.ones((2, 3), np.float32), attrs_bad)
    assert not results and not store.has("cfg", good)  # waiting, not published
    assert all(json.loads(c.path.read_text())["computed"] for c in claims.values())  # marked in the lease
    committer.flush()
    heartbeat.stop()
    status = {r.video_hash: r for r in results}
    assert status[good].status == "computed" and store.has("cfg", good)
    assert status[bad].status == "failed" and "TypeError" in status[bad].error and not store.has("cfg", bad)
    assert store.failures("cfg")[bad]["video_path"] == "/v/bad.mp4"
    assert not list(store.leases("cfg").glob("*.json"))  # every lease let go
    np.testing.assert_array_equal(store.load_numpy(f"cfg/{good}")[0], np.ones((2, 3)))
