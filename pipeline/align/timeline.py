"""Stimulus features on a timeline, and from the timeline onto a target grid: pure array functions.

A stored embedding is a series of samples at times ``t_k`` (seconds into the video) at ``frequency`` Hz.
Sample ``k`` summarises the video from ``t_k`` until the next sample, so each is *held* over
``[t_k, t_k + 1/frequency)``: a piecewise-constant signal. An event that shows the video from
``stim_start`` for ``duration`` seconds, starting at ``onset`` in the run, moves the held samples that
fall inside that window to ``onset + (t - stim_start)`` (``place_event``). A run's ``Timeline`` is the
union of its events' held samples; where no event is shown the signal is zero, and where two events
overlap (only when asked, ``overlap="sum"``) their features add.

From the timeline onto a grid (``Grid``: fMRI scans every ``TR``, or a MEG rate):

- ``box_means``: the time-weighted mean of the signal over each row's interval ``[t_i, t_i + step)``,
  computed exactly from the signal's running integral (no discretisation): the mean of the samples in the
  TR when they tile it; a sample that straddles two TRs counts in each for the time it spends there, and
  a gap counts as zero.
- ``point_values``: the signal read at given time points, with the rule of nilearn's ``_sample_condition``
  (what ``compute_regressor`` convolves), for the oversampled HRF path.
- ``fir``: the same sampling of the timeline shifted by each delay, stacked as features.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import typing as tp

import numpy as np

from pipeline.align.errors import OverlappingEventsError

TR_RANGE = (0.1, 10.0)
"""Seconds: the repetition times an fMRI grid accepts."""


def check_tr(tr: float, where: str = "tr") -> None:
    """Refuse a repetition time outside ``TR_RANGE`` (a TR in milliseconds, most often), naming it."""
    low, high = TR_RANGE
    number = isinstance(tr, numbers.Real) and not isinstance(tr, bool)  # numpy's too (a NIfTI header's zooms)
    if not (number and math.isfinite(float(tr)) and low <= float(tr) <= high):
        hint = f" (in milliseconds? {float(tr):g} ms is {float(tr) / 1000:g} s)" if number and tr > high else ""
        raise ValueError(f"{where}: a repetition time of {tr!r} s is outside {low:g}-{high:g} s{hint}")


@dataclasses.dataclass(frozen=True)
class Grid:
    """Rows at ``start + i * step`` seconds, ``i < n``, in the time frame of the run's events (onset 0 is
    the start of the first volume, as in BIDS). Row ``i`` stands for ``[t_i, t_i + step)`` when features
    are binned, and for the instant ``t_i`` when an HRF-convolved signal is sampled (nilearn's
    ``frame_times``)."""

    step: float
    n: int
    start: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.step) and self.step > 0):
            raise ValueError(
                f"grid: the step (TR or 1/frequency) must be a positive number of seconds, got {self.step}"
            )
        if int(self.n) != self.n or self.n < 1:
            raise ValueError(f"grid: needs at least one row (n_scans or duration * frequency), got {self.n}")
        if not math.isfinite(self.start):
            raise ValueError(f"grid: start must be finite, got {self.start}")

    @classmethod
    def fmri(cls, tr: float, n_scans: int, start: float = 0.0) -> Grid:
        """One row per volume, ``tr`` seconds apart; ``start`` is the time of the first row (``slice_time_ref
        * tr`` for slice-timing-corrected data, as nilearn's ``frame_times``). A TR outside ``TR_RANGE`` is
        refused: no scanner takes one, and a TR in milliseconds would silently give no features at all."""
        check_tr(tr)
        return cls(step=float(tr), n=int(n_scans), start=float(start))

    @classmethod
    def meg(cls, frequency: float, duration: float, start: float = 0.0) -> Grid:
        """``frequency`` rows per second covering ``[start, start + duration)``."""
        if not (math.isfinite(frequency) and frequency > 0 and math.isfinite(duration) and duration > 0):
            raise ValueError(f"grid: frequency and duration must be positive, got {frequency} Hz, {duration} s")
        return cls(step=1.0 / frequency, n=math.ceil(duration * frequency - 1e-9), start=float(start))

    @property
    def times(self) -> np.ndarray:
        return self.start + np.arange(self.n) * self.step


@dataclasses.dataclass(frozen=True)
class Timeline:
    """A sum of held samples: sample ``j`` adds ``values[j]`` over ``[starts[j], stops[j])`` (seconds)."""

    starts: np.ndarray
    stops: np.ndarray
    values: np.ndarray
    """``(n_samples, n_features)``, float64."""

    @classmethod
    def empty(cls, n_features: int) -> Timeline:
        return cls(np.zeros(0), np.zeros(0), np.zeros((0, n_features)))

    @property
    def n_features(self) -> int:
        return int(self.values.shape[1])

    def shifted(self, delay: float) -> Timeline:
        """The same signal ``delay`` seconds later (what a FIR regressor with that delay sees)."""
        return Timeline(self.starts + delay, self.stops + delay, self.values)


def concat(timelines: tp.Sequence[Timeline], n_features: int) -> Timeline:
    """One timeline holding every sample of ``timelines`` (their features add where they overlap)."""
    if not timelines:
        return Timeline.empty(n_features)
    return Timeline(
        np.concatenate([t.starts for t in timelines]),
        np.concatenate([t.stops for t in timelines]),
        np.concatenate([t.values for t in timelines]),
    )


def place_event(
    times: np.ndarray,
    values: np.ndarray,
    period: float,
    *,
    onset: float,
    stim_start: float,
    duration: float,
    video_duration: float,
) -> Timeline:
    """The samples of one presentation on the run's timeline.

    ``times`` (seconds into the video) and ``values`` ``(n, features)`` are the stored samples; each is held
    for ``period`` (1 / frequency). The event shows the video from ``stim_start`` for ``duration`` seconds
    from ``onset``: each hold is cut to ``[stim_start, stim_start + duration)`` and to the video's end
    ``video_duration`` (past it nothing is shown: a gap), then moved by ``onset - stim_start``. Samples
    left with nothing are dropped; samples partly inside keep the part inside.
    """
    times = np.asarray(times, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64).reshape(len(times), -1)
    lo = stim_start
    hi = min(stim_start + duration, video_duration)
    starts = np.maximum(times, lo)
    stops = np.minimum(times + period, hi)
    keep = stops > starts
    shift = onset - stim_start
    return Timeline(starts[keep] + shift, stops[keep] + shift, values[keep])


def resolve_overlaps(
    labels: tp.Sequence[str],
    onsets: np.ndarray,
    stops: np.ndarray,
    *,
    mode: tp.Literal["refuse", "sum"] = "refuse",
    tolerance: float = 0.02,
) -> np.ndarray:
    """The events' end times after the overlap rule; raises ``OverlappingEventsError`` listing every pair
    that overlaps by more than ``tolerance`` seconds under ``mode="refuse"``.

    Within the tolerance (a log's rounding, one frame at 60 Hz) the earlier event is cut where the later
    begins, so no feature is counted twice. ``mode="sum"`` keeps every event whole: overlapping features add.
    """
    onsets = np.asarray(onsets, dtype=np.float64)
    stops = np.asarray(stops, dtype=np.float64).copy()
    if mode == "sum":
        return stops
    if mode != "refuse":
        raise ValueError(f"overlap: 'refuse' or 'sum', got {mode!r}")
    order = np.argsort(onsets, kind="stable")
    pairs: list[tuple[str, str, float]] = []
    for a_pos, a in enumerate(order):
        for b in order[a_pos + 1 :]:
            if onsets[b] >= stops[a]:
                break
            overlap = min(stops[a], stops[b]) - onsets[b]
            if overlap > tolerance:
                pairs.append((labels[a], labels[b], float(overlap)))
            elif onsets[b] < stops[a]:
                stops[a] = max(onsets[a], onsets[b])
    if pairs:
        raise OverlappingEventsError(pairs, tolerance)
    return stops


def _running_integral(timeline: Timeline) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Knots (sorted edge times), the integral of the signal up to each knot ``(K, F)`` and its slope from
    each knot to the next ``(K, F)``: the signal's integral is piecewise linear between knots."""
    edges = np.concatenate([timeline.starts, timeline.stops])
    knots, where = np.unique(edges, return_inverse=True)
    change = np.zeros((len(knots), timeline.n_features))
    active = np.zeros(len(knots), dtype=np.int64)
    n = len(timeline.starts)
    np.add.at(change, where[:n], timeline.values)
    np.subtract.at(change, where[n:], timeline.values)
    np.add.at(active, where[:n], 1)
    np.subtract.at(active, where[n:], 1)
    slope = np.cumsum(change, axis=0)
    slope[np.cumsum(active) == 0] = 0.0  # no sample held: exactly zero, not the sums' rounding residue
    integral = np.zeros_like(slope)
    if len(knots) > 1:
        integral[1:] = np.cumsum(slope[:-1] * np.diff(knots)[:, None], axis=0)
    return knots, integral, slope


def _integral_at(knots: np.ndarray, integral: np.ndarray, slope: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The signal's integral from minus infinity to each of ``points`` ``(P, F)``."""
    out = np.zeros((len(points), integral.shape[1]))
    if len(knots) == 0:
        return out
    j = np.searchsorted(knots, points, side="right") - 1
    inside = j >= 0
    jj = j[inside]
    out[inside] = integral[jj] + slope[jj] * (points[inside] - knots[jj])[:, None]
    return out


def box_means(timeline: Timeline, lows: np.ndarray, width: float) -> np.ndarray:
    """The mean of the signal over ``[low, low + width)`` for each of ``lows``: ``(len(lows), features)``.

    Exact for a piecewise-constant signal (the difference of its running integral at the two ends, over
    ``width``): each sample weighs by the time it spends in the interval, gaps weigh as zeros.
    """
    lows = np.asarray(lows, dtype=np.float64)
    knots, integral, slope = _running_integral(timeline)
    upper = _integral_at(knots, integral, slope, lows + width)
    lower = _integral_at(knots, integral, slope, lows)
    return np.asarray((upper - lower) / width)


def point_values(timeline: Timeline, points: np.ndarray) -> np.ndarray:
    """The signal at sorted time ``points`` ``(P, features)``, by nilearn's rule for an oversampled regressor:
    a held sample ``[a, b)`` adds its value at the points ``p`` with ``a <= p < b``, and a sample so short
    that no point falls inside adds it at the first point after ``a`` (so that no sample disappears between
    points). This is what ``nilearn.glm.first_level.compute_regressor`` does with ``(onset, duration,
    amplitude)`` events before convolving."""
    points = np.asarray(points, dtype=np.float64)
    n = len(points)
    first = np.searchsorted(points, timeline.starts, side="left")
    last = np.searchsorted(points, timeline.stops, side="left")
    short = (last == first) & (first < n) & (n > 0) & (timeline.stops > (points[0] if n else 0.0))
    last = np.where(short, first + 1, last)  # (a sample wholly before the first point adds nothing)
    change = np.zeros((n + 1, timeline.n_features))
    active = np.zeros(n + 1, dtype=np.int64)
    np.add.at(change, first, timeline.values)
    np.subtract.at(change, last, timeline.values)
    np.add.at(active, first, 1)
    np.subtract.at(active, last, 1)
    out = np.cumsum(change[:n], axis=0)
    out[np.cumsum(active[:n]) == 0] = 0.0  # gaps: exactly zero
    return out


def fir(timeline: Timeline, delays: tp.Sequence[float], sample: tp.Callable[[Timeline], np.ndarray]) -> np.ndarray:
    """Finite-impulse-response design: ``sample`` (timeline -> ``(rows, F)``) applied to the timeline shifted
    by each delay in seconds, stacked delay by delay: ``(rows, len(delays) * F)``, columns ``[delay 0's F
    features, delay 1's F features, ...]``. With ``box_means`` a delay of ``k`` rows (``k * step`` s) moves
    the rows down by ``k`` (zeros enter at the top)."""
    if not delays:
        raise ValueError("delays: give at least one delay (seconds)")
    return np.concatenate([sample(timeline.shifted(float(d))) for d in delays], axis=1)
