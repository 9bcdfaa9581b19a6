"""Banded ridge on two feature spaces from the store: which model explains which voxels.

    python examples/banded_ridge.py [--voxels 40] [--snr 2] [Hydra overrides for both configs, as for pipeline.launch]

1. Two configs (``model=tiny_videomae`` and ``model=tiny_vit``, both at 2 Hz, each with the overrides given)
   are computed where the store lacks them (``pipeline.launch_config``) and read back otherwise.
2. A small BIDS dataset is simulated as in ``examples/encoding.py`` (two runs, TR 1.49 s); half the voxels
   see the first space only, the other half the second: a hidden linear map of each space's stored features
   as they were on screen, convolved with SPM's HRF, plus noise at ``--snr``.
3. ``pipeline.align.align`` takes both configs at once and returns one DataArray ``(time, feature)`` whose
   ``space`` coordinate says which space each column belongs to; himalaya's ``BandedRidgeCV`` fits one
   penalty per space (the spaces as its ``groups``) on one run and is tested on the other, both ways.

It prints the held-out correlation, and for each half of the voxels the share of its prediction's variance
that each space carries: the space a voxel was simulated from should carry most of it.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import encoding  # noqa: E402  (the simulated dataset and brain of the encoding example)

SPACES = ["model=tiny_videomae frequency=2 clip_duration=1.0", "model=tiny_vit frequency=2"]


def fit_banded(x: np.ndarray, y: np.ndarray, groups: np.ndarray, seed: int) -> object:
    """himalaya's banded ridge: one penalty per feature space, chosen by cross-validated random search."""
    from himalaya.ridge import BandedRidgeCV

    model = BandedRidgeCV(
        groups=groups,
        solver_params={"n_iter": 30, "alphas": np.logspace(-2, 5, 8), "progress_bar": False, "warn": False},
        fit_intercept=True,
        cv=4,
        random_state=seed,
        force_cpu=True,
    )
    return model.fit(x, y)


def space_shares(model: object, x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """``(spaces, voxels)``: the variance of each space's part of the prediction, as a share of their sum."""
    coef = np.asarray(model.coef_)  # type: ignore[attr-defined]
    parts = np.stack([(x[:, groups == g] - x[:, groups == g].mean(0)) @ coef[groups == g] for g in np.unique(groups)])
    var = parts.var(axis=1)
    return var / np.maximum(var.sum(0, keepdims=True), 1e-12)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="banded ridge on two feature spaces aligned to BIDS runs")
    parser.add_argument("--voxels", type=int, default=40)
    parser.add_argument("--snr", type=float, default=2.0, help="signal std / noise std")
    parser.add_argument("--seed", type=int, default=0)
    args, overrides = parser.parse_known_args(argv)

    import pipeline.align

    runs, videos = [], []
    for space in SPACES:
        run, found = encoding.compute_missing([*space.split(), *overrides])
        runs.append(run)
        videos = found
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "bids"
        encoding.simulate_dataset(root, videos, args.seed)
        store = pipeline.open(runs[0].store)
        half = args.voxels // 2
        clean: dict[str, np.ndarray] = {}
        designs: dict[str, object] = {}
        for k, run in enumerate(runs):
            features = {
                f"clip-{i + 1:02d}{Path(v).suffix}": encoding.stored_samples(store, run.embed, v)
                for i, v in enumerate(videos)
            }
            n_features = next(iter(features.values())).shape[1]
            hidden = rng.standard_normal((n_features, args.voxels)) / math.sqrt(n_features)
            hidden[:, (slice(half, None), slice(0, half))[k]] = 0.0  # voxels [0, half) see space 0, the rest space 1
            for scan in pipeline.align.find_runs(root):
                label = scan.prefix.rsplit("_", 1)[1]
                frequency = float(run.embed.frequency)
                signal = encoding.simulated_bold(scan.events, features, frequency, scan.n_scans, hidden)
                clean[label] = clean.get(label, 0.0) + signal
        for scan in pipeline.align.find_runs(root):  # both spaces at once: one DataArray, a space per column
            label = scan.prefix.rsplit("_", 1)[1]
            designs[label] = pipeline.align.align(
                runs[0].store, [r.embed for r in runs], scan.events, tr=scan.tr, n_scans=scan.n_scans,
                hrf="spm", zscore=True,
            )  # fmt: skip
        first = next(iter(designs.values()))
        spaces = list(first.attrs["spaces"])  # type: ignore[attr-defined]
        groups = np.array([spaces.index(s) for s in first["space"].values])  # type: ignore[index]
        scale = np.concatenate(list(clean.values())).std(0) / args.snr
        bold = {label: c + rng.standard_normal(c.shape) * scale for label, c in clean.items()}
        print(f"spaces: {', '.join(f'{s} ({int((groups == g).sum())} columns)' for g, s in enumerate(spaces))}")
        scores, shares = [], []
        for test in designs:
            (train,) = [label for label in designs if label != test]
            x = np.asarray(designs[train].values)  # type: ignore[attr-defined]
            model = fit_banded(x, bold[train], groups, args.seed)
            predicted = np.asarray(model.predict(np.asarray(designs[test].values)))  # type: ignore[attr-defined]
            r = encoding.columnwise_r(predicted, bold[test])
            scores.append(float(np.median(r)))
            shares.append(space_shares(model, x, groups))
            print(f"held out {test}: trained on {train}, median r {np.median(r):.3f}")
        share = np.mean(shares, axis=0)
        for k in range(2):
            voxels = slice(0, half) if k == 0 else slice(half, None)
            carried = ", ".join(f"{s} {share[g, voxels].mean():.2f}" for g, s in enumerate(spaces))
            print(f"voxels simulated from {spaces[k]}: share of the prediction carried by {carried}")
    print(f"held-out correlation, median over voxels and folds: {np.median(scores):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
