"""The pure functions of ``pipeline.align.timeline``, each against numbers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.align.errors import OverlappingEventsError
from pipeline.align.timeline import (
    Grid,
    Timeline,
    box_means,
    concat,
    fir,
    place_event,
    point_values,
    resolve_overlaps,
)


def test_grids_for_fmri_and_meg() -> None:
    np.testing.assert_allclose(Grid.fmri(1.49, 4).times, [0.0, 1.49, 2.98, 4.47])
    np.testing.assert_allclose(Grid.fmri(2.0, 3, start=1.0).times, [1.0, 3.0, 5.0])
    meg = Grid.meg(100.0, 3.0)
    assert meg.n == 300 and meg.step == pytest.approx(0.01) and meg.times[-1] == pytest.approx(2.99)
    assert Grid.meg(100.0, 3.005).n == 301
    for bad in [dict(step=0.0, n=3), dict(step=1.0, n=0), dict(step=float("nan"), n=2)]:
        with pytest.raises(ValueError, match="grid"):
            Grid(**bad)  # type: ignore[arg-type]


def test_place_event_cuts_to_the_window_and_moves_to_the_onset() -> None:
    times = np.arange(8) * 0.5  # a 4 s video at 2 Hz
    values = np.arange(8.0)[:, None]
    # shown from its second 1.2 for 1.5 s, at onset 10: samples 2 (held 1.0-1.5), 3 and 4 (2.0-2.5), 5 cut at 2.7
    placed = place_event(times, values, 0.5, onset=10.0, stim_start=1.2, duration=1.5, video_duration=4.0)
    np.testing.assert_allclose(placed.starts, [10.0, 10.3, 10.8, 11.3])
    np.testing.assert_allclose(placed.stops, [10.3, 10.8, 11.3, 11.5])
    np.testing.assert_array_equal(placed.values[:, 0], [2, 3, 4, 5])
    # a duration past the video's end stops at the end (3.7 s: the last sample is held to 3.7, not 4.0)
    tail = place_event(times, values, 0.5, onset=0.0, stim_start=3.0, duration=5.0, video_duration=3.7)
    np.testing.assert_allclose(tail.starts, [0.0, 0.5])
    np.testing.assert_allclose(tail.stops, [0.5, 0.7])


def test_overlaps_are_refused_beyond_the_tolerance_and_cut_within_it() -> None:
    labels = ["a", "b", "c"]
    onsets = np.array([0.0, 5.0, 9.0])
    stops = resolve_overlaps(labels, onsets, np.array([5.01, 8.0, 12.0]))
    np.testing.assert_allclose(stops, [5.0, 8.0, 12.0])  # 10 ms: the earlier event ends where the next starts
    with pytest.raises(OverlappingEventsError) as error:
        resolve_overlaps(labels, onsets, np.array([6.0, 10.0, 12.0]))
    assert error.value.pairs == [("a", "b", pytest.approx(1.0)), ("b", "c", pytest.approx(1.0))]
    assert "overlap='sum'" in str(error.value)
    np.testing.assert_allclose(resolve_overlaps(labels, onsets, np.array([6.0, 10.0, 12.0]), mode="sum"), [6, 10, 12])
    # an event inside another overlaps by its whole length
    with pytest.raises(OverlappingEventsError, match="2.000 s"):
        resolve_overlaps(["long", "inside"], np.array([0.0, 3.0]), np.array([10.0, 5.0]))


def _steps(values: list[float], period: float = 1.0, onset: float = 0.0) -> Timeline:
    n = len(values)
    starts = onset + np.arange(n) * period
    return Timeline(starts, starts + period, np.asarray(values, dtype=float)[:, None])


def test_box_means_are_the_mean_of_the_samples_in_each_interval() -> None:
    # 4 Hz samples, 1 s bins that they tile: each bin is the mean of its 4 samples
    rng = np.random.default_rng(0)
    values = rng.standard_normal((12, 3))
    starts = np.arange(12) / 4
    t = Timeline(starts, starts + 0.25, values)
    np.testing.assert_allclose(box_means(t, np.arange(3.0), 1.0), values.reshape(3, 4, 3).mean(axis=1))
    # a sample straddling two bins counts in each for its time there; gaps count as zeros
    t = _steps([1.0, 2.0], period=1.0, onset=0.5)  # 1 over [0.5, 1.5), 2 over [1.5, 2.5)
    np.testing.assert_allclose(box_means(t, np.array([0.0, 1.0, 2.0, 3.0]), 1.0)[:, 0], [0.5, 1.5, 1.0, 0.0])
    # overlapping samples add
    both = concat([_steps([1.0]), _steps([3.0], onset=0.5)], 1)
    np.testing.assert_allclose(box_means(both, np.array([0.0, 1.0]), 1.0)[:, 0], [1.0 + 1.5, 1.5])
    assert box_means(Timeline.empty(2), np.arange(3.0), 1.0).shape == (3, 2)


def test_point_values_follow_nilearns_rule() -> None:
    points = np.arange(0.0, 3.01, 0.5)  # 0, 0.5, ..., 3
    t = Timeline(np.array([0.5, 1.2, 2.01]), np.array([1.5, 1.3, 3.0]), np.array([[2.0], [5.0], [7.0]]))
    # [0.5, 1.5) holds 2 at 0.5 and 1.0; [1.2, 1.3) holds no point: it is read at the next one, 1.5;
    # [2.01, 3.0) holds 7 at 2.5 (3.0 is excluded)
    np.testing.assert_allclose(point_values(t, points)[:, 0], [0, 2, 2, 5, 0, 7, 0])
    # before the first point: a sample wholly before adds nothing, one that reaches into the points counts
    early = Timeline(np.array([-2.0, -1.0]), np.array([-1.5, 0.7]), np.array([[3.0], [4.0]]))
    np.testing.assert_allclose(point_values(early, points)[:, 0], [4, 4, 0, 0, 0, 0, 0])


def test_fir_delays_are_hand_computed_shifts() -> None:
    # one feature, values 1, 2, 3, 4 held 1 s each from t=2; TR 1 s
    t = _steps([1.0, 2.0, 3.0, 4.0], onset=2.0)
    grid = Grid.fmri(1.0, 9)

    def sample(x: Timeline) -> np.ndarray:
        return box_means(x, grid.times, grid.step)

    out = fir(t, [0.0, 1.0, 2.0, 0.5], sample)
    assert out.shape == (9, 4)
    np.testing.assert_allclose(out[:, 0], [0, 0, 1, 2, 3, 4, 0, 0, 0])
    np.testing.assert_allclose(out[:, 1], [0, 0, 0, 1, 2, 3, 4, 0, 0])
    np.testing.assert_allclose(out[:, 2], [0, 0, 0, 0, 1, 2, 3, 4, 0])
    # half a TR: each row is half of two neighbouring values
    np.testing.assert_allclose(out[:, 3], [0, 0, 0.5, 1.5, 2.5, 3.5, 2.0, 0, 0])
    # with many features and delays that are whole TRs, each block is the first one moved down
    rng = np.random.default_rng(1)
    starts = np.sort(rng.uniform(0, 30, 40))
    many = Timeline(starts, starts + rng.uniform(0.1, 2, 40), rng.standard_normal((40, 5)))
    tr = Grid.fmri(1.49, 25)
    stacked = fir(many, [0.0, 1.49, 2.98], lambda x: box_means(x, tr.times, tr.step))
    first = stacked[:, :5]
    np.testing.assert_allclose(stacked[1:, 5:10], first[:-1], atol=1e-12)
    np.testing.assert_allclose(stacked[2:, 10:], first[:-2], atol=1e-12)
    assert not stacked[0, 5:].any() and not stacked[:2, 10:].any()
    with pytest.raises(ValueError, match="at least one delay"):
        fir(many, [], sample)
