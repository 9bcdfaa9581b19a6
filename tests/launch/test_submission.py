"""Submission, directly: one job array per launch sharing one queue (longest video first), its record in
the store, and nothing computed before a job runs."""

from __future__ import annotations

import io
import typing as tp
from pathlib import Path

from pipeline.embedding.decoding import container_seconds
from pipeline.launch.submission import submit
from pipeline.launch.worker import QueueJob
from pipeline.store import Store
from pipeline.store.records import read_queue


def test_a_launch_submits_one_array_whose_jobs_share_the_queue(make_run: tp.Any, sample_dir: Path) -> None:
    run = make_run(videos_per_job=1, max_jobs=2)
    out = io.StringIO()
    handle = submit(run, out=out)
    assert handle is not None
    store = Store(run.store)
    cuid = handle.plan.config_uid
    assert len(handle.jobs) == 2 and handle.summary.job_ids == [str(j.job_id) for j in handle.jobs]
    assert "to compute in 2 job(s)" in out.getvalue() and f"config {cuid}" in out.getvalue()
    ((launch_id, record),) = store.launches(cuid).items()
    assert record["job_ids"] == handle.summary.job_ids and record["executor"] == "debug"
    assert set(record["videos"]) == {h for _, h in handle.plan.to_compute} == set(handle.plan.hashes.values())
    durations = [container_seconds(p) for p, _ in handle.plan.to_compute]
    assert durations == sorted(durations, reverse=True) and len(set(durations)) > 1  # longest first
    assert not store.done_hashes(cuid)  # nothing runs before a job does
    first, second = handle.jobs
    assert isinstance(first.submission().function, QueueJob)
    queue = first.submission().args[1]  # the queue file, written once, named by every job's submission
    assert queue == second.submission().args[1] and queue.endswith(".queue.parquet")
    assert read_queue(queue) == handle.plan.to_compute
    results = first.result()  # the debug executor runs the job here: it walks the whole queue
    assert {r.status for r in results} == {"computed"} and len(results) == len(handle.plan.to_compute)
    assert {r.status for r in second.result()} == {"cached"}
    assert store.done_hashes(cuid) == set(record["videos"])


def test_a_dry_run_plans_and_submits_nothing(make_run: tp.Any) -> None:
    run = make_run(dry_run=True)
    out = io.StringIO()
    handle = submit(run, out=out)
    assert handle is not None and not handle.jobs
    assert "dry run: nothing submitted" in out.getvalue() and "longest first" in out.getvalue()
    assert not Store(run.store).config_uids()


def test_the_jobs_folder_is_its_user_s_alone_and_a_loosened_one_is_refused(make_run: tp.Any, sample_dir: Path) -> None:
    """What jobs unpickle and run lives in ``_jobs/<config>/<user>/``: writable by that user alone, below
    shared folders with the sticky bit (another member can neither write there nor swap the folder)."""
    import getpass
    import os
    import stat

    import pytest

    from pipeline.common.files import NotPrivate

    run = make_run(videos_per_job=1, max_jobs=1)
    handle = submit(run, out=io.StringIO())
    assert handle is not None
    store = Store(run.store)
    shared = store.path / "_jobs" / handle.plan.config_uid
    mine = shared / getpass.getuser()
    assert stat.S_IMODE(shared.stat().st_mode) & stat.S_ISVTX
    assert stat.S_IMODE(shared.parent.stat().st_mode) & stat.S_ISVTX
    assert stat.S_IMODE(mine.stat().st_mode) == 0o755 and mine.stat().st_uid == os.getuid()
    os.chmod(mine, 0o775)  # loosened: another member could put their own pickle in its place
    with pytest.raises(NotPrivate, match="other users can write it"):
        submit(make_run(videos_per_job=1, max_jobs=1, store=run.store), out=io.StringIO())
    os.chmod(mine, 0o755)
    handle.jobs[0].result()
    written = [p for p in mine.rglob("*") if p.is_file()]
    assert written and not [p for p in written if p.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH)]
