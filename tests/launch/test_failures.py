"""Failures that do not drain the queue: whose fault a failure is (a GPU in a bad state is not the video's),
and a job that fails video after video stops taking them (``max_failures_in_a_row``)."""

from __future__ import annotations

import typing as tp
from pathlib import Path

import pytest
import torch

from pipeline.common.failures import device_fault, not_the_video
from pipeline.launch.worker import JobStopped, Streak, VideoResult, work_queue
from pipeline.store import Store, content_hash


def test_a_cuda_error_is_the_device_s_fault_out_of_memory_and_a_bad_clip_are_not() -> None:
    assert device_fault(RuntimeError("CUDA error: an illegal memory access was encountered"))
    assert device_fault(RuntimeError("CUDA driver error: unknown error"))
    assert device_fault(type("AcceleratorError", (RuntimeError,), {})("device-side assert triggered"))
    assert not device_fault(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not device_fault(RuntimeError("shape '[2, 8]' is invalid for input of size 10"))
    assert not_the_video(FileNotFoundError(2, "No such file", "/mnt/videos/a.mp4"))
    assert not_the_video(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))  # at one clip
    assert not not_the_video(ValueError("cannot decode frame 3"))


def test_a_streak_counts_failures_in_a_row_and_a_computed_video_ends_it() -> None:
    streak = Streak(3)
    bad = VideoResult("/v/a.mp4", "a", "failed", "VideoError: broken")
    gone = VideoResult("/v/b.mp4", "b", "not_done", "FileNotFoundError: /v/b.mp4")
    for outcome in (bad, gone, None, bad, gone):
        streak.add(outcome)
    assert not streak.broken and streak.count == 2
    streak.add(bad)
    assert streak.broken and "3 failures in a row" in str(streak.error()) and "/v/a.mp4" in str(streak.error())
    batched = Streak(3, in_flight=4)  # one outage of the mount fails the four videos in flight together
    for _ in range(5):
        batched.add(gone)
    assert not batched.broken
    batched.add(gone)
    assert batched.broken


@pytest.mark.parametrize("decoders", [0, 2])
def test_a_job_whose_videos_all_fail_stops_and_leaves_the_rest_of_the_queue(
    make_run: tp.Any, tmp_path: Path, decoders: int
) -> None:
    """Eight unreadable videos and ``max_failures_in_a_row=3``: the job stops after its third failure (a
    few more with decoding processes, whose videos were already in flight), says why, holds no lease, and
    leaves the rest of the queue untouched for the other jobs."""
    run = make_run(max_failures_in_a_row=3, decoders=decoders)
    broken = []
    for i in range(8):
        path = tmp_path / f"broken{i}.mp4"
        path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes([i]) * 64)
        broken.append((str(path), content_hash(path)))
    Store(run.store).ensure()
    cuid = Store(run.store).ensure_config(run.embed)
    results: list[VideoResult] = []
    limit = 3 + decoders  # past the videos in flight at once (decoders + 1): one outage fails them together
    with pytest.raises(JobStopped, match=r"after \d failures in a row") as stopped:
        work_queue(run.model_dump(mode="json"), broken, results)
    failed = {r.video_hash for r in results if r.status == "failed"}
    assert limit <= len(failed) <= limit + decoders and set(Store(run.store).failures(cuid)) == failed
    assert "broken" in str(stopped.value) and "max_failures_in_a_row=3" in str(stopped.value)
    leases = Store(run.store).leases(cuid)
    assert not list(leases.glob("*.json")) if leases.is_dir() else True
