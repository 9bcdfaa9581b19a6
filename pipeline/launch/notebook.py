"""``pipeline.embed``: the launch command from Python, for notebooks.

``embed(videos, model=..., store=..., **fields)`` writes its arguments as the launch command's words
(``model=tiny_videomae frequency=4 videos=[...] ...``), composes ``conf/`` with them through Hydra exactly as
``python -m pipeline.launch`` does (``pipeline.config.compose.compose_run_config``: the same checks, the
same ``ConfigError`` naming the field, the same config UID), launches what the store does not hold yet
(``launch_config``: the plan, the jobs, a progress bar, the summary), then reads every video's embedding
back as an ``xarray.DataArray``. A notebook and a cluster launch of the same words share their entries.
"""

from __future__ import annotations

import io
import os
import shlex
import sys
import typing as tp

from pipeline.common.quiet import silence_libraries
from pipeline.config import ConfigError, RunConfig
from pipeline.config.compose import compose_run_config, config_words, group_words, hydra_value
from pipeline.launch.discovery import find_videos, hash_files
from pipeline.launch.launcher import launch_config
from pipeline.launch.summary import Summary
from pipeline.store import Store

if tp.TYPE_CHECKING:
    import xarray as xr

PathLike = tp.Union[str, "os.PathLike[str]"]


class EmbedError(RuntimeError):
    """Some videos failed or were left undone. ``summary`` says which and why; ``embeddings`` holds the
    DataArrays of the videos that are stored (by path, in the order given)."""

    def __init__(self, summary: Summary, embeddings: dict[str, xr.DataArray]) -> None:
        self.summary = summary
        self.embeddings = embeddings
        super().__init__(
            f"{len(summary.failed)} video(s) failed and {len(summary.not_done)} were not done "
            f"({len(embeddings)} stored, in .embeddings):\n{summary.render()}"
        )


def embed(
    videos: PathLike | tp.Sequence[PathLike],
    model: str | tp.Mapping[str, tp.Any] | None = None,
    store: PathLike | None = None,
    *,
    executor: str | tp.Mapping[str, tp.Any] | None = None,
    progress: bool = True,
    config: str | tp.Mapping[str, tp.Any] | None = None,
    **fields: tp.Any,
) -> dict[str, xr.DataArray]:
    """Embed ``videos`` (a folder, a glob pattern, one file, a list file, or a list of paths), computing
    only what ``store`` does not hold, and return each video's embedding: path -> ``xarray.DataArray``
    (axes named for what they hold, ``time`` in seconds, the config UID in ``attrs``), in the order given.

    ``model``: a name in ``conf/model/`` (``tiny_videomae``, ``videomae``, ``vit``...) or a mapping of
    ``model.*`` fields (``{"name": "/path/to/folder", "family": "videomae"}``); ``store``: the zarr store;
    ``executor``: ``local``, ``slurm``, ``auto``, ``debug`` or a mapping (``{"name": "slurm",
    "partition": "gpu", "gpus_per_node": 1}``); left out, each is ``conf/config.yaml``'s default
    (``tiny_videomae``, ``embeddings.zarr``, ``local``). ``fields``: any other field of the launch command
    (``frequency=4``, ``layers=[0.5, 1.0]``, ``device="cuda"``, ``**{"executor.partition": "gpu"}``).
    ``progress=False`` prints neither the plan, nor the progress bar, nor the summary. ``config``: the
    config in any of its spellings (``"model=tiny_videomae layers=0.25"`` or ``{"model": "tiny_videomae",
    "layers": 0.25}``, ``pipeline.config.compose``), before the other arguments (which win). The arrays are
    ``(time, ...)``; with ``cache_n_layers``, ``layers`` and ``layer_aggregation`` select what they hold.

    A configuration error raises ``ConfigError`` naming the field, before anything is computed. Videos that
    fail (or failed in an earlier launch, unless ``retry_failed=True``) raise ``EmbedError`` after the others
    are stored. With ``dry_run=True`` or ``wait=False`` the videos already stored are returned.
    """
    words = (config_words(config) if config is not None else []) + embed_words(videos, model, store, executor, fields)
    run = compose_run_config(words)
    silence_libraries(run.verbose)
    out: tp.TextIO = sys.stdout if progress else io.StringIO()
    command = shlex.join([sys.executable, "-m", "pipeline.launch", *words])
    summary = launch_config(run, out=out, command=command)
    embeddings = stored_embeddings(run, summary.config_uid)
    if not summary.ok and not run.dry_run and run.wait:
        raise EmbedError(summary, embeddings)
    return embeddings


def embed_words(
    videos: PathLike | tp.Sequence[PathLike],
    model: str | tp.Mapping[str, tp.Any] | None,
    store: PathLike | None,
    executor: str | tp.Mapping[str, tp.Any] | None,
    fields: tp.Mapping[str, tp.Any],
) -> list[str]:
    """The launch command's words for these arguments (``model=tiny_videomae videos='clips' frequency=4``)."""
    if isinstance(videos, (str, os.PathLike)):
        spec: tp.Any = os.fspath(videos)
    else:
        spec = [os.fspath(v) for v in videos]
        if not spec:
            raise ConfigError("videos: an empty list")
    words = [*group_words("model", model), f"videos={hydra_value(spec)}"]
    if store is not None:
        words.append(f"store={hydra_value(store)}")
    words += group_words("executor", executor)
    return words + [f"{key}={hydra_value(value)}" for key, value in fields.items()]


def stored_embeddings(run: RunConfig, config_uid: str) -> dict[str, xr.DataArray]:
    """Every video of ``run`` stored under ``config_uid``, by path in the order found: read by content hash
    (from the store's hash cache, which the launch just filled)."""
    store = Store(run.store)
    paths = find_videos(run.videos)
    hashes, _, _ = hash_files(paths, store)
    return {  # the config's layers and layer aggregation applied to a cache_n_layers entry
        p: store.load(f"{config_uid}/{hashes[p]}", config=run.embed)
        for p in paths
        if p in hashes and store.has(config_uid, hashes[p])
    }
