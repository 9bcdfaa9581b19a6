"""What a model's weights are, for the config UID: a hub snapshot's commit, or a local folder's content.

A hub model updated in place gets a new commit, and a local folder whose weights were replaced gets a new
content hash: either way a new UID, so no stale entry is ever served. A renamed or moved folder keeps its
content hash (file names inside it count, the folder's own name does not).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from pipeline.config import ConfigError, RunConfig
from pipeline.launch.discovery import hash_files
from pipeline.store import Store

_COMMIT = re.compile(r"[0-9a-f]{40}")


def folder_files(folder: Path) -> list[Path]:
    """The folder's files that make the model (weights, configs, processor and tokenizer files), sorted;
    hidden files and folders (``.cache``, ``.git``) are not part of it."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / f for f in files if not f.startswith(".")]
    return sorted(found)


def folder_identity(folder: Path, store: Store) -> str:
    """``files-<hash>`` over each file's path inside the folder and its content hash (content hashes are
    cached in the store by path, size and mtime, as the videos' are)."""
    files = folder_files(folder)
    if not files:
        raise ConfigError(f"model.name: the folder {folder} holds no model files")
    hashes, unreadable, _ = hash_files([str(f) for f in files], store, "hashing model files")
    if unreadable:
        raise ConfigError(f"model.name: cannot read {next(iter(unreadable.values()))}")
    digest = hashlib.blake2b(digest_size=16)
    for f in files:
        digest.update(f"{f.relative_to(folder).as_posix()}\0{hashes[str(f)]}\n".encode())
    return "files-" + digest.hexdigest()


def hub_commit(name: str, *, online: bool) -> str:
    """The commit of the snapshot ``from_pretrained(name)`` loads: the hub's current one when it can be
    reached, else the one the local cache points at (``refs/main``)."""
    from transformers.utils import cached_file

    try:
        config_file = cached_file(name, "config.json", local_files_only=not online)
    except (OSError, ValueError) as e:
        raise ConfigError(f"model.name: cannot resolve the snapshot of {name!r} ({e})") from e
    commit = Path(str(config_file)).parent.name
    if not _COMMIT.fullmatch(commit):
        raise ConfigError(f"model.name: {name!r} resolved to {config_file}, which is not a hub snapshot")
    return commit


def resolve_identity(run: RunConfig, *, online: bool = False, cache: Store | None = None) -> RunConfig:
    """``run`` with ``embed.model.identity`` set from the weights it will load (a local folder's file
    hashes are cached in ``cache``, by default the run's store)."""
    spec = run.embed.model
    source = Path(run.model_source())
    if source.is_dir():
        store = Store(run.store) if cache is None else cache
        store.ensure()
        identity = folder_identity(source.resolve(), store)
    else:
        identity = hub_commit(spec.name, online=online)
    model = spec.model_copy(update={"identity": identity})
    return run.model_copy(update={"embed": run.embed.model_copy(update={"model": model})})
