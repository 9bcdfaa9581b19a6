from pathlib import Path

import numpy as np
import pytest

from pipeline.embedding import reference_reader, timegrid


def test_output_steps_use_python_rounding() -> None:
    assert timegrid.n_output_steps(2.5, 1.0) == 2  # round half to even, as the reference's round()
    assert timegrid.n_output_steps(3.5, 1.0) == 4
    assert timegrid.n_output_steps(3.0, 2.0) == 6
    assert timegrid.n_output_steps(0.2, 2.0) == 0


def test_clip_frames_end_at_each_output_step_and_clamp_at_zero() -> None:
    ends = timegrid.clip_end_times(2.0, 4)
    np.testing.assert_allclose(ends, [0.5, 1.0, 1.5, 2.0])
    offsets = timegrid.clip_offsets(4, 1.0)
    np.testing.assert_allclose(offsets, [0.75, 0.5, 0.25, 0.0])
    times = timegrid.clip_frame_times(ends, offsets)
    assert times.shape == (4, 4)
    np.testing.assert_allclose(times[0], [0.0, 0.0, 0.25, 0.5])
    np.testing.assert_allclose(times[-1], [1.25, 1.5, 1.75, 2.0])


def test_grid_reproduces_reference_float_expressions() -> None:
    duration, freq, nf, clip = 7.3, 3.0, 16, 0.8
    n = int(round(duration * freq))
    ref_times = np.linspace(0, duration, n + 1)[1:]
    subtimes = list(k / nf * clip for k in reversed(range(nf)))
    ref = [[int(29.97 * max(0, t - t2) + 0.00001) for t2 in subtimes] for t in ref_times]
    times = timegrid.clip_frame_times(timegrid.clip_end_times(duration, n), timegrid.clip_offsets(nf, clip))
    ours = reference_reader.frame_numbers(29.97, times)
    assert ours.tolist() == ref


def test_frame_index_tolerates_float_error_at_frame_boundaries() -> None:
    fps = 30.0
    times = np.array([k / fps for k in range(100)])
    assert reference_reader.frame_numbers(fps, times).tolist() == list(range(100))


def test_image_frame_times_include_both_ends_and_output_times() -> None:
    np.testing.assert_allclose(timegrid.image_frame_times(3.0, 4), [0, 1, 2, 3])
    np.testing.assert_allclose(timegrid.output_times(3, 2.0, start=1.0), [1.0, 1.5, 2.0])


def test_printed_rate_follows_ffmpeg() -> None:
    from fractions import Fraction

    assert reference_reader.printed_rate(Fraction(30000, 1001)) == "29.97"
    assert reference_reader.printed_rate(Fraction(25)) == "25"
    assert reference_reader.printed_rate(Fraction(25, 2)) == "12.50"
    assert reference_reader.printed_rate(Fraction(1, 300)) == "0.0033"


def test_reader_fps_snaps_ntsc_rates_only() -> None:
    from fractions import Fraction

    assert reference_reader.reader_fps(Fraction(30000, 1001), None) == 30 * 1000 / 1001
    assert reference_reader.reader_fps(Fraction(24000, 1001), None) == 24 * 1000 / 1001
    assert reference_reader.reader_fps(Fraction(25), None) == 25.0
    assert reference_reader.reader_fps(Fraction(2997, 125), None) == 24 * 1000 / 1001  # "23.98": within 0.01
    assert reference_reader.reader_fps(Fraction(599, 20), None) == 29.95  # 0.02 off 30/1.001: kept
    assert reference_reader.reader_fps(None, Fraction(15)) == 15.0
    with pytest.raises(ValueError, match="no frame rate"):
        reference_reader.reader_fps(None, None)


def test_reader_duration_is_ffmpegs_printed_duration() -> None:
    assert reference_reader.printed_duration(4_004_000) == "00:00:04.00"
    assert reference_reader.printed_duration(5_312_000) == "00:00:05.31"
    assert reference_reader.printed_duration(5_315_000) == "00:00:05.32"  # rounded half up, as FFmpeg adds 5 ms
    assert reference_reader.printed_duration(3_725_994_999) == "01:02:05.99"
    assert reference_reader.reader_duration(5_312_000) == 5.31
    assert reference_reader.reader_duration(65_310_000) == 5.31 + 60.0  # seconds first, as moviepy adds them


