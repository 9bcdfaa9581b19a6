"""Downstream tools on a real store: status, inspect, report, gc, the per-config index, the encoding example."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import typing as tp
from pathlib import Path

import numpy as np
import pytest

from pipeline import launch_config
from pipeline.store import Store, content_hash
from pipeline.tools import collect as gc
from pipeline.tools import inspection as inspect
from pipeline.tools import report, status

from ..conftest import REPO


@pytest.fixture
def built(make_run: tp.Any, sample_dir: Path, tmp_path: Path) -> tuple[Store, str, str, Path]:
    """A store with two configs: A holds the three sample videos and one failure, B holds them at 4 Hz."""
    videos = tmp_path / "videos"
    shutil.copytree(sample_dir, videos)
    (videos / "broken.mp4").write_bytes(b"not a video at all")
    summary_a = launch_config(make_run(videos=str(videos)))
    assert len(summary_a.computed) == 3 and len(summary_a.failed) == 1
    (videos / "broken.mp4").unlink()
    summary_b = launch_config(make_run(videos=str(videos), frequency=4.0))
    assert len(summary_b.computed) == 3
    return Store(tmp_path / "store.zarr"), summary_a.config_uid, summary_b.config_uid, videos


def _main(module: tp.Any, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = module.main(list(args))
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_status_counts_done_failed_pending_and_bytes(built: tp.Any, capsys: pytest.CaptureFixture[str]) -> None:
    store, uid_a, uid_b, _ = built
    code, out, _ = _main(status, f"store={store.path}", "--json", capsys=capsys)
    assert code == 0
    rows = {r["config_uid"]: r for r in json.loads(out)["configs"]}
    assert set(rows) == {uid_a, uid_b}
    assert (rows[uid_a]["done"], rows[uid_a]["failed"], rows[uid_a]["pending"]) == (3, 1, 0)
    assert (rows[uid_b]["done"], rows[uid_b]["failed"], rows[uid_b]["pending"]) == (3, 0, 0)
    assert rows[uid_a]["frequency"] == 2.0 and rows[uid_b]["frequency"] == 4.0
    assert rows[uid_a]["bytes"] > 3 * 1000
    code, out, _ = _main(status, f"store={store.path}", f"config={uid_a}", "--videos", capsys=capsys)
    assert code == 0
    assert re.search(rf"{uid_a}\s+tiny-videomae\s+.*frequency=2\s.*\s4\s+3\s+1\s+0\s+0\s+0\s+\d", out), out
    states = [line.split()[1] for line in out.splitlines() if line.startswith(f"  {uid_a}/")]
    assert sorted(states) == ["done", "done", "done", "failed"]
    failed_line = next(line for line in out.splitlines() if line.startswith(f"  {uid_a}/") and " failed " in line)
    assert "VideoError" in failed_line and "broken.mp4" in failed_line and "cannot open as a video" in failed_line
    code, _, err = _main(status, f"store={store.path}", "config=nope", capsys=capsys)
    assert code == 2 and "'nope' is not in" in err
    code, _, err = _main(status, f"store={store.path / 'missing'}", capsys=capsys)
    assert code == 2 and "no pipeline store" in err
    code, _, err = _main(status, f"store={store.path}", "--verbose", capsys=capsys)
    assert code == 2 and "unknown option --verbose" in err


def test_status_counts_videos_a_running_launch_asked_for_as_pending(
    make_run: tp.Any, sample_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = make_run(dry_run=False)
    store = Store(run.store)
    store.ensure()
    cuid = store.ensure_config(run.embed)
    videos = {content_hash(p): str(p) for p in sorted(sample_dir.glob("*.mp4"))}
    store.write_queue(cuid, "launch-1", [(p, h) for h, p in videos.items()])
    store.record_launch(cuid, "launch-1", len(videos), ["DEBUG_1"], executor="debug")  # its launcher: this process
    row = status.config_status(store, cuid, videos=True)
    assert (row["total"], row["done"], row["pending"], row["stopped"]) == (3, 0, 3, 0)
    assert {v["state"] for v in row["videos"]} == {"pending"}
    assert {v["video_path"] for v in row["videos"]} == set(videos.values())


def test_inspect_finds_entries_by_uid_config_hash_and_file(built: tp.Any, capsys: pytest.CaptureFixture[str]) -> None:
    store, uid_a, uid_b, videos = built
    video = videos / "drift_25fps.mp4"
    vhash = content_hash(video)
    code, out, _ = _main(inspect, f"store={store.path}", f"{uid_a}/{vhash}", "--json", capsys=capsys)
    assert code == 0
    [detail] = json.loads(out)
    data, _ = store.load_numpy(f"{uid_a}/{vhash}")
    assert detail["shape"] == list(data.shape[::-1]) and detail["dims"] == ["time", "feature"]  # as load() gives it
    assert detail["n_times"] == data.shape[-1] == 6
    assert detail["shards"] is not None and detail["video_path"] == str(video)
    assert detail["time_range_s"] == pytest.approx([0.0, 2.5])
    code, out, _ = _main(inspect, f"store={store.path}", str(video), capsys=capsys)
    assert code == 0 and out.count("entry ") == 2 and uid_a in out and uid_b in out
    code, out, _ = _main(inspect, f"store={store.path}", vhash, "--json", capsys=capsys)
    assert {d["uid"] for d in json.loads(out)} == {f"{uid_a}/{vhash}", f"{uid_b}/{vhash}"}
    code, out, _ = _main(inspect, f"store={store.path}", uid_b, capsys=capsys)
    assert code == 0 and f"config {uid_b}: 3 entries" in out
    code, _, err = _main(inspect, f"store={store.path}", "0" * 32, capsys=capsys)
    assert code == 2 and "no entry" in err
    code, _, err = _main(inspect, f"store={store.path}", str(videos / "no_such_video.mp4"), capsys=capsys)
    assert code == 2 and "no_such_video.mp4: no such file" in err


def test_report_draws_a_picture_per_config(built: tp.Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    store, uid_a, uid_b, _ = built
    out_dir = tmp_path / "report"
    code, out, _ = _main(report, f"store={store.path}", f"out={out_dir}", capsys=capsys)
    assert code == 0
    for uid in (uid_a, uid_b):
        picture = np.asarray(Image.open(out_dir / f"{uid}.png").convert("RGB"), dtype=np.float64)
        assert picture.shape[0] > 300 and picture.shape[1] > 1000
        # heat-maps and a similarity matrix: many distinct colours, not a blank canvas
        assert len(np.unique(picture.reshape(-1, 3), axis=0)) > 500
        assert picture.std() > 20
    page = (out_dir / "index.html").read_text()
    assert f'src="{uid_a}.png"' in page and f'src="{uid_b}.png"' in page


def test_similarity_and_zscore_are_right() -> None:
    data = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]])
    sim = report.similarity(data)
    assert sim[0, 2] == pytest.approx(1.0) and sim[0, 1] == pytest.approx(0.0) and np.allclose(np.diag(sim), 1)
    z = report.zscore_time(data)
    assert np.allclose(z.mean(1), 0) and np.allclose(z.std(1), 1)


def _tree(path: Path) -> dict[str, float]:
    return {str(p.relative_to(path)): p.stat().st_mtime for p in path.rglob("*")}


def test_gc_dry_run_touches_nothing_and_apply_removes_only_what_it_listed(
    built: tp.Any, capsys: pytest.CaptureFixture[str]
) -> None:
    store, uid_a, uid_b, _ = built
    kept = {e.uid: store.load_numpy(e.uid)[0] for e in store.entries(uid_a)}
    old_stage = store.path / "_staging" / "x-killed-mid-write"
    new_stage = store.path / "_staging" / "y-being-written-now"
    for folder in (old_stage, new_stage):
        folder.mkdir(parents=True)
        (folder / "c").write_bytes(b"\0" * 100)
    os.utime(old_stage, (time.time() - 7200, time.time() - 7200))
    before = _tree(store.path)

    code, out, _ = _main(gc, f"store={store.path}", f"keep={uid_a}", capsys=capsys)
    assert code == 0 and "dry run, nothing removed" in out
    assert "would remove" in out and uid_b in out and "x-killed-mid-write" in out
    removing = "\n".join(line for line in out.splitlines() if "would remove" in line)
    assert "y-being-written-now" not in removing and f"{uid_a} " not in removing
    assert "kept _staging/y-being-written-now (unfinished write): 0.0 h old" in out
    assert _tree(store.path) == before

    code, out, _ = _main(gc, f"store={store.path}", f"keep={uid_a}", "--apply", capsys=capsys)
    assert code == 0 and "freed" in out
    assert store.config_uids() == [uid_a] and not old_stage.exists() and new_stage.exists()
    assert (store.path / "_jobs" / uid_a).is_dir() and not (store.path / "_jobs" / uid_b).exists()
    assert not (store.path / "_trash").exists()
    for uid, data in kept.items():
        np.testing.assert_array_equal(store.load_numpy(uid)[0], data)
    code, out, _ = _main(gc, f"store={store.path}", f"keep={uid_a}", capsys=capsys)
    assert "nothing to remove" in out
    code, _, err = _main(gc, f"store={store.path}", "keep=deadbeef", capsys=capsys)
    assert code == 2 and "deadbeef not in" in err


def test_failures_of_files_gone_are_listed_apart_shown_by_inspect_and_forgotten_by_gc(
    built: tp.Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Config A recorded broken.mp4's failure, then the file was deleted: status says so apart, inspect of
    its hash shows the failure, and gc forgets it (dry run first), so that a launch would try it again."""
    store, uid_a, _, videos = built
    (tmp_path / "again.mp4").write_bytes(b"not a video at all")  # the deleted file's bytes: its hash
    vhash = content_hash(tmp_path / "again.mp4")
    code, out, _ = _main(status, f"store={store.path}", "--videos", capsys=capsys)
    assert code == 0 and f"failed, files gone: {uid_a} has 1 recorded failure(s)" in out
    assert "(the file no longer exists)" in out and "forget=gone --apply" in out
    code, _, err = _main(inspect, f"store={store.path}", vhash, capsys=capsys)
    assert code == 2 and f"failed under {uid_a}: VideoError" in err
    code, _, err = _main(inspect, f"store={store.path}", str(tmp_path / "again.mp4"), capsys=capsys)
    assert code == 2 and f"failed under {uid_a}: VideoError" in err  # a file with the same bytes: the same video
    code, out, _ = _main(gc, f"store={store.path}", "forget=gone", capsys=capsys)
    assert code == 0 and "would remove" in out and f"recorded failure of {videos / 'broken.mp4'}" in out
    assert vhash in store.failures(uid_a)
    code, out, _ = _main(gc, f"store={store.path}", "forget=gone", "--apply", capsys=capsys)
    assert code == 0 and not store.failures(uid_a)
    assert len(store.entries(uid_a)) == 3  # nothing else went
    code, out, _ = _main(status, f"store={store.path}", capsys=capsys)
    assert "files gone" not in out


