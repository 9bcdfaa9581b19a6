"""HRF convolution against nilearn's ``compute_regressor``, the low-pass, FIR delays and z-scoring, through
``align_features`` on features held in memory."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.align import Features, Grid, MemorySource, align_features
from pipeline.align.core import regressors
from pipeline.align.response import convolve, filter_centred, hrf_kernel, lowpass_kernel, zscore
from pipeline.align.timeline import Timeline, box_means


def test_convolve_is_numpys_causal_convolution() -> None:
    rng = np.random.default_rng(0)
    signal, kernel = rng.standard_normal((700, 3)), rng.standard_normal(90)
    expected = np.stack([np.convolve(signal[:, j], kernel)[:700] for j in range(3)], axis=1)
    np.testing.assert_allclose(convolve(signal, kernel), expected, atol=1e-10)
    np.testing.assert_allclose(filter_centred(signal, np.array([0.0, 1.0, 0.0])), signal, atol=1e-12)


def test_zscore_per_column_and_constant_columns() -> None:
    x = np.array([[1.0, 5.0, 0.0], [2.0, 5.0, 0.0], [3.0, 5.0, 0.0], [6.0, 5.0, 0.0]])
    z = zscore(x)
    np.testing.assert_allclose(z[:, 0], (x[:, 0] - 3.0) / np.std(x[:, 0]))
    np.testing.assert_array_equal(z[:, 1:], 0.0)
    np.testing.assert_allclose(z[:, 0].mean(), 0.0, atol=1e-12)
    np.testing.assert_allclose(z[:, 0].std(), 1.0)


def _random_run(tmp_path: Path, seed: int, n_features: int = 4) -> tuple[MemorySource, pd.DataFrame, dict]:
    """Three videos of random features at 8 Hz and five presentations: random onsets (never on a grid),
    durations that cut samples, ``stim_start`` in the middle of a sample, an ``n/a`` duration."""
    rng = np.random.default_rng(seed)
    features = {}
    for i, seconds in enumerate([6.0, 9.5, 4.25]):
        path = tmp_path / f"video{i}.mp4"
        path.write_bytes(b"")
        n = round(seconds * 8)
        features[path.name] = Features(rng.standard_normal((n, n_features)), frequency=8.0, duration=seconds)
    names = ["video0.mp4", "video1.mp4", "video2.mp4", "video1.mp4", "video0.mp4"]
    onsets, t = [], rng.uniform(0.3, 2.0)
    durations = [4.37, float("nan"), 3.9, 2.05, 5.0]
    starts = [0.0, 3.1, 0.26, 0.0, 0.77]
    for name, duration, start in zip(names, durations, starts):
        onsets.append(t)
        shown = (
            features[name].duration - start if math.isnan(duration) else min(duration, features[name].duration - start)
        )
        t += shown + rng.uniform(0.5, 4.0)
    events = pd.DataFrame({"onset": onsets, "duration": durations, "stim_file": names, "stim_start": starts})
    source = MemorySource({tmp_path / k: v for k, v in features.items()})
    return source, events, features


def _nilearn_events(events: pd.DataFrame, features: dict, feature: int) -> np.ndarray:
    """The (onset, duration, amplitude) triplets nilearn takes: each stored sample shown is one event whose
    amplitude is the feature's value, lasting while it is held (1/8 s, cut by the presentation's window)."""
    rows = []
    for event in events.itertuples():
        f = features[event.stim_file]
        end = f.duration if math.isnan(event.duration) else min(event.stim_start + event.duration, f.duration)
        for k, t_k in enumerate(f.times):
            a, b = max(t_k, event.stim_start), min(t_k + 1 / 8, end)
            if b > a:
                rows.append((event.onset + (a - event.stim_start), b - a, f.values[k, feature]))
    return np.array(rows).T


@pytest.mark.parametrize(("hrf", "tr"), [("spm", 2.0), ("glover", 2.0), ("spm", 1.49), ("glover", 0.8)])
def test_hrf_regressors_equal_nilearn_compute_regressor(tmp_path: Path, hrf: str, tr: float) -> None:
    """``compute_regressor`` builds its oversampled grid from ``frame_times`` and ``min_onset``: it starts at
    ``frame_times[0] + min_onset`` and spans ``(n_frames + |min_onset| / tr) * oversampling`` steps, so its step
    is ``tr / oversampling`` only when ``|min_onset|`` is a whole number of those steps (24 s is, for TR 2 s and
    0.8 s at 50x; for TR 1.49 s the nearest whole number of steps is passed). ``frame_times`` are
    ``arange(n) * tr`` (the rows' times), ``oversampling`` 50 as ours, and the amplitude is used as given
    (each sample's value, not divided by its duration). Its grid then coincides with ours: equal within 1e-6."""
    from nilearn.glm.first_level import compute_regressor

    source, events, features = _random_run(tmp_path, seed=int(tr * 100))
    n_scans = math.ceil((events.onset.iloc[-1] + 10) / tr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the n/a duration is the rest of the video: said once, not here
        ours = align_features(source, events, Grid.fmri(tr, n_scans), stimuli=tmp_path, hrf=hrf)
    assert ours.dims == ("time", "feature") and ours.sizes["time"] == n_scans
    frame_times = np.arange(n_scans) * tr
    dt = tr / 50
    min_onset = -round(24 / dt) * dt
    for j in range(ours.sizes["feature"]):
        condition = _nilearn_events(events, features, j)
        theirs, names = compute_regressor(
            condition, hrf, frame_times, con_id=f"f{j}", oversampling=50, min_onset=min_onset
        )
        assert names == [f"f{j}"]
        assert np.abs(theirs).max() > 0.05  # the comparison below is not between near-zeros
        np.testing.assert_allclose(ours.values[:, j], theirs[:, 0], rtol=0, atol=1e-6)
        # and it can fail: one sample's onset 0.1 s off changes the regressor by far more than 1e-6
        moved = condition.copy()
        moved[0, 5] += 0.1
        shifted, _ = compute_regressor(moved, hrf, frame_times, con_id="x", oversampling=50, min_onset=min_onset)
        assert np.abs(ours.values[:, j] - shifted[:, 0]).max() > 1e-4


def test_fir_delays_through_align_features(tmp_path: Path) -> None:
    source, events, _ = _random_run(tmp_path, seed=3)
    tr, n = 1.49, 40
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = align_features(source, events, Grid.fmri(tr, n), stimuli=tmp_path)
        fir = align_features(source, events, Grid.fmri(tr, n), stimuli=tmp_path, delays=[0, tr, 3 * tr])
    f = plain.sizes["feature"]
    assert fir.sizes["feature"] == 3 * f
    assert list(fir["feature"].values[:2]) == ["f0_delay0", "f1_delay0"]
    assert fir["feature"].values[f] == "f0_delay1.49" and fir["delay"].values[-1] == pytest.approx(4.47)
    np.testing.assert_allclose(fir.values[:, :f], plain.values, atol=1e-12)
    np.testing.assert_allclose(fir.values[1:, f : 2 * f], plain.values[:-1], atol=1e-12)
    np.testing.assert_allclose(fir.values[3:, 2 * f :], plain.values[:-3], atol=1e-12)
    assert not fir.values[0, f:].any() and not fir.values[:3, 2 * f :].any()
    with pytest.raises(ValueError, match="give one"):
        align_features(source, events, Grid.fmri(tr, n), stimuli=tmp_path, hrf="spm", delays=[0.0])


def test_zscore_and_gaps(tmp_path: Path) -> None:
    source, events, _ = _random_run(tmp_path, seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = align_features(source, events, Grid.fmri(1.0, 60), stimuli=tmp_path)
        z = align_features(source, events, Grid.fmri(1.0, 60), stimuli=tmp_path, zscore=True)
    np.testing.assert_allclose(z.values, zscore(raw.values))
    np.testing.assert_allclose(z.values.mean(axis=0), 0.0, atol=1e-12)
    first = int(np.floor(events.onset.iloc[0]))
    assert not raw.values[:first].any()  # before the first event: a gap, zeros
    assert not raw.values[-3:].any()  # after the last one too


def _sinusoid(frequency_hz: float, seconds: float = 200.0, rate: float = 50.0) -> Timeline:
    starts = np.arange(0, seconds, 1 / rate)
    return Timeline(starts, starts + 1 / rate, np.sin(2 * np.pi * frequency_hz * (starts + 0.5 / rate))[:, None])


def _gain(rows: np.ndarray, grid: Grid, frequency_hz: float) -> float:
    """Amplitude of the rows' component at ``frequency_hz`` (least squares on sine and cosine), ends left out."""
    t = grid.times[10:-10]
    basis = np.stack([np.sin(2 * np.pi * frequency_hz * t), np.cos(2 * np.pi * frequency_hz * t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, rows[10:-10, 0], rcond=None)
    return float(np.hypot(*coef))


def test_lowpass_passes_below_and_stops_above_the_grids_nyquist_frequency() -> None:
    """TR 2 s (Nyquist 0.25 Hz): a 0.1 Hz sinusoid passes both resamplings; a 0.4 Hz one, which on the TR
    grid is indistinguishable from 0.1 Hz (its alias), is stopped by the low-pass, not by the TR mean."""
    grid = Grid.fmri(2.0, 90)
    alias = 0.5 - 0.4  # 0.4 Hz sampled every 2 s looks like 0.1 Hz
    for name, binning in [("mean", "mean"), ("lowpass", "lowpass")]:
        passed = regressors(_sinusoid(0.1), grid, binning=binning, oversampling=20)
        gain = _gain(passed, grid, 0.1)
        expected = np.sinc(0.1 * 2.0) if name == "mean" else 1.0  # the mean over a TR is a sinc filter
        assert gain == pytest.approx(expected, abs=0.02), name
    aliased_mean = _gain(regressors(_sinusoid(0.4), grid, binning="mean", oversampling=20), grid, alias)
    aliased_low = _gain(regressors(_sinusoid(0.4), grid, binning="lowpass", oversampling=20), grid, alias)
    assert aliased_mean == pytest.approx(abs(np.sinc(0.4 * 2.0)), abs=0.02)  # 23 % comes through as 0.1 Hz
    assert aliased_low < 0.01
    kernel = lowpass_kernel(20)
    assert len(kernel) % 2 == 1 and kernel.sum() == pytest.approx(1.0)
    # the mean binning is exactly box_means over each row's interval
    t = _sinusoid(0.1)
    np.testing.assert_allclose(regressors(t, grid), box_means(t, grid.times, 2.0))


def test_hrf_kernels_are_nilearns() -> None:
    from nilearn.glm.first_level import glover_hrf, spm_hrf

    np.testing.assert_array_equal(hrf_kernel("spm", 1.49, 50), spm_hrf(1.49, 50))
    np.testing.assert_array_equal(hrf_kernel("glover", 2.0, 16), glover_hrf(2.0, 16))
    with pytest.raises(ValueError, match="hrf"):
        hrf_kernel("canonical", 2.0, 50)


def test_a_presentation_that_began_before_the_first_scan(tmp_path: Path) -> None:
    """A film running since 40 s before the first volume: the part within the HRF's 32 s reach counts.
    nilearn agrees once its ``min_onset`` reaches back that far (by default it drops onsets before -24 s)."""
    from nilearn.glm.first_level import compute_regressor

    rng = np.random.default_rng(7)
    (tmp_path / "film.mp4").write_bytes(b"")
    film = Features(rng.standard_normal((60 * 8, 2)), frequency=8.0, duration=60.0)
    events = pd.DataFrame({"onset": [-40.0], "duration": [55.0], "stim_file": ["film.mp4"]})
    tr = 2.0
    ours = align_features(
        MemorySource({tmp_path / "film.mp4": film}), events, Grid.fmri(tr, 20), stimuli=tmp_path, hrf="spm"
    )
    frame_times = np.arange(20) * tr
    for j in range(2):
        condition = np.array([(-40.0 + t, 1 / 8, film.values[k, j]) for k, t in enumerate(film.times) if t < 55.0]).T
        theirs, _ = compute_regressor(condition, "spm", frame_times, oversampling=50, min_onset=-48.0)
        np.testing.assert_allclose(ours.values[:, j], theirs[:, 0], rtol=0, atol=1e-6)
    assert np.abs(ours.values[:8]).max() > 0.01  # the first rows see the film that started before them
