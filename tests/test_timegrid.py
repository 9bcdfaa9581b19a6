import numpy as np

from pipeline import timegrid


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
    ours = timegrid.frame_indices(
        timegrid.clip_frame_times(timegrid.clip_end_times(duration, n), timegrid.clip_offsets(nf, clip)), 29.97
    )
    assert ours.tolist() == ref


def test_frame_index_tolerates_float_error_at_frame_boundaries() -> None:
    fps = 30.0
    times = np.array([k / fps for k in range(100)])
    assert timegrid.frame_indices(times, fps).tolist() == list(range(100))


def test_image_frame_times_include_both_ends_and_output_times() -> None:
    np.testing.assert_allclose(timegrid.image_frame_times(3.0, 4), [0, 1, 2, 3])
    np.testing.assert_allclose(timegrid.output_times(3, 2.0, start=1.0), [1.0, 1.5, 2.0])
