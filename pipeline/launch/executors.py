"""The submitit executor a launch runs its jobs with: local, debug (in-process) or SLURM."""

from __future__ import annotations

import shutil
import typing as tp
from pathlib import Path

from pipeline.config import ConfigError, RunConfig


def make_executor(run: RunConfig, folder: Path) -> tp.Any:
    """A submitit executor for ``executor.name`` (``auto`` resolved), jobs logged under ``folder``."""
    import submitit

    ex = run.executor
    name = ex.resolved_name()
    if name == "debug":
        return submitit.DebugExecutor(folder=str(folder))
    if name == "local":
        executor: tp.Any = submitit.LocalExecutor(folder=str(folder))
        executor.update_parameters(timeout_min=ex.timeout_min)
        return executor
    if shutil.which("sbatch") is None:
        raise ConfigError("executor.name: slurm, but sbatch is not on the PATH (run `make slurm-up` for a local one)")
    executor = submitit.SlurmExecutor(folder=str(folder / "%j"), max_num_timeout=ex.max_requeues)
    optional = {k: getattr(ex, k) for k in ("partition", "account", "qos", "constraint") if getattr(ex, k)}
    if ex.mem_gb:
        optional["mem"] = f"{int(ex.mem_gb * 1024)}MB"
    if ex.gpus_per_node:
        optional["gpus_per_node"] = ex.gpus_per_node
    executor.update_parameters(
        job_name=f"pipeline-{run.embed.uid()}",
        time=ex.timeout_min,
        cpus_per_task=ex.cpus_per_task,
        array_parallelism=ex.array_parallelism,
        signal_delay_s=ex.signal_delay_s,
        setup=list(ex.setup),
        additional_parameters=dict(ex.sbatch_args),
        **optional,
    )
    return executor
