"""Video probing and decoding: one sequential pass per video, keeping only the frames asked for."""

from __future__ import annotations

import dataclasses
import typing as tp
from pathlib import Path

import numpy as np


class VideoError(RuntimeError):
    """A video that cannot be read; the message names the file and what is wrong with it."""


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    path: str
    fps: float
    duration: float
    width: int
    height: int
    has_audio: bool


def _open(path: str | Path) -> tp.Any:
    import av

    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise VideoError(f"{path}: cannot open as a video ({type(e).__name__}: {e})") from e


def probe(path: str | Path) -> VideoInfo:
    """Frame rate, duration (container duration, as the reference reader uses), size, audio presence."""
    with _open(path) as container:
        if not container.streams.video:
            raise VideoError(f"{path}: no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        if not rate:
            raise VideoError(f"{path}: the video stream has no frame rate")
        if container.duration is not None:
            duration = container.duration / 1_000_000
        elif stream.duration is not None:
            duration = float(stream.duration * stream.time_base)
        else:
            raise VideoError(f"{path}: the container states no duration")
        return VideoInfo(
            path=str(path),
            fps=float(rate),
            duration=float(duration),
            width=int(stream.codec_context.width),
            height=int(stream.codec_context.height),
            has_audio=bool(container.streams.audio),
        )


def iter_frames(path: str | Path, indices: tp.Iterable[int]) -> tp.Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index, rgb24 frame)`` for the sorted unique ``indices``, decoding the file once.

    Frames are numbered in decoding order; only the wanted ones are converted to RGB. An index past
    the last frame gets the last frame, as reading past the end of a stream does in the reference.
    """
    wanted = sorted(set(int(i) for i in indices))
    if not wanted:
        return
    pos = 0
    last: tp.Any = None
    count = 0
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                last = frame
                while pos < len(wanted) and wanted[pos] == count:
                    yield count, frame.to_ndarray(format="rgb24")
                    pos += 1
                count += 1
                if pos == len(wanted):
                    return
        except Exception as e:  # noqa: BLE001 - av raises many types for broken streams
            if last is None:
                raise VideoError(f"{path}: decoding failed ({type(e).__name__}: {e})") from e
            raise VideoError(f"{path}: decoding failed after {count} frames ({type(e).__name__}: {e})") from e
    if last is None:
        raise VideoError(f"{path}: no frame could be decoded")
    final = last.to_ndarray(format="rgb24")
    for index in wanted[pos:]:
        yield index, final


def load_audio(path: str | Path, sample_rate: int = 44_100) -> np.ndarray:
    """The whole audio track as float32 ``(samples, channels)`` at ``sample_rate``."""
    import av

    chunks: list[np.ndarray] = []
    with _open(path) as container:
        if not container.streams.audio:
            raise VideoError(f"{path}: no audio stream (use_audio=true needs one)")
        resampler = av.AudioResampler(format="flt", layout="stereo", rate=sample_rate)
        for frame in container.decode(container.streams.audio[0]):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1, 2))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1, 2))
    if not chunks:
        return np.zeros((0, 2), np.float32)
    return np.concatenate(chunks).astype(np.float32)


def downsize(frame: np.ndarray, max_imsize: int | None) -> np.ndarray:
    """Shrink so that the longer side is at most ``max_imsize`` (PIL's default filter, as the reference)."""
    if max_imsize is None:
        return frame
    from PIL import Image

    height, width = frame.shape[:2]
    factor = max(width, height) / max_imsize
    if factor <= 1:
        return frame
    size = (int(width / factor), int(height / factor))
    return np.asarray(Image.fromarray(frame).resize(size))
