"""``python -m pipeline.gc store=PATH [keep=UID,UID] [forget=all|gone|VIDEO,...] [--apply]``: reclaim space
and forget recorded failures, dry-run by default.

What goes:

- every config UID not in ``keep`` (when a keep list is given), with its job logs (``_jobs/<uid>``);
- every config UID written by an older output format (``format_version`` below the current one): its
  numbers may differ from what this version computes, and a relaunch recomputes it under a new UID;
- staging folders older than an hour (what a killed worker left mid-write; never visible as entries);
- segments no entry names, older than an hour (rows of a video that another writer published first, of
  entries removed, or of a writer killed between its segment and its manifest);
- lease files of videos already stored, and lapsed leases older than a day.

``forget=`` also forgets recorded failures (so that a launch retries those videos without
``retry_failed``): ``all``, ``gone`` (those of files that no longer exist), or video files and content
hashes separated by commas.

With ``--apply``, each kept config's manifests are first compacted into its index.

Removal renames into ``<store>/_trash`` first, so readers never see a half-deleted entry, then deletes.
Nothing is removed without ``--apply``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import sys
import time
import uuid
from pathlib import Path

from pipeline.common.files import share
from pipeline.common.text import folder_bytes, human_size
from pipeline.config import format_version
from pipeline.store import Store, content_hash, layout
from pipeline.store.leases import read_lease
from pipeline.store.records import failure_text
from pipeline.tools.args import UsageError, open_store, parse_args

USAGE = "usage: python -m pipeline.gc store=PATH [keep=UID,UID,...] [forget=all|gone|VIDEO,...] [--apply]"
STAGING_AGE_S = 3600.0
LEASE_AGE_S = 86400.0
_TRASH = "_trash"


@dataclasses.dataclass(frozen=True)
class Removal:
    path: Path
    reason: str
    bytes: int


def find_removals(store: Store, keep: set[str] | None, *, now: float | None = None) -> list[Removal]:
    """What ``gc`` would remove, and why; touches nothing."""
    now = time.time() if now is None else now
    out: list[Removal] = []
    kept: list[str] = []
    for cuid in store.config_uids():
        config = store.config(cuid)
        version, current = config.get("format_version"), format_version(str(config.get("family", "")))
        if version != current:
            reason = f"output format {version} (current {current})"
        elif keep is not None and cuid not in keep:
            reason = "not in keep list"
        else:
            kept.append(cuid)
            continue
        n = len(store.done_hashes(cuid))
        out.append(Removal(store.path / cuid, f"config, {n} entries: {reason}", folder_bytes(store.path / cuid)))
        logs = layout.jobs(store.path, cuid)
        if logs.is_dir():
            out.append(Removal(logs, f"job logs of config {cuid}", folder_bytes(logs)))
    staging = layout.staging(store.path)
    if staging.is_dir():
        for folder in sorted(staging.iterdir()):
            age = now - folder.stat().st_mtime
            if age > STAGING_AGE_S:
                out.append(Removal(folder, f"unfinished write, {age / 3600:.1f} h old", folder_bytes(folder)))
    trash = store.path / _TRASH
    if trash.is_dir():
        out.extend(Removal(p, "left in trash", folder_bytes(p)) for p in sorted(trash.iterdir()))
    for cuid in kept:
        named = store.catalog(cuid).rows_by_segment()
        for folder in sorted((store.path / cuid).iterdir()):
            if layout.is_reserved(folder.name) or not folder.is_dir() or folder.name in named:
                continue
            age = now - folder.stat().st_mtime
            if age > STAGING_AGE_S:
                out.append(Removal(folder, f"segment no entry names, {age / 3600:.1f} h old", folder_bytes(folder)))
    for cuid in kept:
        done = store.done_hashes(cuid)
        leases = store.leases(cuid)
        for path in sorted(leases.glob("*.json")) if leases.is_dir() else []:
            if path.stem in done:
                out.append(Removal(path, "lease of a stored video", path.stat().st_size))
                continue
            state = read_lease(path, LEASE_AGE_S)
            if state is not None and state.age_s > LEASE_AGE_S:
                out.append(Removal(path, f"lapsed lease, {state.age_s / 3600:.1f} h old", path.stat().st_size))
    return out


def failure_removals(store: Store, forget: str) -> list[Removal]:
    """The recorded failures ``forget`` names: ``all``, ``gone`` (files that no longer exist), or video
    files and content hashes separated by commas (a file is named by its content hash, or by the path the
    failure recorded when it no longer exists)."""
    items = [w for w in forget.split(",") if w]
    hashes = {content_hash(w) if os.path.isfile(w) else w for w in items}
    paths = {os.path.abspath(w) for w in items}
    out = []
    for cuid in store.config_uids():
        for vhash, record in store.failures(cuid).items():
            path = str(record.get("video_path", ""))
            gone = bool(path) and not os.path.exists(path)
            if forget == "all" or (forget == "gone" and gone) or vhash in hashes or os.path.abspath(path) in paths:
                file = store.path / cuid / layout.FAILED / f"{vhash}.json"
                out.append(Removal(file, f"recorded failure of {path or vhash}: {failure_text(record)}", 0))
    return out


def apply(store: Store, removals: list[Removal]) -> int:
    """Remove what ``plan`` listed: rename into ``_trash`` (atomic), then delete. Returns bytes freed."""
    trash = store.path / _TRASH
    trash.mkdir(exist_ok=True)
    share(trash)
    freed = 0
    for r in removals:
        if r.path.parent == trash:
            target = r.path
        else:
            target = trash / f"{r.path.name}-{uuid.uuid4().hex[:8]}"
            try:
                r.path.rename(target)
            except FileNotFoundError:
                continue
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
        freed += r.bytes
    with contextlib.suppress(OSError):
        trash.rmdir()
    return freed


def main(argv: list[str] | None = None) -> int:
    values, flags, words = parse_args(argv, {"store", "keep", "forget"}, {"--apply"}, USAGE)
    if words:
        raise UsageError(f"unexpected argument {words[0]!r}\n{USAGE}")
    store = open_store(values)
    keep = {u for u in values["keep"].split(",") if u} if "keep" in values else None
    unknown = sorted((keep or set()) - set(store.config_uids()))
    if unknown:
        raise UsageError(f"keep: {', '.join(unknown)} not in {store.path} (configs: {', '.join(store.config_uids())})")
    if "--apply" in flags:
        for cuid in store.config_uids():
            merged = store.compact(cuid)
            if merged:
                print(f"compacted {merged} manifest(s) of {cuid} into its index")
    removals = find_removals(store, keep)
    if values.get("forget"):
        removals += failure_removals(store, values["forget"])
    for r in removals:
        print(
            f"{'remove' if '--apply' in flags else 'would remove'}  {human_size(r.bytes):>9}  "
            f"{r.path.relative_to(store.path)}  ({r.reason})"
        )
    total = sum(r.bytes for r in removals)
    if not removals:
        print(f"store {store.path}: nothing to remove")
    elif "--apply" in flags:
        print(f"freed {human_size(apply(store, removals))} in {len(removals)} items")
    else:
        print(f"{len(removals)} items, {human_size(total)}: dry run, nothing removed (add --apply)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
