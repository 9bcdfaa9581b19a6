"""What the job's environment says about the job: its CPUs (SLURM's allocation and the process's affinity
mask, or ``PIPELINE_THREADS``)."""

from __future__ import annotations

import os
import typing as tp

THREADS = "PIPELINE_THREADS"
"""Outside SLURM, the CPUs a job may use (the tests set it to keep torch to a few threads)."""


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` set: the Hugging Face hub is not to be asked (a compute node, a staged model)."""
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def affinity() -> int | None:
    """CPUs this process may run on (its affinity mask: what a cgroup or an ``srun`` step's binding gives)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return None


def cpus_given(environ: tp.Mapping[str, str], mask: int | None) -> int | None:
    """CPUs given to a job: ``SLURM_CPUS_PER_TASK``, but no more than its affinity mask ``mask`` (an ``srun``
    step may be bound to fewer than its job was given), else ``PIPELINE_THREADS``; None when neither is set."""
    slurm = environ.get("SLURM_CPUS_PER_TASK")
    if slurm:
        return min(int(slurm), mask) if mask else int(slurm)
    value = environ.get(THREADS)
    return int(value) if value else None


def job_cpus() -> int | None:
    """CPUs given to this job (``cpus_given`` for this process)."""
    return cpus_given(os.environ, affinity())


def n_decoders(configured: int | None) -> int:
    """Decoding processes per job: as configured, else one per CPU of the job but one (the model's), and at
    least two (on two CPUs, two decoding processes keep pace with the in-process engine's two threads)."""
    if configured is not None:
        return configured
    return max(2, (job_cpus() or affinity() or os.cpu_count() or 2) - 1)
