"""One sequential decoding pass returns the same pixels as moviepy's per-frame seeking."""

from __future__ import annotations

import typing as tp
import warnings
from pathlib import Path

import numpy as np
import pytest

from pipeline.embedding import decoding, reference_reader
from pipeline.embedding.steps import video_timing

from ..reference_loop import frames_in_pipe

ALL_VIDEOS = ["bars", "drift", "orbit", "ntsc", "bbb", "bikes"]


@pytest.mark.parametrize("name", ["bars", "drift", "orbit"])
def test_frames_equal_moviepy_get_frame(videos: tp.Any, name: str) -> None:
    from moviepy import VideoFileClip

    (path,) = videos([name])
    info = decoding.probe(path)
    clip = VideoFileClip(str(path))
    assert (clip.fps, clip.size) == (info.fps, [info.width, info.height])
    rng = np.random.default_rng(0)
    times = np.concatenate([rng.uniform(0, info.duration - 1 / info.fps, 30), [0.0, 1.0, 0.5]])
    indices = reference_reader.frame_numbers(info.fps, times)
    frames = dict(decoding.iter_frames(path, indices))
    for t, i in zip(times, indices):  # out-of-order times: moviepy seeks backwards
        np.testing.assert_array_equal(frames[int(i)], clip.get_frame(t))
    clip.close()


def test_indices_past_the_end_get_the_last_frame(sample_dir: Path) -> None:
    path = sample_dir / "bars_12fps.mp4"
    frames = dict(decoding.iter_frames(path, [0, 29, 30, 45]))
    assert sorted(frames) == [0, 29, 30, 45]
    np.testing.assert_array_equal(frames[30], frames[29])
    np.testing.assert_array_equal(frames[45], frames[29])
    assert not np.array_equal(frames[0], frames[29])


def test_probe_reads_rate_duration_size_audio(sample_dir: Path) -> None:
    info = decoding.probe(sample_dir / "orbit_30fps_audio.mp4")
    assert (info.fps, info.width, info.height, info.has_audio) == (30.0, 128, 72, True)
    assert info.duration == pytest.approx(4.0, abs=0.05)
    audio = decoding.load_audio(sample_dir / "orbit_30fps_audio.mp4")
    assert audio.shape[1] == 2 and abs(audio.shape[0] / 44_100 - 4.0) < 0.1 and np.abs(audio).max() > 0.1


def test_not_a_video_is_named_in_the_error(tmp_path: Path) -> None:
    bad = tmp_path / "notes.mp4"
    bad.write_text("hello")
    with pytest.raises(decoding.VideoError, match="notes.mp4: cannot open as a video"):
        decoding.probe(bad)


def test_downsize_keeps_aspect_and_matches_pil() -> None:
    from PIL import Image

    frame = np.random.default_rng(1).integers(0, 255, (90, 160, 3), dtype=np.uint8)
    small = decoding.downsize(frame, 64)
    assert small.shape == (36, 64, 3)
    np.testing.assert_array_equal(small, np.asarray(Image.fromarray(frame).resize((64, 36))))
    assert decoding.downsize(frame, 200) is frame


@pytest.mark.parametrize("name", ALL_VIDEOS)
def test_reference_timing_is_the_reference_readers_view(videos: tp.Any, name: str) -> None:
    """Frame rate and duration as moviepy reads them from ``ffmpeg -i`` (10 ms, NTSC snapped)."""
    from moviepy import VideoFileClip

    (path,) = videos([name])
    clip = VideoFileClip(str(path))
    timing = video_timing(str(path), decoding.probe(path), "reference")
    assert (timing.mode, timing.fps, timing.duration) == ("reference", clip.fps, clip.duration)
    assert timing.n_frames == frames_in_pipe(clip.reader)
    clip.close()


@pytest.mark.parametrize("name", ALL_VIDEOS)
def test_the_end_of_stream_rule_predicts_moviepy(videos: tp.Any, name: str) -> None:
    """Requests in a random order, many past the last frame: moviepy returns exactly the frames that
    ``frames_returned`` predicts from the requested indices alone."""
    from moviepy import VideoFileClip

    (path,) = videos([name])
    clip = VideoFileClip(str(path))
    timing = video_timing(str(path), decoding.probe(path), "reference")
    assert timing.n_frames is not None
    rng = np.random.default_rng(len(name))
    end = timing.n_frames / timing.fps
    times = np.concatenate([rng.uniform(0, end + 0.5, 25), [end - 1e-3, end, end + 0.2, 0.0, end + 1, 1.0]])
    rng.shuffle(times)
    requested = reference_reader.frame_numbers(timing.fps, times)
    predicted = reference_reader.frames_returned(requested, timing.n_frames)
    assert (requested >= timing.n_frames).sum() >= 3
    frames = dict(decoding.iter_frames(path, predicted))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = [clip.get_frame(t) for t in times]
    for t, i, frame in zip(times, predicted, got):
        np.testing.assert_array_equal(frames[int(i)], frame, err_msg=f"t={t}")
    clip.close()


def test_exact_timing_keeps_the_exact_duration_and_rate(videos: tp.Any) -> None:
    (path,) = videos(["ntsc"])
    timing = video_timing(str(path), decoding.probe(path), "exact")
    assert (timing.mode, timing.n_frames) == ("exact", None)
    assert timing.duration == pytest.approx(120 * 1001 / 30000)
    assert timing.fps == 30000 / 1001
