"""The zarr store: entries by config UID and video content hash, written atomically, read by window.

``open(path)`` / ``Store`` are what analyses use; ``content_hash`` is a video's key. Nothing here imports
torch (re-selecting the layers of a ``cache_n_layers`` entry does, when asked).
"""

from pipeline.store.hashing import content_hash, path_key
from pipeline.store.index import EntryInfo
from pipeline.store.store import Store, open  # noqa: A004 - the documented reader entry point
from pipeline.store.writer import StoreError

__all__ = ["EntryInfo", "Store", "StoreError", "content_hash", "open", "path_key"]
