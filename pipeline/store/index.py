"""Listing a config's entries: one small table per config, refreshed from the entries written since."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from pathlib import Path

from pipeline.common.files import write_atomic
from pipeline.store import layout


@dataclasses.dataclass(frozen=True)
class EntryInfo:
    uid: str
    """``<config_uid>/<video_hash>``."""
    config_uid: str
    video_hash: str
    video_path: str
    model: str
    shape: tuple[int, ...]
    frequency: float
    duration: float
    created: str
    seconds: float = 0.0
    """Wall time the worker spent on this video."""
    job_id: str = ""


_INDEX_FIELDS = [f.name for f in dataclasses.fields(EntryInfo) if f.name not in ("uid", "config_uid", "video_hash")]
"""The index is a table (field names once, one row per entry): a third of the size of one object per entry."""


def done_hashes(config_dir: Path) -> set[str]:
    """The video hashes of the config's complete entries."""
    if not config_dir.is_dir():
        return set()
    # One directory read, no per-entry stat (scandir's type comes with the listing): an entry's
    # folder appears by one rename, complete.
    with os.scandir(config_dir) as listing:
        return {e.name for e in listing if not layout.is_reserved(e.name) and e.is_dir()}


def entry_info(config_dir: Path, vhash: str) -> EntryInfo | None:
    """An entry's listing row, from its own metadata (None if it cannot be read)."""
    try:
        meta = json.loads((config_dir / vhash / "zarr.json").read_text())
    except (OSError, ValueError):
        return None
    attrs = meta.get("attributes", {})
    cuid = config_dir.name
    return EntryInfo(
        uid=f"{cuid}/{vhash}",
        config_uid=cuid,
        video_hash=vhash,
        video_path=attrs.get("video_path", ""),
        model=attrs.get("model", ""),
        shape=tuple(meta["shape"]),
        frequency=float(attrs.get("frequency", 0.0)),
        duration=float(attrs.get("duration", 0.0)),
        created=attrs.get("created", ""),
        seconds=float(attrs.get("seconds", 0.0)),
        job_id=str(attrs.get("job_id", "")),
    )


def indexed_entries(config_dir: Path) -> list[EntryInfo]:
    """Every complete entry of one config, from its index (``_index.json``).

    Entries missing from the index (written since) are read from their own metadata and the index is
    rewritten, atomically, when the store is writable. Concurrent rewrites are safe: each writes what it
    saw, and anything lost is found again next time.
    """
    cuid = config_dir.name
    index_path = config_dir / layout.INDEX
    try:
        table = json.loads(index_path.read_text())
        fields = table["fields"]
        cached = {
            h: EntryInfo(uid=f"{cuid}/{h}", config_uid=cuid, video_hash=h, **dict(zip(fields, row)))
            for h, row in table["rows"].items()
        }
        cached = {h: dataclasses.replace(e, shape=tuple(e.shape)) for h, e in cached.items()}
    except (OSError, ValueError, TypeError, KeyError):
        cached = {}
    present = done_hashes(config_dir)
    fresh = {h: cached[h] for h in present if h in cached}
    for h in present - fresh.keys():
        info = entry_info(config_dir, h)
        if info is not None:
            fresh[h] = info
    if fresh.keys() != cached.keys():
        table = {
            "fields": _INDEX_FIELDS,
            "rows": {h: [getattr(e, f) for f in _INDEX_FIELDS] for h, e in fresh.items()},
        }
        with contextlib.suppress(OSError):
            write_atomic(index_path, json.dumps(table, separators=(",", ":")))
    return [fresh[h] for h in sorted(fresh)]
