"""The time grid: which output steps a video gets and which frame times feed each step
(``reference_reader`` turns times into frame indices).

Pure functions, written to reproduce the reference extractor's floating-point expressions exactly,
so that the same frame is chosen at every boundary.
"""

from __future__ import annotations

import numpy as np


def n_output_steps(duration: float, frequency: float) -> int:
    """Number of output samples for a video: ``round(duration * frequency)`` (Python's rounding)."""
    return int(round(duration * frequency))


def image_frame_times(duration: float, n_steps: int, rule: str = "seed") -> np.ndarray:
    """Image models: one frame per output step. ``seed`` (the reference extractor, neuralset 0.0.2):
    spread from 0 to the end of the video inclusive, ``linspace(0, duration, n)``; ``bin_end`` (neuralset
    0.4.0): at the end of each step's bin, ``linspace(0, duration, n + 1)[1:]``."""
    if rule == "bin_end":
        return np.linspace(0, duration, n_steps + 1)[1:]
    if rule != "seed":
        raise ValueError(f"image_frames: unknown rule {rule!r} (seed or bin_end)")
    return np.linspace(0, duration, n_steps)


def clip_end_times(duration: float, n_steps: int) -> np.ndarray:
    """Video models: output step k summarises the clip that ends at ``(k + 1) * duration / n``."""
    return np.linspace(0, duration, n_steps + 1)[1:]


def clip_offsets(num_frames: int, clip_duration: float) -> np.ndarray:
    """Offsets before the clip end of each of its frames, earliest first (``k / n * T``, k descending)."""
    return np.array([k / num_frames * clip_duration for k in reversed(range(num_frames))])


def clip_frame_times(end_times: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Frame times of every clip, ``(n_steps, num_frames)``, clamped at the start of the video."""
    return np.maximum(0.0, end_times[:, None] - offsets[None, :])


def output_times(n_steps: int, frequency: float, start: float = 0.0) -> np.ndarray:
    """Time coordinate of the stored samples: ``start + k / frequency``."""
    return start + np.arange(n_steps, dtype=np.float64) / frequency
