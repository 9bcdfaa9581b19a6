"""A long video interrupted three times (pre-empted: SIGUSR2, as SLURM and submitit's local executor send
before a time limit) resumes each time where it stopped, and its entry is bit for bit an uninterrupted
run's."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import typing as tp
from pathlib import Path

import numpy as np
import pytest

from pipeline.store import Store, content_hash
from pipeline.store.leases import live_leases

from ..conftest import run_cli


def _args(video: Path, store: Path, models_dir: Path, *extra: str) -> list[str]:
    return [
        f"videos={video}",
        f"store={store}",
        f"models_dir={models_dir}",
        "device=cpu",
        "frequency=6",
        "batch_size=1",
        *extra,
    ]


def _wait(what: str, check: tp.Callable[[], tp.Any], timeout: float = 120) -> tp.Any:
    deadline = time.time() + timeout
    while not (found := check()):
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return found


def _start_requeued_now(job_id: str) -> None:
    """SLURM holds a requeued job about 11 s (``Reason=BeginTime``) before it may start again; the tests
    lift that hold (``scontrol update StartTime=now``) instead of waiting it out. submitit's requeue is
    what they test, not SLURM's delay. A job not pending refuses the update, which changes nothing."""
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], capture_output=True, check=False)


def _holder(store: Path) -> dict[str, tp.Any] | None:
    """The owner (pid, job id) of a live lease on a video, if any."""
    for folder in store.glob("*/_leases"):
        for state in live_leases(folder, 60.0).values():
            if state.owner.get("pid"):
                return state.owner
    return None


def _interrupted_three_times(
    args: list[str],
    store_path: Path,
    vhash: str,
    interrupt: tp.Callable[[dict[str, tp.Any]], None],
    requeued: tp.Callable[[str], None] = lambda job_id: None,
) -> str:
    """Launch, then three times: wait for a task holding the video, let it compute a few steps, interrupt
    it, and wait for its progress to be further than before; returns the launcher's output. ``requeued``
    is called with the interrupted task's job id while the next one is awaited."""
    from pipeline.testing import faults

    launcher = run_cli(*args, env={faults.SLOW_BATCH_S: "0.4"}, wait=False)
    try:
        done, pids, job_id = 0, [], ""

        def next_holder() -> dict[str, tp.Any] | None:
            owner = _holder(store_path)
            if owner and owner["pid"] not in pids:
                return owner
            if job_id:
                requeued(job_id)
            return None

        for _ in range(3):
            # a task (the first, or the one requeued) holds the video
            owner = _wait("a task holding the video", next_holder)
            pids.append(owner["pid"])
            job_id = str(owner["job_id"])
            time.sleep(2.5)  # about five steps
            interrupt(owner)
            store = Store(store_path)
            (cuid,) = store.config_uids()

            def further(store: Store = store, cuid: str = cuid, done: int = done) -> int:
                found = store.progress(cuid, vhash)
                return int(found[1]["steps_done"]) if found and found[1]["steps_done"] > done else 0

            done = _wait("progress further than before", further)
            assert done < 24
        out, _ = launcher.communicate(timeout=300)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
    assert launcher.returncode == 0, out[-3000:]
    return str(out)


def _check(whole: Path, store_path: Path, vhash: str, out: str) -> None:
    """The entry equals the uninterrupted one bit for bit; the progress is gone; each task said so."""
    assert "computed 1" in out, out[-3000:]
    a, b = Store(whole), Store(store_path)
    (entry,) = a.entries()
    assert b.progress(entry.config_uid, entry.video_hash) is None  # the entry made the progress moot
    np.testing.assert_array_equal(a.load_numpy(entry.uid)[0], b.load_numpy(entry.uid)[0])
    logs = "".join(p.read_text() for p in store_path.glob("_jobs/*/**/*_log.err"))
    assert logs.count("resuming ") == 3 and logs.count(f"progress of {vhash} saved") == 3, logs[-3000:]


VIDEO = "orbit_30fps_audio.mp4"
"""4 s: 24 steps at 6 Hz, one per forward batch, each made 0.4 s longer."""


