"""One run's stimulus features on a target grid: events -> presentations -> timeline -> regressors.

``align_features`` works on any ``FeatureSource`` (the store through ``pipeline.align.store_access``, or
arrays in memory with ``MemorySource``); ``pipeline.align.align`` is the store front end.

Choices (``docs/alignment.md`` says more):

- **Binning** (no HRF): the default, ``"mean"``, is each row's time-weighted mean of the features over
  ``[t_i, t_i + step)``: the mean of the samples within the TR. It keeps the features' scale, never
  mixes in stimulus from another TR (no ringing, nothing from the future), and counts gaps as zeros;
  its frequency response is a sinc, so it lets some content above the grid's Nyquist frequency through
  (23 % of a component at 1.6 x Nyquist comes out as its alias). ``"lowpass"`` is an anti-aliased
  resampling: a windowed-sinc low-pass at 0.8 x Nyquist on the oversampled signal (over 40 dB down above
  Nyquist), centred on each row's interval, at the cost of spreading each stimulus over the neighbouring
  rows (main lobe +-1.25 rows, ripples to +-8) and of ringing at the edges of events.
- **HRF** (``"spm"``, ``"glover"``): nilearn's kernels on a grid oversampled ``oversampling`` times per
  step, the signal read on that grid by nilearn's rule, convolved, and read at the rows: equal to
  ``nilearn.glm.first_level.compute_regressor`` on the same samples as events (tested). The HRF is itself
  the anti-aliasing filter there (its gain at 0.25 Hz, the Nyquist frequency of TR 2 s, is 3 % (SPM) or
  5 % (Glover) of its gain at 0 Hz), so no binning is applied on top.
- **Delays** (FIR, no HRF): the binned features of the timeline shifted by each delay (seconds), stacked.
- **Overlapping events** are refused by default (``overlap="refuse"``): two videos on screen at once is
  rare, and an overlap in an events file is far more often a mistake (a duration taken from the file's
  length when the next video started earlier) that summing would hide by doubling the features. Overlaps
  up to ``tolerance`` (20 ms: a log's rounding, a frame) cut the earlier event where the later starts.
  ``overlap="sum"`` adds the features of overlapping events, for designs that mean it.
- **Gaps** between events are zeros.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing as tp
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.align import response, timeline
from pipeline.align.bids import Event, stimulus_events
from pipeline.align.timeline import Grid, Timeline

Binning = tp.Literal["mean", "lowpass"]
Overlap = tp.Literal["refuse", "sum"]
BINNINGS: tuple[str, ...] = ("mean", "lowpass")
_MAX_FLOATS = 8_000_000
"""Oversampled arrays are computed this many floats at a time (features in blocks), to bound memory."""


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    period: float
    """Seconds each stored sample is held: 1 / the entry's frequency."""
    duration: float
    """The video's duration (seconds) as stored with its entry."""


@dataclasses.dataclass(frozen=True)
class Window:
    """Stored samples of one video in a time window."""

    times: np.ndarray
    """``(n,)`` seconds into the video."""
    values: np.ndarray
    """``(n, features)``."""
    names: tuple[str, ...]
    """One name per feature."""


class FeatureSource(tp.Protocol):
    """Where features come from: the store (``store_access.StoreSource``) or memory (``MemorySource``)."""

    def require(self, videos: tp.Sequence[Path]) -> None:
        """Raise ``MissingVideosError`` listing every video that has no features."""

    def info(self, video: Path) -> VideoInfo: ...

    def window(self, video: Path, start: float, stop: float) -> Window:
        """The samples whose time lies in ``[start, stop)``."""

    def provenance(self) -> dict[str, tp.Any]:
        """What the features are (config UID, model, versions), for the output's attributes."""


@dataclasses.dataclass(frozen=True)
class Features:
    """A video's features held in memory, for ``MemorySource``."""

    values: np.ndarray
    """``(n, features)``."""
    frequency: float
    duration: float
    start: float = 0.0
    names: tuple[str, ...] | None = None

    @property
    def times(self) -> np.ndarray:
        return self.start + np.arange(len(self.values)) / self.frequency


