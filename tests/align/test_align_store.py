"""``pipeline.align.align`` on a real store: placement checked against the stored samples, windowed reads,
the forms of a config, missing videos (and the command that computes them), overlaps, a MEG grid, and
that alignment never imports torch itself."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pipeline.align as pa
from pipeline import store as store_mod
from tests.conftest import distinct_copies

REPO = Path(__file__).resolve().parents[2]


def _stimuli(align_store: object, folder: Path, names: list[str]) -> Path:
    """Renamed copies of stored videos (``movie_<name>.mp4``): found by content, not by name."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(align_store.videos[name], folder / f"movie_{name}.mp4")  # type: ignore[attr-defined]
    return folder


def _stored(align_store: object, name: str) -> np.ndarray:
    """The stored samples of a video, ``(time, features)``, read by the store's own API."""
    reader = store_mod.open(align_store.store)  # type: ignore[attr-defined]
    da = reader.load(config=align_store.config_uid, video=align_store.videos[name])  # type: ignore[attr-defined]
    return np.asarray(da.values, dtype=np.float64)


def test_each_events_samples_are_placed_at_its_onset(align_store: object, tmp_path: Path) -> None:
    stimuli = _stimuli(align_store, tmp_path / "stimuli", ["bars", "bbb"])
    events = pd.DataFrame(
        {
            "onset": [2.0, 7.0, 12.0],
            "duration": [2.5, 3.0, 1.0],
            "stim_file": ["movie_bars.mp4", "movie_bbb.mp4", "n/a"],
            "stim_start": [0.0, 1.0, 0.0],
            "trial_type": ["film", "film", "press"],
        }
    )
    da = pa.align(align_store.store, align_store.config_uid, events, tr=0.5, n_scans=30, stimuli=stimuli)  # type: ignore[attr-defined]
    assert da.dims == ("time", "feature") and da.shape == (30, 32)
    np.testing.assert_allclose(da["time"].values, np.arange(30) * 0.5)
    bars, bbb = _stored(align_store, "bars"), _stored(align_store, "bbb")
    assert bars.shape == (10, 32) and bbb.shape == (21, 32)  # 4 Hz: 2.5 s and 5.31 s
    # TR 0.5 s holds two 4 Hz samples: the mean of each pair
    expected = np.zeros((30, 32))
    expected[4:9] = bars.reshape(5, 2, 32).mean(axis=1)  # 2.0 s to 4.5 s
    expected[14:20] = bbb[4:16].reshape(6, 2, 32).mean(axis=1)  # from its second 1.0 (sample 4), for 3 s
    np.testing.assert_allclose(da.values, expected, atol=1e-6)
    assert da.attrs["config_uid"] == align_store.config_uid and da.attrs["model"] == "tiny-videomae"  # type: ignore[attr-defined]
    assert da.attrs["model_identity"].startswith("content-") and da.attrs["pipeline_version"]
    assert da.attrs["n_events"] == 2  # the response row has no stim_file
    # an events file: the same, with the stimuli folder found from the dataset's root
    root = tmp_path / "ds"
    (root / "sub-01" / "func").mkdir(parents=True)
    (root / "dataset_description.json").write_text('{"Name": "t", "BIDSVersion": "1.10.0"}')
    shutil.copytree(stimuli, root / "stimuli")
    tsv = root / "sub-01" / "func" / "sub-01_task-x_events.tsv"
    events.to_csv(tsv, sep="\t", index=False)
    from_file = pa.align(align_store.store, align_store.config_uid, tsv, tr=0.5, n_scans=30)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(from_file.values, da.values)
    only = pa.align(align_store.store, align_store.config_uid, tsv, tr=0.5, n_scans=30, trial_type="press")  # type: ignore[attr-defined]
    assert not only.values.any() and only.attrs["n_events"] == 0


