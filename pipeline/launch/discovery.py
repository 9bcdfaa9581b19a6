"""Finding the videos of a launch, their content hashes and their durations (both cached in the store)."""

from __future__ import annotations

import concurrent.futures
import glob
import os
import time
import typing as tp
from pathlib import Path

from pipeline.common.progress import Progress
from pipeline.config import ConfigError
from pipeline.store import Store, caches, content_hash

READERS = 8
"""Files hashed (or probed) at once: on a shared file system latency, not one core, is the limit."""
CACHE_SAVE_S = 60.0
"""While hashing or probing, the cache is written back this often (and at the end)."""

VIDEO_SUFFIXES = {".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts"}


LIST_SUFFIXES = {".txt", ".lst", ".list"}


def find_videos(spec: str | tp.Sequence[str]) -> list[str]:
    """Video paths from a folder (recursive), a glob pattern, one file, a text file of paths (one per line),
    or a list of any of these: their videos in the order given, a path named twice kept once."""
    if not isinstance(spec, str):
        if not spec:
            raise ConfigError("videos: an empty list")
        return list(dict.fromkeys(p for item in spec for p in find_videos(str(item))))
    path = Path(spec)
    if path.is_dir():
        # Symlinks are kept even when dangling, so that a broken link is reported rather than skipped.
        found = sorted(
            str(p) for p in path.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and (p.is_file() or p.is_symlink())
        )
        if not found:
            raise ConfigError(f"videos: no video files ({', '.join(sorted(VIDEO_SUFFIXES))}) in folder {spec}")
        return found
    if path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
        base = path.parent
        lines = [ln.strip() for ln in path.read_text().splitlines()]
        found = [str(base / ln) for ln in lines if ln and not ln.startswith("#")]
        missing = [p for p in found if not Path(p).is_file()]
        if missing:
            raise ConfigError(f"videos: {len(missing)} listed file(s) missing in {spec}, first: {missing[0]}")
        if not found:
            raise ConfigError(f"videos: the list {spec} names no file")
        return found
    if path.is_file():
        return [str(path)]
    if glob.has_magic(spec):
        found = sorted(p for p in glob.glob(spec, recursive=True) if Path(p).is_file())
        if not found:
            raise ConfigError(f"videos: the pattern {spec!r} matches no file")
        return found
    raise ConfigError(f"videos: no such folder, file or pattern: {spec}")


def _unreadable(path: str, error: OSError) -> str:
    if os.path.islink(path) and not os.path.exists(path):
        return f"{path}: dangling symlink to {os.readlink(path)}"
    return f"{path}: cannot read ({error.strerror or error})"


def hash_files(
    paths: list[str],
    store: Store,
    desc: str = "hashing videos",
    *,
    cache_name: str = "hashes",
    compute: tp.Callable[[str], str] | None = None,
) -> tuple[dict[str, str], dict[str, str], int]:
    """Content hash of each readable path (reusing a cache keyed by path, size and mtime kept in the
    store), the reason for each path that cannot be read (a dangling symlink, no permission), and how many
    bytes had to be read (files not in the cache). ``compute`` and ``cache_name``: another hash (default:
    the videos' ``content_hash``), cached apart (the SHA-256 of a model's files)."""
    cache = caches.read(store.path, cache_name)
    sizes: dict[str, int] = {}

    def key(p: str) -> str:
        st = os.stat(p)
        sizes[p] = st.st_size
        return f"{os.path.realpath(p)}|{st.st_size}|{st.st_mtime_ns}"

    keys: dict[str, str] = {}
    unreadable: dict[str, str] = {}
    for p in paths:
        try:
            k = key(p)
            if k not in cache and not os.access(p, os.R_OK):
                raise PermissionError(13, "permission denied")
            keys[p] = k
        except OSError as e:
            unreadable[p] = _unreadable(p, e)
    hasher = content_hash if compute is None else compute  # looked up at the call: tests stand in for it
    read = _fill_cache(cache, cache_name, store.path, {k: p for p, k in keys.items()}, hasher, desc)
    return {p: cache[k] for p, k in keys.items()}, unreadable, sum(sizes[p] for p in read)


def video_durations(items: list[tuple[str, str]], store: Store) -> dict[str, float]:
    """Content hash -> duration in seconds of each ``(path, hash)``, probed once (container header only)
    and cached in the store by content hash, beside the hash cache."""
    from pipeline.embedding.decoding import container_seconds

    cache = known_durations(store)
    _fill_cache(cache, "durations", store.path, {h: p for p, h in items}, container_seconds, "probing durations")
    return {h: cache[h] for _, h in items}


def known_durations(store: Store) -> dict[str, float]:
    """Content hash -> duration in seconds of every video whose duration the store's cache holds (what a
    launch probed): progress lines count the video-seconds done with it."""
    return caches.read(store.path, "durations")


def _fill_cache(
    cache: dict[str, tp.Any],
    name: str,
    top: Path,
    sources: dict[str, str],
    compute: tp.Callable[[str], tp.Any],
    desc: str,
) -> list[str]:
    """Compute ``compute(path)`` for each cache key missing from ``cache`` (``sources``: key -> path),
    ``READERS`` at a time with a progress bar past 20, saving what is new to the store's cache ``name`` (an
    appended chunk) every ``CACHE_SAVE_S`` and at the end, also when interrupted: a launcher killed while
    it hashes a large corpus (an SSH session dropped) loses at most that much work. Returns the paths it
    computed."""
    todo = [(key, path) for key, path in sources.items() if key not in cache]
    if not todo:
        return []
    saved, new = time.monotonic(), {}
    try:
        with (
            concurrent.futures.ThreadPoolExecutor(max_workers=READERS) as pool,
            Progress(len(todo), desc, unit="files", disable=len(todo) < 20) as progress,
        ):
            for (key, _), value in zip(todo, pool.map(compute, [path for _, path in todo])):
                cache[key] = new[key] = value
                progress.update()
                if time.monotonic() - saved >= CACHE_SAVE_S:
                    caches.append(top, name, new)
                    saved, new = time.monotonic(), {}
    finally:
        caches.append(top, name, new)
    return [path for _, path in todo]
