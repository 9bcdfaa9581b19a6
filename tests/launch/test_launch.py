"""Store semantics and the launcher: cache hits by content, atomic entries, summaries, dry runs."""

from __future__ import annotations

import io
import shutil
import typing as tp
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from pipeline import launch_config
from pipeline import store as store_mod
from pipeline.config import ConfigError
from pipeline.launch.discovery import find_videos

from ..conftest import distinct_copies, run_cli

REPO = Path(__file__).resolve().parents[2]


def test_config_uid_ignores_device_batch_and_paths(make_run: tp.Any) -> None:
    a = make_run(batch_size=1, device="cpu", store="/tmp/a.zarr", videos_per_job=3)
    b = make_run(batch_size=16, device="auto", store="/tmp/b.zarr", max_jobs=9, executor={"name": "local"})
    assert a.embed.uid() == b.embed.uid()
    assert make_run(frequency=3.0).embed.uid() != a.embed.uid()
    assert make_run(layers=[0.5]).embed.uid() == make_run(layers=0.5).embed.uid()
    assert make_run(dtype="bfloat16").embed.uid() != a.embed.uid()


def test_image_models_ignore_clip_fields_in_the_uid(make_run: tp.Any) -> None:
    base = make_run("tiny-vit").embed.uid()
    assert make_run("tiny-vit", clip_duration=2.0, max_imsize=16).embed.uid() == base
    assert make_run("tiny-vit", token_aggregation="first").embed.uid() != base


