"""An encoding model on stored embeddings, aligned to fMRI scans from BIDS events with ``pipeline.align``.

    python examples/encoding.py [--bids DIR] [--voxels 50] [--snr 2] [Hydra overrides, as for pipeline.launch]

1. The config comes from ``conf/`` and the overrides, exactly as the launcher builds it, so its UID is the
   launcher's. Videos missing from the store under that UID are computed (``pipeline.launch``); the rest
   are read back. A second run computes nothing.
2. A small BIDS dataset is simulated (in ``--bids``, else a temporary folder): the videos, renamed, in
   ``stimuli/``, and two runs of one subject scanned with TR 1.49 s, whose ``events.tsv`` show the clips at
   jittered onsets, each clip several times (the same clip shown twice in a run, once from its second 1.0
   with a ``stim_start`` column).
3. The brain is simulated apart from ``pipeline.align``: for each of ``--voxels`` voxels, a hidden linear map
   of the stored features as they were on screen (sample ``k`` of a video held from ``k / frequency``,
   placed at the event's onset, on a 10 ms grid), convolved with a double-gamma HRF (SPM's shape), read at
   each scan, plus Gaussian noise at ``--snr``.
4. The model: ``pipeline.align.align`` on each run's ``events.tsv`` (``hrf="spm"``, z-scored per run) and a
   ridge regression (penalty chosen on the training run's two halves) fitted on one run and tested on the
   other, both ways. It prints the held-out correlation per voxel next to the noise ceiling (the
   correlation of the noiseless signal with the noisy one).

The same features as BIDS derivatives: ``python -m pipeline.align bids=DIR config=<config uid> store=...
hrf=spm zscore=true``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import typing as tp
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULTS = ["model=tiny_videomae", "frequency=8", "clip_duration=1.0"]
TR = 1.49
FINE = 0.01
"""Seconds per step of the simulated brain's own timeline."""


def hrf(step: float, length_s: float = 32.0) -> np.ndarray:
    """The canonical double-gamma haemodynamic response (SPM's shape), sampled every ``step`` s, unit sum."""
    t = np.arange(0.0, length_s, step)

    def gamma_pdf(x: np.ndarray, shape: float) -> np.ndarray:
        return np.where(x > 0, x ** (shape - 1) * np.exp(-x) / math.gamma(shape), 0.0)

    response = gamma_pdf(t, 6.0) - gamma_pdf(t, 16.0) / 6.0
    return response / response.sum()


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


def compute_missing(overrides: list[str]) -> tuple[tp.Any, list[str]]:
    """(run config, video paths): the launcher computes what the store lacks under the config's UID and
    reuses the rest (a second run of this example computes nothing)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    import pipeline

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        cfg = compose("config", overrides=overrides)
    run = pipeline.build_run_config(tp.cast(dict[str, tp.Any], OmegaConf.to_container(cfg, resolve=True)))
    summary = pipeline.launch_config(run)
    if not summary.ok:
        raise SystemExit(f"could not embed every video: {summary.render()}")
    videos = sorted({*summary.computed, *summary.cached})
    reused = len(videos) - len(summary.computed)
    print(f"config {summary.config_uid}: computed {len(summary.computed)} of {len(videos)} videos, reused {reused}")
    return run, videos


def simulate_dataset(root: Path, videos: list[str], seed: int) -> dict[str, Path]:
    """A BIDS dataset with the videos renamed into ``stimuli/`` and two runs of ``events.tsv`` (TR 1.49 s);
    returns run label -> events file. Each run shows every clip twice in a shuffled order, one of them from
    its second 1.0 (``stim_start``), at onsets 3 s to 6 s apart."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    (root / "stimuli").mkdir(parents=True, exist_ok=True)
    names = []
    for i, video in enumerate(videos):
        name = f"clip-{i + 1:02d}{Path(video).suffix}"
        shutil.copy(video, root / "stimuli" / name)
        names.append(name)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "simulated", "BIDSVersion": "1.10.0"}))
    (root / "task-watch_bold.json").write_text(json.dumps({"RepetitionTime": TR, "TaskName": "watch"}))
    func = root / "sub-01" / "func"
    func.mkdir(parents=True, exist_ok=True)
    runs = {}
    for run in (1, 2):
        order = list(rng.permutation(names * 2))
        onset, rows = 2.0 + rng.uniform(0, 1), []
        for k, name in enumerate(order):
            start = 1.0 if k == 1 else 0.0
            duration = 2.0 if k == 1 else "n/a"  # n/a: to the end of the clip
            rows.append((round(onset, 3), duration, name, start, "movie"))
            onset += 4.0 + rng.uniform(3.0, 6.0)
        table = pd.DataFrame(rows, columns=["onset", "duration", "stim_file", "stim_start", "trial_type"])
        events = func / f"sub-01_task-watch_run-{run}_events.tsv"
        table.to_csv(events, sep="\t", index=False, na_rep="n/a")
        # no images in a simulated dataset: the scan count goes in the run's bold sidecar (20 s after the last onset)
        n_scans = math.ceil((rows[-1][0] + 20.0) / TR)
        (func / f"sub-01_task-watch_run-{run}_bold.json").write_text(json.dumps({"NumberOfVolumes": n_scans}))
        runs[f"run-{run}"] = events
    return runs


