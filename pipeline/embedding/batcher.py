"""Several videos through one model at once: the steps of every video in flight share forward batches.

Decoding processes (``feeding``) plan each video and send its preprocessed frames; a step becomes ready
once its last frame has arrived. Batches take ready steps first come, first served, whatever their video;
the pixels go to the device from pinned memory without blocking, and while a batch runs the next one is
assembled. A video is handed back (``done``) as soon as its last step is reduced, and a video that fails
(its decoding raises, its decoding process dies, its steps make the model raise) fails alone. A batch
that runs out of memory is halved, down to one clip, and later batches keep the size that fitted.

The numbers are the engine's (``Embedder.embed``): the same plan, the same per-frame preprocessing, the
same reduction; only which clips share a batch differs (``tests/embedding/test_batcher.py``).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
import typing as tp

import numpy as np
import torch

from pipeline.common.failures import out_of_memory
from pipeline.embedding.engine import Embedder, Embedding
from pipeline.embedding.feeding import QUEUE_CHUNKS, SHM, DecoderSpec, Feeder, shm_credits, shm_free
from pipeline.embedding.partial import Partial, Resume
from pipeline.embedding.steps import VideoSteps

IDLE_S = 0.05
"""How long the model waits for more frames before it runs a partial batch."""

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class _Video:
    key: str
    path: str
    resume: Resume | None = None
    plan: VideoSteps | None = None
    frames: dict[int, torch.Tensor] = dataclasses.field(default_factory=dict)
    received: int = -1
    """The highest frame number received: frames arrive in order, so every needed one up to it is here."""
    queued: int = 0
    """Steps put in the ready queue so far (steps are queued in order)."""
    reduced: int = 0
    rows: np.ndarray | None = None
    indices: list[int] = dataclasses.field(default_factory=list)
    keep: np.ndarray | None = None
    """``keep[k]``: the earliest frame any step from k on needs (frames before it can go once k is queued)."""


@dataclasses.dataclass
class Stages:
    """Where a batched job's time goes, for the launcher's cost model (``pipeline.launch.estimate``):
    the decoding processes' CPU seconds and the frames they sent, and the model's seconds (forward passes
    and waits for the device)."""

    decode_cpu_s: float = 0.0
    frames: int = 0
    forward_s: float = 0.0


def assemble(out: torch.Tensor, clips: tp.Sequence[tp.Sequence[torch.Tensor]]) -> torch.Tensor:
    """Each clip's frames copied once into ``out`` (clips, frames, ...): no stack of frames, then of clips,
    then a copy to pinned memory (three copies of every batch)."""
    for n, frames in enumerate(clips):
        for f, frame in enumerate(frames):
            out[n, f].copy_(frame)
    return out


@dataclasses.dataclass
class _Pending:
    steps: list[tuple[str, int]]
    out: torch.Tensor
    indices: list[int]
    ready: torch.cuda.Event | None


class Batcher:
    """Embeds a stream of videos with one loaded model and ``n_decoders`` decoding processes."""

    def __init__(self, embedder: Embedder, n_decoders: int) -> None:
        if not embedder.batchable:
            raise ValueError(
                f"{embedder.adapter.family}: its processor takes whole clips (or their audio); use Embedder.embed"
            )
        self.embedder = embedder
        self.device = embedder.adapter.device
        self.preprocess_device = embedder.preprocess_device
        spec = DecoderSpec(
            embedder.adapter.source,
            embedder.config.model_dump(mode="json"),
            embedder.num_frames,
            self.preprocess_device,
        )
        self.max_in_flight = n_decoders + 1
        self.credits = QUEUE_CHUNKS
        if self.preprocess_device is None:  # pixels, not raw frames, travel through /dev/shm
            frame = embedder.adapter.preprocess_frames([np.zeros((64, 80, 3), np.uint8)])[0]
            held = self.max_in_flight * 2 * (embedder.num_frames or 1)
            self.credits = shm_credits(frame.numel() * frame.element_size(), n_decoders, held, shm_free())
            if self.credits < QUEUE_CHUNKS:
                logger.warning(
                    "%s is small: %d frames message(s) in flight per decoding process, not %d",
                    SHM,
                    self.credits,
                    QUEUE_CHUNKS,
                )
        self.feeder = Feeder(spec, n_decoders, self.credits)
        self.batch = embedder.batch_size
        """Clips per forward: the configured batch, lowered for good once one ran out of memory."""
        self._buffers: list[torch.Tensor | None] = [None, None]
        self._copied: list[tp.Any] = [None, None]
        """Per buffer, the event after its last batch's copy to the GPU."""
        self._turn = 1
        self.stages = Stages()

    def close(self) -> None:
        self.feeder.close()

    def run(
        self,
        next_video: tp.Callable[[], tuple[str, str, Resume | None] | None],
        done: tp.Callable[[str, Embedding], None],
        failed: tp.Callable[[str, BaseException], None],
    ) -> None:
        """Embed every video ``next_video`` hands out (``(key, path, resume)``, ``resume`` the steps saved
        by an interrupted task; None when there is no more), keeping up to ``n_decoders + 1`` in flight;
        each ends in ``done`` or ``failed``."""
        self.videos: dict[str, _Video] = {}
        self.ready: collections.deque[tuple[str, int]] = collections.deque()
        self.failed = failed
        pending: _Pending | None = None
        more = True
        while True:
            while more and len(self.videos) < self.max_in_flight:
                item = next_video()
                if item is None:
                    more = False
                    break
                key, path, resume = item
                self.videos[key] = _Video(key, path, resume)
                self.feeder.submit(key, path, resume.start if resume is not None else 0)
            if not self.videos and pending is None:
                return
            if len(self.ready) < self.batch or pending is None:
                message = self.feeder.get(timeout=IDLE_S if self.ready or pending is not None else 1.0)
                if message is not None:
                    self._receive(message)
                    if len(self.ready) < self.batch:
                        continue
            launched = None
            if self.ready:
                launched = self._start([self.ready.popleft() for _ in range(min(self.batch, len(self.ready)))])
            if pending is not None:
                self._collect(pending, done)
            pending = launched

    def partials(self) -> dict[str, Partial]:
        """Per video in flight, the steps computed so far (a video's steps are reduced in order: batches
        take ready steps first come, first served, and each video's steps become ready in order)."""
        out = {}
        for key, video in list(getattr(self, "videos", {}).items()):
            start = video.resume.start if video.resume is not None else 0
            if video.rows is not None and video.plan is not None and video.reduced > start:
                out[key] = Partial(video.rows, video.reduced, video.plan.frequency)
        return out

    # --- messages ---------------------------------------------------------------------------------
    def _receive(self, message: tuple[str, str, tp.Any]) -> None:
        kind, key, payload = message
        video = self.videos.get(key)
        if video is None:  # a video that already failed: its remaining frames are dropped
            return
        if kind in ("error", "died"):
            self._fail(video, payload)
        elif kind == "plan":
            video.plan = payload
            video.keep = payload.keep_from
            if video.resume is not None:
                try:
                    video.resume.check(len(payload.index), video.path)
                except ValueError as e:
                    self._fail(video, e)
                    return
                video.queued = video.reduced = video.resume.start
        elif kind == "frames":
            numbers, pixels = payload
            if self.preprocess_device is not None:
                pixels = self.embedder.adapter.preprocess_frames(list(pixels.numpy()), device=self.preprocess_device)
            for n, i in enumerate(numbers):
                video.frames[i] = pixels[n]
            video.received = numbers[-1]
            assert video.plan is not None
            index = video.plan.index
            while video.queued < len(index) and int(index[video.queued].max()) <= video.received:
                self.ready.append((key, video.queued))
                video.queued += 1
        elif kind == "done" and isinstance(payload, tuple):
            self.stages.decode_cpu_s += float(payload[0])
            self.stages.frames += int(payload[1])
        if kind == "done" and (video.plan is None or video.queued < len(video.plan.index)):
            self._fail(
                video, RuntimeError(f"{video.path}: decoding ended at frame {video.received}, before the last step")
            )

    def _fail(self, video: _Video, error: BaseException) -> None:
        self.videos.pop(video.key, None)
        kept = [s for s in self.ready if s[0] != video.key]
        self.ready.clear()
        self.ready.extend(kept)
        self.failed(video.key, error)

    # --- forward passes ---------------------------------------------------------------------------
    def _pixels(self, steps: list[tuple[str, int]]) -> torch.Tensor:
        """The batch's clips, each frame copied once, straight into a reused buffer (pinned for a GPU)."""
        first = self.videos[steps[0][0]]
        assert first.plan is not None
        n_frames = len(first.plan.index[steps[0][1]])
        sample = first.frames[int(first.plan.index[steps[0][1]][0])]
        pixels = self._buffer((len(steps), n_frames, *sample.shape), sample.dtype, sample.device)
        clips = []
        for key, k in steps:
            video = self.videos[key]
            assert video.plan is not None
            clips.append([video.frames[int(i)] for i in video.plan.index[k]])
        assemble(pixels, clips)
        return pixels if self.embedder.adapter.is_video else pixels[:, 0]

    def _buffer(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """One of two buffers, taken in turn, that batches are assembled in (a batch's copy to the GPU may
        still be running from the other), made larger when a batch does not fit; pinned where the frames
        are on the host and the model on a GPU."""
        self._turn = 1 - self._turn
        held = self._buffers[self._turn]
        fits = held is not None and (held.dtype, held.device, held.shape[1:]) == (dtype, device, shape[1:])
        if held is None or not fits or held.shape[0] < shape[0]:
            pin = device.type == "cpu" and self.device.type == "cuda"
            held = torch.empty((max(shape[0], self.batch), *shape[1:]), dtype=dtype, device=device, pin_memory=pin)
            self._buffers[self._turn], self._copied[self._turn] = held, None
        elif self._copied[self._turn] is not None:
            self._copied[self._turn].synchronize()  # its last batch's copy to the GPU is done before it is written
        return held[: shape[0]]

    def _release_frames(self, steps: list[tuple[str, int]]) -> None:
        """Let go of the frames that no step after these needs."""
        last: dict[str, int] = {}
        for key, k in steps:
            last[key] = max(k, last.get(key, -1))
        for key, k in last.items():
            video = self.videos.get(key)
            if video is not None and video.keep is not None and k + 1 < len(video.keep):
                keep_from = int(video.keep[k + 1])
                for i in [i for i in video.frames if i < keep_from]:
                    del video.frames[i]

    def _forward(self, steps: list[tuple[str, int]]) -> tuple[torch.Tensor, list[int]]:
        pixels = self._pixels(steps)
        if self.device.type == "cuda" and pixels.device.type == "cpu":
            pixels = pixels.to(self.device, non_blocking=True)  # from the pinned buffer
            event = torch.cuda.Event()
            event.record()
            self._copied[self._turn] = event
        return self.embedder.reduce(self.embedder.adapter.hidden_states_from_pixels(pixels))

    def _fitting(self, steps: list[tuple[str, int]]) -> tuple[torch.Tensor, list[int]]:
        """The forward pass of ``steps``, in halves (and halves of those, down to one clip) while it runs
        out of memory; the failed batch is let go of before the halves run."""
        try:
            return self._forward(steps)
        except Exception as e:  # noqa: BLE001 - only out of memory is retried, below
            if not out_of_memory(e) or len(steps) == 1:
                raise
            message = str(e).splitlines()[0]
        # out of the except block: its traceback, which holds the failed batch's tensors, is gone
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        half = len(steps) // 2
        if half < self.batch:
            logger.warning(
                "out of memory with a batch of %d clips (%s): batches of %d clips from now on",
                len(steps),
                message,
                half,
            )
            self.batch = half
        first, rest = self._fitting(steps[:half]), self._fitting(steps[half:])
        return torch.cat([first[0], rest[0]]), first[1]

    def _start(self, steps: list[tuple[str, int]]) -> _Pending | None:
        """Start the forward pass of ``steps``; on the GPU it runs while the caller assembles the next batch.
        If it raises, each video's steps are run alone, so that only a video whose clips fail fails."""
        result: tuple[torch.Tensor, list[int]] | None = None
        started = time.perf_counter()
        try:
            result = self._fitting(steps)
        except Exception:  # noqa: BLE001 - find the video at fault below, the failed batch let go of first
            pass
        if result is None:
            parts = []
            for key in dict.fromkeys(k for k, _ in steps):
                mine = [s for s in steps if s[0] == key]
                try:
                    parts.append((mine, *self._fitting(mine)))
                except Exception as e:  # noqa: BLE001 - this video fails alone
                    self._fail(self.videos[key], e)
            if not parts:
                return None
            steps = [s for mine, _, _ in parts for s in mine]
            result = torch.cat([o for _, o, _ in parts]), parts[0][2]
        out, indices = result
        self._release_frames(steps)
        event = None
        if out.device.type == "cuda":
            host = torch.empty(out.shape, dtype=out.dtype, pin_memory=True)
            host.copy_(out, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            out = host
        self.stages.forward_s += time.perf_counter() - started
        return _Pending(steps, out, indices, event)

    def _collect(self, pending: _Pending, done: tp.Callable[[str, Embedding], None]) -> None:
        """Wait for a launched batch, put its rows in place, and hand back every video now complete."""
        if pending.ready is not None:
            waited = time.perf_counter()
            pending.ready.synchronize()
            self.stages.forward_s += time.perf_counter() - waited  # the device's time past the launch
        rows = pending.out.numpy()
        for n, (key, k) in enumerate(pending.steps):
            video = self.videos.get(key)
            if video is None or video.plan is None:
                continue
            if video.rows is None:
                video.rows = np.zeros((len(video.plan.index), *rows.shape[1:]), np.float32)
                if video.resume is not None:
                    video.rows[: video.resume.start] = video.resume.rows
            video.rows[k] = rows[n]
            video.indices = pending.indices
            video.reduced += 1
            if video.reduced == len(video.plan.index):
                del self.videos[key]
                plan = video.plan
                done(key, self.embedder.finish(video.rows, plan.frequency, plan.timing, video.indices))
