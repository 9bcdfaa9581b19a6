"""Embedding videos with one loaded model: batched forward passes over a video's steps, then aggregation.

``Embedder.embed`` runs one video in this process (decoding and preprocessing in a background thread);
``pipeline.embedding.batcher`` shares the Embedder's model among the videos of several decoding processes.
"""

from __future__ import annotations

import dataclasses
import itertools
import typing as tp

import numpy as np
import torch

from pipeline.config import ConfigError, EmbedConfig
from pipeline.embedding import aggregation, decoding, timegrid
from pipeline.embedding.adapters import Adapter, adapter_class
from pipeline.embedding.partial import Partial, Resume
from pipeline.embedding.prefetch import prefetch
from pipeline.embedding.steps import (
    PREPROCESS_CHUNK,
    Timing,
    VideoSteps,
    clip_duration_for,
    plan_steps,
    step_frames,
)
from pipeline.testing import faults

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclasses.dataclass
class Embedding:
    """A video's embedding: ``data`` is ``(*features, time)`` float32, sample k at ``start + k / frequency``."""

    data: np.ndarray
    frequency: float
    start: float
    duration: float
    layer_indices: list[int]
    num_frames: int | None
    clip_duration: float | None
    timing: str = "reference"
    """How frames were timed: ``reference`` (the reference reader's view) or ``exact``."""
    timing_note: str = ""
    """Why a video asked for ``reference`` timing got ``exact`` timing (a variable frame rate)."""

    @property
    def times(self) -> np.ndarray:
        return timegrid.output_times(self.data.shape[-1], self.frequency, self.start)


def matmul_precision(embed: EmbedConfig, device: str) -> str:
    """torch's float32 matmul precision for ``embed`` on ``device``: ``high`` (TensorFloat-32) only where
    ``allow_tf32`` asks for it on a GPU; else ``highest``, PyTorch's default and the reference's numbers."""
    return "high" if embed.allow_tf32 and device.startswith("cuda") else "highest"


