"""Following's settling, directly: every video of a launch's queue ends in exactly one place of the summary,
from the jobs' reports, the store's entries and failures, and the leases."""

from __future__ import annotations

import dataclasses
import os
import typing as tp
from pathlib import Path

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


@dataclasses.dataclass
class _Paths:
    result_pickle: Path


@dataclasses.dataclass
class _SlurmJob:
    """A job as polling reads it: its id and where its result would be."""

    job_id: str
    paths: _Paths


def _fake_squeue(folder: Path, script: str, monkeypatch: tp.Any, name: str = "squeue") -> None:
    """A ``squeue`` (or ``name``) on PATH that runs ``script`` (a real executable: what the launcher calls)."""
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / name
    exe.write_text("#!/bin/sh\n" + script + "\n")
    exe.chmod(0o755)
    if not os.environ["PATH"].startswith(f"{folder}{os.pathsep}"):
        monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")


def test_squeue_that_does_not_answer_says_nothing_of_the_jobs(
    make_run: tp.Any, tmp_path: Path, monkeypatch: tp.Any
) -> None:
    """A failed or timed-out squeue is not "no job listed": no job is judged gone, the follow goes on with a
    note, a job's result file still counts, and only after ``SQUEUE_SILENT_S`` of silence are the rest given
    up as unknown. An answer listing a job ended ends it; one not listing a job seen before ends it once
    accounting (sacct) or the controller (scontrol show job) says it ended or no longer knows it."""
    from pipeline.launch import submission as submission_mod
    from pipeline.launch.slurm import active_arrays, confirmed_states, listed_arrays, squeue_states

    run = make_run(executor={"name": "slurm"})
    jobs = [_SlurmJob(f"41_{i}", _Paths(tmp_path / f"41_{i}_result.pkl")) for i in range(2)]
    launch = Submission(run, Plan("c", [], {}, [], [], {}, {}), jobs, Summary("c", str(run.store)))
    launch.submitted -= 300  # past the grace for a job squeue never listed

    _fake_squeue(tmp_path / "bin", "echo 'slurm_load_jobs error: Socket timed out' >&2; exit 1", monkeypatch)
    assert squeue_states(["41_0"]) is None and listed_arrays(["41_0"]) is None
    assert active_arrays(["41_0", "41_1"]) == ["41"]  # unknown is taken as running
    launch.seen.update({"41_0", "41_1"})
    assert launch.poll() == {} and "squeue has not answered since" in launch.squeue_note
    (tmp_path / "41_1_result.pkl").write_bytes(b"done")
    assert launch.poll() == {"41_1": ""}
    assert launch.silent_since is not None
    launch.silent_since -= submission_mod.SQUEUE_SILENT_S
    given_up = launch.poll()
    assert given_up["41_1"] == "" and given_up["41_0"].startswith("UNKNOWN (squeue has not answered for 60 min")

    _fake_squeue(tmp_path / "bin", "echo '41_0|CANCELLED by 0'", monkeypatch)
    assert squeue_states(["41_0"]) == {"41_0": "CANCELLED by 0"}
    assert launch.poll() == {"41_0": "CANCELLED by 0", "41_1": ""} and launch.squeue_note == ""
    # squeue answers and lists nothing: each job is confirmed by accounting or the controller first
    _fake_squeue(tmp_path / "bin", "true", monkeypatch)
    (tmp_path / "41_1_result.pkl").unlink()
    launch.confirmed.clear()
    bin_ = tmp_path / "bin"
    _fake_squeue(bin_, "echo 'sacct: error: Slurm accounting storage is disabled' >&2; exit 1", monkeypatch, "sacct")
    _fake_squeue(bin_, "echo 'JobId=50 ArrayJobId=41 ArrayTaskId=0 JobState=RUNNING'", monkeypatch, "scontrol")
    assert confirmed_states(["41_0", "41_1"]) == {"41_0": "RUNNING", "41_1": "GONE"}  # 41_1 purged
    assert launch.poll() == {"41_1": "GONE"} and listed_arrays(["41_0"]) == []  # 41_0 runs on
    _fake_squeue(
        bin_, "echo 'scontrol: error: slurm_receive_msg: Socket timed out' >&2; exit 1", monkeypatch, "scontrol"
    )
    assert confirmed_states(["41_0"]) is None and launch.poll() == {"41_1": "GONE"}  # unknown is not ended
    _fake_squeue(bin_, "echo '41_0|COMPLETED'; echo '41_[1-2]|PENDING'", monkeypatch, "sacct")
    assert confirmed_states(["41_0", "41_1"]) == {"41_0": "COMPLETED", "41_1": "PENDING"}
    assert launch.poll() == {"41_0": "COMPLETED", "41_1": "GONE"}  # what was confirmed stays so
    _fake_squeue(bin_, "true", monkeypatch, "sacct")  # accounting that lists nothing: the controller is asked
    _fake_squeue(bin_, "echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1", monkeypatch, "scontrol")
    assert confirmed_states(["41_0", "41_1"]) == {"41_0": "GONE", "41_1": "GONE"}


