"""The store's promises, checked after every fault: a listed entry loads; an entry's value never changes
once seen; a listed entry never disappears (unless a commit removed it); every acknowledged write is
listed; a video's progress is never listed, and the progress the log holds loads. ``Observer`` remembers
what it saw across looks; each check returns the broken promises."""

from __future__ import annotations

import hashlib
import typing as tp
from pathlib import Path

import numpy as np

from pipeline.store import Store


def digest(data: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(data).tobytes()).hexdigest()[:16]


class Observer:
    """What readers of one config have seen: entry -> digest of its value."""

    def __init__(self, path: Path, config_uid: str) -> None:
        self.path, self.config_uid = path, config_uid
        self.seen: dict[str, str] = {}
        self.removed: set[str] = set()
        """Entries a commit removed on purpose (a test's own ``remove_entries``)."""

    def look(self, acknowledged: tp.Mapping[str, str] = {}) -> list[str]:  # noqa: B006 - read only
        """One fresh reader's look: the broken promises it finds (empty: none)."""
        broken: list[str] = []
        store = Store(self.path)
        try:
            listed = {e.video_hash for e in store.entries(self.config_uid)}
        except Exception as e:  # noqa: BLE001 - a listing that raises is itself a broken promise
            return [f"listing raised {type(e).__name__}: {e}"]
        for video_hash in sorted(listed):
            try:
                data, _ = store.load_numpy(f"{self.config_uid}/{video_hash}")
            except Exception as e:  # noqa: BLE001
                broken.append(f"listed entry {video_hash} does not load: {type(e).__name__}: {e}")
                continue
            value = digest(data)
            if self.seen.setdefault(video_hash, value) != value:
                broken.append(f"entry {video_hash} changed value after it was seen")
        try:
            progress = store.catalog(self.config_uid).progress_rows()
        except Exception as e:  # noqa: BLE001
            return [*broken, f"reading progress raised {type(e).__name__}: {e}"]
        for row in progress:
            video_hash = str(row["video_hash"])
            if video_hash in listed:
                broken.append(f"entry {video_hash} is listed with progress beside it")
            try:
                store.progress(self.config_uid, video_hash)
            except Exception as e:  # noqa: BLE001
                broken.append(f"progress of {video_hash} does not load: {type(e).__name__}: {e}")
        for video_hash in sorted(set(self.seen) - listed - self.removed):
            broken.append(f"entry {video_hash} was listed, then disappeared")
        for video_hash, value in sorted(acknowledged.items()):
            if video_hash not in listed:
                broken.append(f"acknowledged write {video_hash} is not listed")
            elif self.seen.get(video_hash) != value:
                broken.append(f"acknowledged write {video_hash} is listed with another writer's value")
        return broken
