"""Embedding one video: the time grid, a single decoding pass, batched forward passes, aggregation."""

from __future__ import annotations

import dataclasses
import itertools
import queue
import threading
import typing as tp

import numpy as np
import torch

from . import aggregation, decoding, timegrid
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


def resolve_num_frames(embed: EmbedConfig, hf_config: tp.Any) -> int | None:
    """Frames per clip: the configured value, else the model's; above the model's maximum is an error."""
    adapter = adapter_class(embed.model.family)
    if not adapter.is_video:
        return None
    most = adapter.max_frames(hf_config)
    if embed.num_frames is None:
        return most
    if embed.num_frames > most:
        raise ConfigError(
            f"num_frames: {embed.model.name} takes at most {most} frames per clip (got {embed.num_frames})"
        )
    return embed.num_frames


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
        )
        self.num_frames = resolve_num_frames(embed, self.adapter.model.config)
        self.batch_size = min(batch_size, cls.max_batch or batch_size)

    def embed(self, path: str) -> Embedding:
        info = decoding.probe(path)
        freq = info.fps if self.config.frequency == "native" else float(self.config.frequency)
        n_steps = timegrid.n_output_steps(info.duration, freq)
        if n_steps < 1:
            raise decoding.VideoError(
                f"{path}: {info.duration:.3f} s is shorter than half an output step at {freq:g} Hz"
            )
        if self.adapter.is_video:
            return self._embed_clips(path, info, freq, n_steps)
        return self._embed_frames(path, info, freq, n_steps)

    # --- shared ------------------------------------------------------------------------------
    def _reduce(self, states: torch.Tensor) -> tuple[np.ndarray, list[int]]:
        indices = aggregation.layer_indices(self.config.layers, states.shape[1])
        picked = states[:, indices]
        local = list(range(len(indices)))
        if self.config.layer_aggregation == "group_mean" and len(indices) > 1:
            picked, local = states, indices
        tokens = aggregation.aggregate_tokens(picked, self.config.token_aggregation)
        layers = aggregation.aggregate_layers(tokens, local, self.config.layer_aggregation)
        return layers.cpu().numpy(), indices

    def _finish(self, rows: np.ndarray, freq: float, duration: float, indices: list[int]) -> Embedding:
        data = np.moveaxis(rows, 0, -1).astype(np.float32, copy=False)
        return Embedding(
            data=np.ascontiguousarray(data),
            frequency=freq,
            start=0.0,
            duration=duration,
            layer_indices=indices,
            num_frames=self.num_frames,
            clip_duration=self.clip_duration_for(freq) if self.adapter.is_video else None,
        )

    def clip_duration_for(self, freq: float) -> float:
        return 1 / freq if self.config.clip_duration is None else self.config.clip_duration

    # --- the time grid ---------------------------------------------------------------------
    def _embed_clips(self, path: str, info: decoding.VideoInfo, freq: float, n_steps: int) -> Embedding:
        assert self.num_frames is not None
        clip_duration = self.clip_duration_for(freq)
        ends = timegrid.clip_end_times(info.duration, n_steps)
        times = timegrid.clip_frame_times(ends, timegrid.clip_offsets(self.num_frames, clip_duration))
        audio = self._audio(path, ends, clip_duration)
        return self._run_steps(path, timegrid.frame_indices(times, info.fps), freq, info.duration, audio)

    def _embed_frames(self, path: str, info: decoding.VideoInfo, freq: float, n_steps: int) -> Embedding:
        times = timegrid.image_frame_times(info.duration, n_steps)
        index = timegrid.frame_indices(times, info.fps)[:, None]
        return self._run_steps(path, index, freq, info.duration, None)

    def _audio(self, path: str, ends: np.ndarray, clip_duration: float) -> list[np.ndarray] | None:
        if not (self.config.use_audio and self.adapter.uses_audio):
            return None
        rate = getattr(self.adapter, "audio_rate", 44_100)
        track = decoding.load_audio(path, rate)
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
            yield from zip([i for i, _ in chunk], self.adapter.preprocess_frames([f for _, f in chunk]))

    def _states(self, items: list[list[tp.Any]], audio: list[np.ndarray] | None) -> torch.Tensor:
        if not self.adapter.framewise:
            return self.adapter.hidden_states(items, audio)
        pixels = torch.stack([torch.stack(step) for step in items])
        return self.adapter.hidden_states_from_pixels(pixels if self.adapter.is_video else pixels[:, 0])

    def _run_steps(
        self, path: str, index: np.ndarray, freq: float, duration: float, audio: list[np.ndarray] | None
    ) -> Embedding:
        """``index[k]`` lists the frames of output step k (non-decreasing over k); frames are decoded once,
        kept only while a coming step needs them, and steps go through the model ``batch_size`` at a time."""
        n_steps = index.shape[0]
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
            reduced, indices = self._reduce(self._states(items, audio[lo:hi] if audio is not None else None))
            if rows is None:
                rows = np.zeros((n_steps, *reduced.shape[1:]), np.float32)
            rows[lo:hi] = reduced
            if hi < n_steps:
                keep_from = int(index[hi].min())
                for i in [i for i in buffer if i < keep_from]:
                    del buffer[i]
        assert rows is not None
        return self._finish(rows, freq, duration, indices)