def test_polling_backs_off_while_nothing_changes() -> None:
    from pipeline.launch.following import POLL_MAX_S, POLL_S, next_poll

    delay, delays = POLL_S["slurm"], []
    for _ in range(12):
        delay = next_poll(delay, False, "slurm")
        delays.append(delay)
    assert delays[0] == 3.0 and delays[-1] == POLL_MAX_S["slurm"] == 60.0 and delays == sorted(delays)
    assert next_poll(60.0, True, "slurm") == POLL_S["slurm"]
    assert next_poll(0.25, False, "local") == 0.25  # a local job is a process: looked at as often as ever


def test_hashing_writes_its_cache_as_it_goes_and_when_interrupted(tmp_path: Path, monkeypatch: tp.Any) -> None:
    """A launcher killed while hashing a large corpus keeps what it hashed: the cache is written every
    ``CACHE_SAVE_S`` and when the loop is interrupted."""
    from pipeline.launch import discovery
    from pipeline.store import caches, tables

    files = []
    for i in range(30):
        path = tmp_path / "videos" / f"v{i:02d}.mp4"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(bytes([i]) * 100)
        files.append(str(path))
    store = Store(tmp_path / "s.zarr")
    store.ensure()
    real, calls = discovery.content_hash, []

    def hash_then_stop(path: str) -> str:
        calls.append(path)
        if len(calls) > 20:
            raise KeyboardInterrupt  # Ctrl-C, or the session dropped, after 20 files
        return real(path)

    monkeypatch.setattr(discovery, "content_hash", hash_then_stop)
    monkeypatch.setattr(discovery, "READERS", 1)  # one file at a time: the count above is exact
    monkeypatch.setattr(discovery, "CACHE_SAVE_S", 0.0)
    try:
        discovery.hash_files(files, store)
    except KeyboardInterrupt:
        pass
    cached = caches.read(store.path, "hashes")
    assert len(cached) == 20
    chunks = sorted(caches.chunk_dir(store.path, "hashes").glob("*.parquet"))
    sizes = [len(tables.read_mapping(c)) for c in chunks]
    assert sum(sizes) == 20 and all(n <= 2 for n in sizes)  # each save holds what is new, not all again
    monkeypatch.setattr(discovery, "content_hash", real)
    hashes, _, read = discovery.hash_files(files, store)
    assert len(hashes) == 30 and read == 10 * 100  # only the ten it had not hashed are read again


def test_a_failed_jobs_error_is_its_exception_line_whatever_its_name() -> None:
    from pipeline.launch.following import job_error

    trace = (
        "Job (task=0) failed during processing with trace:\n----------------------\n"
        'Traceback (most recent call last):\n  File "x.py", line 1, in <module>\n    raise NoGPU(x)\n'
        "pipeline.launch.resources.NoGPU: job 218 on vm asked for 1 GPU(s) and torch sees none\n"
        "----------------------\nYou can check full logs with 'job.stderr(0)' and 'job.stdout(0)'"
    )
    assert job_error(trace) == "NoGPU: job 218 on vm asked for 1 GPU(s) and torch sees none"
    assert job_error("x\nValueError: bad\n") == "ValueError: bad"