def stored_samples(store: tp.Any, embed: tp.Any, video: str) -> np.ndarray:
    """A video's stored features as ``(time, features)``, read by config and video."""
    data = store.load(config=embed, video=video)
    return np.asarray(data.values, dtype=np.float64).reshape(data.sizes["time"], -1)


def simulated_bold(
    events: Path, features: dict[str, np.ndarray], frequency: float, n_scans: int, hidden: np.ndarray
) -> np.ndarray:
    """The noiseless signal of the simulated voxels ``(n_scans, voxels)``: features as on screen, on a 10 ms
    timeline, through the hidden map, convolved with the HRF and read at each scan's time."""
    import pandas as pd

    table = pd.read_csv(events, sep="\t", na_values="n/a")
    steps = int(round(n_scans * TR / FINE)) + 1
    screen = np.zeros((steps, hidden.shape[0]))
    t = np.arange(steps) * FINE
    for row in table.itertuples():
        samples = features[row.stim_file]
        shown = len(samples) / frequency - row.stim_start
        if not math.isnan(row.duration):
            shown = min(shown, row.duration)
        on = (t >= row.onset) & (t < row.onset + shown)
        k = np.floor((t[on] - row.onset + row.stim_start) * frequency + 1e-9).astype(int)
        screen[on] += samples[np.minimum(k, len(samples) - 1)]
    neural = screen @ hidden
    kernel = hrf(FINE)
    bold = np.stack([np.convolve(col, kernel)[:steps] for col in neural.T], axis=1)
    return bold[np.round(np.arange(n_scans) * TR / FINE).astype(int)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ridge encoding model on stored embeddings aligned to BIDS runs")
    parser.add_argument("--bids", type=Path, default=None, help="where to write the simulated dataset")
    parser.add_argument("--voxels", type=int, default=50)
    parser.add_argument("--snr", type=float, default=2.0, help="signal std / noise std")
    parser.add_argument("--seed", type=int, default=0)
    args, overrides = parser.parse_known_args(argv)
    run, videos = compute_missing([*DEFAULTS, *overrides])
    frequency = run.embed.frequency
    if not isinstance(frequency, float):
        raise SystemExit("frequency=native gives each video its own rate: pick a number of Hz for this example")

    import pipeline
    import pipeline.align

    with tempfile.TemporaryDirectory() as scratch:
        root = args.bids if args.bids is not None else Path(scratch) / "bids"
        runs = simulate_dataset(root, videos, args.seed)
        store = pipeline.open(run.store)
        features = {  # what the simulated brain sees: the stored samples (time, features), by stimulus name
            f"clip-{i + 1:02d}{Path(v).suffix}": stored_samples(store, run.embed, v) for i, v in enumerate(videos)
        }
        n_features = next(iter(features.values())).shape[1]
        rng = np.random.default_rng(args.seed)
        hidden = rng.standard_normal((n_features, args.voxels)) / math.sqrt(n_features)
        designs, clean, bold = {}, {}, {}
        for scan in pipeline.align.find_runs(root):  # each run's events, TR and scan count, as BIDS describes them
            label = scan.prefix.rsplit("_", 1)[1]
            designs[label] = pipeline.align.align(
                run.store, run.embed, scan.events, tr=scan.tr, n_scans=scan.n_scans, hrf="spm", zscore=True
            ).values
            clean[label] = simulated_bold(scan.events, features, frequency, scan.n_scans, hidden)
        scale = np.concatenate(list(clean.values())).std(0) / args.snr
        for label in runs:
            bold[label] = clean[label] + rng.standard_normal(clean[label].shape) * scale
        total = sum(len(d) for d in designs.values())
        print(
            f"{len(videos)} videos, 2 runs of {' + '.join(str(len(d)) for d in designs.values())} = {total} scans "
            f"(TR {TR:g} s), {n_features} features, {args.voxels} voxels, SNR {args.snr:g}"
        )

        alphas = [10.0**k for k in range(-2, 5)]
        results = []
        for test in runs:
            (train,) = [label for label in runs if label != test]
            x, y = designs[train], bold[train]
            half = len(x) // 2

            def cv_score(alpha: float, x: np.ndarray = x, y: np.ndarray = y, half: int = half) -> float:
                first, second = slice(0, half), slice(half, None)
                scores = [
                    columnwise_r(predict(ridge(x[a], y[a], alpha), x[b]), y[b]).mean()
                    for a, b in ((first, second), (second, first))
                ]
                return float(np.mean(scores))

            alpha = max(alphas, key=cv_score)
            r = columnwise_r(predict(ridge(x, y, alpha), designs[test]), bold[test])
            ceiling = columnwise_r(clean[test], bold[test])
            results.append(float(np.median(r)))
            print(
                f"held out {test}: trained on {train}, alpha {alpha:>7g}  median r {np.median(r):.3f}  "
                f"(noise ceiling {np.median(ceiling):.3f})"
            )
    print(f"held-out correlation, median over voxels and folds: {np.median(results):.3f}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
