"""The reference reader's view of a video file, as pure functions.

The reference reads videos with moviepy, which learns a file's frame rate and duration from the text
that ``ffmpeg -i`` prints, then pipes frames out of FFmpeg. Reproducing its numbers means reproducing
that view exactly:

- **frame rate**: the stream's average rate as FFmpeg prints it (two decimals, or none for a whole
  number), parsed back, then snapped to ``x * 1000 / 1001`` when within 0.01 of it (x in 23, 24, 25,
  30, 50), as moviepy does; FFmpeg prints the real base rate (``tbr``) when there is no average rate;
- **duration**: the container's duration as FFmpeg prints it (``HH:MM:SS.cc``: rounded to 10 ms, every
  stream counted, a longer audio track included), parsed back as moviepy adds its fields;
- **frame index** of a time ``t``: ``int(fps * t + 1e-5)``;
- **end of stream**: a request for a frame past the last one the pipe delivers returns the frame the
  reader returned last, whatever it skipped over since (moviepy's ``read_frame`` keeps its last good
  frame; ``skip_frames`` does not update it).
"""

from __future__ import annotations

import math
import typing as tp
from fractions import Fraction

import numpy as np

FRAME_EPS = 1e-5
_NTSC_BASES = (23, 24, 25, 30, 50)


def printed_rate(rate: Fraction) -> str:
    """A frame rate as FFmpeg prints it in ``ffmpeg -i`` (``print_fps``: ``lrintf(d * 100)`` decides)."""
    value = float(rate)
    hundredths = round(float(np.float32(value * 100)))
    if hundredths == 0:
        return f"{value:1.4f}"
    if hundredths % 100:
        return f"{value:3.2f}"
    if hundredths % (100 * 1000):
        return f"{value:1.0f}"
    return f"{value / 1000:1.0f}k"


def reader_fps(average_rate: Fraction | None, base_rate: Fraction | None) -> float:
    """The frame rate the reference reader uses: FFmpeg's printed rate, parsed, snapped to NTSC rates."""
    rate = average_rate if average_rate else base_rate
    if not rate:
        raise ValueError("the video stream states no frame rate")
    text = printed_rate(rate)
    fps = float(text[:-1]) * 1000 if text.endswith("k") else float(text)
    coef = 1000.0 / 1001.0
    for base in _NTSC_BASES:
        if fps != base and abs(fps - base * coef) < 0.01:
            fps = base * coef
    return fps


def printed_duration(container_us: int) -> str:
    """The container duration as FFmpeg prints it: ``HH:MM:SS.cc``, rounded to the nearest 10 ms."""
    total = container_us + 5000
    secs, micros = divmod(total, 1_000_000)
    mins, secs = divmod(secs, 60)
    hours, mins = divmod(mins, 60)
    return f"{hours:02d}:{mins:02d}:{secs:02d}.{(100 * micros) // 1_000_000:02d}"


def reader_duration(container_us: int) -> float:
    """The duration the reference uses: the printed duration parsed field by field, seconds first."""
    fields = [float(part) for part in printed_duration(container_us).split(":")]
    return sum(factor * value for factor, value in zip((1, 60, 3600), reversed(fields)))


def frame_numbers(fps: float, times: np.ndarray) -> np.ndarray:
    """The reader's frame index of each (non-negative) time, ``int(fps * t + 1e-5)``, in float64."""
    return np.floor(fps * np.asarray(times, dtype=np.float64) + FRAME_EPS).astype(np.int64)


def frames_returned(requested: tp.Iterable[int], n_frames: int) -> np.ndarray:
    """The frames the reader returns for ``requested`` indices, asked in that order, when its pipe holds
    ``n_frames`` frames: the index itself when it exists, else the frame returned last (frame 0, read
    when the reader opens, before any request)."""
    out = []
    last = 0
    for index in requested:
        if 0 <= index < n_frames:
            last = int(index)
        out.append(last)
    return np.asarray(out, dtype=np.int64)


def is_constant_rate(pts: tp.Sequence[int], tolerance: int = 1) -> bool:
    """Whether sorted presentation timestamps (in the stream's time base) are evenly spaced."""
    if len(pts) < 3:
        return True
    steps = np.diff(np.sort(np.asarray(pts, dtype=np.int64)))
    return bool(steps.max() - steps.min() <= tolerance) and not math.isclose(float(steps.min()), 0.0)
