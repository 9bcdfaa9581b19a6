"""Files that readers never see half-written, and the timestamps every record carries."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from pathlib import Path


def write_atomic(path: Path, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` in one rename: readers see the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    if isinstance(data, bytes):
        tmp.write_bytes(data)
    else:
        tmp.write_text(data)
    os.replace(tmp, path)


def now() -> str:
    """UTC time to the millisecond, ISO 8601: what records and entries carry as ``time`` / ``created``."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
