"""Compute once, reuse forever: layers chosen when reading, UIDs that follow the model's weights, exca UIDs."""

from __future__ import annotations

import json
import shutil
import typing as tp
from pathlib import Path

import numpy as np
import pytest

from pipeline import launch_config
from pipeline.embedding import aggregation
from pipeline.store import Store

from ..conftest import run_cli


def test_cached_layers_are_evenly_spaced_rounded_indices() -> None:
    assert aggregation.cached_layer_indices(3, 13) == [0, 6, 12]
    assert aggregation.cached_layer_indices(4, 5) == [0, 1, 3, 4]  # linspace 0, 1.33, 2.67, 4
    assert aggregation.cached_layer_indices(2, 13) == [0, 12]
    assert aggregation.cached_layer_indices(1, 13) == [0]
    assert aggregation.cached_layer_indices(20, 5) == [0, 1, 2, 3, 4]
    assert aggregation.cached_layer_indices("all", 5) == [0, 1, 2, 3, 4]


def test_layer_fields_leave_the_uid_with_cache_n_layers(make_run: tp.Any) -> None:
    base = make_run(cache_n_layers="all").embed.uid()
    assert make_run(cache_n_layers="all", layers=[0.25, 1.0], layer_aggregation="group_mean").embed.uid() == base
    assert make_run(cache_n_layers=3).embed.uid() != base
    assert make_run(cache_n_layers="all", token_aggregation="first").embed.uid() != base
    assert make_run(layers=0.5).embed.uid() != make_run(layers=1.0).embed.uid()


def test_uids_are_exca_readable_and_hide_the_model(make_run: tp.Any) -> None:
    assert make_run().embed.uid().startswith("videomae-") and len(make_run().embed.uid()) == len("videomae-") + 8
    uid = make_run(frequency=3.0, layers=0.5).embed.uid()
    readable, digest = uid.removeprefix("videomae-").rsplit("-", 1)
    assert readable == "frequency=3,layers=0.50" and len(digest) == 8
    assert make_run(frequency=3.0, layers=0.5, dtype="bfloat16").embed.uid().endswith(f"-{digest}") is False
    assert "tiny" not in uid and "/" not in uid
    assert make_run(layers=[0.25, 0.5]).embed.uid().startswith("videomae-layers=0.25,0.50-")  # no brackets


VIEWS = [
    (0.5, "mean"),
    ([0.25, 0.5, 1.0], "mean"),
    ([0.0, 0.5, 1.0], "group_mean"),
    ([0.0, 1.0], "none"),
    ("all", "sum"),
]


def test_cache_all_then_select_equals_computing_the_selection(
    make_run: tp.Any, sample_dir: Path, tmp_path: Path
) -> None:
    video = sample_dir / "bars_12fps.mp4"
    cached = make_run(videos=str(video), cache_n_layers="all")
    assert len(launch_config(cached).computed) == 1
    store = Store(cached.store)
    full = store.load(
        config=cached.embed.model_copy(update={"layers": "all", "layer_aggregation": "none"}), video=video
    )
    assert full.dims == ("time", "layer", "feature") and list(full["layer"].values) == [0, 1, 2, 3, 4]
    for layers, how in VIEWS:
        direct = make_run(videos=str(video), layers=layers, layer_aggregation=how)
        assert len(launch_config(direct).computed) == 1, (layers, how)
        want, want_attrs = store.load_numpy(config=direct.embed, video=video)
        view = cached.embed.model_copy(update={"layers": layers, "layer_aggregation": how})
        got, got_attrs = store.load_numpy(config=view, video=video)
        np.testing.assert_array_equal(got, want, err_msg=f"layers={layers} layer_aggregation={how}")
        assert got_attrs["layer_indices"] == want_attrs["layer_indices"]
        # the same view by keywords on the cached entry's UID, and through xarray
        uid = f"{cached.embed.uid()}/{Path(store.resolve(config=direct.embed, video=video)).name}"
        by_uid, _ = store.load_numpy(uid, layers=layers, layer_aggregation=how)
        np.testing.assert_array_equal(by_uid, want)
        assert (
            store.load(uid, layers=layers, layer_aggregation=how).dims
            == store.load(config=direct.embed, video=video).dims
        )
    assert len(launch_config(cached.model_copy(update={"embed": view})).cached) == 1  # another view: nothing computed
    with pytest.raises(ValueError, match="cache_n_layers"):
        store.load_numpy(config=direct.embed, video=video, layers=0.5)


