"""The worker's batched path: decoding processes, clips of several videos in one forward batch.

It must store what the engine computes one video at a time, bit for bit on the CPU, and a video that
fails (unreadable, or its decoding process killed) must fail alone.
"""

from __future__ import annotations

import os
import shutil
import typing as tp
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from pipeline import launch_config
from pipeline.config import ConfigError
from pipeline.embedding.batcher import Batcher
from pipeline.embedding.engine import Embedder, Embedding
from pipeline.embedding.partial import Partial, ProgressMismatch, Resume
from pipeline.store import Store
from pipeline.testing import faults

from ..conftest import FRAMEWISE


def _batched(embedder: Embedder, paths: list[Path], decoders: int = 2) -> tuple[dict[str, Embedding], dict[str, str]]:
    todo = iter([(p.name, str(p), None) for p in paths])
    done: dict[str, Embedding] = {}
    failed: dict[str, str] = {}
    batcher = Batcher(embedder, decoders)
    try:
        batcher.run(
            lambda: next(todo, None),
            done.__setitem__,
            lambda key, error: failed.__setitem__(key, f"{type(error).__name__}: {error}"),
        )
    finally:
        batcher.close()
    return done, failed


FIELDS: dict[str, dict[str, tp.Any]] = {
    "tiny-vjepa2": {"num_frames": 4, "clip_duration": 1.5},
    "tiny-xclip": {"max_imsize": 64},
    "tiny-timesformer": {"frequency": "native"},
    "tiny-vit": {"frequency": 3.0, "cache_n_layers": "all"},
    "tiny-clip": {"frequency": 3.0},
    "tiny-dinov2": {"frequency": 2.0, "token_aggregation": "first"},
}


class Written(TorchDispatchMode):
    """Bytes written by the ops run under it (a copy into a buffer counts its destination; a view nothing)."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func: tp.Any, types: tp.Any, args: tp.Any = (), kwargs: tp.Any = None) -> tp.Any:
        out = func(*args, **(kwargs or {}))
        if func is torch.ops.aten.copy_.default:
            self.bytes += args[0].numel() * args[0].element_size()
        elif not getattr(func, "is_view", False) and not func.__name__.startswith("empty"):
            self.bytes += sum(t.numel() * t.element_size() for t in tree_leaves(out) if isinstance(t, torch.Tensor))
        return out


@pytest.mark.parametrize("model", FRAMEWISE)
def test_batches_of_several_videos_equal_the_engine_bit_for_bit(
    make_run: tp.Any, videos: tp.Any, model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every framewise family: the batched path's numbers are the engine's; its decoding processes never
    enter CUDA (every entry trapped, ``test_feeding.py`` has the positive control); and each batch is
    assembled with one copy of its frames into the reused buffer (bytes counted by a dispatch mode: the
    old way stacked twice, then pinned, three copies)."""
    monkeypatch.setenv(faults.TRAP_CUDA, "1")  # read by the (forked) decoding processes
    run = make_run(model, batch_size=3, **FIELDS.get(model, {}))
    embedder = Embedder(run.embed, run.model_source(), batch_size=3)
    assembled: list[tuple[int, int]] = []
    real = Batcher._pixels

    def counted(self: Batcher, steps: list[tuple[str, int]]) -> torch.Tensor:
        with Written() as written:
            pixels = real(self, steps)
        assembled.append((written.bytes, pixels.numel() * pixels.element_size()))
        return pixels

    monkeypatch.setattr(Batcher, "_pixels", counted)
    paths = videos(["bars", "drift", "orbit", "ntsc", "bikes"])
    done, failed = _batched(embedder, paths)
    monkeypatch.setattr(Batcher, "_pixels", real)
    assert not failed
    assert assembled and all(w == size for w, size in assembled), assembled
    for path in paths:
        want = embedder.embed(str(path))
        got = done[path.name]
        np.testing.assert_array_equal(got.data, want.data, err_msg=f"{model} {path.name}")
        assert (got.frequency, got.layer_indices, got.timing, got.duration) == (
            want.frequency,
            want.layer_indices,
            want.timing,
            want.duration,
        )


