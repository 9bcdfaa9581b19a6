"""``python -m pipeline.align bids=...``: a small BIDS dataset (two subjects, two runs each, one subject with
sessions; stimuli are renamed copies of the sample videos and the real clips), every file written checked,
and the command line's errors."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pipeline
import pipeline.align as pa
from pipeline import store as store_mod
from pipeline.align.cli import main
from tests.conftest import distinct_copies

REPO = Path(__file__).resolve().parents[2]
STIMULI = {"bars": "clips/bars.mp4", "drift": "drift.mp4", "orbit": "orbit.mp4", "bbb": "films/bunny.mp4",
           "ntsc": "carphone.mp4", "bikes": "films/bikes.mp4"}  # fmt: skip
RUNS = {
    # run prefix: (folder, events rows (stimulus, onset, duration, stim_start), TR, scans)
    "sub-01_task-movie_run-1": (
        "sub-01/func",
        [("bars", 1.0, 2.5, 0.0), ("bbb", 5.0, "n/a", 1.0), ("drift", 11.5, 3.0, 0.0)],
        1.5,
        20,
    ),
    "sub-01_task-movie_run-2": ("sub-01/func", [("bikes", 0.0, 6.0, 2.0), ("bars", 8.0, 2.5, 0.0)], 1.5, 18),
    "sub-02_ses-1_task-movie_run-1": (
        "sub-02/ses-1/func",
        [("orbit", 2.0, 4.0, 0.0), ("ntsc", 7.0, 4.0, 0.0)],
        2.0,
        16,
    ),
    "sub-02_ses-1_task-movie_run-2": ("sub-02/ses-1/func", [("ntsc", 0.5, 3.5, 0.5), ("bbb", 6.0, 5.0, 0.0)], 2.0, 22),
}


def make_dataset(root: Path, videos: dict[str, Path]) -> Path:
    """TR 1.5 s from the top-level sidecar, 2 s for sub-02 from its session's; scan counts from a sidecar's
    ``NumberOfVolumes`` (sub-01), a NIfTI header (sub-02 run 1), or nowhere (sub-02 run 2: ``n_scans=``)."""
    import nibabel

    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "align test", "BIDSVersion": "1.10.0"}))
    (root / "task-movie_bold.json").write_text(json.dumps({"RepetitionTime": 1.5, "TaskName": "movie"}))
    for name, rel in STIMULI.items():
        (root / "stimuli" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(videos[name], root / "stimuli" / rel)
    for prefix, (folder, rows, _tr, scans) in RUNS.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        table = pd.DataFrame(
            [(onset, duration, STIMULI[name], start, "film") for name, onset, duration, start in rows]
            + [(rows[0][1] + 0.7, 0.0, "n/a", "n/a", "button")],
            columns=["onset", "duration", "stim_file", "stim_start", "trial_type"],
        ).sort_values("onset")
        table.to_csv(root / folder / f"{prefix}_events.tsv", sep="\t", index=False)
        if prefix.startswith("sub-01"):
            (root / folder / f"{prefix}_bold.json").write_text(json.dumps({"NumberOfVolumes": scans}))
    (root / "sub-02" / "ses-1" / "sub-02_ses-1_task-movie_bold.json").write_text(json.dumps({"RepetitionTime": 2.0}))
    image = nibabel.Nifti1Image(np.zeros((2, 2, 2, 16), np.int16), np.eye(4))
    nibabel.save(image, str(root / "sub-02/ses-1/func/sub-02_ses-1_task-movie_run-1_bold.nii.gz"))
    return root


@pytest.fixture
def dataset(align_store: object, tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "ds", align_store.videos)  # type: ignore[attr-defined]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "pipeline.align", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_bids_export_writes_every_run_as_a_continuous_recording(align_store: object, dataset: Path) -> None:
    uid = align_store.config_uid  # type: ignore[attr-defined]
    done = _cli(f"bids={dataset}", f"config={uid}", f"store={align_store.store}", "hrf=spm", "n_scans=22", "desc=spm")  # type: ignore[attr-defined]
    assert done.returncode == 0, done.stderr[-3000:]
    assert "wrote 4 run(s)" in done.stdout and "scans from NumberOfVolumes in the bold sidecar" in done.stdout
    assert (
        "scans from sub-02_ses-1_task-movie_run-1_bold.nii.gz" in done.stdout
        and "scans from n_scans given" in done.stdout
    )
    out = dataset / "derivatives" / "pipeline"
    expected = {"dataset_description.json"}
    for prefix, (folder, *_rest) in RUNS.items():
        expected |= {f"{folder}/{prefix}_desc-spm_stim.tsv.gz", f"{folder}/{prefix}_desc-spm_stim.json"}
    assert {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} == expected
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["GeneratedBy"][0]["Name"] == "pipeline.align"
    for prefix, (folder, rows, tr, scans) in RUNS.items():
        data_path = out / folder / f"{prefix}_desc-spm_stim.tsv.gz"
        with gzip.open(data_path, "rt") as f:
            lines = f.read().splitlines()
        assert len(lines) == scans and all(len(line.split("\t")) == 32 for line in lines)
        [float(x) for x in lines[0].split("\t")]  # no header line: the first row is numbers
        data = np.array([[float(x) for x in line.split("\t")] for line in lines])
        sidecar = json.loads((out / folder / f"{prefix}_desc-spm_stim.json").read_text())
        assert sidecar["SamplingFrequency"] == pytest.approx(1 / tr) and sidecar["StartTime"] == 0.0
        assert sidecar["Columns"] == [f"tiny-videomae-{uid[-8:]}/l2/f{j}" for j in range(32)]  # space/layer/feature
        assert sidecar["ConfigUID"] == uid and sidecar["Model"] == "tiny-videomae"
        (space,) = sidecar["FeatureSpaces"].values()
        assert space["layer_indices"] == [2] and space["layers"] == [pytest.approx(2 / 3)] and space["frequency"] == 4
        assert space["layer_aggregation"] == "mean" and space["token_aggregation"] == "mean"
        assert sidecar["ModelIdentity"].startswith("content-") and sidecar["PipelineVersion"] == pipeline.__version__
        assert sidecar["Alignment"]["HRF"] == "spm" and sidecar["Alignment"]["Oversampling"] == 50
        assert sidecar["RepetitionTime"] == tr and sidecar["NumberOfVolumes"] == scans
        assert sidecar["Sources"] == [f"bids:raw:{folder}/{prefix}_events.tsv"]
        hashes = {STIMULI[name]: store_mod.content_hash(dataset / "stimuli" / STIMULI[name]) for name, *_ in rows}
        assert sidecar["StimulusHashes"] == hashes
        # the numbers: the Python API on the same run, written with 8 significant digits
        same = pa.align(
            align_store.store, uid, dataset / folder / f"{prefix}_events.tsv", tr=tr, n_scans=scans, hrf="spm"
        )  # type: ignore[attr-defined]
        assert np.abs(same.values).max() > 0.01
        np.testing.assert_allclose(data, same.values, rtol=1e-7, atol=1e-9)


def test_binned_export_rows_are_the_stored_samples_means(
    align_store: object, dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Launcher words as the config, the default binning: sub-02 run 1 (TR 2 s) shows the orbit clip from 2 s:
    row 1 (2 s to 4 s) is the mean of its first 8 samples (4 Hz), row 2 of the next 8."""
    config = "model=tiny_videomae frequency=4"
    assert main([f"bids={dataset}", f"config={config}", f"store={align_store.store}", "n_scans=22"]) == 0  # type: ignore[attr-defined]
    printed = capsys.readouterr().out
    label = printed.rsplit("with desc-", 1)[1].strip()
    assert label.startswith("tinyvideomae") and len(label) == len("tinyvideomae") + 8  # the model, then a digest
    path = (
        dataset / "derivatives/pipeline/sub-02/ses-1/func" / f"sub-02_ses-1_task-movie_run-1_desc-{label}_stim.tsv.gz"
    )
    data = np.loadtxt(gzip.open(path, "rt"), delimiter="\t")
    reader = store_mod.open(align_store.store)  # type: ignore[attr-defined]
    orbit = reader.load(config=align_store.config_uid, video=align_store.videos["orbit"]).values  # type: ignore[attr-defined]
    assert data.shape == (16, 32) and not data[0].any()
    np.testing.assert_allclose(data[1], orbit[:8].mean(axis=0), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(data[2], orbit[8:16].mean(axis=0), rtol=1e-6, atol=1e-7)
    # same label, other settings: refused before anything is written
    before = path.read_bytes()
    assert (
        main(
            [
                f"bids={dataset}",
                f"config={config}",
                f"store={align_store.store}",
                "n_scans=22",
                f"desc={label}",
                "zscore=true",
            ]
        )
        == 2
    )  # type: ignore[attr-defined]
    err = capsys.readouterr().err
    assert "exists from an export with other settings" in err
    assert '"ZScore": false' in err.split("there:")[1] and '"ZScore": true' in err.split("now:")[1]  # both shown
    assert path.read_bytes() == before


def test_command_line_errors(
    align_store: object, dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store, uid = f"store={align_store.store}", f"config={align_store.config_uid}"  # type: ignore[attr-defined]
    bids = f"bids={dataset}"
    usage_errors = {
        (): "bids= is required",
        (bids,): "config= is required",
        (bids, uid, store, "colour=blue"): "unknown field 'colour'",
        (bids, uid, store, "hfr=spm"): "unknown field 'hfr' (did you mean 'hrf'?",
        (bids, uid, store, "hrf=canonical"): "hrf: one of spm, glover, none",
        (bids, uid, store, "delays=1,x"): "delays: seconds separated by commas",
        (bids, uid, store, "hrf=spm", "delays=0,2"): "delays: FIR delays replace the HRF",
        (bids, uid, store, "desc=my-label"): "desc: a BIDS label",
        (bids, uid, store, "oversampling=0"): "oversampling: between 1",
        (bids, uid, store, "zscore=maybe"): "zscore: true or false",
        (bids, uid, store, "stray"): "unexpected argument(s): stray",
        (bids, uid, f"store={tmp_path / 'none.zarr'}"): "no pipeline store at",
    }
    for args, message in usage_errors.items():
        with pytest.raises(SystemExit) as exit_:
            main(list(args))
        assert exit_.value.code == 2, args
        assert message in capsys.readouterr().err, args
    errors = {
        (f"bids={tmp_path / 'nothing'}", uid, store): "bids: no such folder",
        (bids, uid, store): "sub-02/ses-1/func/sub-02_ses-1_task-movie_run-2_events.tsv: scan count unknown",
        (bids, "config=videomae-frequency=9-0123abcd", store, "n_scans=22"): "is not a config UID of",
        (bids, "config=model=tiny_videomae frequency=4 layers=[2]", store, "n_scans=22"): "layers",
        (bids, "config=model=tiny_videomae frequncy=4", store, "n_scans=22"): "did you mean 'frequency'?",
        (bids, "config=model=tiny_videomea", store, "n_scans=22"): "did you mean 'tiny_videomae'?",
    }
    for args, message in errors.items():
        assert main(list(args)) == 2, args
        assert message in capsys.readouterr().err, args
    assert not (dataset / "derivatives").exists()
    # a stimulus the store lacks: exit 1, every missing video named, and the command that computes them
    (copy,) = distinct_copies(dataset / "stimuli" / "drift.mp4", tmp_path / "new", 1)
    shutil.move(copy, dataset / "stimuli" / "drift_v2.mp4")
    events = dataset / "sub-01/func/sub-01_task-movie_run-2_events.tsv"
    table = pd.read_csv(events, sep="\t")
    table.loc[table.stim_file == "films/bikes.mp4", "stim_file"] = "drift_v2.mp4"
    table.to_csv(events, sep="\t", index=False)
    assert main([bids, uid, store, "n_scans=22"]) == 1
    err = capsys.readouterr().err
    assert "1 stimulus video(s) not in the store" in err and str(dataset / "stimuli" / "drift_v2.mp4") in err
    assert (
        "-m pipeline.launch model=tiny_videomae frequency=4.0" in err
        and f"videos={dataset / 'stimuli' / 'drift_v2.mp4'}" in err
    )
    # overlapping events in one run: exit 2, the run named
    table.loc[table.stim_file == "drift_v2.mp4", "stim_file"] = "films/bikes.mp4"
    table.loc[table.stim_file == "clips/bars.mp4", "onset"] = 3.0
    table.to_csv(events, sep="\t", index=False)
    assert main([bids, uid, store, "n_scans=22"]) == 2
    err = capsys.readouterr().err
    assert "sub-01/func/sub-01_task-movie_run-2_events.tsv" in err and "overlap" in err
    assert not (dataset / "derivatives").exists()