def test_cache_n_layers_picks_among_the_cached_layers(make_run: tp.Any, sample_dir: Path) -> None:
    video = sample_dir / "bars_12fps.mp4"
    run = make_run(videos=str(video), cache_n_layers=3, layers=1.0, layer_aggregation="mean")
    launch_config(run)
    store = Store(run.store)
    every = store.load(f"{run.embed.uid()}/{Path(store.resolve(config=run.embed, video=video)).name}")
    assert list(every["layer"].values) == [0, 2, 4]  # linspace(0, 4, 3): 5 hidden states, 3 cached
    last = store.load(config=run.embed, video=video)
    np.testing.assert_array_equal(last.values, every.sel(layer=4).values)
    middle = store.load(config=run.embed, video=video, layers=0.5)
    np.testing.assert_array_equal(middle.values, every.sel(layer=2).values)
    window = store.load(config=run.embed, video=video, layers=[0.0, 1.0], layer_aggregation="none", start=1, stop=2)
    assert window.dims == ("time", "layer", "feature") and list(window["layer"].values) == [0, 4]
    assert np.all((window["time"].values >= 1) & (window["time"].values < 2)) and window.sizes["time"] == 2


def test_a_sweep_over_layers_computes_each_video_once(sample_dir: Path, models_dir: Path, tmp_path: Path) -> None:
    store = tmp_path / "store.zarr"
    args = [
        "-m",
        "layers=0.25,0.5,1.0",
        "cache_n_layers=all",
        f"videos={sample_dir}",
        f"store={store}",
        f"models_dir={models_dir}",
        "device=cpu",
        "executor=local",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    ]
    res = run_cli(*args)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("is computed by an earlier point") == 2
    assert len(job_lines := [ln for ln in res.stdout.splitlines() if ln.startswith("submitted")]) == 1, job_lines
    table = res.stdout[res.stdout.index("sweep: 3 point(s)") :].splitlines()[3:6]
    assert [row.split()[-4:] for row in table] == [["3", "0", "0", "0"], ["0", "3", "0", "0"], ["0", "3", "0", "0"]]
    assert len(Store(store).config_uids()) == 1


def _copy_model(models_dir: Path, folder: Path) -> Path:
    target = folder / "tiny-videomae"
    shutil.copytree(models_dir / "tiny-videomae", target)
    return target


def _flip_a_weight_byte(model_folder: Path) -> None:
    weights = model_folder / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    size = int.from_bytes(raw[:8], "little")
    tensors = json.loads(raw[8 : 8 + size])
    name = next(k for k in sorted(tensors) if "layer.0." in k and k.endswith("dense.weight"))
    begin = 8 + size + tensors[name]["data_offsets"][0]
    raw[begin + 3] ^= 0x40  # the exponent byte of the first float32 of a first-layer weight
    weights.write_bytes(bytes(raw))


def test_a_changed_weight_byte_is_a_miss_and_a_renamed_folder_a_hit(
    make_run: tp.Any, models_dir: Path, sample_dir: Path, tmp_path: Path
) -> None:
    video = sample_dir / "bars_12fps.mp4"
    _copy_model(models_dir, tmp_path / "models_a")
    first = launch_config(make_run(videos=str(video), models_dir=str(tmp_path / "models_a")))
    assert len(first.computed) == 1
    (tmp_path / "models_a").rename(tmp_path / "models_b")
    moved = launch_config(make_run(videos=str(video), models_dir=str(tmp_path / "models_b")))
    assert moved.cached and not moved.computed and moved.config_uid == first.config_uid
    _flip_a_weight_byte(tmp_path / "models_b" / "tiny-videomae")
    changed = launch_config(make_run(videos=str(video), models_dir=str(tmp_path / "models_b")))
    assert len(changed.computed) == 1 and changed.config_uid != first.config_uid
    store = Store(make_run().store)
    assert sorted(store.config_uids()) == sorted([first.config_uid, changed.config_uid])
    old = store.load_numpy(config=first.config_uid, video=video)[0]
    new = store.load_numpy(config=changed.config_uid, video=video)[0]
    assert not np.array_equal(old, new)
    # a reader with the name but no weights: two versions stored, so it must say which
    unresolved = make_run().embed.model_copy(
        update={"model": make_run().embed.model.model_copy(update={"identity": None})}
    )
    with pytest.raises(KeyError, match="2 versions"):
        store.load_numpy(config=unresolved, video=video)


