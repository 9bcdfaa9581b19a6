"""Files that readers never see half-written, shared with the store's group, and the timestamps every
record carries."""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
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


class NotPrivate(PermissionError):
    """A folder that jobs unpickle and run from is writable by others, or owned by someone else."""


def make_private_dir(path: Path, top: Path) -> Path:
    """``path``, a folder only its owner can write (others read it), below shared folders that carry the
    sticky bit (members create their own folder there, and cannot rename or remove another's): where a
    user's jobs keep what they unpickle and run. Raises ``NotPrivate`` when it exists and another user
    owns it or can write it."""
    make_shared_dirs(path.parent, top)
    probe = path.parent
    while probe != top and top in probe.parents:
        with contextlib.suppress(OSError):
            if os.stat(probe).st_uid == os.getuid():
                os.chmod(probe, stat.S_IMODE(os.stat(probe).st_mode) | stat.S_ISVTX)
        probe = probe.parent
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o755)
        os.chmod(path, 0o755)  # no setgid, no group write, whatever the parent and the umask
    st = os.stat(path)
    if st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) & (stat.S_IWGRP | stat.S_IWOTH):
        raise NotPrivate(
            f"{path} holds the jobs' pickled submissions, which they unpickle and run, but "
            + ("another user owns it" if st.st_uid != os.getuid() else "other users can write it")
            + f"; remove it or make it yours alone (chmod 755 {path})"
        )
    return path


def write_atomic(path: Path, data: str | bytes, sync: bool = False) -> None:
    """Replace ``path`` with ``data`` in one rename: readers see the old file or the new one, never half.
    The file is shared with the store's group. ``sync``: the data and the rename on disk before this
    returns (what others read after a crash: a launch's queue and record, failures, caches), not for
    heartbeats, rewritten every few seconds and worthless after a crash."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    raw = data if isinstance(data, bytes) else data.encode()
    if sync:
        write_synced(tmp, raw)
    else:
        tmp.write_bytes(raw)
    share(tmp)
    os.replace(tmp, path)
    if sync:
        fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make the names in folder ``path`` (files created, renamed or linked there) survive a crash."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as e:  # some file systems cannot sync a folder; their names are synced with the files
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def write_synced(path: Path, data: bytes) -> None:
    """Create ``path`` (it must not exist), write ``data`` whole and fsync it: after this returns the file
    is on disk as written, whatever crashes next. A write that fails (a full disk) removes the file."""
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o664)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    os.close(fd)
    share(path)


def sync_tree(root: Path) -> None:
    """fsync every file and folder under ``root`` (a segment before its commit names it)."""
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(folder))


class NoHardLinks(OSError):
    """The file system cannot make hard links: the store's commits need them (docs/store.md)."""


def link_new(tmp: Path, path: Path) -> bool:
    """Give the whole, synced file ``tmp`` the name ``path`` only if no file has it (``link()``, atomic
    on local file systems, NFS v3+ and Lustre), then sync the folder. False if ``path`` exists. Never a
    rename, which would replace a file that another process published meanwhile."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        # NFS's LINK is not idempotent: a retransmitted call whose first reply was lost answers "exists"
        # for the link that succeeded; the temporary file's link count says (open(2), O_EXCL on NFS)
        if os.stat(tmp).st_nlink < 2 or not os.path.samefile(tmp, path):
            return False
    except OSError as e:
        if e.errno in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise NoHardLinks(
                e.errno,
                f"store: {path.parent} cannot make hard links ({os.strerror(e.errno)}); the store "
                "publishes its commits with link() and needs a POSIX file system (docs/store.md)",
            ) from e
        raise
    fsync_dir(path.parent)
    return True


def now() -> str:
    """UTC time to the millisecond, ISO 8601: what records and entries carry as ``time`` / ``created``."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
