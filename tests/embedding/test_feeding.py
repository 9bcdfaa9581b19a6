"""Decoding processes, directly: what one sends for a video (its steps, each needed frame preprocessed once,
in order, then done), an error for a file that cannot be read, and how many a job starts."""

from __future__ import annotations

import typing as tp
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.common.env import n_decoders
from pipeline.embedding.adapters import adapter_class
from pipeline.embedding.feeding import DecoderSpec, Feeder
from pipeline.embedding.steps import VideoSteps, plan_steps, step_frames


def _messages(feeder: Feeder, key: str) -> list[tuple[str, str, tp.Any]]:
    out = []
    while not out or out[-1][0] not in ("done", "error", "died"):
        message = feeder.get(timeout=60)
        assert message is not None, f"no message from the decoding process after {out[-1][0] if out else 'start'}"
        assert message[1] == key
        out.append(message)
    return out


def test_a_decoding_process_sends_the_steps_then_each_needed_frame_preprocessed_once(
    make_run: tp.Any, sample_dir: Path
) -> None:
    run = make_run(frequency=3.0, max_imsize=40)
    video = str(sample_dir / "drift_25fps.mp4")
    source = run.model_source()
    feeder = Feeder(DecoderSpec(source, run.embed.model_dump(mode="json"), 16), 1)
    try:
        feeder.submit("v", video, 0)
        messages = _messages(feeder, "v")
        feeder.submit("missing", str(sample_dir / "no_such_file.mp4"), 0)
        failure = _messages(feeder, "missing")
    finally:
        feeder.close()
    kinds = [k for k, _, _ in messages]
    assert kinds[0] == "plan" and kinds[-1] == "done" and set(kinds[1:-1]) == {"frames"}
    steps: VideoSteps = messages[0][2]
    expected = plan_steps(video, run.embed, 16)
    np.testing.assert_array_equal(steps.index, expected.index)
    numbers = [n for _, _, (chunk, _) in messages[1:-1] for n in chunk]
    assert numbers == sorted(set(np.unique(expected.index).tolist()))  # each needed frame once, in order
    adapter = adapter_class("videomae")(source, with_model=False)
    frames = dict(step_frames(video, expected, run.embed))  # shrunk to max_imsize, as the process does
    for _, _, (chunk, pixels) in messages[1:-1]:
        assert len(chunk) <= 16
        want = adapter.preprocess_frames([frames[n] for n in chunk])
        assert torch.equal(torch.stack(list(pixels)), torch.stack(list(want)))
    assert failure[-1][0] == "error" and "no_such_file.mp4" in str(failure[-1][2])


def test_a_job_runs_one_decoding_process_per_cpu_but_one_and_at_least_two(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.common import env

    monkeypatch.setattr(env, "affinity", lambda: 64)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "16")
    assert n_decoders(None) == 15 and n_decoders(0) == 0 and n_decoders(3) == 3
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "2")
    assert n_decoders(None) == 2


def test_a_job_s_cpus_are_slurm_s_count_capped_by_its_affinity_mask() -> None:
    from pipeline.common.env import cpus_given

    assert cpus_given({"SLURM_CPUS_PER_TASK": "8"}, 1) == 1  # an srun step bound to one CPU
    assert cpus_given({"SLURM_CPUS_PER_TASK": "8"}, 64) == 8
    assert cpus_given({"SLURM_CPUS_PER_TASK": "8"}, None) == 8
    assert cpus_given({"PIPELINE_THREADS": "3"}, 64) == 3 and cpus_given({}, 64) is None


@pytest.mark.parametrize("touch", [False, True])
def test_a_decoding_process_never_enters_cuda_even_with_the_frames_left_for_the_gpu(
    make_run: tp.Any, sample_dir: Path, monkeypatch: pytest.MonkeyPatch, touch: bool
) -> None:
    """Every entry into CUDA trapped in the decoding process (``faults.TRAP_CUDA``), on the path that
    leaves preprocessing to the GPU (raw frames sent); the positive control touches CUDA once and fails.
    The batched families run under the same trap in ``test_batcher.py``."""
    from pipeline.testing import faults

    monkeypatch.setenv(faults.TRAP_CUDA, "touch" if touch else "1")  # read by the (forked) decoding process
    run = make_run(frequency=3.0, max_imsize=40)
    feeder = Feeder(DecoderSpec(run.model_source(), run.embed.model_dump(mode="json"), 16, "cuda"), 1)
    try:
        feeder.submit("v", str(sample_dir / "drift_25fps.mp4"), 0)
        messages = _messages(feeder, "v")
    finally:
        feeder.close()
    kinds = [k for k, _, _ in messages]
    if touch:
        assert kinds[-1] == "died" or "entered CUDA" in str(messages[-1][2]), messages[-1]
    else:
        assert kinds[0] == "plan" and kinds[-1] == "done", kinds
        assert all(p.dtype == torch.uint8 for k, _, (_, p) in [m for m in messages if m[0] == "frames"])


def test_the_messages_in_flight_fit_in_dev_shm_or_the_job_says_what_to_change() -> None:
    from pipeline.embedding.feeding import QUEUE_CHUNKS, ShmTooSmall, shm_credits

    frame = 3 * 224 * 224 * 4  # a VideoMAE-base frame, preprocessed
    assert shm_credits(frame, 15, 16 * 16, 64 << 30) == QUEUE_CHUNKS  # a node's /dev/shm
    assert shm_credits(frame, 15, 16 * 16, None) == QUEUE_CHUNKS  # nothing to measure
    few = shm_credits(frame, 15, 16 * 16, 1 << 30)
    assert 1 <= few < QUEUE_CHUNKS  # a gigabyte: fewer messages in flight
    with pytest.raises(ShmTooSmall, match=r"/dev/shm has 64 MB free.*--shm-size.*decoders="):
        shm_credits(frame, 15, 16 * 16, 64 << 20)  # a container's default
