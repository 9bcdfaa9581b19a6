"""Weights staged once, before any job, through the real huggingface_hub client against a hub on localhost
(``pipeline.testing.hub``): the launcher downloads the snapshot's loaded files into ``HF_HOME`` and its
jobs load them offline, so that a launch completes with the hub gone as soon as the jobs are submitted."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import typing as tp
from pathlib import Path

import pytest

from pipeline.launch.model_files import loaded_files
from pipeline.store import Store
from pipeline.testing.hub import Hub, commit_of

from ..conftest import REPO, run_cli

REPO_ID = "lab/tiny-videomae"


def test_the_files_staged_are_those_from_pretrained_reads() -> None:
    files = [
        "README.md", ".gitattributes", "config.json", "preprocessor_config.json", "model.safetensors",
        "pytorch_model.bin", "tf_model.h5", "flax_model.msgpack", "vocab.txt", "modeling_custom.py", "images/a.png",
    ]  # fmt: skip
    assert loaded_files(files, False) == ["config.json", "model.safetensors", "preprocessor_config.json", "vocab.txt"]
    assert "modeling_custom.py" in loaded_files(files, True)
    assert "pytorch_model.bin" in loaded_files(["config.json", "pytorch_model.bin", "tf_model.h5"], False)
    adapter = ["config.json", "pytorch_model.bin", "adapter/adapter_model.safetensors"]  # not the model's weights
    assert loaded_files(adapter, False) == ["config.json", "pytorch_model.bin"]


@pytest.fixture
def hub(models_dir: Path, tmp_path: Path) -> tp.Iterator[Hub]:
    """A hub serving the tiny VideoMAE as ``lab/tiny-videomae``, with a README and another framework's
    weights beside it (never staged)."""
    folder = tmp_path / "hub" / REPO_ID
    shutil.copytree(models_dir / "tiny-videomae", folder)
    (folder / "README.md").write_text("# a tiny VideoMAE\n")
    (folder / "tf_model.h5").write_bytes(b"\0" * 1024)
    with Hub(tmp_path / "hub") as served:
        yield served


def test_reachability_goes_through_the_hub_client_and_its_proxy(hub: Hub, tmp_path: Path) -> None:
    code = "from pipeline.launch.preflight import hub_reachable; print(hub_reachable())"
    env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "PYTHONPATH": str(REPO), "NO_PROXY": "", "no_proxy": ""}
    env.pop("HF_HUB_OFFLINE", None)
    direct = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert direct.stdout.strip() == "True", direct.stderr[-2000:]
    dead_proxy = {**env, "HTTP_PROXY": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"}
    proxied = subprocess.run([sys.executable, "-c", code], env=dead_proxy, capture_output=True, text=True, timeout=120)
    assert proxied.stdout.strip() == "False", proxied.stderr[-2000:]  # the proxy is asked, and it does not answer


@pytest.mark.parametrize("executor", ["local", pytest.param("slurm", marks=pytest.mark.slurm)])
def test_a_hub_model_is_staged_once_and_its_jobs_load_it_offline(
    hub: Hub, sample_dir: Path, models_dir: Path, tmp_path: Path, executor: str, request: pytest.FixtureRequest
) -> None:
    """The launcher stages the snapshot (not the README, not the TensorFlow weights); the hub stops as soon
    as the jobs are submitted, and they compute every video from the staged files (on SLURM too, its jobs
    given ``HF_HUB_OFFLINE=1``). A second launch on a node without the hub (``HF_HUB_OFFLINE=1``) finds the
    snapshot staged."""
    if executor == "slurm":
        request.getfixturevalue("slurm_cluster")
    env = {"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0"}
    video = next(iter(sorted(sample_dir.glob("*.mp4"))))
    args = [
        "model=videomae", f"model.name={REPO_ID}", f"videos={video}", f"store={tmp_path / 'store.zarr'}",
        f"models_dir={models_dir}", "device=cpu", "max_jobs=2", f"hydra.run.dir={tmp_path / 'hydra'}",
        f"executor={executor}", *(["executor.cpus_per_task=1"] if executor == "slurm" else []),
    ]  # fmt: skip
    proc = run_cli(*args, env=env, wait=False)
    assert proc.stdout is not None
    lines: list[str] = []
    while not any(line.startswith("submitted") for line in lines):
        line = proc.stdout.readline()
        assert line, "".join(lines)
        lines.append(line)
    hub.__exit__(None, None, None)  # the compute nodes have no internet
    output = "".join(lines) + proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, output
    commit = commit_of(tmp_path / "hub" / REPO_ID)
    assert f"staging {REPO_ID}@{commit[:12]} (4 files)" in output, output
    snapshot = tmp_path / "hf" / "hub" / "models--lab--tiny-videomae" / "snapshots" / commit
    assert sorted(p.name for p in snapshot.iterdir()) == [
        "config.json", "model.safetensors", "pipeline_tiny.json", "preprocessor_config.json"
    ]  # fmt: skip
    assert [p for m, p in hub.requests if p.endswith("model.safetensors") and m == "GET"] == [
        f"/{REPO_ID}/resolve/{commit}/model.safetensors"
    ]  # downloaded once, by the launcher
    cuid = Store(tmp_path / "store.zarr").config_uids()[0]
    assert len(Store(tmp_path / "store.zarr").done_hashes(cuid)) == 1
    again = run_cli(*args[:3], f"store={tmp_path / 'again.zarr'}", *args[4:], env={**env, "HF_HUB_OFFLINE": "1"})
    assert again.returncode == 0 and "computed 1" in again.stdout, again.stdout + again.stderr
    assert "staging" not in again.stdout