def test_a_window_of_a_long_video_reads_only_that_window(
    align_store: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A film shown from its 600th second: an entry of 700 s at 4 Hz whose feature values are the sample
    index; only the 20 s shown are read, through ``Store.load(uid, start=, stop=)``."""
    embed = align_store.run.embed  # type: ignore[attr-defined]
    store = store_mod.Store(tmp_path / "long.zarr")
    store.ensure()
    cuid = store.ensure_config(embed)
    film = tmp_path / "stimuli" / "film.mp4"
    film.parent.mkdir()
    film.write_bytes(os.urandom(4096))  # never decoded: the store holds its features
    n = 700 * 4
    data = np.tile(np.arange(n, dtype=np.float32), (3, 1)) + np.arange(3, dtype=np.float32)[:, None] * 0.25
    times = (np.arange(n) / 4.0).tolist()
    attrs = {"times": times, "frequency": 4.0, "start": 0.0, "duration": 700.0, "config": embed.canonical()}
    assert store.write(cuid, store_mod.content_hash(film), data, attrs)
    calls: list[dict] = []
    load = store_mod.Store.load

    def spy(self: store_mod.Store, uid: str | None = None, **kwargs: object) -> object:
        calls.append({"uid": uid, **kwargs})
        return load(self, uid, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store_mod.Store, "load", spy)
    events = pd.DataFrame({"onset": [4.0], "duration": [20.0], "stim_file": ["film.mp4"], "stim_start": [600.1]})
    da = pa.align(store.path, cuid, events, tr=2.0, n_scans=15, stimuli=film.parent)
    windows = [c for c in calls if c.get("stop") != 0.0]  # (a zero-length read fetches the attributes)
    assert (
        len(windows) == 1
        and windows[0]["start"] == pytest.approx(600.1 - 0.25)
        and windows[0]["stop"] == pytest.approx(620.1)
    )
    # row 3 (6 s to 8 s) shows the film from 602.1 s to 604.1 s: 0.15 s of sample 2408, samples 2409 to 2415
    # and 0.1 s of sample 2416 (held 604.0 s to 604.25 s)
    row3 = (0.15 * 2408 + 0.25 * sum(range(2409, 2416)) + 0.1 * 2416) / 2.0
    np.testing.assert_allclose(da.values[3], row3 + np.arange(3) * 0.25, rtol=1e-9)
    row2 = (0.15 * 2400 + 0.25 * sum(range(2401, 2408)) + 0.1 * 2408) / 2.0  # 600.1 s to 602.1 s
    np.testing.assert_allclose(da.values[2], row2 + np.arange(3) * 0.25, rtol=1e-9)
    assert not da.values[:2].any() and da.values[11].all() and not da.values[12:].any()  # shown from 4 s to 24 s


def test_every_form_of_the_config_gives_the_same_features(align_store: object, tmp_path: Path) -> None:
    stimuli = _stimuli(align_store, tmp_path / "stimuli", ["drift", "ntsc"])
    events = pd.DataFrame(
        {"onset": [1.0, 5.5], "duration": [3.0, 4.0], "stim_file": ["movie_drift.mp4", "movie_ntsc.mp4"]}
    )
    forms = [
        align_store.config_uid,  # type: ignore[attr-defined]
        "model=tiny_videomae frequency=4",
        {"model": "tiny_videomae", "frequency": 4, "device": "cpu"},
        {"model": {"name": "tiny-videomae", "family": "videomae", "tiny": True}, "frequency": 4.0},
        align_store.run.embed,  # type: ignore[attr-defined]
    ]
    results = [pa.align(align_store.store, c, events, tr=1.49, n_scans=8, stimuli=stimuli, hrf="spm") for c in forms]  # type: ignore[attr-defined]
    assert np.abs(results[0].values).max() > 0.01
    for other in results[1:]:
        np.testing.assert_array_equal(other.values, results[0].values)
        assert other.attrs["config_uid"] == align_store.config_uid  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="not a config UID"):
        pa.align(align_store.store, "videomae-frequency=5-0123abcd", events, tr=1.49, n_scans=8, stimuli=stimuli)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="model: no model 'no_such_model' in conf/model/"):
        pa.align(align_store.store, "model=no_such_model", events, tr=1.49, n_scans=8, stimuli=stimuli)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="grid"):
        pa.align(align_store.store, forms[0], events, tr=1.49, stimuli=stimuli)  # type: ignore[attr-defined]


def test_missing_videos_are_one_error_whose_command_computes_them(align_store: object, tmp_path: Path) -> None:
    """Two videos the store lacks (bytes differ from the stored bars) and one it has: one error lists both
    and prints the launcher command; that command, run as printed, computes them and alignment then works."""
    store = tmp_path / "store.zarr"
    shutil.copytree(align_store.store, store)  # type: ignore[attr-defined]
    stimuli = _stimuli(align_store, tmp_path / "stimuli", ["drift"])
    a, b = distinct_copies(align_store.videos["bars"], stimuli, 2)  # type: ignore[attr-defined]
    events = pd.DataFrame(
        {"onset": [0.0, 4.0, 9.0], "duration": [2.5, 3.0, 2.5], "stim_file": [a.name, "movie_drift.mp4", b.name]}
    )
    config = {"model": {"name": "tiny-videomae", "family": "videomae", "tiny": True}, "frequency": 4.0}
    with pytest.raises(pa.MissingVideosError) as error:
        pa.align(store, config, events, tr=1.0, n_scans=14, stimuli=stimuli)
    e = error.value
    assert e.videos == [a, b] and e.config_uid == align_store.config_uid  # type: ignore[attr-defined]
    text = str(e)
    assert "2 stimulus video(s) not in the store" in text and str(a) in text and str(b) in text
    words = shlex.split(e.command)
    assert words[:3] == [sys.executable, "-m", "pipeline.launch"] and "model=tiny_videomae" in words
    assert f"store={store}" in words and any(w.startswith("models_dir=") for w in words)
    listing = Path(next(w for w in words if w.startswith("videos=")).split("=", 1)[1])
    assert listing.read_text().split() == [str(a), str(b)]
    done = subprocess.run(
        words, cwd=tmp_path, capture_output=True, text=True, timeout=600, env={**os.environ, "PIPELINE_THREADS": "1"}
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "computed 2  cached 0  failed 0" in done.stdout and align_store.config_uid in done.stdout  # type: ignore[attr-defined]
    da = pa.align(store, config, events, tr=1.0, n_scans=14, stimuli=stimuli)
    assert da.values[:2].any() and da.values[9:11].any()
    # one missing video is named in the command directly; a UID config gives the same words
    with pytest.raises(pa.MissingVideosError) as one:
        pa.align(align_store.store, align_store.config_uid, events.iloc[:1], tr=1.0, n_scans=5, stimuli=stimuli)  # type: ignore[attr-defined]
    assert f"videos={a}" in shlex.split(one.value.command) and "model=tiny_videomae" in one.value.command


def test_a_config_whose_entries_are_gone_still_gets_its_command(align_store: object, tmp_path: Path) -> None:
    store = store_mod.Store(tmp_path / "empty.zarr")
    store.ensure()
    cuid = store.ensure_config(align_store.run.embed)  # type: ignore[attr-defined]
    stimuli = _stimuli(align_store, tmp_path / "stimuli", ["bars"])
    events = pd.DataFrame({"onset": [0.0], "duration": [2.5], "stim_file": ["movie_bars.mp4"]})
    with pytest.raises(pa.MissingVideosError) as error:
        pa.align(store.path, cuid, events, tr=1.0, n_scans=4, stimuli=stimuli)
    words = shlex.split(error.value.command)
    assert words[3:5] == ["model=tiny_videomae", "frequency=4.0"] and words[-1] == f"store={store.path}"


def test_missing_stimulus_files_are_listed(align_store: object, tmp_path: Path) -> None:
    events = pd.DataFrame({"onset": [0.0, 5.0], "duration": [1.0, 1.0], "stim_file": ["gone.mp4", "also_gone.mp4"]})
    with pytest.raises(pa.StimulusFilesNotFoundError) as error:
        pa.align(align_store.store, align_store.config_uid, events, tr=1.0, n_scans=5, stimuli=tmp_path)  # type: ignore[attr-defined]
    assert set(error.value.missing) == {"gone.mp4", "also_gone.mp4"}
    with pytest.raises(ValueError, match="missing column"):
        pa.align(
            align_store.store,
            align_store.config_uid,
            events.drop(columns="duration"),
            tr=1.0,
            n_scans=5,
            stimuli=tmp_path,
        )  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="stimuli folder"):
        pa.align(align_store.store, align_store.config_uid, events, tr=1.0, n_scans=5)  # type: ignore[attr-defined]


def test_overlaps_are_refused_or_summed_and_a_meg_grid(align_store: object, tmp_path: Path) -> None:
    stimuli = _stimuli(align_store, tmp_path / "stimuli", ["orbit", "drift"])
    events = pd.DataFrame(
        {"onset": [1.0, 3.0], "duration": [4.0, 3.0], "stim_file": ["movie_orbit.mp4", "movie_drift.mp4"]}
    )
    args = dict(tr=1.0, n_scans=8, stimuli=stimuli)
    with pytest.raises(pa.OverlappingEventsError, match="2.000 s"):
        pa.align(align_store.store, align_store.config_uid, events, **args)  # type: ignore[attr-defined]
    summed = pa.align(align_store.store, align_store.config_uid, events, overlap="sum", **args)  # type: ignore[attr-defined]
    apart = [pa.align(align_store.store, align_store.config_uid, events.iloc[[i]], **args) for i in range(2)]  # type: ignore[attr-defined]
    np.testing.assert_allclose(summed.values, apart[0].values + apart[1].values, atol=1e-12)
    # MEG: 10 Hz rows of 0.1 s inside 4 Hz samples are the samples themselves
    meg = pa.align(
        align_store.store, align_store.config_uid, events.iloc[:1], frequency=10.0, duration=6.0, stimuli=stimuli
    )  # type: ignore[attr-defined]
    assert meg.shape == (60, 32)
    orbit = _stored(align_store, "orbit")
    np.testing.assert_allclose(meg.values[10], orbit[0], atol=1e-6)  # 1.0 s to 1.1 s: sample 0
    np.testing.assert_allclose(meg.values[13], orbit[1], atol=1e-6)  # 1.3 s to 1.4 s: sample 1 (1.25 s to 1.5 s)
    np.testing.assert_allclose(meg.values[12], 0.5 * (orbit[0] + orbit[1]), atol=1e-6)  # straddles both


_NO_TORCH = textwrap.dedent(
    """
    import sys, traceback, warnings
    import numpy as np, pandas as pd
    importers = []

    class Watch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" and not importers:
                importers.append([f.filename for f in traceback.extract_stack()])
            return None

    sys.meta_path.insert(0, Watch())
    import pipeline.align as pa
    import pipeline.align.bids, pipeline.align.cli, pipeline.align.export, pipeline.align.store_access
    from pathlib import Path
    folder = Path(sys.argv[1])
    (folder / "v.mp4").write_bytes(b"")
    source = pa.MemorySource({folder / "v.mp4": pa.Features(np.ones((40, 3)), frequency=8.0, duration=5.0)})
    events = pd.DataFrame({"onset": [2.0], "duration": [4.0], "stim_file": ["v.mp4"]})
    for hrf in ("spm", "none"):
        pa.align_features(source, events, pa.Grid.fmri(1.5, 20), stimuli=folder, hrf=hrf, zscore=True)
    pa.align_features(source, events, pa.Grid.fmri(1.5, 20), stimuli=folder, binning="lowpass", delays=[0, 3])
    assert "torch" not in sys.modules, importers
    if len(sys.argv) > 2:  # then from the store, which reads without torch as well
        pa.align(sys.argv[2], sys.argv[3], events, tr=1.5, n_scans=20, stimuli=sys.argv[4])
        assert "torch" not in sys.modules, importers
    print("ok")
    """
)


def test_alignment_never_imports_torch(align_store: object, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    pure = subprocess.run(
        [sys.executable, "-c", _NO_TORCH, str(tmp_path)], capture_output=True, text=True, env=env, timeout=300
    )
    assert pure.returncode == 0 and pure.stdout.strip() == "ok", pure.stderr[-3000:]
    stimuli = _stimuli(align_store, tmp_path / "stimuli", ["bars"])
    shutil.copy(stimuli / "movie_bars.mp4", stimuli / "v.mp4")
    cmd = [sys.executable, "-c", _NO_TORCH, str(tmp_path), str(align_store.store), align_store.config_uid, str(stimuli)]  # type: ignore[attr-defined]
    stored = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert stored.returncode == 0, stored.stderr[-3000:]
    assert stored.stdout.strip() == "ok", stored.stdout
