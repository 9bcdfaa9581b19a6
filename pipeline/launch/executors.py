"""The submitit executor a launch runs its jobs with: local, debug (in-process) or SLURM."""

from __future__ import annotations

import functools
import os
import shutil
import types
import typing as tp
from pathlib import Path

import submitit

from pipeline.config import ConfigError, RunConfig
from pipeline.launch.staging import OFFLINE_ENV


class _OwnSessionLocalExecutor(submitit.LocalExecutor):
    """Local jobs in a session of their own. A terminal's Ctrl-C goes to its whole foreground process
    group; the jobs must keep running, as they do on SLURM, so that ``pipeline.status`` and
    ``pipeline.cancel`` find them. ``env``: variables the jobs get on top of the launcher's (passed in the
    environment, not as ``setup`` lines: a shell in between changes the pid submitit's job id is)."""

    def __init__(self, folder: str, env: dict[str, str] | None = None) -> None:
        super().__init__(folder=folder)
        self.env = dict(env or {})

    def _submit_command(self, command: str) -> tp.Any:
        from submitit.local import local

        real = local.subprocess
        local.subprocess = types.SimpleNamespace(  # type: ignore[assignment]  # start_controller uses Popen alone
            Popen=functools.partial(real.Popen, start_new_session=True)
        )
        saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)  # start_controller copies os.environ for the job
        try:
            return super()._submit_command(command)
        finally:
            local.subprocess = real
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def workers_per_task(gpus_per_node: int | None) -> int:
    """Workers an array task runs on its node: one per GPU it asks for (each a SLURM task with its own GPU,
    CPUs and memory, so that every GPU of a multi-GPU node works), else one."""
    return max(1, gpus_per_node or 0)


def make_executor(run: RunConfig, folder: Path, offline: bool = False) -> tp.Any:
    """A submitit executor for ``executor.name`` (``auto`` resolved), jobs logged under ``folder``; with
    ``offline``, its jobs run with ``HF_HUB_OFFLINE=1`` (their weights staged: ``pipeline.launch.staging``)."""
    ex = run.executor
    name = ex.resolved_name()
    setup = [f"export {' '.join(f'{k}={v}' for k, v in OFFLINE_ENV.items())}"] if offline else []
    if name == "debug":
        return submitit.DebugExecutor(folder=str(folder))
    if name == "local":
        executor: tp.Any = _OwnSessionLocalExecutor(str(folder), OFFLINE_ENV if offline else None)
        executor.update_parameters(timeout_min=ex.timeout_min)
        return executor
    if shutil.which("sbatch") is None:
        raise ConfigError("executor.name: slurm, but sbatch is not on the PATH (run `make slurm-up` for a local one)")
    executor = submitit.SlurmExecutor(folder=str(folder / "%j"), max_num_timeout=ex.max_requeues)
    optional = {k: getattr(ex, k) for k in ("partition", "account", "qos", "constraint") if getattr(ex, k)}
    workers = workers_per_task(ex.gpus_per_node)
    if ex.mem_gb:
        optional["mem"] = f"{int(ex.mem_gb * 1024 * workers)}MB"  # --mem is per node: each worker's, times them
    if workers > 1:  # one worker per GPU: SLURM tasks of their own, each given one GPU, all walking the queue
        optional.update(ntasks_per_node=workers, gpus_per_task=1)
    elif ex.gpus_per_node:
        optional["gpus_per_node"] = ex.gpus_per_node
    executor.update_parameters(
        job_name=f"pipeline-{run.embed.uid()}",
        time=ex.timeout_min,
        cpus_per_task=ex.cpus_per_task,
        array_parallelism=ex.array_parallelism,
        signal_delay_s=ex.signal_delay_s,
        setup=[*setup, *ex.setup],
        additional_parameters=dict(ex.sbatch_args),
        **optional,
    )
    return executor
