"""``python -m pipeline.gc store=PATH [keep=UID,UID] [forget=all|gone|VIDEO,...] [--apply]``: reclaim space
and forget recorded failures, dry-run by default.

What goes:

- every config UID not in ``keep`` (when a keep list is given), with its job logs (``_jobs/<uid>``);
- every config UID written by an older output format (``format_version`` below the current one): its
  numbers may differ from what this version computes, and a relaunch recomputes it under a new UID;
- staging folders and segments no entry names, of writers that finished or are dead (rows of a video that
  another writer committed first, of entries removed, or of a writer killed between its segment and its
  commit). Nothing goes by its age alone: a writer that still holds its record (``pipeline.store.writers``)
  keeps its files; one judged dead (its process gone on this host, or its heartbeat counter still for
  ``watch=`` seconds of gc's own clock, 120 by default with ``--apply``) is first revoked in the log, so
  that if it was only stalled, nothing it commits afterwards counts. A dry run judges only writers of this
  host. Files of pipeline 0.3's writers (no writer id) go once older than an hour;
- the records of dead writers, and temporary files that interrupted writes left (a full disk, a kill)
  beside records, leases and caches, once older than an hour (nothing ever reads them; the log's own are
  cleaned by every compaction);
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
import re
import shutil
import sys
import time
import uuid
from pathlib import Path

from pipeline.common.files import share
from pipeline.common.text import folder_bytes, human_size
from pipeline.config import format_version
from pipeline.store import Store, caches, content_hash, layout, writers
from pipeline.store.leases import lease_files, read_lease
from pipeline.store.records import failure_text
from pipeline.testing import faults
from pipeline.tools.args import UsageError, open_store, parse_args

USAGE = (
    "usage: python -m pipeline.gc store=PATH [keep=UID,UID,...] [forget=all|gone|VIDEO,...] [watch=SECONDS] [--apply]"
)
STAGING_AGE_S = 3600.0
"""Age after which the staging folders and unnamed segments of pipeline 0.3's writers (no writer id) go."""
WATCH_S = 120.0
"""How long ``gc --apply`` watches the heartbeat of a writer on another host before judging it dead."""
_SEGMENT = re.compile(r"(s\d{13}-[0-9a-f]{12}(?:-[0-9a-f]{8})?)$")
LEASE_AGE_S = 86400.0
_TRASH = "_trash"


@dataclasses.dataclass(frozen=True)
class Removal:
    path: Path
    reason: str
    bytes: int
    revoke: tuple[str, str] | None = None
    """(config UID, writer) to revoke in the log before this goes: a writer judged dead."""
    segment_of: str | None = None
    """The config UID whose segment this is: checked again, after revocations, that no entry names it."""


def _owned(
    name: str, verdicts: dict[str, str], writer_configs: dict[str, str], age: float, cuid: str
) -> tuple[bool, str, tuple[str, str] | None]:
    """Whether a staging folder or segment named ``name`` may go, why, and the revocation it needs."""
    found = _SEGMENT.search(name)
    writer = writers.writer_of(found.group(1)) if found else None
    if found is None or writer is None:  # pipeline 0.3's, or a stray folder: by age, as then
        return age > STAGING_AGE_S, f"{age / 3600:.1f} h old, written before writers had records", None
    verdict = verdicts.get(writer, "closed")
    config = writer_configs.get(writer) or cuid or name[: found.start() - 1]  # a staging folder: <cuid>-<segment>
    if verdict == "closed":
        # revoked too: a listing of _writers/ that NFS served from its cache may have hidden a live record,
        # and revoking a writer that did close costs one commit
        return True, f"its writer {writer} has closed (revoked first)", (config, writer)
    if verdict == "dead":
        return True, f"its writer {writer} is dead (revoked first)", (config, writer)
    return False, f"its writer {writer} is {verdict}", None


