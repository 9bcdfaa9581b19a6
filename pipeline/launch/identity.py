"""What a model is, for the config UID: the content of the files that load, resolved before any job.

Three things kept apart: the user's pin (``model.revision``: a branch, tag or commit of a hub model; not in
the UID), the commit it resolves to (``model.commit``: what every job loads offline; recorded, not in the
UID), and the identity in the UID (``model.identity``: ``content-<hash>`` of the loaded files, see
``pipeline.launch.model_files``). An upstream commit that touches only a README keeps the UID; changed
weights change it. Hub snapshots are identified without downloading their weights: the hub keeps the
SHA-256 of every large (LFS) file, and names the cached copy of each by it; the small files are read.
A store written by 0.3 keeps its entries (``pipeline.launch.aliases``).
"""

from __future__ import annotations

import re
import typing as tp
from pathlib import Path

from pipeline.config import ConfigError, RunConfig
from pipeline.launch.discovery import hash_files
from pipeline.launch.model_files import content_identity, file_sha256, folder_files, has_weights, loaded_files
from pipeline.store import Store, caches

_COMMIT = re.compile(r"[0-9a-f]{40}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class Resolved(tp.NamedTuple):
    """A model resolved: its content identity and, for a hub model, the commit its pin resolved to."""

    identity: str
    commit: str | None


def folder_content(folder: Path, store: Store, trust_remote_code: bool) -> str:
    """The content identity of a model folder's loaded files (their SHA-256 cached in the store by path,
    size and mtime, as the videos' hashes are)."""
    names = loaded_files(folder_files(folder), trust_remote_code)
    if not has_weights(names):
        raise ConfigError(f"model.name: the folder {folder} holds no model weights")
    paths = [str(folder / n) for n in names]
    hashes, unreadable, _ = hash_files(paths, store, "hashing model files", cache_name="sha256", compute=file_sha256)
    if unreadable:
        raise ConfigError(f"model.name: cannot read {next(iter(unreadable.values()))}")
    return content_identity({n: hashes[str(folder / n)] for n in names})


def hub_online(name: str, revision: str | None, trust_remote_code: bool) -> tuple[str, dict[str, str]]:
    """The commit ``revision`` (None: the default branch) points at on the hub, and the SHA-256 of each file
    that loads: from the hub's LFS metadata for large files, from the bytes of the small ones (downloaded
    into the cache, where the jobs need them anyway)."""
    from huggingface_hub import HfApi, hf_hub_download

    try:
        info = HfApi().model_info(name, revision=revision, files_metadata=True)
    except Exception as e:  # noqa: BLE001 - the hub's answer, whatever it is, said to the user
        pin = f" at model.revision={revision}" if revision else ""
        raise ConfigError(f"model.name: cannot find {name!r}{pin} on the hub ({e})") from e
    commit = str(info.sha)
    siblings = {s.rfilename: s for s in info.siblings or []}
    names = loaded_files(siblings, trust_remote_code)
    if not has_weights(names):
        raise ConfigError(f"model.name: {name}@{commit[:12]} holds no weights transformers loads")
    sha256s = {}
    for n in names:
        lfs = siblings[n].lfs
        if lfs is not None:
            sha256s[n] = lfs.sha256
            continue
        try:
            sha256s[n] = file_sha256(hf_hub_download(name, n, revision=commit))
        except Exception as e:  # noqa: BLE001
            raise ConfigError(f"model.name: cannot download {n} of {name}@{commit[:12]} ({e})") from e
    return commit, sha256s


def hub_cached(name: str, revision: str | None) -> tuple[str, dict[str, str]]:
    """The commit ``revision`` points at in the Hugging Face cache (``refs/<branch>``, or the commit
    itself), and the SHA-256 of each file of that snapshot that loads: an LFS file's cached copy is named
    by it, a small file is read. The snapshot must hold the weights (staged by an online launch)."""
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(name, "config.json", revision=revision)
    if not isinstance(cached, str):
        pin = f"@{revision}" if revision else ""
        raise ConfigError(
            f"model.name: {name}{pin} is not in the Hugging Face cache and the hub cannot be reached: stage it once "
            "where there is a network (the same launch there, with the same HF_HOME)"
        )
    snapshot = Path(cached).parent
    commit = snapshot.name
    if not _COMMIT.fullmatch(commit):
        raise ConfigError(f"model.name: {name!r} resolved to {cached}, which is not a hub snapshot")
    return commit, {n: _cached_sha256(snapshot / n) for n in folder_files(snapshot)}


def _cached_sha256(path: Path) -> str:
    blob = Path(path).resolve().name  # the cache names an LFS file's copy by its SHA-256, a small one by git's
    return blob if _SHA256.fullmatch(blob) else file_sha256(path)


def hub_identity(name: str, revision: str | None, trust_remote_code: bool, store: Store, *, online: bool) -> Resolved:
    """A hub model's content identity and commit. Offline, the identity an online launch recorded in the
    store for that commit comes first (it saw the hub's whole file list; a cache may hold other files)."""
    if online:
        commit, sha256s = hub_online(name, revision, trust_remote_code)
    else:
        commit, sha256s = hub_cached(name, revision)
    key = f"{name}@{commit}" + ("+code" if trust_remote_code else "")
    known = caches.read(store.path, "identities").get(key)
    if known is not None and not online:
        return Resolved(str(known), commit)
    names = loaded_files(sha256s, trust_remote_code)
    if not has_weights(names):
        raise ConfigError(
            f"model.name: the cached snapshot of {name}@{commit[:12]} holds no weights: stage it again online"
        )
    identity = content_identity({n: sha256s[n] for n in names})
    if known != identity:
        caches.append(store.path, "identities", {key: identity})
    return Resolved(identity, commit)


def resolve_identity(run: RunConfig, *, online: bool = False, cache: Store | None = None) -> RunConfig:
    """``run`` with ``embed.model.identity`` set from the files it will load (``commit`` too for a hub
    model), or to the identity a store written by 0.3 holds them under (``pipeline.launch.aliases``).
    File hashes are cached in ``cache``, by default the run's store."""
    from pipeline.launch.aliases import alias

    spec = run.embed.model
    source = Path(run.model_source())
    store = Store(run.store) if cache is None else cache
    store.ensure()
    if source.is_dir():
        if spec.revision is not None:
            raise ConfigError(f"model.revision: {source} is a folder, not a hub name: it has no revisions")
        resolved = Resolved(folder_content(source.resolve(), store, spec.trust_remote_code), None)
    else:
        resolved = hub_identity(spec.name, spec.revision, spec.trust_remote_code, store, online=online)
    model = spec.model_copy(update={"identity": resolved.identity, "commit": resolved.commit})
    run = run.model_copy(update={"embed": run.embed.model_copy(update={"model": model})})
    legacy = alias(Store(run.store), run, store)
    if legacy is None:
        return run
    model = model.model_copy(update={"identity": legacy})
    return run.model_copy(update={"embed": run.embed.model_copy(update={"model": model})})