def test_gc_removes_configs_of_an_older_output_format(built: tp.Any, capsys: pytest.CaptureFixture[str]) -> None:
    store, uid_a, uid_b, _ = built
    meta_path = store.path / uid_b / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["config"]["format_version"] = 0
    meta_path.write_text(json.dumps(meta))
    code, out, _ = _main(status, f"store={store.path}", capsys=capsys)
    assert code == 0 and f"stale: {uid_b} has output format 0" in out and f"stale: {uid_a}" not in out
    removals = gc.find_removals(store, keep=None)
    assert removals[0].path == store.path / uid_b and "output format 0" in removals[0].reason
    assert removals[1:] and all(r.path.parent == store.path / "_jobs" / uid_b for r in removals[1:])  # its jobs'
    gc.apply(store, removals)
    assert store.config_uids() == [uid_a] and len(store.entries(uid_a)) == 3
    assert not (store.path / "_jobs" / uid_b).exists()


def test_an_image_config_of_format_3_is_stale_a_video_one_is_not(
    built: tp.Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Image models' output format is 4 (a step past the end of the stream: the video's last frame), video
    models' stays 3: only image configs written before it are stale."""
    store, uid_a, uid_b, _ = built
    meta_path = store.path / uid_b / "zarr.json"
    meta = json.loads(meta_path.read_text())
    assert meta["attributes"]["config"]["format_version"] == 3
    meta["attributes"]["config"]["family"] = "image"
    meta_path.write_text(json.dumps(meta))
    code, out, _ = _main(status, f"store={store.path}", capsys=capsys)
    assert code == 0 and f"stale: {uid_b} has output format 3 (current 4)" in out and f"stale: {uid_a}" not in out
    removals = gc.find_removals(store, keep=None)
    assert removals[0].path == store.path / uid_b and all(uid_b in str(r.path) for r in removals)


