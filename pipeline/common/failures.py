"""Whose fault a failure is: the video's own (it cannot be decoded, the model raises on its clips) or the
environment's (a full disk, an I/O error, a read-only store, a stale NFS handle, a file system without
hard links). Only the video's own faults are recorded against the video; the environment's stop the job
and leave its videos not done, to be retried."""

from __future__ import annotations

import errno

ENVIRONMENT_ERRNOS = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EROFS,
        errno.EACCES,
        errno.EPERM,
        errno.EIO,
        errno.ESTALE,
        errno.ETIMEDOUT,
        errno.ENOTSUP,
        errno.EMLINK,
        errno.EXDEV,
    }
)


def environmental(error: BaseException) -> bool:
    """The failure is the environment's: no video is to blame."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:  # an OSError wrapped by zarr or Arrow counts
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in ENVIRONMENT_ERRNOS:
            return True
        current = current.__cause__ or current.__context__
    return False