@pytest.mark.parametrize(
    ("model", "fields"),
    [("tiny-videomae", {}), ("tiny-vit", {"frequency": 3.0}), ("tiny-xclip", {"max_imsize": 64})],
)
def test_a_video_resumed_from_its_first_steps_equals_an_uninterrupted_one(
    make_run: tp.Any, videos: tp.Any, model: str, fields: dict[str, tp.Any]
) -> None:
    """The steps saved by an interrupted task, then the rest computed (decoding only their frames), in
    this process and through the decoding processes: the whole video's numbers, bit for bit. Progress of
    another plan fails the video, naming it."""
    run = make_run(model, batch_size=2, **fields)
    embedder = Embedder(run.embed, run.model_source(), batch_size=2)
    paths = videos(["orbit", "drift"])
    whole = {p.name: embedder.embed(str(p)) for p in paths}
    resumes = {}
    for path in paths:
        rows = np.moveaxis(whole[path.name].data, -1, 0)
        partial = Partial(rows.copy(), len(rows) // 2 + 1, whole[path.name].frequency)
        data, attrs = partial.progress()
        assert data.shape[-1] == attrs["steps_done"] == len(attrs["times"]) < attrs["n_steps"] == len(rows)
        resumes[path.name] = Resume.from_progress(data, attrs)
    todo = iter([(p.name, str(p), resumes[p.name]) for p in paths])
    done: dict[str, Embedding] = {}
    batcher = Batcher(embedder, 1)
    try:
        batcher.run(lambda: next(todo, None), done.__setitem__, lambda k, e: pytest.fail(f"{k}: {e}"))
    finally:
        batcher.close()
    for path in paths:
        want = whole[path.name].data
        np.testing.assert_array_equal(done[path.name].data, want, err_msg=f"batched {model} {path.name}")
        again = embedder.embed(str(path), resumes[path.name])
        np.testing.assert_array_equal(again.data, want, err_msg=f"engine {model} {path.name}")
    other = Resume(resumes[paths[0].name].rows, resumes[paths[0].name].n_steps + 1)
    with pytest.raises(ProgressMismatch, match="does not fit its plan"):
        embedder.embed(str(paths[0]), other)


def test_an_unreadable_video_and_a_killed_decoding_process_fail_alone(
    make_run: tp.Any, videos: tp.Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = make_run(batch_size=4)
    embedder = Embedder(run.embed, run.model_source(), batch_size=4)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 and then nothing")
    doomed = tmp_path / "doomed.mp4"
    shutil.copy(videos(["drift"])[0], doomed)
    monkeypatch.setenv(faults.DIE_DECODING, "doomed.mp4")  # read by the (forked) decoding processes
    good = videos(["bars", "orbit", "ntsc"])
    done, failed = _batched(embedder, [good[0], broken, doomed, *good[1:]])
    assert set(failed) == {"broken.mp4", "doomed.mp4"}
    assert "VideoError" in failed["broken.mp4"]
    assert "decoding process" in failed["doomed.mp4"] and "exit code 9" in failed["doomed.mp4"]
    for path in good:
        np.testing.assert_array_equal(done[path.name].data, embedder.embed(str(path)).data)


def test_the_launcher_stores_the_same_entries_with_and_without_decoding_processes(
    make_run: tp.Any, tmp_path: Path
) -> None:
    engine = make_run(decoders=0, store=str(tmp_path / "engine.zarr"))
    batched = make_run(store=str(tmp_path / "batched.zarr"))
    assert len(launch_config(engine).computed) == 3 and len(launch_config(batched).computed) == 3
    a, b = Store(engine.store), Store(batched.store)
    uid = engine.embed.uid()
    assert uid == batched.embed.uid()  # the number of decoding processes is not part of the config
    for entry in a.entries(uid):
        np.testing.assert_array_equal(a.load_numpy(entry.uid)[0], b.load_numpy(entry.uid)[0])


def test_preprocess_device_is_in_the_uid_and_checked_before_submission(make_run: tp.Any) -> None:
    assert make_run(device="cuda", preprocess_device="cuda").embed.uid() != make_run(device="cuda").embed.uid()
    assert "preprocess_device" not in make_run().embed.uid()
    with pytest.raises(ConfigError, match="preprocess_device: cuda needs device=cuda"):
        make_run(device="cpu", preprocess_device="cuda")
    with pytest.raises(ConfigError, match="preprocess_device: the llava_next_video family"):
        make_run("tiny-llava_next_video", device="cuda", preprocess_device="cuda", layer_type="USER: <video>")
    if not torch.cuda.is_available():
        run = make_run(device="auto", preprocess_device="cuda")
        with pytest.raises(ConfigError, match="preprocess_device: cuda needs the model on a GPU"):
            Embedder(run.embed, run.model_source(), device="cpu")


def test_decoding_processes_do_not_outlive_their_worker(make_run: tp.Any, tmp_path: Path) -> None:
    """Closed, they stop; and a worker killed with SIGKILL takes them with it (no orphan holds the job's pipes)."""
    import signal
    import subprocess
    import sys
    import time

    run = make_run()
    code = (
        "import sys, time\n"
        "from pipeline.config import RunConfig\n"
        "from pipeline.embedding.engine import Embedder\n"
        "from pipeline.embedding.batcher import Batcher\n"
        f"run = RunConfig.model_validate_json({run.model_dump_json()!r})\n"
        "batcher = Batcher(Embedder(run.embed, run.model_source()), 2)\n"
        "print(' '.join(str(s.proc.pid) for s in batcher.feeder.slots), flush=True)\n"
        "time.sleep(600)\n"
    )
    worker = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert worker.stdout is not None
    pids = [int(p) for p in worker.stdout.readline().split()]
    assert len(pids) == 2
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    deadline = time.monotonic() + 10
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _running(p)]
        time.sleep(0.1)
    assert not alive, f"decoding processes {alive} outlived their worker"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by init) is not running
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_a_batch_out_of_memory_is_let_go_of_and_halved_down_to_what_fits(
    make_run: tp.Any, videos: tp.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real forward, behind a trap that raises CUDA's out-of-memory error for more than two clips: the
    batch of four is freed, then run as halves, later batches keep two clips, and every video is stored
    bit for bit as the engine computes it alone. A clip that does not fit alone fails its video only."""
    import weakref

    run = make_run(batch_size=4)
    embedder = Embedder(run.embed, run.model_source(), batch_size=4)
    adapter = embedder.adapter
    forward = adapter.hidden_states_from_pixels
    failed_batches: list[weakref.ref[torch.Tensor]] = []
    sizes: list[int] = []

    def limited(pixels: torch.Tensor) -> tp.Any:
        assert all(ref() is None for ref in failed_batches), "a batch that ran out of memory is still held"
        sizes.append(pixels.shape[0])
        if pixels.shape[0] > 2:
            failed_batches.append(weakref.ref(pixels))
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return forward(pixels)

    monkeypatch.setattr(adapter, "hidden_states_from_pixels", limited)
    paths = videos(["bars", "drift", "orbit"])
    batcher = Batcher(embedder, 2)
    done: dict[str, Embedding] = {}
    failed: dict[str, str] = {}
    todo = iter([(p.name, str(p), None) for p in paths])
    try:
        batcher.run(lambda: next(todo, None), done.__setitem__, lambda k, e: failed.__setitem__(k, repr(e)))
    finally:
        batcher.close()
    assert not failed and batcher.batch == 2 and 4 in sizes and max(sizes[sizes.index(4) + 1 :]) <= 2
    monkeypatch.setattr(adapter, "hidden_states_from_pixels", forward)
    for path in paths:
        np.testing.assert_array_equal(done[path.name].data, embedder.embed(str(path)).data)

    def never(pixels: torch.Tensor) -> tp.Any:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(adapter, "hidden_states_from_pixels", never)
    [alone] = videos(["ntsc"])
    done, failed = _batched(embedder, [alone])
    assert not done and "OutOfMemoryError" in failed[alone.name]


def test_a_small_dev_shm_keeps_fewer_messages_in_flight_and_the_same_numbers(
    make_run: tp.Any, videos: tp.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np_

    from pipeline.embedding import batcher as batching
    from pipeline.embedding.feeding import QUEUE_CHUNKS, SHM_SHARE
    from pipeline.embedding.steps import PREPROCESS_CHUNK

    run = make_run(batch_size=3)
    embedder = Embedder(run.embed, run.model_source(), batch_size=3)
    frame = embedder.adapter.preprocess_frames([np_.zeros((64, 80, 3), np_.uint8)])[0]
    frame_bytes = frame.numel() * frame.element_size()
    held = 3 * 2 * (embedder.num_frames or 1)
    free = int((held * frame_bytes + 2 * 2 * PREPROCESS_CHUNK * frame_bytes) / SHM_SHARE) + 1  # room for two each
    monkeypatch.setattr(batching, "shm_free", lambda: free)
    paths = videos(["bars", "drift"])
    batcher = Batcher(embedder, 2)
    done: dict[str, Embedding] = {}
    todo = iter([(p.name, str(p), None) for p in paths])
    try:
        batcher.run(lambda: next(todo, None), done.__setitem__, lambda k, e: pytest.fail(f"{k}: {e}"))
    finally:
        batcher.close()
    assert batcher.credits == 2 < QUEUE_CHUNKS
    for path in paths:
        np.testing.assert_array_equal(done[path.name].data, embedder.embed(str(path)).data)