def test_gc_removes_leases_of_stored_videos_and_old_lapsed_ones(built: tp.Any) -> None:
    store, uid_a, _, _ = built
    done = sorted(store.done_hashes(uid_a))
    leases = store.leases(uid_a)
    leases.mkdir(exist_ok=True)
    record = {"owner": {"host": "elsewhere", "pid": 1, "job_id": "9_9"}, "attempt": 1}
    for name in (done[0], "f" * 32, "e" * 32):
        (leases / f"{name}.json").write_text(json.dumps(record))
    day_old = time.time() - 2 * 86400
    os.utime(leases / f"{'f' * 32}.json", (day_old, day_old))
    removed = {r.path.name for r in gc.find_removals(store, keep=None)}
    assert removed == {f"{done[0]}.json", f"{'f' * 32}.json"}


def test_index_follows_writes_compactions_and_removals(tmp_path: Path, make_run: tp.Any) -> None:
    store = Store(tmp_path / "s.zarr")
    store.ensure()
    cuid = store.ensure_config(make_run().embed)
    rng = np.random.default_rng(0)
    written: dict[int, np.ndarray] = {}

    def put(i: int) -> None:
        attrs = {"times": [0.5, 1.0], "model": "m", "video_path": f"/v/{i}.mp4", "frequency": 2.0, "duration": 1.0}
        written[i] = rng.standard_normal((4, 2), dtype=np.float32)
        assert store.write(cuid, f"{i:032x}", written[i], attrs)

    for i in range(5):
        put(i)
    log, checkpoints = store.path / cuid / "_log", store.path / cuid / "_checkpoints"
    assert not checkpoints.exists() and len(list(log.glob("*.parquet"))) == 5
    first = store.entries(cuid)
    assert [e.video_hash for e in first] == [f"{i:032x}" for i in range(5)]
    assert first[0].shape == (4, 2) and first[0].video_path == "/v/0.mp4"
    assert list(store.entries(cuid)) == list(first)
    assert store.compact(cuid) == 5 and [p.name for p in checkpoints.iterdir()] == [f"{5:020d}.parquet"]
    assert len(list(log.glob("*.parquet"))) == 5  # kept: no older checkpoint to fall back on yet
    assert list(Store(store.path).entries(cuid)) == list(first)  # a fresh reader: the checkpoint
    put(5)
    assert len(store.entries(cuid)) == 6 and len(list(log.glob("*.parquet"))) == 6  # checkpoint + 1 commit
    store.remove_entries(cuid, [f"{2:032x}"])  # a tombstone: commit 7
    assert [e.video_hash for e in Store(store.path).entries(cuid)] == [f"{i:032x}" for i in (0, 1, 3, 4, 5)]
    assert store.compact(cuid, grace_s=0) == 2
    assert sorted(p.name for p in log.glob("*.parquet")) == [f"{n:020d}.parquet" for n in (6, 7)]
    assert sorted(p.name for p in checkpoints.iterdir()) == [f"{n:020d}.parquet" for n in (5, 7)]
    for i in (0, 1, 3, 4, 5):
        np.testing.assert_array_equal(Store(store.path).load_numpy(f"{cuid}/{i:032x}")[0], written[i])
    with pytest.raises(KeyError, match="no entry"):
        store.load_numpy(f"{cuid}/{2:032x}")