def test_a_reader_finds_a_config_by_model_name_without_the_weights(make_run: tp.Any, sample_dir: Path) -> None:
    video = sample_dir / "bars_12fps.mp4"
    run = make_run(videos=str(video), frequency=3.0)
    launch_config(run)
    fields = {"model": {"name": "tiny-videomae", "family": "videomae", "tiny": True}, "frequency": 3.0}
    store = Store(run.store)
    np.testing.assert_array_equal(
        store.load_numpy(config=fields, video=video)[0], store.load_numpy(config=run.embed, video=video)[0]
    )
    with pytest.raises(KeyError, match="no config"):
        store.load_numpy(config={**fields, "frequency": 4.0}, video=video)


def _fake_hub_snapshot(hub: Path, source: Path, repo: str, commit: str) -> None:
    """A Hugging Face cache entry as ``from_pretrained`` leaves it: ``snapshots/<commit>`` and ``refs/main``."""
    folder = hub / f"models--{repo.replace('/', '--')}"
    shutil.copytree(source, folder / "snapshots" / commit)
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(commit)


def test_a_hub_model_is_named_by_the_content_of_what_loads(models_dir: Path, sample_dir: Path, tmp_path: Path) -> None:
    """Offline, from the Hugging Face cache: an upstream commit that adds only a README keeps the UID (the
    store records both commits the jobs loaded); a commit that changes the weights gives a new UID, whose
    jobs load the new snapshot."""
    hub = tmp_path / "hub"
    first, readme, weights = "1" * 40, "2" * 40, "3" * 40
    _fake_hub_snapshot(hub, models_dir / "tiny-videomae", "lab/videomae-small", first)
    store = tmp_path / "store.zarr"
    args = [
        "model=videomae",
        "model.name=lab/videomae-small",
        f"videos={sample_dir / 'bars_12fps.mp4'}",
        f"store={store}",
        "device=cpu",
        "executor=debug",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    env = {"HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1"}
    res = run_cli(*args, env=env)
    assert res.returncode == 0 and "computed 1" in res.stdout, res.stdout + res.stderr
    (uid_first,) = Store(store).config_uids()
    assert Store(store).config(uid_first)["model"].startswith("content-")
    _fake_hub_snapshot(hub, models_dir / "tiny-videomae", "lab/videomae-small", readme)
    (hub / "models--lab--videomae-small" / "snapshots" / readme / "README.md").write_text("# now with a card\n")
    res = run_cli(*args, env=env)
    assert res.returncode == 0 and "computed 0" in res.stdout, res.stdout + res.stderr
    assert Store(store).config_uids() == [uid_first]
    assert Store(store).config_attrs(uid_first)["model_commits"] == [first]  # what jobs loaded
    _fake_hub_snapshot(hub, models_dir / "tiny-videomae", "lab/videomae-small", weights)
    _flip_a_weight_byte(hub / "models--lab--videomae-small" / "snapshots" / weights)
    res = run_cli(*args, env=env)
    assert res.returncode == 0 and "computed 1" in res.stdout, res.stdout + res.stderr
    (uid_second,) = set(Store(store).config_uids()) - {uid_first}
    entry = Store(store).entries(uid_second)[0]
    assert Store(store).config_attrs(uid_second)["model_commits"] == [weights]
    a = Store(store).load_numpy(f"{uid_first}/{entry.video_hash}")[0]
    assert not np.array_equal(a, Store(store).load_numpy(entry.uid)[0])  # the worker loaded the new snapshot