class MemorySource:
    """Features in memory, keyed by video path: for features from elsewhere, and for tests."""

    def __init__(
        self, features: tp.Mapping[str | os.PathLike[str], Features], provenance: dict[str, tp.Any] | None = None
    ):
        self.features = {os.path.realpath(p): f for p, f in features.items()}
        self._provenance = dict(provenance or {})

    def _get(self, video: Path) -> Features:
        return self.features[os.path.realpath(video)]

    def require(self, videos: tp.Sequence[Path]) -> None:
        from pipeline.align.errors import MissingVideosError

        missing = [v for v in videos if os.path.realpath(v) not in self.features]
        if missing:
            raise MissingVideosError(missing, "memory", None, "(features in memory: add them to the MemorySource)")

    def info(self, video: Path) -> VideoInfo:
        f = self._get(video)
        return VideoInfo(period=1.0 / f.frequency, duration=f.duration)

    def window(self, video: Path, start: float, stop: float) -> Window:
        f = self._get(video)
        times = f.times
        keep = (times >= start) & (times < stop)
        values = np.asarray(f.values, dtype=np.float64).reshape(len(times), -1)
        names = f.names or tuple(f"f{j}" for j in range(values.shape[1]))
        return Window(times[keep], values[keep], names)

    def provenance(self) -> dict[str, tp.Any]:
        return dict(self._provenance)


@dataclasses.dataclass(frozen=True)
class Presentation:
    """An event as it will be placed: its shown duration after the video's end and the overlap rule."""

    event: Event
    duration: float
    info: VideoInfo


def plan(
    events: tp.Sequence[Event], source: FeatureSource, *, overlap: Overlap = "refuse", tolerance: float = 0.02
) -> list[Presentation]:
    """Check a run's stimulus events against the source: every video has features (one error listing all
    that do not), each is shown from within the video, and the overlap rule holds. An ``n/a`` duration is
    the rest of the video; a duration past the video's end is cut there (with a warning when it is more
    than a sample, or 0.1 s, too long): past its end the video shows nothing."""
    videos = list(dict.fromkeys(e.path for e in events))
    source.require(videos)
    infos = {v: source.info(v) for v in videos}
    problems, durations = [], []
    for e in events:
        info = infos[e.path]
        available = info.duration - e.stim_start
        if available <= 0:
            problems.append(f"{e.label}: stim_start {e.stim_start:g} s is past the video's end ({info.duration:g} s)")
            durations.append(0.0)
            continue
        if math.isnan(e.duration):
            durations.append(available)
            continue
        if e.duration > available + max(info.period, 0.1):
            warnings.warn(
                f"{e.label}: shown for {e.duration:g} s from {e.stim_start:g} s, but the video ends "
                f"{available:g} s after that; the rest is a gap",
                stacklevel=2,
            )
        durations.append(min(e.duration, available))
    if problems:
        raise ValueError("events: " + "; ".join(problems))
    onsets = np.array([e.onset for e in events], dtype=np.float64)
    stops = timeline.resolve_overlaps(
        [e.label for e in events], onsets, onsets + np.array(durations), mode=overlap, tolerance=tolerance
    )
    return [Presentation(e, float(s - e.onset), infos[e.path]) for e, s in zip(events, stops)]


def build_timeline(presentations: tp.Sequence[Presentation], source: FeatureSource) -> tuple[Timeline, tuple[str, ...]]:
    """The run's timeline: each presentation's window of samples (read from one sample period before its
    start, so that the sample held across ``stim_start`` is not lost) placed at its onset."""
    parts: list[Timeline] = []
    names: tuple[str, ...] | None = None
    for p in presentations:
        e = p.event
        if p.duration <= 0:
            continue
        window = source.window(e.path, e.stim_start - p.info.period, e.stim_start + p.duration)
        if names is None:
            names = window.names
        elif len(window.names) != len(names):
            raise ValueError(
                f"{e.label}: {len(window.names)} features where the run's first video has {len(names)}: the "
                "store's entries of one config should agree; was it computed with frequency=native and another layout?"
            )
        parts.append(
            timeline.place_event(
                window.times,
                window.values,
                p.info.period,
                onset=e.onset,
                stim_start=e.stim_start,
                duration=p.duration,
                video_duration=p.info.duration,
            )
        )
    if names is None:
        names = ()
    return timeline.concat(parts, len(names)), names


def check_within_run(presentations: tp.Sequence[Presentation], grid: Grid) -> None:
    """Refuse events that start after the run's last row ends (a wrong events file or scan count gives no
    features at all otherwise); warn of events shown past the run's end (the rest is not in the output)."""
    end = grid.start + grid.n * grid.step
    late = [p.event for p in presentations if p.event.onset >= end]
    if late:
        listed = "; ".join(f"{e.label} at onset {e.onset:g} s" for e in late[:5])
        raise ValueError(
            f"events: {len(late)} event(s) start after the run ends ({end:g} s: {grid.n} rows of {grid.step:g} s): "
            f"{listed}; is it the run's events file, and its scan count?"
        )
    for p in presentations:
        if p.event.onset + p.duration > end + grid.step:
            warnings.warn(
                f"{p.event.label}: shown until {p.event.onset + p.duration:g} s, past the run's end ({end:g} s); "
                "the rest is not in the output",
                stacklevel=3,
            )


