"""``pipeline.embed``, the notebook API: the launch command's config from Python, the same config UID and
entries as the command line, only what is missing computed, errors that name the field."""

from __future__ import annotations

import shlex
import typing as tp
from pathlib import Path

import numpy as np
import pytest

import pipeline
from pipeline.config import ConfigError
from pipeline.config.compose import compose_run_config, hydra_value
from pipeline.launch.notebook import EmbedError, embed_words
from pipeline.store import Store

from ..conftest import run_cli


def test_a_notebook_call_and_the_cli_share_the_config_uid_and_the_entries(
    models_dir: Path, sample_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The notebook computes with the default (local) executor and a progress bar; the command line on the
    same videos and store then finds every entry and computes nothing."""
    store = tmp_path / "store.zarr"
    embs = pipeline.embed(
        sample_dir, model="tiny_videomae", store=store, models_dir=models_dir, frequency=4, progress_s=0
    )
    printed = capsys.readouterr()
    assert "3 to compute in 1 job(s)" in printed.out and "computed 3  cached 0  failed 0" in printed.out
    assert list(embs) == sorted(str(p) for p in sample_dir.glob("*.mp4"))
    uid = next(iter(embs.values())).attrs["config_uid"]
    assert "submitted 1 job(s) (local)" in printed.out
    assert f"stored ({uid}): 3/3 videos (100%)" in printed.out  # progress (captured: plain lines)
    assert uid.startswith("videomae-frequency=4-") and {e.attrs["config_uid"] for e in embs.values()} == {uid}
    drift = embs[str(sample_dir / "drift_25fps.mp4")]
    assert drift.dims == ("time", "feature") and drift.sizes["time"] == 12  # 3 s at 4 Hz
    np.testing.assert_allclose(drift["time"].values, np.arange(12) / 4)
    (launch,) = Store(store).launches(uid).values()
    recorded = shlex.split(launch["command"])
    assert recorded[1:3] == ["-m", "pipeline.launch"] and {"model=tiny_videomae", "frequency=4"} <= set(recorded)

    cli = run_cli(
        "model=tiny_videomae",
        "frequency=4",
        f"videos={sample_dir}",
        f"store={store}",
        f"models_dir={models_dir}",
        cwd=tmp_path,
        timeout=600,
    )
    assert cli.returncode == 0, cli.stderr[-3000:]
    assert f"3 videos found (3 distinct), 3 cached, 0 to compute in 0 job(s); config {uid}" in cli.stdout
    assert "computed 0  cached 3  failed 0" in cli.stdout
    assert len(Store(store).launches(uid)) == 1  # nothing submitted

    # a list of paths, in the order given; nothing computed, nothing printed
    paths = [sample_dir / "orbit_30fps_audio.mp4", sample_dir / "bars_12fps.mp4"]
    again = pipeline.embed(
        paths, "tiny_videomae", store, frequency=4.0, models_dir=str(models_dir), executor="debug", progress=False
    )
    assert list(again) == [str(p) for p in paths] and not capsys.readouterr().out
    np.testing.assert_array_equal(again[str(paths[1])].values, embs[str(paths[1])].values)
    assert len(Store(store).launches(uid)) == 1


def test_the_cli_takes_a_list_of_videos_and_the_notebook_finds_its_entries(
    models_dir: Path, sample_dir: Path, tmp_path: Path
) -> None:
    """The other way round: the command line computes (``videos=[...]``, a list as the notebook writes
    it), the notebook then computes nothing and gets the same UID."""
    store = tmp_path / "store.zarr"
    paths = [str(sample_dir / "drift_25fps.mp4"), str(sample_dir / "bars_12fps.mp4")]
    words = ["model=tiny_vit", "image_frames=bin_end", f"videos={hydra_value(paths)}", f"store={store}"]
    cli = run_cli(*words, f"models_dir={models_dir}", "executor=debug", cwd=tmp_path, timeout=600)
    assert cli.returncode == 0 and "computed 2  cached 0  failed 0" in cli.stdout, cli.stderr[-3000:]
    embs = pipeline.embed(
        paths, model="tiny_vit", store=store, models_dir=models_dir, image_frames="bin_end", progress=False
    )
    assert list(embs) == paths
    uid = embs[paths[0]].attrs["config_uid"]
    assert uid.startswith("image-image_frames=bin_end-") and f"config {uid}" in cli.stdout
    assert len(Store(store).launches(uid)) == 1  # the command line's; the notebook submitted nothing


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"model": "tiny_videomae", "frequncy": 4}, "frequncy: no such field \\(did you mean 'frequency'\\?"),
        ({"model": "tiny_videmae"}, "model: no model 'tiny_videmae' in conf/model/ \\(did you mean 'tiny_videomae'\\?"),
        ({"model": "tiny_vit", "image_frames": "middle"}, "image_frames: Input should be 'seed' or 'bin_end'"),
        ({"model": "tiny_vit", "frequency": -1}, "frequency: must be a positive number"),
        ({"executor": "slurmm"}, "executor: no executor 'slurmm'"),
        ({"executor": {"name": "local", "partitoin": "gpu"}}, "executor.partitoin: no such field"),
        ({"model": {"name": "x", "famly": "image"}}, "model.famly: no such field"),
    ],
)
def test_a_bad_field_raises_config_error_naming_it_before_anything_is_made(
    sample_dir: Path, tmp_path: Path, fields: dict[str, tp.Any], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        pipeline.embed(sample_dir, store=tmp_path / "store.zarr", **fields)
    assert not (tmp_path / "store.zarr").exists()


def test_a_failed_video_raises_with_the_others_stored(models_dir: Path, sample_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    good = sample_dir / "bars_12fps.mp4"
    with pytest.raises(EmbedError, match="1 video\\(s\\) failed") as caught:
        pipeline.embed(
            [good, broken], "tiny_vit", tmp_path / "s.zarr", models_dir=models_dir, executor="debug", progress=False
        )
    assert list(caught.value.embeddings) == [str(good)] and str(broken) in caught.value.summary.failed


@pytest.mark.parametrize(
    "value",
    ["plain", "it's", "back\\slash", "end\\", "x${y}", "a\\${y}", "\\'", "a,b", "é/ü", "true", "3", "", "${y}'\\"],
)
def test_strings_reach_the_config_as_written(value: str) -> None:
    run = compose_run_config([f"videos={hydra_value([value, 'x'])}", f"store={hydra_value(value)}"])
    assert run.store == value and run.videos == [value, "x"]


def test_values_are_written_as_the_command_line_reads_them() -> None:
    run = compose_run_config(
        embed_words(
            "clips",
            {"name": "/some/folder", "family": "image"},
            None,
            {"name": "slurm", "partition": "gpu", "gpus_per_node": 1},
            {"frequency": np.float64(2.5), "layers": [0, 0.5], "max_jobs": np.int64(3), "num_frames": None},
        )
    )
    assert run.embed.frequency == 2.5 and run.embed.layers == [0.0, 0.5] and run.max_jobs == 3
    assert run.embed.model.name == "/some/folder" and not run.embed.model.tiny
    assert (run.executor.name, run.executor.partition, run.executor.gpus_per_node) == ("slurm", "gpu", 1)
    assert run.videos == "clips"