class Embedder:
    """Holds one loaded model; ``embed(path)`` turns a video into an ``Embedding``."""

    def __init__(self, embed: EmbedConfig, source: str, *, device: str = "cpu", batch_size: int = 8) -> None:
        self.config = embed
        torch.set_float32_matmul_precision(matmul_precision(embed, device))  # process-wide: one config per job
        cls = adapter_class(embed.model.family)
        self.adapter: Adapter = cls(
            source,
            device=device,
            dtype=_DTYPES[embed.dtype],
            layer_type=embed.layer_type,
            trust_remote_code=embed.model.trust_remote_code,
            revision=embed.model.hub_revision(),
        )
        self.num_frames = embed.frames_per_clip(self.adapter.model.config)
        self.batch_size = min(batch_size, cls.max_batch or batch_size)
        self.steps_run = 0
        """Steps (clips, or frames of an image model) through the model so far: what a job measures its rate by."""
        self.partial: Partial | None = None
        """The steps of the video ``embed`` is computing, so far (for a task interrupted mid-video)."""
        self.preprocess_device = None if embed.preprocess_device == "cpu" else device
        if self.preprocess_device is not None and not device.startswith("cuda"):
            raise ConfigError(f"preprocess_device: cuda needs the model on a GPU (this job runs it on {device})")
        if self.preprocess_device is not None:
            self.adapter.device_processor()  # loaded (and checked) before the first video

    def embed(self, path: str, resume: Resume | None = None) -> Embedding:
        """The video's embedding; with ``resume``, its first steps are those saved and the rest computed
        (the same numbers as a whole run). While it runs, ``partial`` holds the steps computed so far."""
        steps = plan_steps(path, self.config, self.num_frames)
        if resume is not None:
            resume.check(len(steps.index), path)
        audio = self._audio(path, steps.clip_ends, steps.clip_duration) if steps.clip_ends is not None else None
        return self._run_steps(path, steps, audio, resume)

    def embed_first(self, path: str, n_steps: int) -> int:
        """Compute the first ``n_steps`` steps of a video (a calibration's sample), discarding them; returns
        how many ran (fewer for a shorter video)."""
        steps = plan_steps(path, self.config, self.num_frames).until(n_steps)
        audio = self._audio(path, steps.clip_ends, steps.clip_duration) if steps.clip_ends is not None else None
        self._run_steps(path, steps, audio)
        return len(steps.index)

    # --- shared ------------------------------------------------------------------------------
    def reduce(self, states: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        """Token-aggregated states of the cached layers (``cache_n_layers``), or of the selected layers
        aggregated, on the states' device; with the model's indices of the layers kept."""
        faults.after_batch(int(states.shape[0]))
        self.steps_run += int(states.shape[0])
        config = self.config
        if config.cache_n_layers is not None:
            indices = aggregation.cached_layer_indices(config.cache_n_layers, states.shape[1])
            return aggregation.aggregate_tokens(
                aggregation.take_layers(states, indices), config.token_aggregation
            ), indices
        return aggregation.reduce_layers(states, config.layers, config.layer_aggregation, config.token_aggregation)

    def finish(self, rows: np.ndarray, freq: float, timing: Timing, indices: list[int]) -> Embedding:
        data = np.moveaxis(rows, 0, -1).astype(np.float32, copy=False)
        note = timing.note
        clip = clip_duration_for(self.config, freq) if self.adapter.is_video else None
        if clip is not None and timing.duration < clip:  # the numbers stay the reference's; the user is told
            short = (
                f"shorter than one clip ({timing.duration:.3g} s < clip_duration {clip:g} s): every clip reaches "
                "before the first frame, which stands in there (the reference's rule)"
            )
            note = f"{note}; {short}" if note else short
        return Embedding(
            data=np.ascontiguousarray(data),
            frequency=freq,
            start=0.0,
            duration=timing.duration,
            layer_indices=indices,
            num_frames=self.num_frames,
            clip_duration=clip,
            timing=timing.mode,
            timing_note=note,
        )

    @property
    def processor_name(self) -> str:
        """The processor classes that make the pixels, recorded with every entry: with ``preprocess_device``,
        the one run there when the family's own cannot (ViViT's)."""
        name = self.adapter.processor_name
        on_device = self.adapter.device_processor() if self.preprocess_device is not None else self.adapter.processor
        if on_device is not self.adapter.processor:
            name += f" ({type(on_device).__name__} on {self.preprocess_device})"
        return name

    @property
    def with_audio(self) -> bool:
        """Each clip's audio goes to the model (Phi-4 with ``use_audio``)."""
        return self.config.use_audio and self.adapter.uses_audio

    @property
    def batchable(self) -> bool:
        """Clips can be assembled from frames preprocessed one by one, in other processes (``Batcher``)."""
        return self.adapter.framewise and not self.with_audio

    def _audio(self, path: str, ends: np.ndarray, clip_duration: float | None) -> list[np.ndarray] | None:
        if not self.with_audio:
            return None
        rate = getattr(self.adapter, "audio_rate", 44_100)
        track = decoding.load_audio(path, rate)
        assert clip_duration is not None
        return [track[int(max(0.0, t - clip_duration) * rate) : int(t * rate)] for t in ends]

    # --- decoding, preprocessing and batched forward passes --------------------------------------
    def _frame_source(self, path: str, steps: VideoSteps) -> tp.Iterator[tuple[int, tp.Any]]:
        """Decoded frames (downsized for video models), preprocessed here when the adapter allows it."""
        frames: tp.Iterator[tuple[int, tp.Any]] = step_frames(path, steps, self.config)
        if not self.adapter.framewise:
            yield from frames
            return
        frames = prefetch(frames)  # decoding and preprocessing overlap: each runs in its own thread
        while chunk := list(itertools.islice(frames, PREPROCESS_CHUNK)):
            pixels = self.adapter.preprocess_frames([f for _, f in chunk], device=self.preprocess_device)
            yield from zip([i for i, _ in chunk], pixels)

    def _states(self, items: list[list[tp.Any]], audio: list[np.ndarray] | None) -> torch.Tensor:
        if not self.adapter.framewise:
            return self.adapter.hidden_states(items, audio)
        pixels = torch.stack([torch.stack(step) for step in items])
        return self.adapter.hidden_states_from_pixels(pixels if self.adapter.is_video else pixels[:, 0])

    def _run_steps(
        self, path: str, steps: VideoSteps, audio: list[np.ndarray] | None, resume: Resume | None = None
    ) -> Embedding:
        """``steps.index[k]`` lists the frames of output step k (non-decreasing over k); frames are decoded
        once, kept only while a coming step needs them, and steps go through the model ``batch_size`` at a
        time, in order (``partial`` follows them); a resumed video decodes only the frames of its steps
        left."""
        index = steps.index
        n_steps = index.shape[0]
        keep = steps.keep_from
        start = resume.start if resume is not None else 0
        frames = prefetch(self._frame_source(path, steps.from_step(start)))
        buffer: dict[int, tp.Any] = {}
        rows: np.ndarray | None = None
        indices: list[int] = []
        self.partial = None
        try:
            for lo in range(start, n_steps, self.batch_size):
                hi = min(lo + self.batch_size, n_steps)
                needed = int(index[lo:hi].max())
                while needed not in buffer:
                    i, item = next(frames)
                    buffer[i] = item
                items = [[buffer[int(i)] for i in index[k]] for k in range(lo, hi)]
                states = self._states(items, audio[lo:hi] if audio is not None else None)
                out, indices = self.reduce(states)
                reduced = out.cpu().numpy()
                if rows is None:
                    rows = np.zeros((n_steps, *reduced.shape[1:]), np.float32)
                    if resume is not None:
                        rows[:start] = resume.rows
                    self.partial = Partial(rows, start, steps.frequency)
                rows[lo:hi] = reduced
                assert self.partial is not None
                self.partial.done = hi
                if hi < n_steps:
                    keep_from = int(keep[hi])
                    for i in [i for i in buffer if i < keep_from]:
                        del buffer[i]
        finally:
            self.partial = None
        assert rows is not None
        return self.finish(rows, steps.frequency, steps.timing, indices)
