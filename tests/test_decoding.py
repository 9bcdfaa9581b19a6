"""One sequential decoding pass returns the same pixels as moviepy's per-frame seeking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline import decoding, timegrid


@pytest.mark.parametrize("name", ["bars_12fps.mp4", "drift_25fps.mp4", "orbit_30fps_audio.mp4"])
def test_frames_equal_moviepy_get_frame(sample_dir: Path, name: str) -> None:
    from moviepy import VideoFileClip

    path = sample_dir / name
    info = decoding.probe(path)
    clip = VideoFileClip(str(path))
    assert (clip.fps, clip.size) == (info.fps, [info.width, info.height])
    rng = np.random.default_rng(0)
    times = np.concatenate([rng.uniform(0, info.duration - 1 / info.fps, 30), [0.0, 1.0, 0.5]])
    indices = timegrid.frame_indices(times, info.fps)
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
