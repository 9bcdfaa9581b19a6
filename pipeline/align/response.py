"""From the oversampled stimulus signal to regressors: HRF convolution, the anti-aliasing low-pass,
reading rows off the oversampled grid, and z-scoring. Pure array functions.

The oversampled grid has ``oversampling`` points per grid step (nilearn's ``oversampling``, default 50):
the HRF is sampled on it (``hrf_kernel``), the signal is convolved on it (``convolve``) and the result is
read at the grid's rows, as ``nilearn.glm.first_level.compute_regressor`` does.
"""

from __future__ import annotations

import typing as tp

import numpy as np

HRFModel = tp.Literal["spm", "glover", "none"]
HRF_MODELS: tuple[str, ...] = ("spm", "glover", "none")


def hrf_kernel(model: str, step: float, oversampling: int) -> np.ndarray:
    """nilearn's HRF (``spm_hrf`` or ``glover_hrf``) for grid step ``step`` (the TR) sampled ``oversampling``
    times per step, over its 32 s, summing to one: exactly the kernel ``compute_regressor`` convolves with."""
    from nilearn.glm.first_level.hemodynamic_models import glover_hrf, spm_hrf

    if model == "spm":
        return np.asarray(spm_hrf(step, oversampling), dtype=np.float64)
    if model == "glover":
        return np.asarray(glover_hrf(step, oversampling), dtype=np.float64)
    raise ValueError(f"hrf: one of {', '.join(HRF_MODELS)}, got {model!r}")


def convolve(signal: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Causal convolution along time (axis 0), cut to the signal's length: ``out[t] = sum_s signal[t - s]
    kernel[s]``, as ``np.convolve(signal, kernel)[:len(signal)]`` for each column (computed by FFT blocks)."""
    from scipy.signal import oaconvolve

    signal = np.asarray(signal, dtype=np.float64)
    if len(signal) == 0:
        return signal.copy()
    full = oaconvolve(signal, np.asarray(kernel, dtype=np.float64)[:, None], axes=0)
    return np.asarray(full[: len(signal)])


LOWPASS_HALF_WIDTH = 8
"""Grid steps on each side of the low-pass kernel's centre."""
LOWPASS_CUTOFF = 0.8
"""Cut-off of the low-pass, as a fraction of the grid's Nyquist frequency (``0.5 / step``): the transition
band of a Hamming-windowed sinc ``2 * 8`` steps long is about ``0.2 / step`` wide, so at 0.8 it ends near
the Nyquist frequency: what lies above it is attenuated by more than 40 dB and cannot alias."""


def lowpass_kernel(oversampling: int) -> np.ndarray:
    """A zero-phase low-pass FIR on the oversampled grid (odd length, symmetric, unit gain at 0 Hz): a
    Hamming-windowed sinc cutting at ``LOWPASS_CUTOFF`` of the target grid's Nyquist frequency."""
    from scipy.signal import firwin

    taps = 2 * LOWPASS_HALF_WIDTH * oversampling + 1
    return np.asarray(firwin(taps, LOWPASS_CUTOFF / oversampling, window="hamming"), dtype=np.float64)


def filter_centred(signal: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Zero-phase filtering along time (axis 0) with an odd-length symmetric kernel: output aligned with
    the input (no delay); the signal is taken as zero beyond its ends."""
    from scipy.signal import oaconvolve

    if len(kernel) % 2 != 1:
        raise ValueError("filter_centred: the kernel needs an odd length")
    signal = np.asarray(signal, dtype=np.float64)
    full = oaconvolve(signal, np.asarray(kernel, dtype=np.float64)[:, None], axes=0)
    half = len(kernel) // 2
    return np.asarray(full[half : half + len(signal)])


def zscore(x: np.ndarray) -> np.ndarray:
    """Each column minus its mean over time, over its standard deviation (``ddof=0``); a constant column
    (a feature that never varies in the run, or all zeros) becomes zeros rather than NaN."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    centred = x - mean
    scale = np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, np.inf)
    return np.asarray(centred / scale)
