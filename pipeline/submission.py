"""Submitting a launch's jobs with submitit: the executor (local, debug, SLURM) and one job array per launch."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
import time
import typing as tp
import uuid
from pathlib import Path

from .config import ConfigError, RunConfig
from .decoding import VideoError
from .discovery import find_videos
from .planning import Plan, make_plan
from .preflight import prepare_model
from .store import Store, path_key
from .summary import Summary
from .worker import ShardJob


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


_SLURM_ENDED = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}


def slurm_states(jobs: list[tp.Any]) -> dict[str, str]:
    """Array task id -> state, from squeue (sacct needs accounting, which small clusters lack)."""
    from submitit.slurm.slurm import read_job_id

    arrays = sorted({str(j.job_id).split("_")[0] for j in jobs})
    try:
        text = subprocess.run(
            ["squeue", "-h", "--states=all", "-o", "%i|%T", "-j", ",".join(arrays)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    states = {}
    for line in text.splitlines():
        jid, _, state = line.strip().partition("|")
        for parts in read_job_id(jid):
            if len(parts) == 3:
                states.update({f"{parts[0]}_{i}": state for i in range(int(parts[1]), int(parts[2]) + 1)})
            else:
                states["_".join(parts[:2])] = state
    return states


@dataclasses.dataclass
class Launch:
    """One submitted config: its plan and jobs (each job walks the plan's queue, ``plan.to_compute``)."""

    run: RunConfig
    plan: Plan
    jobs: list[tp.Any]
    summary: Summary
    submitted: float = dataclasses.field(default_factory=time.time)
    seen: set[str] = dataclasses.field(default_factory=set)

    @property
    def on_slurm(self) -> bool:
        return self.run.executor.resolved_name() == "slurm"

    def poll(self) -> dict[str, str]:
        """Job id -> how it ended, for every job that is over (asking squeue on SLURM)."""
        return self.job_ended(slurm_states(self.jobs) if self.on_slurm else {})

    def job_ended(self, states: dict[str, str]) -> dict[str, str]:
        """Job id -> how it ended ("" for a result), for every job that is over."""
        ended = {}
        for job in self.jobs:
            jid = str(job.job_id)
            if not self.on_slurm:
                if job.done():
                    ended[jid] = ""
                continue
            if job.paths.result_pickle.exists():
                ended[jid] = ""
                continue
            state = states.get(jid, "")
            if state:
                self.seen.add(jid)
            if state.split()[0:1] and state.split()[0] in _SLURM_ENDED:
                ended[jid] = state
            elif not state and (jid in self.seen or time.time() - self.submitted > 120):
                ended[jid] = "GONE"
        return ended


def submit(run: RunConfig, *, out: tp.TextIO = sys.stdout, prepared: bool = False) -> Launch | None:
    """Plan one config and submit its jobs as one job array; None when there is nothing to submit.
    ``prepared``: ``run`` already went through ``prepare_model`` (a sweep point, checked for duplicates)."""
    paths = find_videos(run.videos)
    if not prepared:
        run = prepare_model(run)
    store = Store(run.store)
    store.ensure()
    plan = make_plan(run, store, paths)
    n_unique = len(plan.paths) - len(plan.duplicates)
    n_jobs = plan.n_jobs(run.videos_per_job, run.max_jobs)
    print(
        f"plan: {len(plan.paths)} videos found ({n_unique} distinct), {len(plan.cached)} cached, "
        + (f"{len(plan.failed_before)} failed before, " if plan.failed_before else "")
        + (f"{len(plan.unreadable)} unreadable, " if plan.unreadable else "")
        + f"{len(plan.to_compute)} to compute in {n_jobs} job(s); config {plan.config_uid}",
        file=out,
    )
    summary = Summary(plan.config_uid, str(store.path), cached=list(plan.cached), duplicates=plan.duplicates)
    summary.failed.update(plan.failed_before)
    summary.failed.update({p: f"VideoError: {why}" for p, why in plan.unreadable.items()})
    if run.dry_run:
        names = [Path(p).name for p, _ in plan.to_compute]
        if names:
            longest = ", ".join(names[:3]) + (f" ... ({len(names) - 3} more)" if len(names) > 3 else "")
            print(f"  each job claims the next video, longest first: {longest}", file=out)
        print("dry run: nothing submitted", file=out)
        return Launch(run, plan, [], summary)
    if plan.unreadable:
        store.ensure_config(run.embed)
        for p, why in plan.unreadable.items():
            store.record_failure(plan.config_uid, path_key(p), p, VideoError(why))
    if not n_jobs:
        return Launch(run, plan, [], summary)
    store.ensure_config(run.embed)
    executor = make_executor(run, store.path / "_jobs" / plan.config_uid)
    run_dict = run.model_dump(mode="json")
    launch_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    with executor.batch():
        jobs = [executor.submit(ShardJob(), run_dict, plan.to_compute, launch_id) for _ in range(n_jobs)]
    summary.job_ids = [str(j.job_id) for j in jobs]
    videos = {h: p for p, h in plan.to_compute}
    store.record_launch(plan.config_uid, launch_id, videos, summary.job_ids, run.executor.resolved_name())
    print(f"submitted {len(jobs)} job(s) ({run.executor.resolved_name()}): {' '.join(summary.job_ids)}", file=out)
    return Launch(run, plan, jobs, summary)
