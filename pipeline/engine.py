"""Embedding one video: the time grid, a single decoding pass, batched forward passes, aggregation."""

from __future__ import annotations

import dataclasses
import itertools
import queue
import threading
import typing as tp

import numpy as np
import torch

from . import aggregation, decoding, reference_reader, timegrid
from .config import ConfigError, EmbedConfig
from .models import Adapter, adapter_class

_PREPROCESS_CHUNK = 16
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


def prefetch(items: tp.Iterator[tp.Any], depth: int = 64) -> tp.Iterator[tp.Any]:
    """Run ``items`` in a background thread ahead of the consumer, through a bounded queue."""
    box: queue.Queue[tuple[str, tp.Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        box.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            box.put(("end", None))
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
            box.put(("error", e))

    thread = threading.Thread(target=produce, daemon=True, name="frame-prefetch")
    thread.start()
    try:
        while True:
            kind, value = box.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()


@dataclasses.dataclass(frozen=True)
class Timing:
    """How one video's frames are found: its frame rate and duration, and the end-of-stream rule."""

    fps: float
    duration: float
    n_frames: int | None
    """Set under ``reference`` timing: requests past the last frame get the frame returned last."""
    mode: str
    note: str = ""


def video_timing(path: str, info: decoding.VideoInfo, mode: str) -> Timing:
    """``exact``: the exact container duration and average rate; frames by presentation time.
    ``reference``: the reference reader's view (``reference_reader``); a variable-frame-rate file, which
    the reference mis-times, gets exact timing and a note saying so."""
    if mode == "exact":
        return Timing(info.fps, info.duration, None, "exact")
    counted = decoding.frame_timing(path)
    if not counted.constant_rate:
        note = "variable frame rate: embedded with exact timing (the reference reader mis-times such files)"
        return Timing(info.fps, info.duration, None, "exact", note)
    if info.container_us is None:
        raise decoding.VideoError(f"{path}: the container states no duration (the reference reader needs one)")
    fps = reference_reader.reader_fps(info.average_rate, info.base_rate)
    return Timing(fps, reference_reader.reader_duration(info.container_us), counted.count, "reference")


def resolve_num_frames(embed: EmbedConfig, hf_config: tp.Any) -> int | None:
    """Frames per clip: the configured value, else the model's; a count the model cannot take is a
    ``ConfigError`` naming ``num_frames`` (raised by the launcher before any job is submitted)."""
    adapter = adapter_class(embed.model.family)
    if not adapter.is_video:
        return None
    fewest, most, why = adapter.frame_range(hf_config)
    if embed.num_frames is None:
        return most
    if not fewest <= embed.num_frames <= most:
        takes = f"exactly {most}" if fewest == most else f"{fewest} to {most}"
        raise ConfigError(
            f"num_frames: {embed.model.name} takes {takes} frames per clip ({why}; got {embed.num_frames})"
        )
    return embed.num_frames


def clip_duration_for(embed: EmbedConfig, freq: float) -> float:
    """Seconds of video before each output step: the configured value, else one output period."""
    return 1 / freq if embed.clip_duration is None else embed.clip_duration


@dataclasses.dataclass(frozen=True)
class StepPlan:
    """Which frames each output step of one video takes: what decoding needs to know, and nothing more."""

    timing: Timing
    frequency: float
    index: np.ndarray
    """``index[k]``: the frame numbers of output step k (a clip, or one frame for image models)."""
    clip_ends: np.ndarray | None
    """Video models: the end time of each step's clip (its audio window ends there)."""
    clip_duration: float | None


def plan_steps(path: str, embed: EmbedConfig, num_frames: int | None) -> StepPlan:
    """The time grid of one video and the frame numbers of each step, under the config's timing rules
    (``num_frames`` None: an image model, one frame per step)."""
    timing = video_timing(path, decoding.probe(path), embed.timing)
    freq = timing.fps if embed.frequency == "native" else float(embed.frequency)
    n_steps = timegrid.n_output_steps(timing.duration, freq)
    if n_steps < 1:
        raise decoding.VideoError(f"{path}: {timing.duration:.3f} s is shorter than half an output step at {freq:g} Hz")
    if num_frames is None:
        times = timegrid.image_frame_times(timing.duration, n_steps)[:, None]
        return StepPlan(timing, freq, frames_for(times, timing), None, None)
    clip_duration = clip_duration_for(embed, freq)
    ends = timegrid.clip_end_times(timing.duration, n_steps)
    times = timegrid.clip_frame_times(ends, timegrid.clip_offsets(num_frames, clip_duration))
    return StepPlan(timing, freq, frames_for(times, timing), ends, clip_duration)


def frames_for(times: np.ndarray, timing: Timing) -> np.ndarray:
    """Frame index of each requested time, ``(steps, frames per step)``; under reference timing, with
    the reader's end-of-stream rule applied in the reference's order of requests (row by row)."""
    index = reference_reader.frame_numbers(timing.fps, times)
    if timing.n_frames is None:
        return index
    return reference_reader.frames_returned(index.ravel(), timing.n_frames).reshape(index.shape)


class Embedder:
    """Holds one loaded model; ``embed(path)`` turns a video into an ``Embedding``."""

    def __init__(self, embed: EmbedConfig, source: str, *, device: str = "cpu", batch_size: int = 8) -> None:
        self.config = embed
        cls = adapter_class(embed.model.family)
        self.adapter: Adapter = cls(
            source,
            device=device,
            dtype=_DTYPES[embed.dtype],
            layer_type=embed.layer_type,
            trust_remote_code=embed.model.trust_remote_code,
            revision=embed.model.hub_revision(),
        )
        self.num_frames = resolve_num_frames(embed, self.adapter.model.config)
        self.batch_size = min(batch_size, cls.max_batch or batch_size)
        self.preprocess_device = None if embed.preprocess_device == "cpu" else device
        if self.preprocess_device is not None and not device.startswith("cuda"):
            raise ConfigError(f"preprocess_device: cuda needs the model on a GPU (this job runs it on {device})")

    def embed(self, path: str) -> Embedding:
        plan = plan_steps(path, self.config, self.num_frames)
        audio = self._audio(path, plan.clip_ends, plan.clip_duration) if plan.clip_ends is not None else None
        return self._run_steps(path, plan.index, plan.frequency, plan.timing, audio)

    # --- shared ------------------------------------------------------------------------------
    def reduce(self, states: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        """Token-aggregated states of the cached layers (``cache_n_layers``), or of the selected layers
        aggregated, on the states' device; with the model's indices of the layers kept."""
        config = self.config
        if config.cache_n_layers is not None:
            indices = aggregation.cached_layer_indices(config.cache_n_layers, states.shape[1])
            return aggregation.aggregate_tokens(states[:, indices], config.token_aggregation), indices
        return aggregation.reduce_layers(states, config.layers, config.layer_aggregation, config.token_aggregation)

    def finish(self, rows: np.ndarray, freq: float, timing: Timing, indices: list[int]) -> Embedding:
        data = np.moveaxis(rows, 0, -1).astype(np.float32, copy=False)
        return Embedding(
            data=np.ascontiguousarray(data),
            frequency=freq,
            start=0.0,
            duration=timing.duration,
            layer_indices=indices,
            num_frames=self.num_frames,
            clip_duration=clip_duration_for(self.config, freq) if self.adapter.is_video else None,
            timing=timing.mode,
            timing_note=timing.note,
        )

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
    def _frame_source(self, path: str, wanted: np.ndarray) -> tp.Iterator[tuple[int, tp.Any]]:
        """Decoded frames (downsized for video models), preprocessed here when the adapter allows it."""
        frames: tp.Iterator[tuple[int, tp.Any]] = decoding.iter_frames(path, wanted)
        if self.adapter.is_video and self.config.max_imsize is not None:
            frames = ((i, decoding.downsize(f, self.config.max_imsize)) for i, f in frames)
        if not self.adapter.framewise:
            yield from frames
            return
        frames = prefetch(frames)  # decoding and preprocessing overlap: each runs in its own thread
        while chunk := list(itertools.islice(frames, _PREPROCESS_CHUNK)):
            pixels = self.adapter.preprocess_frames([f for _, f in chunk], device=self.preprocess_device)
            yield from zip([i for i, _ in chunk], pixels)

    def _states(self, items: list[list[tp.Any]], audio: list[np.ndarray] | None) -> torch.Tensor:
        if not self.adapter.framewise:
            return self.adapter.hidden_states(items, audio)
        pixels = torch.stack([torch.stack(step) for step in items])
        return self.adapter.hidden_states_from_pixels(pixels if self.adapter.is_video else pixels[:, 0])

    def _run_steps(
        self, path: str, index: np.ndarray, freq: float, timing: Timing, audio: list[np.ndarray] | None
    ) -> Embedding:
        """``index[k]`` lists the frames of output step k (non-decreasing over k); frames are decoded once,
        kept only while a coming step needs them, and steps go through the model ``batch_size`` at a time."""
        n_steps = index.shape[0]
        # the earliest frame any step from k on needs: frames before it can be let go after step k - 1
        keep = np.minimum.accumulate(index.min(axis=1)[::-1])[::-1]
        frames = prefetch(self._frame_source(path, np.unique(index)))
        buffer: dict[int, tp.Any] = {}
        rows: np.ndarray | None = None
        indices: list[int] = []
        for lo in range(0, n_steps, self.batch_size):
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
            rows[lo:hi] = reduced
            if hi < n_steps:
                keep_from = int(keep[hi])
                for i in [i for i in buffer if i < keep_from]:
                    del buffer[i]
        assert rows is not None
        return self.finish(rows, freq, timing, indices)
