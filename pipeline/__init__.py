"""Turn a folder of videos into time-resolved model embeddings in a shared zarr store.

The public API, for analyses and notebooks (nothing heavy is imported until a name is used)::

    import pipeline
    embs = pipeline.embed("clips/", model="vit", frequency=2)  # path -> xarray.DataArray, computing what is missing
    store = pipeline.open("embeddings.zarr")          # a Store: entries(), load(), load_numpy()
    emb = store.load(config={...}, video="clip.mp4")  # an xarray.DataArray with its time axis
    pipeline.content_hash("clip.mp4")                 # a video's key in the store

``EmbedConfig`` / ``RunConfig`` / ``build_run_config`` are the validated configs (``ConfigError`` names
the field); ``launch_config(run)`` launches one config as ``python -m pipeline.launch`` does;
``pipeline.align.align(store, config, events, tr=..., n_scans=...)`` puts stored features on a scan's grid.
"""

from __future__ import annotations

import importlib
import typing as tp

from pipeline import _moved
from pipeline.config.versions import PIPELINE_VERSION as __version__

_moved.install()

_API = {
    "open": "pipeline.store",
    "Store": "pipeline.store",
    "EntryInfo": "pipeline.store",
    "content_hash": "pipeline.store",
    "ConfigError": "pipeline.config",
    "EmbedConfig": "pipeline.config",
    "RunConfig": "pipeline.config",
    "build_run_config": "pipeline.config",
    "launch_config": "pipeline.launch.launcher",
    "embed": "pipeline.launch.notebook",
    "EmbedError": "pipeline.launch.notebook",
}

_SUBPACKAGES = {"align"}
"""``pipeline.align``: stored features on fMRI / MEG grids from BIDS events (``pipeline.align.align``)."""

__all__ = ["__version__", *sorted(_API), *sorted(_SUBPACKAGES)]


def __getattr__(name: str) -> tp.Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"pipeline.{name}")
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
