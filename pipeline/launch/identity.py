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

import json
import os
import re
import sys
import typing as tp
from pathlib import Path

from pipeline.common.env import hub_offline
from pipeline.config import ConfigError, RunConfig, is_commit
from pipeline.launch.discovery import hash_files
from pipeline.launch.model_files import (
    content_identity,
    file_sha256,
    folder_files,
    has_weights,
    loaded_files,
    missing_files,
)
from pipeline.store import Store, caches

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
    missing = missing_files(folder, names)
    if missing:
        raise ConfigError(f"model.name: the folder {folder} lacks {', '.join(missing[:3])}, which its index names")
    paths = [str(folder / n) for n in names]
    hashes, unreadable, _ = hash_files(paths, store, "hashing model files", cache_name="sha256", compute=file_sha256)
    if unreadable:
        raise ConfigError(f"model.name: cannot read {next(iter(unreadable.values()))}")
    return content_identity({n: hashes[str(folder / n)] for n in names})


def hub_online(name: str, revision: str | None, trust_remote_code: bool) -> tuple[str, dict[str, str]]:
    """The commit ``revision`` (None: the default branch) points at on the hub, and the SHA-256 of each file
    that loads: from the hub's LFS metadata for large files, from the bytes of the small ones (downloaded
    into the cache, where the jobs need them anyway). The cache's ``refs/<revision>`` is set to that commit,
    so that an offline launch after this one resolves the same commit, not an older one the cache knew."""
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
    _point_ref(name, revision or "main", commit)
    return commit, sha256s


def _point_ref(name: str, ref: str, commit: str) -> None:
    """Set the cache's ``refs/<ref>`` (the Hugging Face cache layout) to ``commit``; a commit is no ref."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    if is_commit(ref):
        return
    path = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=name, repo_type="model") / "refs" / ref
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text().strip() != commit:
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            tmp.write_text(commit)
            os.replace(tmp, path)
    except OSError as e:  # a read-only shared cache: the jobs load by commit anyway
        print(f"warning: cannot point {path} at {commit[:12]} ({e})", file=sys.stderr)


def cached_snapshot(name: str, revision: str | None) -> tuple[str, Path]:
    """The commit ``revision`` points at in the Hugging Face cache (``refs/<branch>``, or the commit
    itself) and its snapshot folder."""
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(name, "config.json", revision=revision)
    if not isinstance(cached, str):
        pin = f" at model.revision={revision}" if revision else ""
        why = "HF_HUB_OFFLINE=1 keeps the hub out" if hub_offline() else "the hub cannot be reached"
        raise ConfigError(
            f"model.name: {name!r}{pin} is neither a local folder nor in the Hugging Face cache, and {why}: stage it "
            "once where there is a network (the same launch there, with the same HF_HOME), or point model.name at "
            "a folder"
        )
    snapshot = Path(cached).parent
    if not is_commit(snapshot.name):
        raise ConfigError(f"model.name: {name!r} resolved to {cached}, which is not a hub snapshot")
    return snapshot.name, snapshot


def _cached_sha256(path: Path) -> str:
    blob = Path(path).resolve().name  # the cache names an LFS file's copy by its SHA-256, a small one by git's
    return blob if _SHA256.fullmatch(blob) else file_sha256(path)


def hub_identity(name: str, revision: str | None, trust_remote_code: bool, store: Store, *, online: bool) -> Resolved:
    """A hub model's content identity and commit. Online, from the hub, recorded in the store's
    ``identities`` cache with the files it names; offline, from the cached snapshot, which must hold every
    file that loads (the files an online launch recorded, else those it holds, with the weight shards its
    index names): a snapshot staged in part is an error, not another identity."""
    key_of = f"{name}@{{}}" + ("+code" if trust_remote_code else "")
    if online:
        commit, sha256s = hub_online(name, revision, trust_remote_code)
        identity = content_identity(sha256s)
        record = json.dumps({"identity": identity, "files": sha256s}, sort_keys=True)
        store.ensure()
        if caches.read(store.path, "identities").get(key_of.format(commit)) != record:
            caches.append(store.path, "identities", {key_of.format(commit): record})
        return Resolved(identity, commit)
    commit, snapshot = cached_snapshot(name, revision)
    known = _recorded(caches.read(store.path, "identities").get(key_of.format(commit)))
    if known is not None:
        names = sorted(known["files"])
    else:
        names = loaded_files(folder_files(snapshot), trust_remote_code)
    missing = missing_files(snapshot, names)
    if missing or not has_weights(names):
        what = f"lacks {', '.join(missing[:3])}" if missing else "holds no weights"
        raise ConfigError(
            f"model.name: the cached snapshot of {name}@{commit[:12]} ({snapshot}) {what}: stage it again where there "
            "is a network (the same launch there, with the same HF_HOME)"
        )
    if known is not None:
        return Resolved(str(known["identity"]), commit)
    return Resolved(content_identity({n: _cached_sha256(snapshot / n) for n in names}), commit)


def _recorded(value: tp.Any) -> dict[str, tp.Any] | None:
    """An ``identities`` cache record: the identity and the files it names (None for anything else)."""
    try:
        record = json.loads(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return record if isinstance(record, dict) and {"identity", "files"} <= set(record) else None


def resolve_content(run: RunConfig, *, online: bool = False, cache: Store | None = None) -> RunConfig:
    """``run`` with ``embed.model.identity`` set to the content of the files it will load, and, for a hub
    model, ``commit`` to what its pin resolved to. File hashes are cached in ``cache`` (default: the run's
    store)."""
    spec = run.embed.model
    source = Path(run.model_source())
    store = Store(run.store) if cache is None else cache
    if source.is_dir():
        if spec.revision is not None:
            raise ConfigError(f"model.revision: {source} is a folder, not a hub name: it has no revisions")
        store.ensure()
        resolved = Resolved(folder_content(source.resolve(), store, spec.trust_remote_code), None)
    else:  # a model not found is an error before the store is made
        resolved = hub_identity(spec.name, spec.revision, spec.trust_remote_code, store, online=online)
    model = spec.model_copy(update={"identity": resolved.identity, "commit": resolved.commit})
    return run.model_copy(update={"embed": run.embed.model_copy(update={"model": model})})


def with_alias(run: RunConfig, cache: Store | None = None, *, online: bool = False) -> RunConfig:
    """``run`` with its identity replaced by the one a store written by 0.3 holds its computation under
    (``pipeline.launch.aliases``), where it holds it."""
    from pipeline.launch.aliases import alias

    store = Store(run.store) if cache is None else cache
    spec = run.embed.model

    def hub_content(name: str, commit: str) -> str | None:
        try:
            return hub_identity(name, commit, spec.trust_remote_code, store, online=online).identity
        except ConfigError:
            return None

    legacy = alias(Store(run.store), run, store, hub_content)
    if legacy is None:
        return run
    model = run.embed.model.model_copy(update={"identity": legacy})
    return run.model_copy(update={"embed": run.embed.model_copy(update={"model": model})})


def resolve_identity(run: RunConfig, *, online: bool = False, cache: Store | None = None) -> RunConfig:
    """``resolve_content``, then ``with_alias``."""
    return with_alias(resolve_content(run, online=online, cache=cache), cache, online=online)
