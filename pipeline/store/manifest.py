"""An entry's row: where its rows are (segment, first row, rows) and its attributes, one Parquet row per
entry in the log's commits and checkpoints (``pipeline.store.log``), and in layout 4's manifests."""

from __future__ import annotations

import json
import typing as tp
from pathlib import Path

import numpy as np

if tp.TYPE_CHECKING:
    import pyarrow as pa

PER_ENTRY = {
    "video_path": "string",
    "model": "string",
    "frequency": "float64",
    "start": "float64",
    "duration": "float64",
    "seconds": "float64",
    "created": "string",
    "job_id": "string",
}
"""Attributes that get a column of their own (listing reads them); every other attribute but ``times``
(the segment's ``time`` array) is kept in the ``attrs`` column as JSON, the same text for a job's entries,
which Parquet's dictionary encoding stores once."""

LISTING = [
    "video_hash",
    "video_path",
    "model",
    "features",
    "rows",
    "frequency",
    "duration",
    "created",
    "seconds",
    "job_id",
]
"""The columns ``Store.entries()`` reads."""


def schema() -> pa.Schema:
    import pyarrow as pa

    types = {"string": pa.string(), "float64": pa.float64()}
    return pa.schema(
        [
            ("video_hash", pa.string()),
            ("segment", pa.string()),
            ("first_row", pa.int64()),
            ("rows", pa.int64()),
            ("features", pa.string()),
            ("dtype", pa.string()),
            *[(name, types[kind]) for name, kind in PER_ENTRY.items()],
            ("attrs", pa.string()),
        ]
    )


def _json_default(value: tp.Any) -> tp.Any:
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def jsonable(value: tp.Any) -> tp.Any:
    """``value`` as JSON would give it back (numpy scalars and arrays turned into numbers and lists)."""
    return json.loads(json.dumps(value, default=_json_default))


def manifest_row(
    video_hash: str, segment: str, first_row: int, shape: tuple[int, ...], dtype: str, attrs: dict[str, tp.Any]
) -> dict[str, tp.Any]:
    """The manifest row of an entry of ``shape`` (features..., time) at ``first_row`` of ``segment``."""
    rest = {k: v for k, v in attrs.items() if k not in PER_ENTRY and k not in ("times", "video_hash")}
    row: dict[str, tp.Any] = {
        "video_hash": video_hash,
        "segment": segment,
        "first_row": first_row,
        "rows": int(shape[-1]),
        "features": json.dumps(list(shape[:-1])),
        "dtype": dtype,
        "attrs": json.dumps(rest, sort_keys=True, separators=(",", ":"), default=_json_default),
    }
    for name, kind in PER_ENTRY.items():
        value = attrs.get(name)
        row[name] = None if value is None else (float(value) if kind == "float64" else str(value))
    return row


def entry_attrs(row: tp.Mapping[str, tp.Any]) -> dict[str, tp.Any]:
    """An entry's attributes (all but ``times``) from its manifest row, as they were given to the writer."""
    attrs: dict[str, tp.Any] = json.loads(row["attrs"]) if row.get("attrs") else {}
    attrs.update({k: row[k] for k in PER_ENTRY if row.get(k) is not None})
    attrs["video_hash"] = row["video_hash"]
    return attrs


def to_table(rows: list[dict[str, tp.Any]]) -> pa.Table:
    import pyarrow as pa

    return pa.Table.from_pylist(rows, schema=schema())


def read(path: Path, columns: list[str] | None = None) -> pa.Table:
    """A manifest or index, ``attrs`` kept dictionary-encoded: a job's entries share one text, and
    decoding it per row would hold a copy per entry in memory."""
    import pyarrow.parquet as pq

    wanted = schema().names if columns is None else columns
    return pq.read_table(path, columns=wanted, read_dictionary=["attrs"] if "attrs" in wanted else None)