def test_frames_returned_repeats_the_last_returned_frame_past_the_end() -> None:
    assert reference_reader.frames_returned([3, 4, 5, 6, 2, 9, 1], n_frames=5).tolist() == [3, 4, 4, 4, 2, 2, 1]
    assert reference_reader.frames_returned([7, 8], n_frames=5).tolist() == [0, 0]  # frame 0 is read on opening
    assert reference_reader.frames_returned([], n_frames=5).tolist() == []


def test_constant_rate_detection() -> None:
    assert reference_reader.is_constant_rate([0, 512, 1024, 1536])
    assert reference_reader.is_constant_rate([0, 33, 67, 100, 133])  # 1 ms time base, 30 fps
    assert not reference_reader.is_constant_rate([0, 512, 1024, 2048, 2560])


def test_image_frames_seed_spans_the_video_and_bin_end_takes_each_bins_end() -> None:
    np.testing.assert_allclose(timegrid.image_frame_times(3.0, 4, "seed"), [0, 1, 2, 3])
    np.testing.assert_allclose(timegrid.image_frame_times(3.0, 4, "bin_end"), [0.75, 1.5, 2.25, 3.0])
    # neuralset 0.4.0's float expression, bit for bit
    assert timegrid.image_frame_times(5.31, 11, "bin_end").tolist() == np.linspace(0, 5.31, 12)[1:].tolist()
    with pytest.raises(ValueError, match="image_frames"):
        timegrid.image_frame_times(3.0, 4, "middle")


def test_a_step_past_the_end_gets_the_last_frame_or_the_one_returned_last() -> None:
    from pipeline.embedding.steps import Timing, frames_for

    timing = Timing(fps=10.0, duration=1.0, n_frames=10, mode="reference")
    seed = timegrid.image_frame_times(1.0, 3, "seed")[:, None]  # 0, 0.5, 1.0: frame 10 does not exist
    assert frames_for(seed, timing, "last_frame")[:, 0].tolist() == [0, 5, 9]
    assert frames_for(seed, timing, "reference")[:, 0].tolist() == [0, 5, 5]
    bin_end = timegrid.image_frame_times(1.0, 3, "bin_end")[:, None]
    assert frames_for(bin_end, timing, "reference")[:, 0].tolist() == [3, 6, 6]
    exact = Timing(fps=10.0, duration=1.0, n_frames=None, mode="exact")  # decoding gives the last frame
    assert frames_for(seed, exact, "last_frame")[:, 0].tolist() == [0, 5, 10]


@pytest.mark.parametrize(
    ("rule", "steps", "last_two"),
    [("seed", 6, [60, 74]), ("bin_end", 6, [62, 62])],
)
def test_image_steps_of_a_sample_video(sample_dir: Path, rule: str, steps: int, last_two: list[int]) -> None:
    """3 s at 25 fps, 75 frames, at 2 Hz: the seed's last step asks for frame 75 and takes frame 74, the
    video's last; bin_end's asks for 75 too and takes frame 62, the one returned before (as 0.4.0 does)."""
    from pipeline.config import EmbedConfig
    from pipeline.embedding.steps import plan_steps

    embed = EmbedConfig(model={"name": "tiny-vit", "family": "image"}, frequency=2.0, image_frames=rule)
    plan = plan_steps(str(sample_dir / "drift_25fps.mp4"), embed, None)
    assert plan.timing.n_frames == 75 and plan.index.shape == (steps, 1)
    assert plan.index[-2:, 0].tolist() == last_two


def test_bin_end_gives_a_short_video_one_step_where_seed_fails(sample_dir: Path) -> None:
    from pipeline.config import EmbedConfig
    from pipeline.embedding.decoding import VideoError
    from pipeline.embedding.steps import plan_steps

    path = str(sample_dir / "bars_12fps.mp4")  # 2.5 s: round(0.25) = 0 steps at 0.1 Hz
    embed = EmbedConfig(model={"name": "tiny-vit", "family": "image"}, frequency=0.1, image_frames="bin_end")
    assert plan_steps(path, embed, None).index.shape == (1, 1)
    with pytest.raises(VideoError, match="shorter than half an output step"):
        plan_steps(path, embed.model_copy(update={"image_frames": "seed"}), None)
