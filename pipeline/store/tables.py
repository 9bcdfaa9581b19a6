"""Small columnar files the store keeps beside its entries (caches, launch queues): Parquet, written aside
and renamed into place, shared with the store's group."""

from __future__ import annotations

import typing as tp
import uuid
from pathlib import Path

from pipeline.common.files import make_shared_dirs, share


def read_columns(path: Path) -> dict[str, list[tp.Any]]:
    """The file's columns as lists; empty when it does not exist or cannot be read."""
    import pyarrow.parquet as pq

    try:
        return dict(pq.read_table(path).to_pydict())
    except (OSError, ValueError):
        return {}


def write_columns(path: Path, columns: dict[str, list[tp.Any]], top: Path) -> None:
    """Replace ``path`` with ``columns`` in one rename (folders created below ``top`` shared)."""
    import os

    import pyarrow as pa
    import pyarrow.parquet as pq

    make_shared_dirs(path.parent, top)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    pq.write_table(pa.table(columns), tmp, compression="zstd")
    share(tmp)
    os.replace(tmp, path)


def read_mapping(path: Path) -> dict[str, tp.Any]:
    """A ``key`` -> ``value`` cache (content hashes by file key, durations by content hash)."""
    columns = read_columns(path)
    return dict(zip(columns.get("key", []), columns.get("value", [])))


def write_mapping(path: Path, mapping: dict[str, tp.Any], top: Path) -> None:
    write_columns(path, {"key": list(mapping), "value": list(mapping.values())}, top)
