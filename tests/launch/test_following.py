"""Following's settling, directly: every video of a launch's queue ends in exactly one place of the summary,
from the jobs' reports, the store's entries and failures, and the leases."""

from __future__ import annotations

import dataclasses
import typing as tp

import numpy as np

from pipeline.launch.following import settle
from pipeline.launch.planning import Plan
from pipeline.launch.submission import Submission
from pipeline.launch.summary import Summary
from pipeline.launch.worker import VideoResult
from pipeline.store import Store


@dataclasses.dataclass
class _JobId:
    """What settling reads of a submitit job: its id (the rest is read by ``follow`` before settling)."""

    job_id: str


def _entry(store: Store, cuid: str, vhash: str) -> None:
    store.write(cuid, vhash, np.zeros((2, 3), np.float32), {"times": [0.0, 0.5, 1.0]})


def test_each_video_of_the_queue_is_settled_once(make_run: tp.Any) -> None:
    run = make_run()
    store = Store(run.store)
    store.ensure()
    cuid = store.ensure_config(run.embed)
    kinds = ["computed", "flagged", "discarded", "failed", "cached", "stored_late", "recorded", "busy", "orphan"]
    queue = [(f"/v/{k}.mp4", f"{i:032x}") for i, k in enumerate(kinds)]
    h = dict(zip(kinds, (v for _, v in queue)))
    best = {
        h["computed"]: VideoResult("/v/computed.mp4", h["computed"], "computed"),
        h["flagged"]: VideoResult("/v/flagged.mp4", h["flagged"], "computed", note="variable frame rate"),
        h["discarded"]: VideoResult("/v/discarded.mp4", h["discarded"], "discarded"),
        h["failed"]: VideoResult("/v/failed.mp4", h["failed"], "failed", error="VideoError: broken"),
        h["cached"]: VideoResult("/v/cached.mp4", h["cached"], "cached"),
        h["busy"]: VideoResult("/v/busy.mp4", h["busy"], "busy", holder="999_0"),
    }
    _entry(store, cuid, h["stored_late"])  # a job of ours stored it, then died before reporting
    store.record_failure(cuid, h["recorded"], "/v/recorded.mp4", RuntimeError("out of memory"))
    store.leases(cuid).mkdir(parents=True)  # the lease of our job 7_0, which was cancelled
    (store.leases(cuid) / f"{h['orphan']}.json").write_text(
        '{"owner": {"job_id": "7_0", "host": "x", "pid": 1, "token": "t"}, "attempt": 1}'
    )
    plan = Plan(cuid, [p for p, _ in queue], {p: v for p, v in queue}, [], queue, {}, {})
    summary = Summary(cuid, str(store.path))
    launch = Submission(run, plan, [_JobId("7_0"), _JobId("7_1")], summary)

    busy = settle(launch, store, best, {"7_0": "ended CANCELLED before this video was stored"})

    assert summary.computed == ["/v/computed.mp4", "/v/flagged.mp4", "/v/stored_late.mp4"]
    assert summary.flagged == {"/v/flagged.mp4": "variable frame rate"}
    assert summary.discarded == ["/v/discarded.mp4"] and "/v/discarded.mp4" in summary.cached
    assert summary.cached == ["/v/discarded.mp4", "/v/cached.mp4"]
    assert summary.failed == {"/v/failed.mp4": "VideoError: broken", "/v/recorded.mp4": "RuntimeError: out of memory"}
    assert busy == {h["busy"]: "/v/busy.mp4"}
    assert summary.not_done == {"/v/orphan.mp4": "job 7_0 ended CANCELLED before this video was stored"}
    placed = [*summary.computed, *summary.cached, *summary.failed, *summary.not_done, *busy.values()]
    assert sorted(placed) == sorted(p for p, _ in queue)  # each video in one place (discarded counts as cached)


def test_a_video_no_job_reached_and_no_lease_names_is_not_done(make_run: tp.Any) -> None:
    run = make_run()
    store = Store(run.store)
    store.ensure()
    cuid = store.ensure_config(run.embed)
    queue = [("/v/a.mp4", "a" * 32)]
    summary = Summary(cuid, str(store.path))
    launch = Submission(run, Plan(cuid, ["/v/a.mp4"], {}, [], queue, {}, {}), [_JobId("3")], summary)
    assert settle(launch, store, {}, {}) == {}
    assert summary.not_done == {"/v/a.mp4": "no job stored it"} and not summary.ok
