"""Small columnar files the store keeps beside its entries (caches, launch queues): Parquet, written aside
and renamed into place, shared with the store's group."""

from __future__ import annotations

import typing as tp
from pathlib import Path

from pipeline.common.files import make_shared_dirs, write_atomic

if tp.TYPE_CHECKING:
    import pyarrow as pa


def parquet_bytes(table: pa.Table, row_group_size: int | None = None) -> bytes:
    """``table`` as the bytes of a Parquet file (zstd), for ``write_atomic`` or a file published aside."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", row_group_size=row_group_size)
    return bytes(sink.getvalue())


def read_columns(path: Path) -> dict[str, list[tp.Any]]:
    """The file's columns as lists; empty when it does not exist or cannot be read."""
    import pyarrow.parquet as pq

    try:
        return dict(pq.read_table(path).to_pydict())
    except (OSError, ValueError):
        return {}


def write_columns(path: Path, columns: dict[str, list[tp.Any]], top: Path) -> None:
    """Replace ``path`` with ``columns`` in one rename (folders created below ``top`` shared)."""
    import pyarrow as pa

    make_shared_dirs(path.parent, top)
    write_atomic(path, parquet_bytes(pa.table(columns)), sync=True)


def read_mapping(path: Path) -> dict[str, tp.Any]:
    """A ``key`` -> ``value`` cache (content hashes by file key, durations by content hash)."""
    columns = read_columns(path)
    return dict(zip(columns.get("key", []), columns.get("value", [])))


def write_mapping(path: Path, mapping: dict[str, tp.Any], top: Path) -> None:
    write_columns(path, {"key": list(mapping), "value": list(mapping.values())}, top)
