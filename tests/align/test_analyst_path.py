"""The analyst's path after ``make run``: one way to name a config at every entry point, one dimension order
from every reader, exports that record (and are labelled by) every read-time choice, inputs that cannot
turn into silent garbage, several feature spaces at once (banded ridge)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing as tp
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pipeline
import pipeline.align as pa
from pipeline.align.cli import main as align_main
from pipeline.config import ConfigError

REPO = Path(__file__).resolve().parents[2]
CACHED = "model=tiny_videomae cache_n_layers=all"
"""Every layer kept: readers pick the layers."""
SPELLINGS = [CACHED, {"model": "tiny_videomae", "cache_n_layers": "all"}]


@pytest.fixture(scope="module")
def cached(models_dir: Path, sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tp.Any:
    """The sample embedded once with every layer cached, through ``pipeline.embed`` (debug executor)."""
    store = tmp_path_factory.mktemp("analyst") / "store.zarr"
    arrays = pipeline.embed(
        sample_dir, config=CACHED, store=store, models_dir=models_dir, executor="debug", progress=False
    )
    assert len(arrays) == 3
    return store, arrays


def _events(sample_dir: Path) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "onset": [1.0, 6.0],
            "duration": [3.0, 2.5],
            "stim_file": [str(sample_dir / "drift_25fps.mp4"), str(sample_dir / "bars_12fps.mp4")],
        }
    )


def _dataset(root: Path, sample_dir: Path, **sidecar: tp.Any) -> Path:
    """One subject, one run of 10 volumes (TR 1.5 s) showing two sample videos."""
    func = root / "sub-01" / "func"
    func.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "t", "BIDSVersion": "1.10.0"}))
    bold = {"RepetitionTime": 1.5, "NumberOfVolumes": 10, **sidecar}
    (func / "sub-01_task-x_run-1_bold.json").write_text(json.dumps(bold))
    _events(sample_dir).to_csv(func / "sub-01_task-x_run-1_events.tsv", sep="\t", index=False)
    return root


def test_every_entry_point_takes_the_same_spellings_and_every_reader_gives_time_first(
    cached: tp.Any, sample_dir: Path, models_dir: Path
) -> None:
    store_path, arrays = cached
    store = pipeline.open(store_path)
    video = sample_dir / "drift_25fps.mp4"
    from_embed = arrays[str(video)]
    loads = [store.load(config=c, video=video, layers=0.25) for c in SPELLINGS]
    aligned = [pa.align(store_path, c, _events(sample_dir), tr=1.5, n_scans=10) for c in SPELLINGS]
    for a in (*loads, *aligned, from_embed):
        assert a.dims[0] == "time", a.dims
    assert loads[0].dims == from_embed.dims == ("time", "feature") and loads[0].attrs["layer_indices"] == [1]
    np.testing.assert_array_equal(loads[0].values, loads[1].values)
    np.testing.assert_array_equal(aligned[0].values, aligned[1].values)
    # the config's own layer choice (the default, 2/3 of the depth), applied by pipeline.embed and Store.load
    np.testing.assert_array_equal(from_embed.values, store.load(config=CACHED, video=video).values)
    # the same misspelling, the same error, at every entry point
    wrong = "model=tiny_videomae frequncy=2"
    for call in (
        lambda: store.load(config=wrong, video=video),
        lambda: store.load(config={"model": "tiny_videomae", "frequncy": 2}, video=video),
        lambda: pa.align(store_path, wrong, _events(sample_dir), tr=1.5, n_scans=10),
        lambda: pipeline.embed(video, config=wrong, store=store_path, models_dir=models_dir, progress=False),
    ):
        with pytest.raises(ConfigError, match=r"frequncy: no such field \(did you mean 'frequency'\?"):
            call()
    with pytest.raises(ConfigError, match="did you mean 'tiny_videomae'"):
        store.load(config={"model": "tiny_videomea"}, video=video)
    with pytest.raises(KeyError, match="is not a config UID of"):
        store.load(config="videomae-frequency=9-0123abcd", video=video)
    cli = subprocess.run(
        [sys.executable, "-m", "pipeline.launch", *wrong.split(), f"store={store_path}"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert cli.returncode == 2 and "did you mean 'frequency'?" in cli.stderr


def test_embed_applies_layers_to_a_cached_config(cached: tp.Any, sample_dir: Path, models_dir: Path) -> None:
    store_path, _ = cached
    video = sample_dir / "bars_12fps.mp4"
    common = dict(config=CACHED, store=store_path, models_dir=models_dir, executor="debug", progress=False)
    one = pipeline.embed(video, layers=0.25, **common)[str(video)]
    assert one.dims == ("time", "feature") and one.attrs["layer_indices"] == [1]
    two = pipeline.embed(video, layers=[0.0, 1.0], layer_aggregation="none", **common)[str(video)]
    assert two.dims == ("time", "layer", "feature") and list(two["layer"].values) == [0, 4]
    np.testing.assert_array_equal(one.values, pipeline.open(store_path).load(config=CACHED, video=video, layers=0.25))


def test_exports_that_differ_in_layers_get_two_labels_and_record_them(
    cached: tp.Any, sample_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store_path, _ = cached
    root = _dataset(tmp_path / "ds", sample_dir)
    labels, sidecars = [], []
    for layers in ("0.25", "1.0"):
        config = f"config={CACHED} layers={layers}"
        assert align_main([f"bids={root}", config, f"store={store_path}", "hrf=spm"]) == 0
        label = capsys.readouterr().out.rsplit("with desc-", 1)[1].strip()
        labels.append(label)
        sidecar = root / "derivatives/pipeline/sub-01/func" / f"sub-01_task-x_run-1_desc-{label}_stim.json"
        sidecars.append(json.loads(sidecar.read_text()))
    assert labels[0] != labels[1]
    spaces = [next(iter(s["FeatureSpaces"].values())) for s in sidecars]
    assert [s["layers"] for s in spaces] == [0.25, 1.0] and [s["layer_indices"] for s in spaces] == [[1], [4]]
    assert sidecars[0]["Columns"][0].endswith("/l1/f0") and sidecars[1]["Columns"][0].endswith("/l4/f0")
    # one label forced on other layers: refused, both settings shown
    args = [f"bids={root}", f"config={CACHED} layers=0.5", f"store={store_path}", "hrf=spm", f"desc={labels[0]}"]
    assert align_main(args) == 2
    err = capsys.readouterr().err
    assert '"layers": 0.25' in err.split("now:")[0] and '"layers": 0.5' in err.split("now:")[1]


def test_two_feature_spaces_side_by_side(cached: tp.Any, sample_dir: Path, models_dir: Path) -> None:
    store_path, _ = cached
    pipeline.embed(sample_dir, model="tiny_vit", store=store_path, models_dir=models_dir, executor="debug", progress=0)
    both = pa.align(store_path, [f"{CACHED} layers=1.0", "model=tiny_vit"], _events(sample_dir), tr=1.5, n_scans=10)
    first, second = both.attrs["spaces"]
    assert first.startswith("tiny-videomae-") and second.startswith("tiny-vit-")
    assert list(both["space"].values) == [first] * 32 + [second] * 32 and both.dims == ("time", "feature")
    assert both["feature"].values[0] == f"{first}/l4/f0" and both["feature"].values[32].startswith(f"{second}/l")
    assert both.attrs["layer_indices"][0] == [4] and both.attrs["model"] == ["tiny-videomae", "tiny-vit"]
    alone = pa.align(store_path, "model=tiny_vit", _events(sample_dir), tr=1.5, n_scans=10)
    np.testing.assert_array_equal(both.values[:, 32:], alone.values)
    # two read-time selections of one cached config are two spaces; a list of bare words is refused
    two = [f"{CACHED} layers=0.0", f"{CACHED} layers=1.0"]
    layers = pa.align(store_path, two, _events(sample_dir), tr=1.5, n_scans=10)
    assert [s.rsplit("-", 1)[1] for s in layers.attrs["spaces"]] == ["l0", "l4"] and layers.sizes["feature"] == 64
    with pytest.raises(ValueError, match="'frequency=2' names none"):
        pa.align(store_path, ["model=tiny_vit", "frequency=2"], _events(sample_dir), tr=1.5, n_scans=10)


def test_impossible_inputs_are_refused_with_their_numbers(
    cached: tp.Any, sample_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store_path, _ = cached
    with pytest.raises(ValueError, match=r"1490 s is outside 0.1-10 s \(in milliseconds\?"):
        pa.align(store_path, CACHED, _events(sample_dir), tr=1490, n_scans=20)
    assert pa.Grid.fmri(np.float32(1.5), 10).step == 1.5  # a NIfTI header's zoom is a numpy number
    late = _events(sample_dir).assign(onset=[1.0, 40.0])
    with pytest.raises(ValueError, match=r"start after the run ends \(29.8 s: 20 rows of 1.49 s\).*at onset 40 s"):
        pa.align(store_path, CACHED, late, tr=1.49, n_scans=20)
    with pytest.warns(UserWarning, match="past the run's end"):
        pa.align(store_path, CACHED, _events(sample_dir).assign(onset=[1.0, 14.5]), tr=1.5, n_scans=10)
    milliseconds = _dataset(tmp_path / "ms", sample_dir, RepetitionTime=1490)
    assert align_main([f"bids={milliseconds}", f"config={CACHED}", f"store={store_path}"]) == 2
    assert "RepetitionTime of sub-01_task-x_run-1_bold.json" in capsys.readouterr().err
    import nibabel

    disagree = _dataset(tmp_path / "nifti", sample_dir, NumberOfVolumes=20)
    image = nibabel.Nifti1Image(np.zeros((2, 2, 2, 18), np.int16), np.eye(4))
    nibabel.save(image, str(disagree / "sub-01/func/sub-01_task-x_run-1_bold.nii.gz"))
    assert align_main([f"bids={disagree}", f"config={CACHED}", f"store={store_path}"]) == 2
    assert "holds 18 volumes but its bold sidecar says NumberOfVolumes 20" in capsys.readouterr().err
    (tmp_path / "v.mp4").write_bytes(b"")
    nan = pa.Features(np.array([[1.0], [np.nan]]), frequency=1.0, duration=2.0)
    source = pa.MemorySource({tmp_path / "v.mp4": nan})
    events = pd.DataFrame({"onset": [0.0], "duration": [2.0], "stim_file": ["v.mp4"]})
    with pytest.raises(ValueError, match="NaN or infinite"):
        pa.align_features(source, events, pa.make_grid(tr=1.0, n_scans=3), stimuli=tmp_path)


def test_a_video_shorter_than_a_clip_keeps_the_numbers_and_is_flagged(
    models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.testing.sample import write_video
    from pipeline.tools import status

    folder = tmp_path / "short"
    folder.mkdir()
    write_video(folder / "blink.mp4", fps=25, seconds=0.4, width=32, height=32)
    store = tmp_path / "s.zarr"
    common = dict(store=store, models_dir=models_dir, executor="debug", progress=False, clip_duration=2.0)
    (emb,) = pipeline.embed(folder, model="tiny_videomae", **common).values()
    assert "shorter than one clip (0.4 s < clip_duration 2 s)" in emb.attrs["timing_note"]
    assert np.isfinite(emb.values).all()
    assert status.main([f"store={store}", "--videos"]) == 0
    assert "flagged: shorter than one clip" in capsys.readouterr().out


@pytest.mark.slow
def test_the_banded_ridge_example_runs(models_dir: Path, sample_dir: Path, tmp_path: Path) -> None:
    cmd = [
        sys.executable, str(REPO / "examples" / "banded_ridge.py"), f"videos={sample_dir}",
        f"store={tmp_path / 'br.zarr'}", f"models_dir={models_dir}", "executor=debug", "device=cpu",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "PIPELINE_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    r = float(done.stdout.strip().splitlines()[-1].rsplit(" ", 1)[1])
    assert r > 0.5, done.stdout
    line = next(x for x in done.stdout.splitlines() if x.startswith("voxels simulated from tiny-videomae"))
    own = float(line.split("carried by ")[1].split(",")[0].rsplit(" ", 1)[1])
    assert own > 0.5, line  # the space the voxels were simulated from carries most of their prediction
