"""Whose fault a failure is: the video's own (it cannot be decoded, the model raises on its clips) or the
environment's (a full disk, an I/O error, a read-only store, a stale NFS handle, a file system without
hard links, a file missing on the node, a GPU in a bad state). Only the video's own faults are recorded
against the video; the environment's leave its videos not done, to be retried by another job or launch."""

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


_DEVICE_ERRORS = ("CUDA error", "CUDA driver error", "cuDNN error", "CUBLAS_STATUS_", "CUDNN_STATUS_", "NCCL error")
"""How CUDA's failures other than out-of-memory begin (a launch failure, an illegal access, an ECC error,
a lost device): the device's state, not the video's clips. PyTorch raises them as ``RuntimeError`` (its
``AcceleratorError`` since 2.8)."""


def device_fault(error: BaseException) -> bool:
    """The GPU failed, not the video: every later forward on it fails too (CUDA's errors are sticky)."""
    if type(error).__name__ == "AcceleratorError":
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and "out of memory" not in text and any(m in text for m in _DEVICE_ERRORS)


def not_the_video(error: BaseException) -> bool:
    """Whether a video that raised this is to be left not done rather than recorded as failed: the
    environment's fault (``environmental``), the GPU's (``device_fault``, or out of memory with one clip:
    the clips of a config all have one shape, so another process or fragmentation is to blame), or its
    file missing on this node."""
    return (
        environmental(error)
        or device_fault(error)
        or isinstance(error, FileNotFoundError)
        or out_of_memory(error)  # still, at one clip (the batcher halved it down to one): the device's state
    )


def out_of_memory(error: BaseException) -> bool:
    """The device (or the host, on the CPU) had no memory for a batch: a smaller one may fit. Torch's
    ``OutOfMemoryError`` by name (this module imports no torch), or the allocators' words."""
    text = str(error)
    return type(error).__name__ == "OutOfMemoryError" or "out of memory" in text or "can't allocate memory" in text
