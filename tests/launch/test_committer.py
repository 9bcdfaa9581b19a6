"""The worker's committer: computed videos wait in the job's segment with their leases held and marked, are
published together, and an entry the store refuses fails alone."""

from __future__ import annotations

import json
import typing as tp
from pathlib import Path

import numpy as np
import pytest

from pipeline.launch.worker import Committer, VideoResult
from pipeline.store import Store, StoreError
from pipeline.store import leases as lease
from pipeline.store.leases import Heartbeat, Lease, acquire
from pipeline.testing import faults


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
    assert not lease.lease_files(store.leases("cfg"))  # every lease let go
    np.testing.assert_array_equal(store.load_numpy(f"cfg/{good}")[0], np.ones((2, 3)))


def test_a_full_disk_at_the_commit_stops_the_job_and_fails_no_video(tmp_path: Path, monkeypatch: tp.Any) -> None:
    """ENOSPC after the segment is written, at its commit: the store's fault, not the video's. The job
    stops (StoreError), nothing is recorded against the video, its lease is let go, nothing is listed."""
    store = Store(tmp_path / "s.zarr")
    store.ensure()
    heartbeat = Heartbeat(60.0)
    results: list[VideoResult] = []
    committer = Committer(store, store.writer("cfg"), heartbeat, results)
    vhash = "c" * 32
    claim = _claim(store, "cfg", vhash)
    heartbeat.hold(claim)
    committer.add(VideoResult("/v/c.mp4", vhash, "computed"), claim, np.ones((2, 3), np.float32), {"times": [0, 1, 2]})
    monkeypatch.setenv(faults.AT, "commit-written=enospc")
    with pytest.raises(StoreError, match="no space left on device"):
        committer.flush()
    heartbeat.stop()
    assert not store.failures("cfg") and not store.has("cfg", vhash) and not results
    assert not lease.lease_files(store.leases("cfg"))


def test_a_full_disk_during_a_writer_s_compaction_keeps_its_videos_written(tmp_path: Path, monkeypatch: tp.Any) -> None:
    """Commits piled up: the writer compacts after its commit, and the disk is full then. The commits stand:
    the videos are written, none is recorded as failed, the next compaction folds them in."""
    from pipeline.store import writer as writer_module

    store = Store(tmp_path / "s.zarr")
    store.ensure()
    monkeypatch.setattr(writer_module, "COMPACT_AFTER", 0)
    monkeypatch.setenv(faults.AT, "checkpoint-written=enospc")
    heartbeat = Heartbeat(60.0)
    results: list[VideoResult] = []
    committer = Committer(store, store.writer("cfg"), heartbeat, results)
    for i in range(3):
        vhash = f"{i:032x}"
        claim = _claim(store, "cfg", vhash)
        heartbeat.hold(claim)
        committer.add(VideoResult(f"/v/{i}.mp4", vhash, "computed"), claim, np.full((2, 3), i, np.float32),
                      {"times": [0, 1, 2]})  # fmt: skip
        committer.flush()
    heartbeat.stop()
    assert [r.status for r in results] == ["computed"] * 3 and not store.failures("cfg")
    monkeypatch.delenv(faults.AT)
    assert Store(store.path).compact("cfg") == 3
    for i in range(3):
        np.testing.assert_array_equal(Store(store.path).load_numpy(f"cfg/{i:032x}")[0], np.full((2, 3), i))


def test_a_video_that_fails_for_the_environment_is_left_not_done_not_recorded(make_run: tp.Any) -> None:
    import errno

    from pipeline.launch.worker import _failure

    run = make_run()
    store = Store(run.store)
    store.ensure()
    cuid = store.ensure_config(run.embed)
    stale = _failure(run, store, "/v/a.mp4", "a" * 32, OSError(errno.ESTALE, "Stale file handle"), 0.0)
    gone = _failure(run, store, "/v/b.mp4", "b" * 32, FileNotFoundError(2, "No such file", "/v/b.mp4"), 0.0)
    broken = _failure(run, store, "/v/c.mp4", "c" * 32, ValueError("cannot decode frame 3"), 0.0)
    assert stale.status == gone.status == "not_done" and "environment's fault" in stale.error
    assert broken.status == "failed" and set(store.failures(cuid)) == {"c" * 32}