def _owner_elsewhere(path: Path) -> str | None:
    """The user who owns ``path`` where it is not this process's user (root removes anything): None when
    this user may remove it."""
    import pwd

    try:
        uid = path.lstat().st_uid
    except FileNotFoundError:
        return None
    if os.geteuid() in (0, uid):
        return None
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def find_removals(
    store: Store,
    keep: set[str] | None,
    *,
    now: float | None = None,
    watch_s: float = 0.0,
    notes: list[str] | None = None,
) -> list[Removal]:
    """What ``gc`` would remove, and why; touches nothing (writers on other hosts are watched for
    ``watch_s`` seconds when they own something to remove; ``notes`` gets what was kept and why)."""
    now = time.time() if now is None else now
    notes = [] if notes is None else notes
    out: list[Removal] = []
    # read before any listing: a writer without a record here had committed everything it ever will
    found_records = writers.records(store.path)
    writer_configs = {w: str(r.get("config_uid", "")) for w, r in found_records.items()}
    kept: list[str] = []
    for cuid in store.config_uids():
        config = store.config(cuid)
        version, current = config.get("format_version"), format_version(str(config.get("family", "")))
        if not config:  # a group that lost it to racing creators (before groups.py): its entries may be current
            notes.append(f"kept {cuid}: its zarr.json holds no config (a launch of that config restores it)")
            kept.append(cuid)
            continue
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
        for item in sorted(logs.iterdir()) if logs.is_dir() else []:
            owner = _owner_elsewhere(item)
            if owner is None:
                out.append(Removal(item, f"job logs of config {cuid}", folder_bytes(item)))
            else:  # the sticky folder lets only its owner rename it: their jobs' submissions, theirs to remove
                notes.append(f"{item} kept: {owner}'s (only they can remove it: pipeline.gc run as {owner})")
    candidates: list[tuple[Path, str]] = []  # (staging folder or unnamed segment, its config UID or "")
    staging = layout.staging(store.path)
    if staging.is_dir():
        candidates += [(folder, "") for folder in sorted(staging.iterdir())]
    trash = store.path / _TRASH
    if trash.is_dir():
        out.extend(Removal(p, "left in trash", folder_bytes(p)) for p in sorted(trash.iterdir()))
    for cuid in kept:
        named = store.catalog(cuid).rows_by_segment()
        for folder in sorted((store.path / cuid).iterdir()):
            if not (layout.is_reserved(folder.name) or not folder.is_dir() or folder.name in named):
                candidates.append((folder, cuid))
    owners = {w for f, _ in candidates if (m := _SEGMENT.search(f.name)) and (w := writers.writer_of(m.group(1)))}
    wanted = (owners & set(found_records)) | {w for w, r in found_records.items() if writers.gone_here(r)}
    verdicts = {w: "live" for w in found_records}  # owning nothing to remove: not judged
    verdicts.update(writers.judge(store.path, watch_s, wanted))
    # a writer with no record at the first read either had closed (its commits all made: apply checks its
    # segments against the log read again) or started since; one that started has a record by now, since
    # it creates it before it stages anything
    later = writers.records(store.path)
    for writer in owners - set(found_records):
        verdicts[writer] = "live" if writer in later else "closed"
        writer_configs.setdefault(writer, str(later.get(writer, {}).get("config_uid", "")))
    for folder, cuid in candidates:
        try:
            age = now - folder.stat().st_mtime
        except FileNotFoundError:
            continue  # renamed into place, or removed, since the listing
        go, why, revoke = _owned(folder.name, verdicts, writer_configs, age, cuid)
        what = "segment no entry names" if cuid else "unfinished write"
        if go:
            out.append(Removal(folder, f"{what}: {why}", folder_bytes(folder), revoke, segment_of=cuid or None))
        else:
            notes.append(f"kept {folder.relative_to(store.path)} ({what}): {why}")
    for writer, verdict in sorted(verdicts.items()):
        record = layout.writers(store.path) / f"{writer}.json"
        if verdict == "dead":
            revoke = (writer_configs.get(writer, ""), writer) if writer_configs.get(writer) in kept else None
            out.append(Removal(record, f"record of dead writer {writer}", 0, revoke))
        elif verdict == "unknown":
            r = found_records.get(writer, {})
            notes.append(
                f"writer {writer} (job {r.get('job_id') or '?'} on {r.get('host', '?')}) not judged: "
                f"gc --apply watches its heartbeat for {WATCH_S:.0f} s"
            )
    folders = [layout.writers(store.path), layout.caches(store.path)]
    folders += [caches.chunk_dir(store.path, name) for name in caches.NAMES]
    folders += [store.path / cuid / sub for cuid in kept for sub in (layout.LEASES, layout.LAUNCHES, layout.FAILED)]
    for folder in folders:  # what a write aside left when it was interrupted (a full disk, a kill)
        for path in sorted(folder.glob(".*")) if folder.is_dir() else []:
            try:
                age = now - path.stat().st_mtime
            except FileNotFoundError:
                continue
            if path.is_file() and age > STAGING_AGE_S:
                out.append(
                    Removal(
                        path, f"temporary file of an interrupted write, {age / 3600:.1f} h old", path.stat().st_size
                    )
                )
    for cuid in kept:
        done = store.done_hashes(cuid)
        leases = store.leases(cuid)
        for vhash, path in lease_files(leases):
            state = read_lease(path, LEASE_AGE_S)
            if state is None:
                continue  # released since the listing
            if vhash in done:
                out.append(Removal(path, "lease of a stored video", len(state.counter or b"")))
            elif state.age_s > LEASE_AGE_S:
                reason = f"lapsed lease, {state.age_s / 3600:.1f} h old"
                out.append(Removal(path, reason, len(state.counter or b"")))
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
    """Remove what ``find_removals`` listed: dead writers revoked in the log first; a segment is checked
    again to be named by no entry (a dead writer may have committed before its revocation); then each
    item renamed into ``_trash`` (atomic) and deleted. Returns bytes freed."""
    revocations: dict[str, set[str]] = {}
    for r in removals:
        if r.revoke is not None and r.revoke[0] in store.config_uids():
            revocations.setdefault(r.revoke[0], set()).add(r.revoke[1])
    for cuid, dead in sorted(revocations.items()):
        store.catalog(cuid).refresh(until=store.catalog(cuid).revoke(sorted(dead)))  # read past the revocation
    if revocations:
        faults.point("gc-revoked")
    named = {cuid: store.catalog(cuid).rows_by_segment() for cuid in {r.segment_of for r in removals if r.segment_of}}
    removals = [r for r in removals if not (r.segment_of and r.path.name in named.get(r.segment_of, {}))]
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
    for r in removals:  # a removed config's job folder, once every part of it is gone
        if r.path.parent.parent == store.path / layout.JOBS:
            with contextlib.suppress(OSError):
                r.path.parent.rmdir()
    with contextlib.suppress(OSError):
        trash.rmdir()
    return freed


def main(argv: list[str] | None = None) -> int:
    values, flags, words = parse_args(argv, {"store", "keep", "forget", "watch"}, {"--apply"}, USAGE)
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
    try:
        watch_s = float(values["watch"]) if "watch" in values else (WATCH_S if "--apply" in flags else 0.0)
    except ValueError:
        raise UsageError(f"watch: {values['watch']!r} is not a number of seconds\n{USAGE}") from None
    notes: list[str] = []
    removals = find_removals(store, keep, watch_s=watch_s, notes=notes)
    for note in notes:
        print(note)
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
