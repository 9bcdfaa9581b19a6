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

from pipeline.config import ConfigError, EmbedConfig, RunConfig, is_commit
from pipeline.launch.model_files import PREFIX, folder_files
from pipeline.store import Store

CONTENT_ATTR = "model_content"
"""The config group attribute recording the content identity of an aliased config's model."""


class Candidate(tp.NamedTuple):
    config_uid: str
    model: str
    """The stored config's model identity: 0.3's form, or a content identity."""
    content: str | None
    """The content identity it is known by: its own, or the one an earlier launch recorded in it."""


LOOKS = 8
"""Stored 0.3 hub configs whose commit's content a launch works out, at most (one hub query each)."""


def candidates(store: Store, embed: EmbedConfig) -> list[Candidate]:
    """The store's configs with ``embed``'s fields (whatever their model), each with the content it is
    known by, if known."""
    wanted = _without_model(embed.canonical())
    found = []
    for cuid in store.config_uids():
        config = store.config(cuid)
        if _without_model(config) != wanted:
            continue  # the config's facts are read only for those with these fields
        model = str(config.get("model", ""))
        content = model if model.startswith(PREFIX) else store.config_attrs(cuid).get(CONTENT_ATTR)
        found.append(Candidate(cuid, model, None if content is None else str(content)))
    return found


def pick(found: list[Candidate], content: str, same: tp.Callable[[Candidate], bool]) -> Candidate | None:
    """Which stored config holds the computation whose model has ``content``: a 0.3 config that recorded
    that content (earlier launches went on there), else the config named by it, else a 0.3 config whose
    model ``same`` finds has that content (worked out only then: a folder's costs a hash of every file, a
    hub commit's a query); a config known by another content is another model."""
    known = [c for c in found if c.content == content]
    if known:
        return next((c for c in known if c.model != content), known[0])
    return next((c for c in found if c.content is None and same(c)), None)


def alias(
    store: Store, run: RunConfig, cache: Store, hub_content: tp.Callable[[str, str], str | None] = lambda n, c: None
) -> str | None:
    """The 0.3 identity under which ``store`` holds ``run``'s computation (``run.embed.model.identity`` is
    the content identity), recording the content in that config; None where it holds none (or holds it
    under the content identity). ``hub_content(name, commit)``: the content of a hub commit a 0.3 config
    names (None where neither the hub nor the cache can say), so that a store computed at an older commit
    is found after an upstream commit that changed no loaded file."""
    embed = run.embed
    content = embed.model.identity
    if content is None or not content.startswith(PREFIX) or not store.path.is_dir():
        return None
    found = candidates(store, embed)
    if not any(c.model != content for c in found):
        return None
    folder = Path(run.model_source())
    folder_identity: list[str] = []
    looked: list[str] = []

    def same(c: Candidate) -> bool:
        if c.model.startswith("files-") and folder.is_dir():
            if not folder_identity:
                folder_identity.append(legacy_folder_identity(folder.resolve(), cache))
            return c.model == folder_identity[0]
        name, _, commit = c.model.rpartition("@")
        if not name or not is_commit(commit) or folder.is_dir():
            return False
        if name == embed.model.name and commit == embed.model.commit:
            return True
        if len(looked) >= LOOKS:
            return False
        looked.append(c.model)
        return hub_content(name, commit) == content

    chosen = pick(found, content, same)
    if chosen is None or chosen.model == content:
        return None
    if chosen.content is None:
        store.record_config_facts(chosen.config_uid, [(CONTENT_ATTR, content)])
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
