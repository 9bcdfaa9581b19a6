"""Writing one entry: a sharded zarr array staged aside, then made visible by one directory rename."""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import sys
import typing as tp
import uuid
from pathlib import Path

import numpy as np

from pipeline.store import layout
from pipeline.testing import faults

TIME_CHUNK = 256
"""Time steps per chunk inside an entry's one shard: reading a time window reads only its chunks."""


class StoreError(OSError):
    """The store itself cannot take writes (full, read-only): no video is to blame, so the job stops."""


_STORE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


def _json_default(value: tp.Any) -> tp.Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def jsonable(value: tp.Any) -> tp.Any:
    """``value`` as JSON would give it back (numpy scalars and arrays turned into numbers and lists)."""
    return json.loads(json.dumps(value, default=_json_default))


def write_entry(store: Path, config_uid: str, video_hash: str, data: np.ndarray, attrs: dict[str, tp.Any]) -> bool:
    """Write an entry atomically; returns False if another writer completed it first. Each entry is one
    sharded array (``zarr.json`` and one shard file ``c/0/0``) however long the video."""
    import zarr

    target = store / config_uid / video_hash
    if target.exists():
        return False
    staging = layout.staging(store) / f"{config_uid}-{video_hash}-{uuid.uuid4().hex[:8]}"
    staging.parent.mkdir(parents=True, exist_ok=True)
    try:
        chunks = (*data.shape[:-1], max(1, min(data.shape[-1], TIME_CHUNK)))
        array = zarr.create_array(
            store=str(staging),
            shape=data.shape,
            dtype=data.dtype,
            chunks=chunks,
            shards=(*chunks[:-1], chunks[-1] * math.ceil(max(data.shape[-1], 1) / chunks[-1])),
            zarr_format=3,
            attributes=jsonable(attrs),
        )
        array[...] = data
        faults.in_write()
        try:
            os.rename(staging, target)
        except OSError:
            if (target / "zarr.json").exists():
                return False
            raise
    except OSError as e:
        if e.errno in _STORE_ERRNOS:
            raise StoreError(
                e.errno,
                f"store: {os.strerror(e.errno or 0).lower()} under {store} while writing entry "
                f"{config_uid}/{video_hash} ({data.nbytes} bytes); it was not written and stored entries are "
                f"intact: free space ({sys.executable} -m pipeline.gc store={store}) or move the store, then relaunch",
            ) from e
        raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return True
