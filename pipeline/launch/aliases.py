"""Stores written by 0.3 keep their entries: their configs name a model by what 0.3 resolved (a hub
model's ``<name>@<commit>``, a folder's ``files-<hash>`` over all its files), not by the content of the
files that load. A launch whose computation such a config holds (the same fields, the model's 0.3 identity)
keeps computing under that config's UID, and records the content identity in it, so that later launches
find it by content alone: after an upstream commit that touched only a README, the 0.3 identity has
changed, the content has not."""

from __future__ import annotations

import hashlib
import typing as tp
from pathlib import Path

from pipeline.config import ConfigError, EmbedConfig, RunConfig
from pipeline.launch.model_files import PREFIX, folder_files
from pipeline.store import Store

CONTENT_ATTR = "model_content"
"""The config group attribute recording the content identity of an aliased config's model."""


class Candidate(tp.NamedTuple):
    config_uid: str
    model: str
    """The stored config's model identity (0.3's form)."""
    content: str | None
    """The content identity recorded in it by an earlier launch, if any."""


def candidates(store: Store, embed: EmbedConfig) -> list[Candidate]:
    """The store's configs with ``embed``'s fields whose model is named in 0.3's form."""
    wanted = _without_model(embed.canonical())
    found = []
    for cuid in store.config_uids():
        attrs = store.config_attrs(cuid)
        config = dict(attrs.get("config", {}))
        model = str(config.get("model", ""))
        if model.startswith(PREFIX) or _without_model(config) != wanted:
            continue
        content = attrs.get(CONTENT_ATTR)
        found.append(Candidate(cuid, model, None if content is None else str(content)))
    return found


def pick(found: list[Candidate], content: str, legacy: tp.Callable[[], set[str]]) -> Candidate | None:
    """Which stored config holds the computation whose model has ``content``: one that recorded that
    content, else one named by the model's 0.3 identity (``legacy()``, computed only when needed: a
    folder's costs a hash of every file); a config that recorded another content is another model."""
    for c in found:
        if c.content == content:
            return c
    unrecorded = [c for c in found if c.content is None]
    if not unrecorded:
        return None
    names = legacy()
    return next((c for c in unrecorded if c.model in names), None)


def alias(store: Store, run: RunConfig, cache: Store) -> str | None:
    """The 0.3 identity under which ``store`` holds ``run``'s computation (``run.embed.model.identity`` is
    the content identity), recording the content in that config; None where the store holds none."""
    embed = run.embed
    content = embed.model.identity
    if content is None or not content.startswith(PREFIX) or not store.path.is_dir():
        return None
    found = candidates(store, embed)
    if not found:
        return None

    def legacy() -> set[str]:
        source = Path(run.model_source())
        if source.is_dir():
            return {legacy_folder_identity(source.resolve(), cache)}
        return {f"{embed.model.name}@{embed.model.commit}"} if embed.model.commit else set()

    chosen = pick(found, content, legacy)
    if chosen is None:
        return None
    if chosen.content is None:
        store.set_config_attr(chosen.config_uid, CONTENT_ATTR, content)
    return chosen.model


def legacy_folder_identity(folder: Path, cache: Store) -> str:
    """0.3's identity of a model folder: ``files-<hash>`` over each non-hidden file's path and its content
    hash (the videos' hash, cached with theirs)."""
    from pipeline.launch.discovery import hash_files

    names = folder_files(folder)
    hashes, unreadable, _ = hash_files([str(folder / n) for n in names], cache, "hashing model files")
    if unreadable:
        raise ConfigError(f"model.name: cannot read {next(iter(unreadable.values()))}")
    digest = hashlib.blake2b(digest_size=16)
    for n in names:
        digest.update(f"{n}\0{hashes[str(folder / n)]}\n".encode())
    return "files-" + digest.hexdigest()


def _without_model(config: dict[str, tp.Any]) -> dict[str, tp.Any]:
    return {k: v for k, v in config.items() if k != "model"}
