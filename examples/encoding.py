"""An encoding model on stored embeddings: how an analysis reuses the cache by config, never by path.

    python examples/encoding.py [Hydra overrides, as for pipeline.launch]

1. The config comes from ``conf/`` and the overrides, exactly as the launcher builds it, so its UID is
   the launcher's. Videos missing from the store under that UID are computed (``pipeline.launch``);
   the rest are read back. A second run computes nothing.
2. The videos are played back to back, as in a scan session. A synthetic brain signal is made from the
   embeddings: for each of ``--voxels`` voxels a hidden linear map of the features, convolved with a
   canonical haemodynamic response (double gamma, peak near 5 s), plus Gaussian noise at ``--snr``.
3. A ridge regression on HRF-convolved features (the penalty chosen by leave-one-video-out within the
   training videos) is fitted on all videos but one and tested on the held-out one. It prints the
   held-out correlation per voxel next to the noise ceiling (the correlation of the noiseless signal with
   the noisy one), for each held-out video in turn.

The signal is sampled on the embedding grid (``frequency``, 8 Hz here) because the sample videos last a
few seconds; with a real scan, resample the convolved regressors to the TR.
"""

from __future__ import annotations

import argparse
import math
import sys
import typing as tp
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULTS = ["model=tiny_videomae", "frequency=8", "clip_duration=1.0"]


def hrf(frequency: float, length_s: float = 24.0) -> np.ndarray:
    """The canonical double-gamma haemodynamic response (SPM's shape), sampled at ``frequency``, unit sum."""
    t = np.arange(0.0, length_s, 1.0 / frequency)

    def gamma_pdf(x: np.ndarray, shape: float) -> np.ndarray:
        return np.where(x > 0, x ** (shape - 1) * np.exp(-x) / math.gamma(shape), 0.0)

    response = gamma_pdf(t, 6.0) - gamma_pdf(t, 16.0) / 6.0
    return response / response.sum()


def convolve(signal: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Causal convolution along time (axis 0), same length as ``signal``."""
    return np.stack([np.convolve(col, kernel)[: len(signal)] for col in signal.T], axis=1)


def ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights, feature means and target means of a ridge fit on centred data."""
    mx, my = x.mean(0), y.mean(0)
    xc = x - mx
    weights = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (y - my))
    return weights, mx, my


def predict(fit: tuple[np.ndarray, np.ndarray, np.ndarray], x: np.ndarray) -> np.ndarray:
    weights, mx, my = fit
    return (x - mx) @ weights + my


def columnwise_r(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = (a - a.mean(0)) / (a.std(0) + 1e-12)
    b = (b - b.mean(0)) / (b.std(0) + 1e-12)
    return np.asarray((a * b).mean(0))


def load_embeddings(overrides: list[str]) -> tuple[tp.Any, list[str], list[np.ndarray], int]:
    """(run config, video paths, one ``(time, features)`` array per video, videos computed now)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from pipeline import launch_config
    from pipeline.config import build_run_config
    from pipeline.launch.discovery import find_videos
    from pipeline.launch.preflight import prepare_model
    from pipeline.store import Store, content_hash

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        cfg = compose("config", overrides=overrides)
    run = prepare_model(build_run_config(tp.cast(dict[str, tp.Any], OmegaConf.to_container(cfg, resolve=True))))
    videos = find_videos(run.videos)
    store = Store(run.store)
    cuid = run.embed.uid()
    missing = [v for v in videos if not store.has(cuid, content_hash(v))]
    if missing:
        print(f"config {cuid}: computing {len(missing)} of {len(videos)} videos")
        summary = launch_config(run)
        if not summary.ok:
            raise SystemExit(f"could not embed every video: {summary.render()}")
    else:
        print(f"config {cuid}: all {len(videos)} videos already stored, reusing them")
    arrays = []
    for video in videos:
        data = store.load(config=run.embed, video=video)
        arrays.append(np.asarray(data).reshape(-1, data.sizes["time"]).T.astype(np.float64))
    return run, videos, arrays, len(missing)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ridge encoding model on stored embeddings")
    parser.add_argument("--voxels", type=int, default=50)
    parser.add_argument("--snr", type=float, default=2.0, help="signal std / noise std")
    parser.add_argument("--seed", type=int, default=0)
    args, overrides = parser.parse_known_args(argv)
    run, videos, arrays, _ = load_embeddings([*DEFAULTS, *overrides])
    if len(videos) < 3:
        raise SystemExit(f"need at least 3 videos to train on some and test on another, found {len(videos)}")
    frequency = run.embed.frequency
    if not isinstance(frequency, float):
        raise SystemExit("frequency=native gives each video its own rate: pick a number of Hz for this example")

    session = np.concatenate(arrays)
    session = (session - session.mean(0)) / (session.std(0) + 1e-8)
    which = np.concatenate([np.full(len(a), i) for i, a in enumerate(arrays)])
    rng = np.random.default_rng(args.seed)
    hidden = rng.standard_normal((session.shape[1], args.voxels)) / math.sqrt(session.shape[1])
    kernel = hrf(frequency)
    clean = convolve(session @ hidden, kernel)
    bold = clean + rng.standard_normal(clean.shape) * clean.std(0) / args.snr
    regressors = convolve(session, kernel)
    print(
        f"{len(videos)} videos, {len(session)} time points at {frequency:g} Hz, {session.shape[1]} features, "
        f"{args.voxels} voxels, SNR {args.snr:g}"
    )

    alphas = [10.0**k for k in range(-2, 5)]
    results = []
    for test in range(len(videos)):
        train = [i for i in range(len(videos)) if i != test]

        def cv_score(alpha: float, train: list[int] = train) -> float:
            scores = []
            for inner in train:
                fit_on = np.isin(which, [i for i in train if i != inner])
                fit = ridge(regressors[fit_on], bold[fit_on], alpha)
                scores.append(columnwise_r(predict(fit, regressors[which == inner]), bold[which == inner]).mean())
            return float(np.mean(scores))

        alpha = max(alphas, key=cv_score)
        fit = ridge(regressors[np.isin(which, train)], bold[np.isin(which, train)], alpha)
        held = which == test
        r = columnwise_r(predict(fit, regressors[held]), bold[held])
        ceiling = columnwise_r(clean[held], bold[held])
        results.append(float(np.median(r)))
        print(
            f"held out {Path(videos[test]).name:<28} alpha {alpha:>7g}  "
            f"median r {np.median(r):.3f}  (noise ceiling {np.median(ceiling):.3f})"
        )
    print(f"held-out correlation, median over voxels and folds: {np.median(results):.3f}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
