"""The packed store: segments written whole by one writer, manifests, the Parquet index, windows, gc of
garbage rows, xarray's own reader, and the conversion of a store written by pipeline 0.2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import typing as tp
from pathlib import Path

import numpy as np
import pytest
import zarr

from pipeline.store import OldLayoutError, Store
from pipeline.store import open as open_store
from pipeline.tools import collect, convert

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "store-0.2.0"
FIXTURE_03 = FIXTURE.with_name("store-0.3.0")
"""Written by pipeline 0.3 (layout 4): a launch's three videos in its index, a fourth video named by two
manifests (the first published holds it); ``store-0.3.0.expected.json`` has each entry's digest."""


def _attrs(i: int, steps: int) -> dict[str, tp.Any]:
    return {
        "times": [k / 2 for k in range(steps)],
        "video_path": f"/v/{i}.mp4",
        "model": "m",
        "frequency": 2.0,
        "duration": steps / 2,
        "layer_indices": [3, 7],
        "config": {"layer_aggregation": "none", "token_aggregation": "mean"},
        "job_id": "7_1",
    }


def test_a_writer_packs_entries_into_one_segment_read_by_window(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.zarr")
    store.ensure()
    rng = np.random.default_rng(0)
    data = {i: rng.standard_normal((2, 5, 300 + 100 * i), dtype=np.float32) for i in range(4)}
    out = store.writer("cfg")
    for i, d in data.items():
        out.add(f"{i:032x}", d, _attrs(i, d.shape[-1]))
    assert not store.entries("cfg")  # nothing visible before the flush
    assert store.flush(out) == {f"{i:032x}": True for i in data}
    [segment] = {store.locate(e.uid)["segment"] for e in store.entries("cfg")}
    array = zarr.open_array(str(tmp_path / "s.zarr" / "cfg" / segment / "embedding"), mode="r")
    assert array.shape == (sum(d.shape[-1] for d in data.values()), 2, 5)
    assert array.chunks[0] == 256 and array.shards is not None and array.shards[0] >= array.shape[0]
    assert array.metadata.dimension_names == ("row", "layer", "feature")
    for i, d in data.items():
        whole, attrs = store.load_numpy(f"cfg/{i:032x}")
        np.testing.assert_array_equal(whole, d)
        assert attrs["times"] == [k / 2 for k in range(d.shape[-1])] and attrs["video_path"] == f"/v/{i}.mp4"
        assert attrs["job_id"] == "7_1" and attrs["layer_indices"] == [3, 7]
        window, wattrs = store.load_numpy(f"cfg/{i:032x}", start=100.0, stop=130.5)
        np.testing.assert_array_equal(window, d[..., 200:261])
        assert wattrs["times"][0] == 100.0 and wattrs["times"][-1] == 130.0
    da = store.load(f"cfg/{3:032x}", start=10, stop=11)
    assert da.dims == ("time", "layer", "feature") and da.coords["layer"].values.tolist() == [3, 7]


def test_first_published_wins_and_gc_drops_the_losers_rows(tmp_path: Path, make_run: tp.Any) -> None:
    store = Store(tmp_path / "s.zarr")
    store.ensure()
    cfg = store.ensure_config(make_run().embed)
    first, second = store.writer(cfg), store.writer(cfg)
    first.add("a" * 32, np.ones((3, 4), np.float32), _attrs(0, 4))
    second.add("a" * 32, np.zeros((3, 4), np.float32), _attrs(0, 4))
    second.add("b" * 32, np.zeros((3, 4), np.float32), _attrs(1, 4))
    assert store.flush(first) == {"a" * 32: True}
    # the second writer sees the entry already published and keeps only what is new
    assert store.flush(second) == {"a" * 32: False, "b" * 32: True}
    np.testing.assert_array_equal(store.load_numpy(f"{cfg}/" + "a" * 32)[0], np.ones((3, 4)))
    # two writers that both commit (a lapsed lease taken over at the same instant): the first commit wins,
    # and the late writer is told its video was not written by it
    late = store.writer(cfg)
    late.catalog = type(late.catalog)(late.catalog.config_dir)
    late.catalog.contains = lambda h: False  # type: ignore[method-assign]  # it did not see the other commit
    late.add("a" * 32, np.full((3, 4), 5, np.float32), _attrs(0, 4))
    assert late.flush() == {"a" * 32: False}
    catalog = store.catalog(cfg)
    catalog.refresh()
    late_segment = catalog.commits[catalog.tip].segments[0]
    for reader in (store, Store(store.path)):
        np.testing.assert_array_equal(reader.load_numpy(f"{cfg}/" + "a" * 32)[0], np.ones((3, 4)))
    assert store.compact(cfg) == 3
    np.testing.assert_array_equal(Store(store.path).load_numpy(f"{cfg}/" + "a" * 32)[0], np.ones((3, 4)))
    segments = [p for p in (store.path / cfg).iterdir() if not p.name.startswith("_") and p.is_dir()]
    assert len(segments) == 3
    # a writer still open keeps its unnamed segment: it may be about to commit it
    assert not [r for r in collect.find_removals(store, None) if "segment no entry names" in r.reason]
    for writer in (first, second, late):
        writer.close()
    removals = collect.find_removals(store, None)
    garbage = [r.path for r in removals if "segment no entry names" in r.reason]
    assert [p.name for p in garbage] == [late_segment]
    collect.apply(store, removals)
    assert len(Store(store.path).entries(cfg)) == 2
    for h, value in (("a", 1), ("b", 0)):
        np.testing.assert_array_equal(Store(store.path).load_numpy(f"{cfg}/{h * 32}")[0], np.full((3, 4), value))


def test_a_killed_writer_leaves_nothing_visible(tmp_path: Path) -> None:
    """A segment renamed into place whose commit was never published (the writer killed in between)
    is no entry; a staged one is not even in the tree."""
    store = Store(tmp_path / "s.zarr")
    store.ensure()
    out = store.writer("cfg")
    out.add("c" * 32, np.ones((2, 3), np.float32), _attrs(0, 3))
    store.flush(out)
    commit = next((store.path / "cfg" / "_log").glob("*.parquet"))
    commit.unlink()
    assert not Store(store.path).has("cfg", "c" * 32) and not Store(store.path).entries("cfg")
    with pytest.raises(KeyError, match="no entry"):
        Store(store.path).load_numpy("cfg/" + "c" * 32)


def test_xarray_opens_the_store_without_our_package(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.zarr")
    store.ensure()
    out = store.writer("cfg")
    rng = np.random.default_rng(1)
    data = {i: rng.standard_normal((2, 5, 6 + i), dtype=np.float32) for i in range(3)}
    for i, d in data.items():
        out.add(f"{i:032x}", d, _attrs(i, d.shape[-1]))
    store.flush(out)
    store.compact("cfg")
    script = f"""
import glob, sys, warnings
sys.modules["pipeline"] = None  # this reader must not need our package
import pandas as pd, xarray as xr
warnings.simplefilter("ignore")
tree = xr.open_datatree({str(store.path)!r}, engine="zarr", consolidated=False)
index = pd.read_parquet(sorted(glob.glob({str(store.path / "cfg" / "_checkpoints" / "*.parquet")!r}))[-1])
row = index.set_index("video_hash").loc["{2:032x}"]
rows = tree["cfg"][row.segment].to_dataset().isel(row=slice(row.first_row, row.first_row + row.rows))
print(rows.embedding.dims, rows.time.values.tolist(), set(rows.video.values.tolist()), rows.layer.values.tolist())
print(float(rows.embedding.values.sum()))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    dims, total = done.stdout.strip().splitlines()
    assert dims == f"('row', 'layer', 'feature') {[k / 2 for k in range(8)]} {{'{2:032x}'}} [3, 7]"
    assert float(total) == pytest.approx(float(data[2].sum()), rel=1e-5)


def test_a_store_written_by_0_2_is_refused_then_converted_losing_nothing(tmp_path: Path) -> None:
    path = tmp_path / "old.zarr"
    shutil.copytree(FIXTURE, path)
    before: dict[str, tuple[np.ndarray, dict[str, tp.Any]]] = {}
    for config in sorted(p for p in path.iterdir() if not p.name.startswith("_") and p.is_dir()):
        for entry in convert.legacy_entries(config):
            array = zarr.open_array(str(entry), mode="r")
            before[f"{config.name}/{entry.name}"] = (np.asarray(array[...]), dict(array.attrs))
    assert len(before) == 6
    launches = {p.name: json.loads(p.read_text()) for p in path.glob("*/_launches/*.json")}
    with pytest.raises(OldLayoutError, match="pipeline.convert"):
        open_store(path)
    refused = subprocess.run([sys.executable, "-m", "pipeline.status", f"store={path}"], capture_output=True, text=True)
    assert refused.returncode == 2 and f"-m pipeline.convert store={path}" in refused.stderr
    done = subprocess.run([sys.executable, "-m", "pipeline.convert", f"store={path}"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "6 entries converted to layout 5" in done.stdout
    store = open_store(path)
    assert {e.uid for e in store.entries()} == set(before)
    for uid, (data, attrs) in before.items():
        got, got_attrs = store.load_numpy(uid)
        assert got.dtype == data.dtype
        np.testing.assert_array_equal(got, data)
        assert got_attrs == {**attrs, "video_hash": uid.split("/")[1]}
    for cuid in store.config_uids():
        for launch_id, record in store.launches(cuid).items():
            old = launches[f"{launch_id}.json"]
            assert record["videos"] == old["videos"] and record["command"] == old["command"]
    assert not (path / "_index").exists() and (path / "_caches" / "hashes.parquet").exists()
    again = subprocess.run([sys.executable, "-m", "pipeline.convert", f"store={path}"], capture_output=True, text=True)
    assert again.returncode == 0 and "nothing to convert" in again.stdout
    assert not [p for p in path.rglob("c/0/0")], "an old entry folder was left"
    assert os.path.isdir(path)


def test_a_store_written_by_0_3_is_refused_then_converted_by_one_command(tmp_path: Path) -> None:
    """Layout 4's index and manifests become the log's first commit and a checkpoint: the same entries,
    the same numbers (the first manifest naming a video still holds it), no segment rewritten."""
    import hashlib

    path = tmp_path / "old.zarr"
    shutil.copytree(FIXTURE_03, path)
    expected = json.loads(FIXTURE_03.with_name("store-0.3.0.expected.json").read_text())
    segments = sorted(p.name for p in path.glob("*/s*") if p.is_dir())
    with pytest.raises(OldLayoutError, match="manifests, pipeline 0.3.*pipeline.convert"):
        open_store(path)
    done = subprocess.run([sys.executable, "-m", "pipeline.convert", f"store={path}"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "4 entries of its index and manifests now in its log" in done.stdout
    store = open_store(path)
    got = {}
    for entry in store.entries():
        data, attrs = store.load_numpy(entry.uid)
        digest = hashlib.sha256(np.ascontiguousarray(data).tobytes()).hexdigest()
        got[entry.uid] = {"sha256": digest, "shape": list(data.shape), "video_path": attrs["video_path"]}
    assert got == expected
    [cuid] = store.config_uids()
    assert sorted(p.name for p in path.glob("*/s*") if p.is_dir()) == segments
    assert not (path / cuid / "_index.parquet").exists() and not (path / cuid / "_manifests").exists()
    assert [p.name for p in (path / cuid / "_checkpoints").iterdir()] == ["00000000000000000001.parquet"]
    again = subprocess.run([sys.executable, "-m", "pipeline.convert", f"store={path}"], capture_output=True, text=True)
    assert again.returncode == 0 and "nothing to convert" in again.stdout
    # the losing manifest's segment is no entry's: gc takes it (its 0.3 writer had no record)
    named = set(store.catalog(cuid).rows_by_segment())
    loser = [s for s in segments if s not in named]
    assert len(loser) == 1
    removals = collect.find_removals(store, None, now=time.time() + 2 * collect.STAGING_AGE_S)
    assert [r.path.name for r in removals if "segment no entry names" in r.reason] == loser
