"""Fault injection for the test suite: environment variables read by the worker and the store.

They make real work slow or stop it at a chosen point, so that time-outs, pre-emption and ``kill -9``
land where a test needs them. Unset (the default), they do nothing.
"""

from __future__ import annotations

import errno
import os
import signal
import time
import typing as tp
from pathlib import Path

SLOW_S = "PIPELINE_FAULT_SLOW_S"
"""Seconds a worker waits after embedding each video, as if the model were larger."""
SLOW_BATCH_S = "PIPELINE_FAULT_SLOW_BATCH_S"
"""Seconds each forward batch takes longer, as if the model were larger (a long video made long to compute)."""
OOM_ABOVE = "PIPELINE_FAULT_OOM_ABOVE"
"""A number: a forward batch of more clips runs out of memory (torch's ``OutOfMemoryError``), as on a GPU
too small for the configured batch."""
DEVICE_ERROR = "PIPELINE_FAULT_DEVICE_ERROR"
"""Set: every forward batch fails with a CUDA error other than out of memory (a GPU in a bad state)."""
DIE_DECODING = "PIPELINE_FAULT_DIE_DECODING"
"""A file name: the decoding process that takes this video exits at once, as if killed."""
PAUSE_IN_WRITE = "PIPELINE_FAULT_PAUSE_IN_WRITE"
"""A file path: the store creates it (with its pid) once an entry's data is staged, then waits before the commit."""


def after_video() -> None:
    delay = float(os.environ.get(SLOW_S) or 0)
    if delay > 0:
        time.sleep(delay)


def after_batch(n_clips: int = 1) -> None:
    """After a forward batch of ``n_clips``: slower (``SLOW_BATCH_S``), or failing as a device would."""
    above = os.environ.get(OOM_ABOVE)
    if above and n_clips > int(above):
        import torch

        raise torch.OutOfMemoryError(f"CUDA out of memory (injected: a batch of {n_clips} clips, at most {above} fit)")
    if os.environ.get(DEVICE_ERROR):
        raise RuntimeError("CUDA error: an illegal memory access was encountered (injected)")
    delay = float(os.environ.get(SLOW_BATCH_S) or 0)
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


TRAP_CUDA = "PIPELINE_FAULT_TRAP_CUDA"
"""Set: a decoding process raises at any entry into CUDA (``torch.cuda``'s functions, ``Tensor.cuda``,
``.pin_memory``, ``.to`` a CUDA device): a forked child that touched the parent's CUDA context would
crash or corrupt it. ``touch``: the process also touches CUDA once, the trap's positive control."""
_CUDA_ENTRIES = (
    "is_available", "init", "_lazy_init", "current_device", "device_count", "set_device", "synchronize",
    "get_device_name", "get_device_properties", "mem_get_info", "memory_allocated", "empty_cache", "Stream", "Event",
)  # fmt: skip


def trap_cuda() -> None:
    """In a decoding process, with ``TRAP_CUDA`` set: every entry into CUDA raises, naming itself."""
    mode = os.environ.get(TRAP_CUDA)
    if not mode:
        return
    import torch

    def trapped(name: str) -> tp.Callable[..., tp.Any]:
        def trap(*args: tp.Any, **kwargs: tp.Any) -> tp.Any:
            raise RuntimeError(f"a decoding process entered CUDA: {name}")

        return trap

    for name in _CUDA_ENTRIES:
        setattr(torch.cuda, name, trapped(f"torch.cuda.{name}"))
    real_to = torch.Tensor.to

    def to(self: torch.Tensor, *args: tp.Any, **kwargs: tp.Any) -> torch.Tensor:
        if any("cuda" in str(a) for a in (*args, kwargs.get("device", ""))):
            raise RuntimeError("a decoding process entered CUDA: Tensor.to(cuda)")
        return real_to(self, *args, **kwargs)

    torch.Tensor.to = to  # type: ignore[method-assign,assignment]
    torch.Tensor.cuda = trapped("Tensor.cuda")  # type: ignore[method-assign]
    torch.Tensor.pin_memory = trapped("Tensor.pin_memory")  # type: ignore[method-assign]
    if mode == "touch":
        torch.cuda.is_available()


AT = "PIPELINE_FAULT_AT"
"""Faults at named points of the store's protocol: ``POINT=ACTION`` pairs separated by commas. ACTION is
``kill`` (SIGKILL, as ``kill -9``), ``stall`` (the process stops itself with SIGSTOP, every thread with it,
after writing its pid to ``$PIPELINE_FAULT_MARKERS/POINT``; the test sends SIGCONT), or an error raised
there: ``enospc``, ``estale``, ``eio``; ``estale*3`` raises the first three times only."""
MARKERS = "PIPELINE_FAULT_MARKERS"
POINTS = (
    "segment-staged",  # a segment's arrays written in staging, not yet synced
    "segment-placed",  # the segment renamed into the config's folder, no commit names it yet
    "commit-written",  # a commit written whole under its temporary name, not yet linked
    "commit-linked",  # the commit linked to its number, its writer not yet told
    "checkpoint-written",  # a checkpoint written under its temporary name, not yet linked
    "checkpoint-linked",  # the checkpoint linked, not yet read back; commits not yet cleaned up
    "cleanup",  # before each file the cleanup removes
    "gc-revoked",  # gc committed a writer's revocation, has removed nothing yet
    "read",  # before each read of a commit, a checkpoint or a config's fact
    "group-written",  # a config group's zarr.json written whole aside, not yet linked (``pipeline.store.groups``)
    "fact-written",  # a config's fact written whole aside, not yet linked (``pipeline.store.facts``)
    "facts-mirror",  # the config's facts recorded, its group's attributes not yet rewritten to mirror them
)
_ERRORS = {"enospc": errno.ENOSPC, "estale": errno.ESTALE, "eio": errno.EIO}
_raised: dict[str, int] = {}


def reset() -> None:
    """Forget how many times each counted error was raised (``estale*3``): a test's count starts afresh."""
    _raised.clear()


def point(name: str) -> None:
    """A fault point of the store's protocol (``AT``); nothing when unset."""
    spec = os.environ.get(AT)
    if not spec:
        return
    for pair in spec.split(","):
        where, _, action = pair.partition("=")
        if where != name:
            continue
        kind, _, times = action.partition("*")
        if kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif kind == "stall":
            folder = os.environ.get(MARKERS)
            if folder:
                Path(folder, name).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGSTOP)
        elif kind in _ERRORS:
            count = _raised.get(pair, 0)
            if times and count >= int(times):
                continue
            _raised[pair] = count + 1
            code = _ERRORS[kind]
            raise OSError(code, f"{os.strerror(code)} (injected at {name})")
