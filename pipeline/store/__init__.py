"""The zarr store: entries by config UID and video content hash, packed into segments that each writer
writes whole, listed by a Parquet index, read by window.

``open(path)`` / ``Store`` are what analyses use; ``content_hash`` is a video's key. Nothing here imports
torch (re-selecting the layers of a ``cache_n_layers`` entry does, when asked).
"""

from pipeline.store.hashing import content_hash, path_key
from pipeline.store.index import Entries, EntryInfo
from pipeline.store.store import OldLayoutError, Store, open  # noqa: A004 - the documented reader entry point
from pipeline.store.writer import StoreError

__all__ = ["Entries", "EntryInfo", "OldLayoutError", "Store", "StoreError", "content_hash", "open", "path_key"]
