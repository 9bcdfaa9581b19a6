"""Decoding processes that feed one model: each takes whole videos, works out their time grid, decodes the
frames some step needs, preprocesses each once, and sends the pixels through its own pipe, a bounded
number of messages ahead.

Only preprocessed tensors (or, with ``preprocess_device`` set, uint8 frames) reach the model's process;
they travel through shared memory. A video whose decoding raises, or whose decoding process dies, fails
alone: the process (restarted if it died) goes on with the next video.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import pickle
import queue
import time
import typing as tp

import numpy as np
import torch

from pipeline.config import EmbedConfig
from pipeline.embedding.steps import PREPROCESS_CHUNK, VideoSteps, step_frames

if tp.TYPE_CHECKING:
    from pipeline.embedding.adapters import Adapter

QUEUE_CHUNKS = 8
"""Frames messages in flight per decoding process at most: memory stays flat however far decoding runs ahead."""
SHM = "/dev/shm"
SHM_SHARE = 0.8
"""The part of ``/dev/shm``'s free space the pixels in flight may take."""


def shm_credits(frame_bytes: int, n: int, held_frames: int, free: int | None) -> int:
    """Frames messages in flight per decoding process that ``free`` bytes of shared memory hold (pixels
    travel through ``/dev/shm``): ``QUEUE_CHUNKS`` where they fit, fewer where not (a container's 64 MB);
    ``held_frames`` are those the model's process keeps for the clips of the videos in flight.
    ``ShmTooSmall`` where even one message per process does not fit."""
    if free is None:
        return QUEUE_CHUNKS
    budget = int(free * SHM_SHARE) - held_frames * frame_bytes
    per_message = PREPROCESS_CHUNK * frame_bytes
    fit = min(QUEUE_CHUNKS, budget // max(1, n * per_message))
    if fit < 1:
        need = n * per_message + held_frames * frame_bytes
        raise ShmTooSmall(
            f"{SHM} has {free / 2**20:.0f} MB free, and {n} decoding process(es) need at least "
            f"{need / SHM_SHARE / 2**20:.0f} MB for the pixels in flight: give the job more shared memory "
            "(a container's --shm-size, e.g. 2g) or fewer decoding processes (decoders=)"
        )
    return int(fit)


class ShmTooSmall(OSError):
    """``/dev/shm`` cannot hold the pixels one message per decoding process carries."""


def shm_free() -> int | None:
    """Free bytes in ``/dev/shm`` (None where there is none to measure)."""
    import shutil

    try:
        return shutil.disk_usage(SHM).free
    except OSError:
        return None


@dataclasses.dataclass(frozen=True)
class DecoderSpec:
    """What a decoding process needs to load the processor and plan a video (picklable, no weights)."""

    source: str
    embed: dict[str, tp.Any]
    num_frames: int | None
    preprocess_device: str | None = None
    """Set: send uint8 frames, the model's process preprocesses them on that device."""


Message = tuple[str, str, tp.Any]
"""``(kind, video key, payload)``: ``plan`` (a ``VideoSteps``), ``frames`` (frame numbers, pixels),
``done`` (the CPU seconds the process spent on the video and the frames it sent), ``error`` (the
exception), ``died`` (sent by ``Feeder`` itself for a dead process)."""


def _portable(error: BaseException) -> BaseException:
    """The exception itself when it survives pickling, else a RuntimeError with its type and message."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # noqa: BLE001 - any pickling failure: keep the words
        return RuntimeError(f"{type(error).__name__}: {error}")


def decoder_main(spec: DecoderSpec, tasks: tp.Any, out: tp.Any, allowance: tp.Any, parent: int) -> None:
    """A decoding process: ``(key, path, first step)`` tasks in, messages out through its own pipe (written at once,
    so that nothing sent is lost if the process is killed later), until a ``None`` task. Each frames
    message takes one of the ``allowance`` (a semaphore), which the model's process gives back once it has
    read the message."""
    from pipeline.common.quiet import silence_libraries
    from pipeline.embedding.adapters import adapter_class
    from pipeline.embedding.steps import plan_steps
    from pipeline.testing import faults

    _die_with_parent(parent)
    faults.trap_cuda()
    silence_libraries(False)
    torch.set_num_threads(1)
    embed = EmbedConfig.model_validate(spec.embed)
    adapter = adapter_class(embed.model.family)(
        spec.source,
        layer_type=embed.layer_type,
        trust_remote_code=embed.model.trust_remote_code,
        revision=embed.model.hub_revision(),
        with_model=False,
    )
    while (task := _next_task(tasks)) is not None:
        key, path, start = task
        faults.in_decoding(path)
        try:
            cpu = time.process_time()  # this process's CPU time: waits for the worker's credits do not count
            frames = 0
            steps = plan_steps(path, embed, spec.num_frames)
            out.send(("plan", key, steps))
            left = steps.from_step(start) if 0 < start < len(steps.index) else steps  # else the worker fails it
            for numbers, pixels in video_chunks(path, left, embed, adapter, spec.preprocess_device):
                frames += len(numbers)
                allowance.acquire()
                out.send(("frames", key, (numbers, pixels)))
            out.send(("done", key, (time.process_time() - cpu, frames)))
        except Exception as e:  # noqa: BLE001 - the video fails, the process goes on
            out.send(("error", key, _portable(e)))


def decoded_frames(path: str, steps: VideoSteps, embed: EmbedConfig) -> tp.Iterator[tuple[int, np.ndarray]]:
    """``(frame number, rgb24 frame)`` for every frame the steps need, as a decoding process decodes them:
    on one thread (the worker runs a decoding process per core; FFmpeg's threads would only add CPU time)."""
    return step_frames(path, steps, embed, threaded=False)


def video_chunks(
    path: str, steps: VideoSteps, embed: EmbedConfig, adapter: Adapter, preprocess_device: str | None
) -> tp.Iterator[tuple[list[int], torch.Tensor]]:
    """A decoding process's work on one planned video: the frame numbers and pixels of every frame the
    steps need, ``PREPROCESS_CHUNK`` frames at a time (uint8 frames, unprocessed, with ``preprocess_device``)."""
    frames = decoded_frames(path, steps, embed)
    while chunk := list(itertools.islice(frames, PREPROCESS_CHUNK)):
        images = [f for _, f in chunk]
        pixels = adapter.preprocess_frames(images) if preprocess_device is None else torch.from_numpy(np.stack(images))
        yield [i for i, _ in chunk], pixels


def _die_with_parent(parent: int) -> None:
    """Leave signals to the worker and die with it. A forked process inherits submitit's handlers: SLURM
    signals every process of a job before its time limit, and only the worker may checkpoint; Ctrl-C is
    the launcher's. ``scancel`` sends SIGTERM to every process of the job, which the worker (submitit)
    bypasses: a decoding process that died of it first would make its video fail for a cancel, so it
    ignores SIGTERM too. Linux kills this process when the worker dies (``kill -9`` included), so that no
    decoding process outlives its job holding the job's files and pipes."""
    import ctypes
    import signal

    for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the worker died before the request above took effect
        os._exit(0)


def _next_task(tasks: tp.Any) -> tuple[str, str, int] | None:
    """The next task; None when told to stop or when the worker is gone (where prctl is not available)."""
    parent = os.getppid()
    while True:
        try:
            task: tuple[str, str, int] | None = tasks.get(timeout=1.0)
            return task
        except queue.Empty:
            if os.getppid() != parent:
                return None


class _Slot:
    """One decoding process, its task queue, its message pipe and credits, and the videos handed to it,
    oldest (the one being decoded) first."""

    def __init__(self, ctx: tp.Any, spec: DecoderSpec, in_flight: int = QUEUE_CHUNKS) -> None:
        self.tasks: tp.Any = ctx.Queue()
        self.messages, sender = ctx.Pipe(duplex=False)
        self.credits: tp.Any = ctx.Semaphore(in_flight)
        args = (spec, self.tasks, sender, self.credits, os.getpid())
        self.proc = ctx.Process(target=decoder_main, args=args, daemon=True)
        self.proc.start()
        sender.close()  # the process holds the only writer: its death reads as the end of the pipe
        self.assigned: list[tuple[str, str, int]] = []


class Feeder:
    """``n`` decoding processes (``torch.multiprocessing``: pixels travel through shared memory)."""

    def __init__(self, spec: DecoderSpec, n: int, in_flight: int = QUEUE_CHUNKS) -> None:
        """``in_flight``: frames messages per process at most (``shm_credits``)."""
        import torch.multiprocessing as mp

        self.spec, self.in_flight = spec, in_flight
        # Pixels are shared by file name (not by passing descriptors through the sender, which must then be
        # alive when they are read): frames a process sent before it was killed can still be read.
        mp.set_sharing_strategy("file_system")
        self.ctx = mp.get_context("fork")  # as DataLoader workers: no re-import; they never touch CUDA
        self.slots = [_Slot(self.ctx, spec, in_flight) for _ in range(n)]
        self._turn = 0

    def submit(self, key: str, path: str, start: int = 0) -> None:
        """Hand a video to the process with the fewest videos waiting (its frames from step ``start`` on:
        a video resumed)."""
        slot = min(self.slots, key=lambda s: len(s.assigned))
        slot.assigned.append((key, path, start))
        slot.tasks.put((key, path, start))

    def get(self, timeout: float) -> Message | None:
        """The next message of any process (taken in turn), or None after ``timeout`` seconds. A process
        that died is seen once everything it sent has been read: the video it was decoding is reported
        ``died``, and a new process takes the videos that were waiting for it."""
        from multiprocessing.connection import wait

        ready = wait([s.messages for s in self.slots], timeout)
        if not ready:
            return None
        self._turn += 1
        order = self.slots[self._turn % len(self.slots) :] + self.slots[: self._turn % len(self.slots)]
        slot = next(s for s in order if s.messages in ready)
        try:
            message: Message = slot.messages.recv()
        except (EOFError, OSError, pickle.UnpicklingError):
            return self._replace(slot)
        if message[0] == "frames":
            slot.credits.release()
        elif message[0] in ("done", "error"):
            slot.assigned = [task for task in slot.assigned if task[0] != message[1]]
        return message

    def _replace(self, dead: _Slot) -> Message | None:
        dead.proc.join(timeout=5)
        fresh = _Slot(self.ctx, self.spec, self.in_flight)
        self.slots[self.slots.index(dead)] = fresh
        for task in dead.assigned[1:]:
            fresh.assigned.append(task)
            fresh.tasks.put(task)
        dead.tasks.cancel_join_thread()
        dead.messages.close()
        if not dead.assigned:
            return None
        why = f"its decoding process (pid {dead.proc.pid}) died with exit code {dead.proc.exitcode}"
        return ("died", dead.assigned[0][0], RuntimeError(why))

    def close(self) -> None:
        for slot in self.slots:
            slot.tasks.put(None)
        for slot in self.slots:
            slot.proc.join(timeout=5)
            if slot.proc.exitcode is None:
                slot.proc.kill()
            slot.tasks.cancel_join_thread()
            slot.messages.close()
