from __future__ import annotations

import os
import typing as tp
from pathlib import Path

import pytest

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PIPELINE_THREADS", "2")

from pipeline.config import RunConfig, build_run_config  # noqa: E402
from pipeline.sample import make_samples  # noqa: E402
from pipeline.tiny import ensure_tiny_model  # noqa: E402

TINY = {
    "tiny-videomae": "videomae",
    "tiny-timesformer": "timesformer",
    "tiny-vivit": "vivit",
    "tiny-vjepa2": "vjepa2",
    "tiny-xclip": "xclip",
    "tiny-vit": "image",
    "tiny-clip": "clip",
    "tiny-dinov2": "image",
}


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    for name in TINY:
        ensure_tiny_model(name.removeprefix("tiny-"), folder)
    return folder


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sample")
    make_samples(folder)
    return folder


@pytest.fixture
def make_run(models_dir: Path, sample_dir: Path, tmp_path: Path) -> tp.Callable[..., RunConfig]:
    """A RunConfig as the launcher builds it from Hydra's flat dict."""

    def make(model: str = "tiny-videomae", **fields: tp.Any) -> RunConfig:
        flat: dict[str, tp.Any] = {
            "model": {"name": model, "family": TINY[model], "tiny": True},
            "videos": str(sample_dir),
            "store": str(tmp_path / "store.zarr"),
            "models_dir": str(models_dir),
            "device": "cpu",
            "executor": {"name": "debug"},
        }
        flat.update(fields)
        return build_run_config(flat)

    return make
