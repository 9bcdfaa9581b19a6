"""Reads that a network file system may fail for a while: ESTALE (a file replaced under an open handle or
a cached name) and EIO (a server that hangs, then answers) are retried with backoff up to a bounded wait;
then the error names the file and how long it was tried."""

from __future__ import annotations

import errno
import logging
import os
import time
import typing as tp

T = tp.TypeVar("T")

TRANSIENT = frozenset({errno.ESTALE, errno.EIO, errno.ETIMEDOUT, errno.EAGAIN})
READ_WAIT_S = 60.0
"""How long a read is retried through transient errors before it gives up."""

log = logging.getLogger(__name__)


def transient(error: BaseException) -> bool:
    """An error that a network file system gives for a while and that may pass (the file is not to blame)."""
    return isinstance(error, OSError) and error.errno in TRANSIENT


def backoff(attempt: int, first_s: float = 0.05, most_s: float = 5.0) -> float:
    """Seconds to wait before try ``attempt + 1`` (doubling, capped)."""
    return min(most_s, first_s * 2**attempt)


def retry_io(read: tp.Callable[[], T], what: str, wait_s: float = READ_WAIT_S) -> T:
    """``read()``, again after ESTALE / EIO / ETIMEDOUT / EAGAIN until ``wait_s`` seconds have passed."""
    started = time.monotonic()
    attempt = 0
    while True:
        try:
            return read()
        except OSError as e:
            waited = time.monotonic() - started
            if not transient(e):
                raise
            if waited >= wait_s:
                raise OSError(
                    e.errno,
                    f"store: reading {what} failed for {waited:.0f} s ({os.strerror(e.errno or 0)}); "
                    "the file system does not answer",
                ) from e
            if attempt == 0:
                log.warning(
                    "store: %s while reading %s; retrying for up to %.0f s", os.strerror(e.errno or 0), what, wait_s
                )
            time.sleep(min(backoff(attempt), max(0.0, wait_s - waited)))
            attempt += 1