def combine_spaces(arrays: tp.Sequence[tp.Any]) -> tp.Any:
    """Several feature spaces of one run (``align_features`` of several sources on one grid) as one
    DataArray: features side by side, each with its ``space``; the alignment's settings once, and each
    provenance field as a list in the order of ``spaces``."""
    import xarray as xr

    spaces = [str(a.attrs.get("space", "")) for a in arrays]
    if len(set(spaces)) != len(spaces):
        raise ValueError(f"config: the same feature space twice ({', '.join(spaces)}); give each config once")
    out = xr.concat(list(arrays), dim="feature", combine_attrs="drop", coords="minimal")
    out.attrs = {k: v for k, v in arrays[0].attrs.items() if k not in PROVENANCE}
    out.attrs.update({k: [a.attrs.get(k, "") for a in arrays] for k in PROVENANCE if k != "space"})
    out.attrs["spaces"] = spaces
    return out


PROVENANCE = (
    "space",
    "config_uid",
    "model",
    "model_identity",
    "frequency",
    "layers",
    "layer_indices",
    "layer_aggregation",
    "token_aggregation",
    "pipeline_version",
    "store",
)
"""What ``FeatureSource.provenance`` says of one feature space (read-time choices included)."""


def _blocks(n_features: int, rows: int) -> list[slice]:
    size = max(1, _MAX_FLOATS // max(rows, 1))
    return [slice(i, min(i + size, n_features)) for i in range(0, n_features, size)] or [slice(0, 0)]


def _columns(t: Timeline, block: slice) -> Timeline:
    return Timeline(t.starts, t.stops, t.values[:, block])


def hrf_rows(t: Timeline, grid: Grid, model: str, oversampling: int) -> np.ndarray:
    """The timeline convolved with nilearn's HRF and read at the grid's rows: the oversampled grid has
    ``oversampling`` points per step, aligned on the rows, reaching back to the first sample (at most the
    kernel's 32 s) and one step past the last row (as nilearn's does); ``point_values`` reads the signal on
    it, as nilearn does. Unlike nilearn, which drops onsets more than 24 s before the first row, a
    presentation that started earlier still counts for the part of it within the kernel's reach."""
    dt = grid.step / oversampling
    kernel = response.hrf_kernel(model, grid.step, oversampling)
    back = 0
    if len(t.starts):  # no further back than the kernel reaches: earlier points cannot change a row
        back = min(len(kernel), max(0, math.ceil((grid.start - float(t.starts.min())) / dt - 1e-9)))
    points = grid.start + np.arange(-back, grid.n * oversampling + 1) * dt
    rows = back + np.arange(grid.n) * oversampling
    out = np.zeros((grid.n, t.n_features))
    for block in _blocks(t.n_features, len(points)):
        held = timeline.point_values(_columns(t, block), points)
        out[:, block] = response.convolve(held, kernel)[rows]
    return out


def lowpass_rows(t: Timeline, grid: Grid, oversampling: int) -> np.ndarray:
    """Anti-aliased resampling: the timeline averaged over cells of ``step / oversampling`` (exactly), low-passed
    (``response.lowpass_kernel``, zero phase) and read at the centre of each row's interval ``t_i + step / 2``."""
    dt = grid.step / oversampling
    pad = response.LOWPASS_HALF_WIDTH * oversampling
    centres = grid.start + grid.step / 2 + np.arange(-pad, grid.n * oversampling + pad + 1) * dt
    kernel = response.lowpass_kernel(oversampling)
    rows = pad + np.arange(grid.n) * oversampling
    out = np.zeros((grid.n, t.n_features))
    for block in _blocks(t.n_features, len(centres)):
        cells = timeline.box_means(_columns(t, block), centres - dt / 2, dt)
        out[:, block] = response.filter_centred(cells, kernel)[rows]
    return out


def regressors(
    t: Timeline,
    grid: Grid,
    *,
    hrf: str = "none",
    delays: tp.Sequence[float] | None = None,
    binning: str = "mean",
    oversampling: int = 50,
) -> np.ndarray:
    """The timeline on the grid, ``(rows, features)`` (``(rows, len(delays) * features)`` with delays)."""
    if hrf not in response.HRF_MODELS:
        raise ValueError(f"hrf: one of {', '.join(response.HRF_MODELS)}, got {hrf!r}")
    if binning not in BINNINGS:
        raise ValueError(f"binning: one of {', '.join(BINNINGS)}, got {binning!r}")
    if int(oversampling) != oversampling or oversampling < 1:
        raise ValueError(f"oversampling: a positive integer, got {oversampling!r}")
    oversampling = int(oversampling)
    if hrf != "none":
        if delays is not None:
            raise ValueError(
                "delays (FIR) and an HRF are two models of the response: give one (hrf='none' with delays)"
            )
        return hrf_rows(t, grid, hrf, oversampling)
    if binning == "mean":

        def sample(x: Timeline) -> np.ndarray:
            return timeline.box_means(x, grid.times, grid.step)
    else:

        def sample(x: Timeline) -> np.ndarray:
            return lowpass_rows(x, grid, oversampling)

    return timeline.fir(t, list(delays) if delays is not None else [0.0], sample)


def make_grid(
    grid: Grid | None = None,
    *,
    tr: float | None = None,
    n_scans: int | None = None,
    frequency: float | None = None,
    duration: float | None = None,
    start: float = 0.0,
) -> Grid:
    """The target grid from ``grid``, or ``tr`` and ``n_scans`` (fMRI), or ``frequency`` and ``duration`` (MEG)."""
    given = [grid is not None, tr is not None or n_scans is not None, frequency is not None or duration is not None]
    if sum(given) != 1:
        raise ValueError("grid: give tr= and n_scans= (fMRI), or frequency= and duration= (MEG), or grid=")
    if grid is not None:
        return grid
    if given[1]:
        if tr is None or n_scans is None:
            raise ValueError("grid: an fMRI grid needs both tr= and n_scans=")
        return Grid.fmri(tr, n_scans, start)
    if frequency is None or duration is None:
        raise ValueError("grid: a MEG grid needs both frequency= and duration=")
    return Grid.meg(frequency, duration, start)


def align_features(
    source: FeatureSource,
    events: str | os.PathLike[str] | pd.DataFrame | tp.Sequence[Event],
    grid: Grid,
    *,
    stimuli: str | os.PathLike[str] | None = None,
    trial_type: str | tp.Sequence[str] | None = None,
    hrf: str = "none",
    delays: tp.Sequence[float] | None = None,
    binning: str = "mean",
    oversampling: int = 50,
    zscore: bool = False,
    overlap: Overlap = "refuse",
    tolerance: float = 0.02,
) -> tp.Any:
    """One run's stimulus features on ``grid`` as an ``xarray.DataArray`` ``(time, feature)``.

    ``events``: a BIDS ``events.tsv``, a DataFrame with ``onset``, ``duration``, ``stim_file`` (and
    optionally ``stim_start``), or events already read (``bids.stimulus_events``). See the module's
    docstring for ``hrf``, ``delays``, ``binning``, ``overlap``; ``zscore`` standardises each column over
    the run's rows (after delays). ``time`` holds the rows' times in seconds; with delays, ``feature``
    names end in ``_delay<seconds>`` and a ``delay`` coordinate gives each column's delay.
    """
    import xarray as xr

    if isinstance(events, (str, os.PathLike, pd.DataFrame)):
        events = stimulus_events(events, stimuli=stimuli, trial_type=trial_type)
    presentations = plan(list(events), source, overlap=overlap, tolerance=tolerance)
    check_within_run(presentations, grid)
    t, names = build_timeline(presentations, source)
    data = regressors(t, grid, hrf=hrf, delays=delays, binning=binning, oversampling=oversampling)
    if zscore:
        data = response.zscore(data)
    if not np.isfinite(data).all():
        columns = np.flatnonzero(~np.isfinite(data).all(axis=0))
        bad = ", ".join(names[j % len(names)] for j in columns[:5]) if names else ""
        raise ValueError(
            f"features: {len(columns)} column(s) hold NaN or infinite values after alignment ({bad}); "
            "refused rather than written (are the stored entries of these videos finite?)"
        )
    provenance = source.provenance()
    coords: dict[str, tp.Any] = {"time": grid.times}
    if delays is not None:
        coords["feature"] = [f"{n}_delay{float(d):g}" for d in delays for n in names]
        coords["delay"] = ("feature", np.repeat(np.asarray(delays, dtype=np.float64), len(names)))
    else:
        coords["feature"] = list(names)
    if provenance.get("space"):
        coords["space"] = ("feature", [str(provenance["space"])] * len(coords["feature"]))
    attrs = {
        **provenance,
        "hrf": hrf,
        "delays": [float(d) for d in delays] if delays is not None else [],
        "binning": binning if hrf == "none" else "none (the HRF is sampled at the rows, as nilearn does)",
        "oversampling": int(oversampling),
        "zscore": int(bool(zscore)),
        "overlap": overlap,
        "step": grid.step,
        "start": grid.start,
        "n_events": len(presentations),
    }
    return xr.DataArray(data, dims=("time", "feature"), coords=coords, attrs=attrs)