def test_rerun_is_all_cache_hits_and_rename_still_hits(make_run: tp.Any, sample_dir: Path, tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    shutil.copytree(sample_dir, videos)
    run = make_run(videos=str(videos))
    first = launch_config(run)
    assert len(first.computed) == 3 and not first.cached
    second = launch_config(run)
    assert not second.computed and len(second.cached) == 3
    (videos / "drift_25fps.mp4").rename(videos / "renamed.mp4")
    third = launch_config(run)
    assert not third.computed and len(third.cached) == 3


def test_a_changed_byte_is_a_miss_and_old_entries_stay(make_run: tp.Any, sample_dir: Path, tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    shutil.copytree(sample_dir, videos)
    run = make_run(videos=str(videos))
    launch_config(run)
    target = videos / "bars_12fps.mp4"
    old_hash = store_mod.content_hash(target)
    raw = bytearray(target.read_bytes())
    raw[raw.index(b"Lavf")] = ord("M")  # one byte of the muxer's name tag: still decodable
    target.write_bytes(bytes(raw))
    summary = launch_config(run)
    assert summary.computed == [str(target)] and len(summary.cached) == 2
    reader = store_mod.open(run.store)
    hashes = {e.video_hash for e in reader.entries()}
    assert old_hash in hashes and store_mod.content_hash(target) in hashes and len(hashes) == 4


def test_duplicate_bytes_are_computed_once(make_run: tp.Any, sample_dir: Path, tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    shutil.copytree(sample_dir, videos)
    shutil.copy(videos / "bars_12fps.mp4", videos / "copy of bars.mp4")
    summary = launch_config(make_run(videos=str(videos)))
    assert len(summary.computed) == 3 and list(summary.duplicates) == [str(videos / "copy of bars.mp4")]


def test_reader_api_by_config_and_video(make_run: tp.Any, sample_dir: Path) -> None:
    run = make_run(frequency=4.0)
    launch_config(run)
    reader = store_mod.open(run.store)
    entries = reader.entries()
    assert len(entries) == 3 and {e.config_uid for e in entries} == {run.embed.uid()}
    video = sample_dir / "drift_25fps.mp4"
    arr = reader.load(config=run.embed, video=video)
    assert isinstance(arr, xr.DataArray) and arr.dims == ("time", "feature")
    np.testing.assert_allclose(arr["time"].values, np.arange(12) / 4.0)
    assert arr.attrs["model"] == "tiny-videomae" and arr.attrs["layer_indices"] == [2]
    assert arr.attrs["video_path"] == str(video.resolve()) and arr.attrs["pipeline_version"]
    assert arr.attrs["duration"] == 3.0 and arr.attrs["frequency"] == 4.0 and arr.attrs["start"] == 0.0
    by_uid = reader.load(f"{run.embed.uid()}/{store_mod.content_hash(video)}")
    np.testing.assert_array_equal(by_uid.values, arr.values)
    data, _ = reader.load_numpy(config=run.embed.uid(), video=video)
    np.testing.assert_array_equal(np.moveaxis(data, -1, 0), arr.values)  # numpy (feature, time); xarray time first
    with pytest.raises(KeyError, match="no entry"):
        reader.load(config=make_run(frequency=1.0).embed, video=video)


def test_staged_writes_are_invisible_until_complete(tmp_path: Path) -> None:
    store = store_mod.Store(tmp_path / "s.zarr")
    store.ensure()
    (tmp_path / "s.zarr" / "cfg" / "abc").mkdir(parents=True)  # a half-written directory, no metadata
    assert not store.has("cfg", "abc")
    (tmp_path / "s.zarr" / "cfg" / "abc").rmdir()
    assert store.write("cfg", "abc", np.ones((2, 3), np.float32), {"times": [0.0, 1.0, 2.0]})
    assert not store.write("cfg", "abc", np.zeros((2, 3), np.float32), {"times": [0.0, 1.0, 2.0]})
    np.testing.assert_array_equal(store.load_numpy("cfg/abc")[0], np.ones((2, 3)))
    assert not any((tmp_path / "s.zarr" / "_staging").iterdir())


def test_dry_run_submits_nothing(make_run: tp.Any) -> None:
    run = make_run(dry_run=True, videos_per_job=1, max_jobs=2)
    out = io.StringIO()
    summary = launch_config(run, out=out)
    text = out.getvalue()
    assert "3 to compute in 2 job(s)" in text and "dry run: nothing submitted" in text
    assert not store_mod.Store(run.store).done_hashes(summary.config_uid)


def test_corrupt_video_fails_alone_with_its_reason(make_run: tp.Any, sample_dir: Path, tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    shutil.copytree(sample_dir, videos)
    (videos / "broken.mp4").write_bytes(b"this is not a video")
    run = make_run(videos=str(videos))
    summary = launch_config(run)
    assert len(summary.computed) == 3
    assert list(summary.failed) == [str(videos / "broken.mp4")]
    assert "broken.mp4" in summary.failed[str(videos / "broken.mp4")]
    failures = store_mod.Store(run.store).failures(run.embed.uid())
    assert [f["error_type"] for f in failures.values()] == ["VideoError"]


def test_find_videos_errors_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="videos: no such folder"):
        find_videos(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="videos: no video files"):
        find_videos(str(tmp_path / "empty"))
    listing = tmp_path / "list.txt"
    listing.write_text("a.mp4\n")
    with pytest.raises(ConfigError, match="videos: 1 listed file"):
        find_videos(str(listing))


def test_cli_local_executor_end_to_end(models_dir: Path, sample_dir: Path, tmp_path: Path) -> None:
    """The real command line: Hydra config, submitit LocalExecutor subprocesses, summary, exit code."""
    common = [
        f"videos={sample_dir}",
        f"store={tmp_path / 'cli.zarr'}",
        f"models_dir={models_dir}",
        "model=tiny_xclip",
        "videos_per_job=2",
        "frequency=3",
    ]
    first = run_cli(*common, "progress_s=0", cwd=tmp_path, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "3 to compute in 2 job(s)" in first.stdout and "computed 3  cached 0  failed 0" in first.stdout
    # its output went to pipes, as to a log file: short plain progress lines (every update with progress_s=0)
    logs = [first.stdout, first.stderr, *(p.read_text() for p in (tmp_path / "cli.zarr").rglob("*_log.*"))]
    _assert_log_lines(logs)
    assert "stored (" in first.stdout and "/3 videos" in first.stdout
    assert any("embedding (" in text for text in logs[2:]), "the jobs' logs show their progress"
    second = run_cli(*common, cwd=tmp_path, timeout=600)
    assert second.returncode == 0 and "computed 0  cached 3  failed 0" in second.stdout
    bad = run_cli(*common, "layer_type=vision", cwd=tmp_path, timeout=600)
    assert bad.returncode == 2 and "layer_type: X-CLIP accepts" in bad.stderr
    bad = run_cli(*common, "frequency=-2", cwd=tmp_path, timeout=600)
    assert bad.returncode == 2 and "frequency: must be a positive number" in bad.stderr


def _assert_log_lines(texts: list[str]) -> None:
    for text in texts:
        assert "\r" not in text
        assert max((len(line) for line in text.splitlines()), default=0) <= 200


def test_a_dry_run_into_a_log_file_writes_short_lines(models_dir: Path, sample_dir: Path, tmp_path: Path) -> None:
    """Hashing and probing 24 videos (bars above 20) with the output a file: plain lines, none too long."""
    distinct_copies(sample_dir / "drift_25fps.mp4", tmp_path / "videos", 24)
    args = [f"videos={tmp_path / 'videos'}", f"store={tmp_path / 's.zarr'}", f"models_dir={models_dir}"]
    done = run_cli(*args, "dry_run=true", "progress_s=0", cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_log_lines([done.stdout, done.stderr])
    out = done.stdout + done.stderr
    assert "hashing videos: 24/24 files (100%)" in out and "probing durations: 24/24 files (100%)" in out


def test_loaded_arrays_name_their_axes_and_read_a_time_window(make_run: tp.Any, sample_dir: Path) -> None:
    video = sample_dir / "orbit_30fps_audio.mp4"
    cases = [
        (dict(), ["time", "feature"], {}),
        (dict(layers="all", layer_aggregation="none", token_aggregation="none"), ["time", "layer", "token", "feature"],
         {"layer": [0, 1, 2, 3, 4]}),
        (dict(layers=[0.0, 0.5, 1.0], layer_aggregation="group_mean"), ["time", "layer_group", "feature"],
         {"layer_group": [0, 2]}),
        (dict(layers=0.5, layer_aggregation="none", token_aggregation="cat"), ["time", "layer", "feature"],
         {"layer": [2]}),
    ]  # fmt: skip
    for fields, dims, coords in cases:
        run = make_run(videos=str(video), frequency=4.0, **fields)
        assert launch_config(run).computed
        reader = store_mod.open(run.store)
        whole = reader.load(config=run.embed, video=video)
        assert list(whole.dims) == dims, fields
        for name, values in coords.items():
            assert whole[name].values.tolist() == values
        window = reader.load(config=run.embed, video=video, start=0.5, stop=1.5)
        assert window["time"].values.tolist() == [0.5, 0.75, 1.0, 1.25]
        np.testing.assert_array_equal(window.values, whole.sel(time=slice(0.5, 1.25)).values)
        data, attrs = reader.load_numpy(config=run.embed, video=video, start=3.7)
        assert data.shape[-1] == 1 and attrs["times"] == [3.75]
