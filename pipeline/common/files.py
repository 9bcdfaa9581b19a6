"""Files that readers never see half-written, shared with the store's group, and the timestamps every
record carries."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import stat
import uuid
from pathlib import Path

SHARED_FILE_BITS = 0o660
"""Added to every file the store creates: a lab's members (one Unix group) read and write each other's."""
SHARED_DIR_BITS = 0o2770
"""Added to every folder: group rwx, and setgid so that what is created inside takes the store's group."""


def share(path: Path) -> None:
    """Give ``path`` the store's sharing bits whatever the creator's umask (a file of another user that
    this one cannot change is left as it is: its owner created it shared)."""
    with contextlib.suppress(OSError):
        mode = os.stat(path).st_mode
        bits = SHARED_DIR_BITS if stat.S_ISDIR(mode) else SHARED_FILE_BITS
        if stat.S_IMODE(mode) & bits != bits:
            os.chmod(path, stat.S_IMODE(mode) | bits)


def share_tree(root: Path) -> None:
    """``share`` a folder and everything under it (a segment just written, before it is published)."""
    share(root)
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            share(Path(folder) / name)


def make_shared_dirs(path: Path, top: Path | None = None) -> None:
    """``mkdir -p path``, each folder it creates shared (``top``, where given, is where the walk up for a
    folder that exists may stop early: a store's root, which exists)."""
    missing = []
    probe = path
    while not probe.is_dir() and probe != top and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    if top is not None and probe == top and not top.is_dir():
        missing.append(top)
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            folder.mkdir()
        share(folder)


def write_atomic(path: Path, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` in one rename: readers see the old file or the new one, never half.
    The file is shared with the store's group."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    if isinstance(data, bytes):
        tmp.write_bytes(data)
    else:
        tmp.write_text(data)
    share(tmp)
    os.replace(tmp, path)


def publish(tmp: Path, path: Path) -> bool:
    """Make ``tmp`` visible as ``path`` only if ``path`` does not exist (a hard link, then ``tmp`` removed;
    a rename where the file system has no hard links). False if ``path`` was already there."""
    share(tmp)
    try:
        os.link(tmp, path)
    except FileExistsError:
        tmp.unlink(missing_ok=True)
        return False
    except OSError:  # no hard links here (some object stores): names are unique, a rename will do
        if path.exists():
            tmp.unlink(missing_ok=True)
            return False
        os.rename(tmp, path)
        return True
    tmp.unlink(missing_ok=True)
    return True


def now() -> str:
    """UTC time to the millisecond, ISO 8601: what records and entries carry as ``time`` / ``created``."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
