"""Fault injection for the test suite: environment variables read by the worker and the store.

They make real work slow or stop it at a chosen point, so that time-outs, pre-emption and ``kill -9``
land where a test needs them. Unset (the default), they do nothing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

SLOW_S = "PIPELINE_FAULT_SLOW_S"
"""Seconds a worker waits after embedding each video, as if the model were larger."""
DIE_DECODING = "PIPELINE_FAULT_DIE_DECODING"
"""A file name: the decoding process that takes this video exits at once, as if killed."""
PAUSE_IN_WRITE = "PIPELINE_FAULT_PAUSE_IN_WRITE"
"""A file path: the store creates it (with its pid) once an entry's data is staged, then waits before the commit."""


def after_video() -> None:
    delay = float(os.environ.get(SLOW_S) or 0)
    if delay > 0:
        time.sleep(delay)


def in_write() -> None:
    marker = os.environ.get(PAUSE_IN_WRITE)
    if marker:
        Path(marker).write_text(str(os.getpid()))
        time.sleep(3600)


def in_decoding(path: str) -> None:
    name = os.environ.get(DIE_DECODING)
    if name and Path(path).name == name:
        os._exit(9)
