"""The store-wide key -> value caches (content hashes by file, durations by content hash), kept as appended
chunks: a save writes only what is new, so saving as hashing goes costs what was hashed, not the whole
cache again (a million files saved every minute would otherwise rewrite a growing file each time).

``_caches/<name>.parquet`` is the merged base; ``_caches/<name>/`` holds the chunks appended since. Past
``MERGE_AT`` chunks, a save merges them into the base (written whole, then the merged chunks removed). A
cache is only ever a shortcut: a reader that misses a key computes it again, so concurrent launchers need
no lock, only the order below, under which no reader misses a key that was saved before it started.
"""

from __future__ import annotations

import os
import time
import typing as tp
import uuid
from pathlib import Path

from pipeline.store import layout, tables

NAMES = ("hashes", "durations", "sha256", "identities")
"""The caches a store keeps: videos' content hashes, their durations, model files' SHA-256, and hub
snapshots' content identities (``<name>@<commit>`` -> ``content-<hash>``, so that an offline launch names
a staged snapshot as the online launch that staged it did)."""
MERGE_AT = 64
"""Chunks a cache keeps before a save merges them into its base."""


def base_file(store: Path, name: str) -> Path:
    return layout.caches(store) / f"{name}.parquet"


def chunk_dir(store: Path, name: str) -> Path:
    return layout.caches(store) / name


def _chunks(store: Path, name: str) -> list[Path]:
    try:
        return sorted(p for p in chunk_dir(store, name).iterdir() if p.suffix == ".parquet")
    except FileNotFoundError:
        return []


def read(store: Path, name: str) -> dict[str, tp.Any]:
    """Every key the cache holds. Chunks are read before the base: a merge writes the base before it
    removes the chunks it merged, so a chunk gone by the time it is read is in the base read after."""
    merged: dict[str, tp.Any] = {}
    for chunk in _chunks(store, name):
        merged.update(tables.read_mapping(chunk))
    return {**tables.read_mapping(base_file(store, name)), **merged}


def append(store: Path, name: str, items: dict[str, tp.Any]) -> None:
    """Save ``items`` (the keys computed since the last save) as one chunk; past ``MERGE_AT`` chunks,
    merge them into the base."""
    if items:
        chunk = chunk_dir(store, name) / f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        tables.write_mapping(chunk, items, store)
    if len(_chunks(store, name)) > MERGE_AT:
        merge(store, name)


def merge(store: Path, name: str) -> None:
    """Fold the chunks into the base: the new base (the old one and every chunk listed) is renamed into
    place first, then those chunks are removed. Two launchers merging at once each write a base that holds
    what they listed; a key only in the loser's base is computed again by whoever misses it."""
    chunks = _chunks(store, name)
    mapping = tables.read_mapping(base_file(store, name))
    for chunk in chunks:
        mapping.update(tables.read_mapping(chunk))
    tables.write_mapping(base_file(store, name), mapping, store)
    for chunk in chunks:
        try:
            os.unlink(chunk)
        except FileNotFoundError:  # merged by another launcher too
            pass
