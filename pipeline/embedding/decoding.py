"""Video probing and decoding: one sequential pass per video, keeping only the frames asked for."""

from __future__ import annotations

import dataclasses
import typing as tp
from fractions import Fraction
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
    """As displayed: swapped from the coded size when the stream says to rotate by 90 or 270 degrees."""
    has_audio: bool
    average_rate: Fraction | None = None
    """The stream's average frame rate, exact (``fps`` is it as a float, or the base rate without it)."""
    base_rate: Fraction | None = None
    container_us: int | None = None
    """The container's duration in microseconds, every stream counted (what ``ffmpeg -i`` prints)."""


def _open(path: str | Path) -> tp.Any:
    import av

    try:
        if Path(path).stat().st_size == 0:
            raise VideoError(f"{path}: empty file (0 bytes)")
        return av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise VideoError(f"{path}: cannot open as a video ({type(e).__name__}: {e})") from e


def probe(path: str | Path) -> VideoInfo:
    """Frame rate, duration (container duration, as the reference reader uses), size, audio presence."""
    import av

    with _open(path) as container:
        if not container.streams.video:
            raise VideoError(f"{path}: no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        if not rate:
            raise VideoError(f"{path}: the video stream has no frame rate")
        duration = _stated_seconds(container)
        if duration is None:
            raise VideoError(f"{path}: the container states no duration")
        container_us = int(container.duration) if container.duration is not None else None
        width, height = int(stream.codec_context.width), int(stream.codec_context.height)
        rotation = 0
        try:
            rotation = _quarter_turns(next(container.decode(stream))) * 90
        except (StopIteration, av.error.FFmpegError):
            pass
        if rotation in (90, 270):
            width, height = height, width
        return VideoInfo(
            path=str(path),
            fps=float(rate),
            duration=float(duration),
            width=width,
            height=height,
            has_audio=bool(container.streams.audio),
            average_rate=Fraction(stream.average_rate) if stream.average_rate else None,
            base_rate=Fraction(stream.base_rate) if stream.base_rate else None,
            container_us=container_us,
        )


def container_seconds(path: str | Path) -> float:
    """The container's duration in seconds, read from its header (0.0 when the file cannot say): what
    the launcher orders work by, longest first."""
    try:
        with _open(path) as container:
            return _stated_seconds(container) or 0.0
    except VideoError:
        return 0.0


def _stated_seconds(container: tp.Any) -> float | None:
    """The duration the container states, else its video stream's (None when neither does)."""
    if container.duration is not None:
        return container.duration / 1_000_000
    stream = container.streams.video[0] if container.streams.video else None
    if stream is not None and stream.duration is not None:
        return float(stream.duration * stream.time_base)
    return None


@dataclasses.dataclass(frozen=True)
class FrameTiming:
    count: int
    """Frames in the video stream (its packets, read without decoding)."""
    constant_rate: bool
    """Whether the frames' presentation times are evenly spaced."""


def frame_timing(path: str | Path) -> FrameTiming:
    """Count the video stream's frames and check that their timestamps are evenly spaced, by demuxing
    alone (no decoding: a fraction of a decoding pass)."""
    from pipeline.embedding import reference_reader

    with _open(path) as container:
        stream = container.streams.video[0]
        stamps: list[int] = []
        count = 0
        for packet in container.demux(stream):
            if packet.size:
                count += 1
                stamp = packet.pts if packet.pts is not None else packet.dts
                if stamp is not None:
                    stamps.append(int(stamp))
    constant = reference_reader.is_constant_rate(stamps) if len(stamps) == count else True
    return FrameTiming(count=count, constant_rate=constant)


def _quarter_turns(frame: tp.Any) -> int:
    return int(round(float(getattr(frame, "rotation", 0) or 0) / 90)) % 4


def _rgb(frame: tp.Any, reformatter: tp.Any) -> np.ndarray:
    """The frame as displayed, rgb24: 10-bit, 4:4:4, grey and full-range inputs are converted by
    FFmpeg's scaler (``reformatter``: one per pass, so that the scaler is set up once, not per frame as
    ``VideoFrame.to_ndarray`` does; the same pixels); a rotation in the stream's display matrix is applied
    (as FFmpeg's player does)."""
    rgb = reformatter.reformat(frame, format="rgb24").to_ndarray()
    turns = _quarter_turns(frame)
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def iter_frames(
    path: str | Path, indices: tp.Iterable[int], *, threaded: bool = True
) -> tp.Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index, rgb24 frame)`` for the sorted unique ``indices``, decoding the file once.

    ``threaded``: FFmpeg's own decoding threads (less wall time, more CPU time in all); off, one thread
    (the same frames), for processes that already keep every core busy.

    Index ``k`` is the frame on screen at ``k / fps`` (``fps`` the stream's average rate): the last frame
    whose presentation time, counted from the first frame's, rounds to at most ``k``. For a constant
    frame rate that is the ``k``-th frame; for a variable one it keeps the time axis true. Only frames
    that are yielded are converted to RGB. An index past the end gets the last frame, as reading past
    the end of a stream does in the reference.
    """
    from av.video.reformatter import VideoReformatter

    wanted = sorted(set(int(i) for i in indices))
    if not wanted:
        return
    pos = 0
    count = 0
    last: tp.Any = None
    last_rgb: np.ndarray | None = None
    last_slot = -1
    reformatter = VideoReformatter()
    with _open(path) as container:
        stream = container.streams.video[0]
        if threaded:
            stream.thread_type = "AUTO"
        else:
            stream.codec_context.thread_count = 1
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else 0.0
        start: float | None = None
        try:
            for frame in container.decode(stream):
                if fps and frame.time is not None:
                    start = frame.time if start is None else start
                    slot = max(last_slot, round((frame.time - start) * fps))
                else:
                    slot = last_slot + 1
                while last is not None and pos < len(wanted) and wanted[pos] < slot:
                    last_rgb = _rgb(last, reformatter) if last_rgb is None else last_rgb
                    yield wanted[pos], last_rgb
                    pos += 1
                if pos == len(wanted):
                    return
                last, last_rgb, last_slot = frame, None, slot
                count += 1
        except Exception as e:  # noqa: BLE001 - av raises many types for broken streams
            if last is None:
                raise VideoError(f"{path}: decoding failed ({type(e).__name__}: {e})") from e
            raise VideoError(f"{path}: decoding failed after {count} frames ({type(e).__name__}: {e})") from e
        stated = int(stream.frames or 0)
    if last is None:
        raise VideoError(f"{path}: no frame could be decoded")
    if stated and count < stated - max(2, stated // 50):
        raise VideoError(
            f"{path}: truncated or damaged: the stream ends after {count} of the {stated} frames it states"
        )
    final = _rgb(last, reformatter) if last_rgb is None else last_rgb
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