def test_a_video_interrupted_three_times_resumes_and_equals_an_uninterrupted_run(
    sample_dir: Path, models_dir: Path, tmp_path: Path
) -> None:
    """On the local executor: submitit's controller restarts a task that was pre-empted."""
    video = sample_dir / VIDEO
    vhash = content_hash(video)
    whole = tmp_path / "whole.zarr"
    assert run_cli(*_args(video, whole, models_dir, "executor=debug")).returncode == 0
    store_path = tmp_path / "store.zarr"
    args = _args(video, store_path, models_dir, "executor=local")
    out = _interrupted_three_times(args, store_path, vhash, lambda owner: os.kill(owner["pid"], signal.SIGUSR2))
    _check(whole, store_path, vhash, out)


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm_cluster")
def test_on_slurm_a_video_preempted_three_times_resumes_and_equals_an_uninterrupted_run(
    sample_dir: Path, models_dir: Path, tmp_path: Path
) -> None:
    """On SLURM: ``scancel --signal=USR2`` (what SLURM sends before a time limit or a pre-emption); the
    job checkpoints, submitit requeues it with ``scontrol requeue``, and the task that starts again
    continues. (A time-out takes the same path: submitit tells them apart by the time elapsed alone.)"""
    video = sample_dir / VIDEO
    vhash = content_hash(video)
    whole = tmp_path / "whole.zarr"
    assert run_cli(*_args(video, whole, models_dir, "executor=debug")).returncode == 0
    store_path = tmp_path / "store.zarr"
    args = _args(video, store_path, models_dir, "executor=slurm", "executor.cpus_per_task=1")

    def preempt(owner: dict[str, tp.Any]) -> None:
        subprocess.run(["scancel", "--signal=USR2", str(owner["job_id"])], check=True)

    out = _interrupted_three_times(args, store_path, vhash, preempt, _start_requeued_now)
    _check(whole, store_path, vhash, out)


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm_cluster")
def test_on_slurm_every_worker_of_a_two_gpu_task_saves_its_video_in_flight(
    sample_dir: Path, models_dir: Path, tmp_path: Path
) -> None:
    """``executor.gpus_per_node=2``: the array task runs two workers (SLURM tasks), each given its own GPU
    (the test cluster's two, which the node lacks: the workers run on the CPU here), both walking the
    launch's queue, one video each (``decoders=0``: one at a time). Pre-empted (``scancel --signal=USR2``),
    both keep their video's steps: submitit checkpoints rank 0 alone, rank 1 saves its own on the same
    signal; after the requeue both videos are computed once, and rank 0 (whose end submitit reports as the
    task's) waits for the video its sibling holds."""
    from pipeline.testing import faults

    from ..conftest import distinct_copies
    from .test_slurm import common

    videos = distinct_copies(sample_dir / VIDEO, tmp_path / "videos", 2)
    hashes = {content_hash(v) for v in videos}
    store_path = tmp_path / "two.zarr"
    args = common(
        store_path, tmp_path / "videos", models_dir, decoders=0, frequency=6, batch_size=1, lease_ttl_s=20,
        **{"executor.gpus_per_node": 2},
    )  # fmt: skip
    launcher = run_cli(*args, env={faults.SLOW_BATCH_S: "0.4"}, wait=False)
    try:

        def both_tasks() -> list[dict[str, tp.Any]]:
            owners = [s.owner for f in store_path.glob("*/_leases") for s in live_leases(f, 60.0).values()]
            return owners if {o.get("task") for o in owners} == {"0", "1"} else []

        owners = _wait("a video held by each worker", both_tasks)
        time.sleep(2.5)  # about five steps each
        subprocess.run(["scancel", "--signal=USR2", str(owners[0]["job_id"])], check=True)
        (cuid,) = Store(store_path).config_uids()
        _wait("both videos' progress", lambda: all(Store(store_path).progress(cuid, h) for h in hashes))
        deadline = time.monotonic() + 300
        while launcher.poll() is None and time.monotonic() < deadline:
            _start_requeued_now(str(owners[0]["job_id"]))
            time.sleep(0.5)
        out, _ = launcher.communicate(timeout=300)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
    assert launcher.returncode == 0 and "computed 2" in out, out[-3000:]
    logs = "".join(p.read_text() for p in store_path.glob("_jobs/*/**/*_log.err"))
    assert all(f"progress of {h} saved" in logs for h in hashes), logs[-3000:]
    assert logs.count("resuming ") == 2, logs[-3000:]
    seen = dict(re.findall(r"worker (\d) of 2 of job \S+ on \S+: device cpu, CUDA_VISIBLE_DEVICES=(\S+)", logs))
    assert set(seen) == {"0", "1"} and len(set(seen.values())) == 2 and "unset" not in seen.values(), logs[-3000:]
    assert Store(store_path).done_hashes(cuid) == hashes
