"""What the job's environment says about the job: its CPUs (SLURM's allocation, or ``PIPELINE_THREADS``)."""

from __future__ import annotations

import os

THREADS = "PIPELINE_THREADS"
"""Outside SLURM, the CPUs a job may use (the tests set it to keep torch to a few threads)."""


def job_cpus() -> int | None:
    """CPUs given to this job: SLURM's ``SLURM_CPUS_PER_TASK``, else ``PIPELINE_THREADS``; None when neither."""
    value = os.environ.get("SLURM_CPUS_PER_TASK") or os.environ.get(THREADS)
    return int(value) if value else None


def n_decoders(configured: int | None) -> int:
    """Decoding processes per job: as configured, else one per CPU of the job but one (the model's), and at
    least two (on two CPUs, two decoding processes keep pace with the in-process engine's two threads)."""
    if configured is not None:
        return configured
    return max(2, (job_cpus() or os.cpu_count() or 2) - 1)
