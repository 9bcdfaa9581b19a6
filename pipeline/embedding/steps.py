"""A video's output steps: its timing under the config's rules, its time grid, and the frames of each step.

What decoding needs to know about one video, and nothing more: the engine, the decoding processes and
the launcher's preflight share it.
"""

from __future__ import annotations

import dataclasses
import typing as tp

import numpy as np

from pipeline.config import EmbedConfig, family
from pipeline.embedding import decoding, reference_reader, timegrid

PREPROCESS_CHUNK = 16
"""Frames preprocessed in one processor call (in the engine's thread, and per message of a decoding
process): large enough to amortise the processor's per-call cost, small to keep memory low."""


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


def clip_duration_for(embed: EmbedConfig, freq: float) -> float:
    """Seconds of video before each output step: the configured value, else one output period."""
    return 1 / freq if embed.clip_duration is None else embed.clip_duration


@dataclasses.dataclass(frozen=True)
class VideoSteps:
    """Which frames each output step of one video takes: what decoding needs to know, and nothing more."""

    timing: Timing
    frequency: float
    index: np.ndarray
    """``index[k]``: the frame numbers of output step k (a clip, or one frame for image models)."""
    clip_ends: np.ndarray | None
    """Video models: the end time of each step's clip (its audio window ends there)."""
    clip_duration: float | None
    past_end: np.ndarray | None = None
    """``past_end[k]``: step k asks for a frame past the last one of the stream (reference timing), where
    an end-of-stream rule chooses its frame (docs/numbers.md); None under exact timing."""

    def from_step(self, start: int) -> VideoSteps:
        """The steps from ``start`` on, frames numbered as in the whole video: what is left of a video
        resumed where an interrupted task stopped (its frames decoded from the start of the file, the
        same pixels, with only those steps' frames kept)."""
        if not start:
            return self
        return dataclasses.replace(
            self,
            index=self.index[start:],
            clip_ends=None if self.clip_ends is None else self.clip_ends[start:],
            past_end=None if self.past_end is None else self.past_end[start:],
        )

    def until(self, stop: int) -> VideoSteps:
        """The first ``stop`` steps (a calibration's sample of a video)."""
        return dataclasses.replace(
            self,
            index=self.index[:stop],
            clip_ends=None if self.clip_ends is None else self.clip_ends[:stop],
            past_end=None if self.past_end is None else self.past_end[:stop],
        )

    @property
    def keep_from(self) -> np.ndarray:
        """``keep_from[k]``: the earliest frame any step from k on needs; frames before it can be let go
        once step k - 1 is done."""
        return np.minimum.accumulate(self.index.min(axis=1)[::-1])[::-1]


def plan_steps(path: str, embed: EmbedConfig, num_frames: int | None) -> VideoSteps:
    """The time grid of one video and the frame numbers of each step, under the config's timing rules
    (``num_frames`` None: an image model, one frame per step)."""
    timing = video_timing(path, decoding.probe(path), embed.timing)
    freq = timing.fps if embed.frequency == "native" else float(embed.frequency)
    n_steps = timegrid.n_output_steps(timing.duration, freq)
    if num_frames is None and embed.image_frames == "bin_end":
        n_steps = max(1, n_steps)  # neuralset 0.4.0's image path: at least one step
    if n_steps < 1:
        raise decoding.VideoError(f"{path}: {timing.duration:.3f} s is shorter than half an output step at {freq:g} Hz")
    if num_frames is None:
        times = timegrid.image_frame_times(timing.duration, n_steps, embed.image_frames)[:, None]
        # the seed reads its image steps in a random order (exca's MapInfra shuffles them), so a step past
        # the end of the stream gets whichever frame it read before: the video's last frame stands in
        past_end = "last_frame" if embed.image_frames == "seed" else "reference"
        return VideoSteps(timing, freq, frames_for(times, timing, past_end), None, None, steps_past_end(times, timing))
    clip_duration = clip_duration_for(embed, freq)
    ends = timegrid.clip_end_times(timing.duration, n_steps)
    times = timegrid.clip_frame_times(ends, timegrid.clip_offsets(num_frames, clip_duration))
    return VideoSteps(timing, freq, frames_for(times, timing), ends, clip_duration, steps_past_end(times, timing))


def steps_past_end(times: np.ndarray, timing: Timing) -> np.ndarray | None:
    """Which steps (rows of ``times``) ask for a frame past the stream's last one; None under exact timing."""
    if timing.n_frames is None:
        return None
    return np.asarray((reference_reader.frame_numbers(timing.fps, times) >= timing.n_frames).any(axis=1))


def frames_for(times: np.ndarray, timing: Timing, past_end: str = "reference") -> np.ndarray:
    """Frame index of each requested time, ``(steps, frames per step)``. Under reference timing a request
    past the last frame of the stream gets, with ``past_end="reference"``, the reader's end-of-stream
    rule applied in the reference's order of requests (row by row: the frame returned last); with
    ``"last_frame"``, the stream's last frame. (Exact timing: the stream's last frame, from decoding.)"""
    index = reference_reader.frame_numbers(timing.fps, times)
    if timing.n_frames is None:
        return index
    if past_end == "last_frame":
        return np.minimum(index, max(timing.n_frames - 1, 0))
    if past_end != "reference":
        raise ValueError(f"past_end: 'reference' or 'last_frame' (got {past_end!r})")
    return reference_reader.frames_returned(index.ravel(), timing.n_frames).reshape(index.shape)


def step_frames(
    path: str, steps: VideoSteps, embed: EmbedConfig, *, threaded: bool = True
) -> tp.Iterator[tuple[int, np.ndarray]]:
    """``(frame number, rgb24 frame)`` for every frame the steps need, decoding the file once (``threaded``:
    see ``decoding.iter_frames``); video models shrink each frame to ``max_imsize`` (as the reference does)."""
    frames = decoding.iter_frames(path, np.unique(steps.index), threaded=threaded)
    if not family(embed.model.family).is_video or embed.max_imsize is None:
        return frames
    size = embed.max_imsize
    return ((i, decoding.downsize(frame, size)) for i, frame in frames)
