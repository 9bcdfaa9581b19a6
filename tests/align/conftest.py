"""One store for every alignment test: the tiny VideoMAE at 4 Hz on the three synthetic sample videos and
the three real clips, computed once per session through the launcher (debug executor)."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest

from tests.conftest import REAL, SYNTHETIC, real_footage

FREQUENCY = 4.0
MODEL = {"name": "tiny-videomae", "family": "videomae", "tiny": True}


@dataclasses.dataclass(frozen=True)
class AlignStore:
    store: Path
    config_uid: str
    run: object
    """The launch's ``RunConfig`` (its ``embed`` has the resolved model identity)."""
    videos: dict[str, Path]
    """Short name (``bars``, ``bbb``, ...) -> the video file the store was computed from."""


@pytest.fixture(scope="session")
def align_store(models_dir: Path, sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> AlignStore:
    from pipeline import launch_config
    from pipeline.config import build_run_config
    from pipeline.launch.identity import resolve_identity
    from pipeline.store import Store

    folder = tmp_path_factory.mktemp("align-store")
    videos = {name: sample_dir / file for name, file in SYNTHETIC.items()}
    videos.update({name: real_footage() / file for name, file in REAL.items()})
    listing = folder / "videos.txt"
    listing.write_text("\n".join(str(p) for p in videos.values()) + "\n")
    flat = {
        "model": MODEL,
        "frequency": FREQUENCY,
        "videos": str(listing),
        "store": str(folder / "store.zarr"),
        "models_dir": str(models_dir),
        "device": "cpu",
        "executor": {"name": "debug"},
    }
    run = resolve_identity(build_run_config(flat), cache=Store(folder / "identity-cache.zarr"))
    summary = launch_config(run, out=io.StringIO())
    assert summary.ok and len(summary.computed) == len(videos), summary.render()
    return AlignStore(folder / "store.zarr", run.embed.uid(), run, videos)