def test_entries_are_packed_into_segments_of_a_few_files(built: tp.Any) -> None:
    store, uid_a, _, _ = built
    segments = {e["segment"] for e in (store.locate(entry.uid) for entry in store.entries(uid_a))}
    assert len(segments) == 1  # one job: its three videos in one segment
    [segment] = segments
    files = sorted(
        str(p.relative_to(store.path / uid_a / segment))
        for p in (store.path / uid_a / segment).rglob("*")
        if p.is_file()
    )
    assert files == [
        "embedding/c.0.0",
        "embedding/zarr.json",
        "time/c.0",
        "time/zarr.json",
        "video/c.0",
        "video/zarr.json",
        "zarr.json",
    ], files


@pytest.mark.slow
def test_encoding_example_reuses_the_cache_by_config(models_dir: Path, sample_dir: Path, tmp_path: Path) -> None:
    store = tmp_path / "enc.zarr"
    cmd = [
        sys.executable,
        str(REPO / "examples" / "encoding.py"),
        f"videos={sample_dir}",
        f"store={store}",
        f"models_dir={models_dir}",
        "executor=debug",
        "device=cpu",
    ]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "computed 3 of 3 videos, reused 0" in first.stdout
    r = float(first.stdout.strip().splitlines()[-1].rsplit(" ", 1)[1])
    assert r > 0.3, first.stdout
    mtimes = _tree(store)
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "computed 0 of 3 videos, reused 3" in second.stdout
    assert second.stdout.strip().splitlines()[-1] == first.stdout.strip().splitlines()[-1]
    after = _tree(store)
    assert {k: v for k, v in after.items() if k in mtimes and "_checkpoints" not in k} == {
        k: v for k, v in mtimes.items() if "_checkpoints" not in k
    }
