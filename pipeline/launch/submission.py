"""Submitting a launch: plan one config, then start its jobs as one submitit job array that shares the queue."""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import typing as tp
import uuid
from pathlib import Path

from pipeline.common.files import make_private_dir
from pipeline.common.text import human_size
from pipeline.config import ConfigError, RunConfig
from pipeline.embedding.decoding import VideoError
from pipeline.launch.discovery import find_videos, known_durations
from pipeline.launch.estimate import estimate
from pipeline.launch.executors import make_executor
from pipeline.launch.planning import Plan, make_plan
from pipeline.launch.preflight import check_remote_code, model_config, prepare_model
from pipeline.launch.resources import sized
from pipeline.launch.resume import rejoin, running_launch
from pipeline.launch.slurm import array_sizes, confirmed_states, has_ended, max_array_size, refusal, squeue_states
from pipeline.launch.staging import stage
from pipeline.launch.summary import Summary
from pipeline.launch.worker import QueueJob
from pipeline.store import Store, layout, path_key

CALIBRATE_HINT = "`python -m pipeline.calibrate` with this launch's arguments"
SQUEUE_SILENT_S = 3600.0
"""How long a launcher keeps following jobs that squeue does not answer about (a busy or restarting
controller) before it gives them up as unknown."""


@dataclasses.dataclass
class Submission:
    """One submitted config: its plan and jobs (each job walks the plan's queue, ``plan.to_compute``)."""

    run: RunConfig
    plan: Plan
    jobs: list[tp.Any]
    summary: Summary
    submitted: float = dataclasses.field(default_factory=time.time)
    seen: set[str] = dataclasses.field(default_factory=set)
    silent_since: float | None = None
    """Since when squeue has not answered (None: its last call answered)."""
    confirmed: dict[str, str] = dataclasses.field(default_factory=dict)
    """Jobs squeue stopped listing that accounting or the controller then said had ended, and how."""

    @property
    def on_slurm(self) -> bool:
        return self.run.executor.resolved_name() == "slurm"

    def poll(self) -> dict[str, str]:
        """Job id -> how it ended, for every job that is over (asking squeue on SLURM). A squeue that does
        not answer says nothing: jobs are then judged by their result files alone, until squeue has been
        silent for ``SQUEUE_SILENT_S``, when the rest are given up as unknown (the follow ends; they may run)."""
        if not self.on_slurm:
            return self.job_ended({})
        states = squeue_states([str(j.job_id) for j in self.jobs])
        now = time.time()
        if states is not None:
            self.silent_since = None
            return self.job_ended(states)
        self.silent_since = self.silent_since or now
        ended = self.job_ended(None)
        silent = now - self.silent_since
        if silent >= SQUEUE_SILENT_S:
            unknown = f"UNKNOWN (squeue has not answered for {silent / 60:.0f} min; the job may still run)"
            ended.update({str(j.job_id): unknown for j in self.jobs if str(j.job_id) not in ended})
        return ended

    @property
    def squeue_note(self) -> str:
        """A line for the operator while squeue does not answer ("" while it does)."""
        if self.silent_since is None:
            return ""
        return (
            f"squeue has not answered since {time.strftime('%H:%M:%S', time.localtime(self.silent_since))}: "
            f"still following (stored videos still count); given up after {SQUEUE_SILENT_S / 60:.0f} min"
        )

    def job_ended(self, states: dict[str, str] | None) -> dict[str, str]:
        """Job id -> how it ended ("" for a result), for every job that is over; ``states`` None (squeue
        silent): only jobs that wrote their result."""
        ended: dict[str, str] = {}
        missing: list[str] = []
        for job in self.jobs:
            jid = str(job.job_id)
            if not self.on_slurm:
                if job.paths.result_pickle.exists() or job.done():  # written before its process exits
                    ended[jid] = ""
                continue
            if job.paths.result_pickle.exists():
                ended[jid] = ""
                continue
            if states is None:
                continue
            state = states.get(jid, "")
            if state:
                self.seen.add(jid)
            if has_ended(state):
                ended[jid] = state
            elif jid in self.confirmed:
                ended[jid] = self.confirmed[jid]
            elif not state and (jid in self.seen or time.time() - self.submitted > 120):
                missing.append(jid)
        # squeue's answer can miss a live job (a controller restarting, a federation's partial view):
        # a job counts as ended only once accounting or the controller says so
        for jid, state in (confirmed_states(missing) or {}).items():
            if has_ended(state):
                ended[jid] = self.confirmed[jid] = state
        return ended


def submit(
    run: RunConfig,
    *,
    out: tp.TextIO | None = None,
    prepared: bool = False,
    command: str = "",
    taken: list[Submission] | None = None,
) -> Submission | None:
    """Plan one config and submit its jobs as one job array; None when there is nothing to submit.
    ``prepared``: ``run`` already went through ``prepare_model`` (a sweep point, checked for duplicates);
    ``command``: the command line that launched it, recorded so that status can say how to relaunch;
    ``taken``: the submission is added to it as soon as it has jobs (before it is printed), so that a
    Ctrl-C at any point after names them."""
    out = sys.stdout if out is None else out  # the stream of the call, not of the import
    paths = find_videos(run.videos)
    if not prepared:
        run = prepare_model(run)
    store = Store(run.store)
    store.ensure()
    plan = make_plan(run, store, paths)
    n_unique = len(plan.paths) - len(plan.duplicates)
    n_jobs = plan.n_jobs(run.videos_per_job, run.max_jobs)
    cost = estimate(run, plan.to_compute, known_durations(store), store.measurements(), n_jobs, CALIBRATE_HINT)
    if cost.jobs_needed() > n_jobs:  # long work: as many jobs as fit it in one time limit each, within max_jobs
        n_jobs = min(run.max_jobs, len(plan.to_compute), cost.jobs_needed())
        cost = dataclasses.replace(cost, n_jobs=n_jobs)
    spec = run.embed.model
    if spec.commit is not None:
        pin = f" (model.revision={spec.revision})" if spec.revision else ""
        print(f"model: {spec.name}@{spec.commit[:12]}{pin}, {spec.identity}", file=out)
    print(
        f"plan: {len(plan.paths)} videos found ({n_unique} distinct), {len(plan.cached)} cached, "
        + (f"{len(plan.failed_before)} failed before, " if plan.failed_before else "")
        + (f"{len(plan.unreadable)} unreadable, " if plan.unreadable else "")
        + f"{len(plan.to_compute)} to compute in {n_jobs} job(s); config {plan.config_uid}"
        + (f"; read {human_size(plan.bytes_hashed)} to hash new files" if plan.bytes_hashed else ""),
        file=out,
    )
    if plan.to_compute:
        print("\n".join(cost.lines()), file=out)
    summary = Summary(plan.config_uid, str(store.path), cached=list(plan.cached), duplicates=plan.duplicates)
    summary.estimated_s = cost.wall_s
    summary.failed.update(plan.failed_before)
    summary.failed.update({p: f"VideoError: {why}" for p, why in plan.unreadable.items()})
    if run.dry_run:
        names = [Path(p).name for p, _ in plan.to_compute]
        if names:
            longest = ", ".join(names[:3]) + (f" ... ({len(names) - 3} more)" if len(names) > 3 else "")
            print(f"  each job claims the next video, longest first: {longest}", file=out)
        print("dry run: nothing submitted", file=out)
        return Submission(run, plan, [], summary)
    if plan.unreadable:
        store.ensure_config(run.embed)
        for p, why in plan.unreadable.items():
            store.record_failure(plan.config_uid, path_key(p), p, VideoError(why))
    if not n_jobs:
        return Submission(run, plan, [], summary)
    store.ensure_config(run.embed)
    folder = make_private_dir(layout.user_jobs(store.path, plan.config_uid), store.path)
    executor_name = run.executor.resolved_name()
    running = running_launch(store, plan.config_uid, executor_name, {h for _, h in plan.to_compute})
    if running:
        launch_id, record = running
        summary.job_ids = [str(j) for j in record["job_ids"]]
        handle = Submission(run, plan, rejoin(executor_name, folder, summary.job_ids), summary)
        if taken is not None:
            taken.append(handle)
        print(
            f"launch {launch_id} still runs and holds every video left: following its "
            f"{len(summary.job_ids)} job(s) ({' '.join(summary.job_ids)}), nothing submitted",
            file=out,
        )
        return handle
    run, asked = sized(run, lambda: model_config(run))
    if asked:
        print(asked, file=out)
    staged_folder = stage(run, out=out)
    staged = staged_folder is not None
    if staged_folder is not None and run.embed.model.trust_remote_code:
        check_remote_code(staged_folder)
    executor = make_executor(run, folder, offline=staged)
    run_dict = run.model_dump(mode="json")
    launch_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    # the queue is written once; each task's submission names it, so it stays small whatever the corpus
    queue = str(store.write_queue(plan.config_uid, launch_id, plan.to_compute))
    umask = os.umask(0o022)  # the pickles jobs will run: writable by this user alone
    try:
        jobs = _submit_arrays(executor, run, n_jobs, (run_dict, queue, launch_id), out)
    finally:
        os.umask(umask)
    summary.job_ids = [str(j.job_id) for j in jobs]
    handle = Submission(run, plan, jobs, summary)
    if taken is not None:
        taken.append(handle)
    store.record_launch(
        plan.config_uid,
        launch_id,
        len(plan.to_compute),
        summary.job_ids,
        run.executor.resolved_name(),
        command,
        wait=run.wait,
    )
    print(f"submitted {len(jobs)} job(s) ({run.executor.resolved_name()}): {' '.join(summary.job_ids)}", file=out)
    return handle


def _submit_arrays(
    executor: tp.Any, run: RunConfig, n_jobs: int, args: tuple[tp.Any, ...], out: tp.TextIO
) -> list[tp.Any]:
    """Submit ``n_jobs`` tasks of ``QueueJob(*args)``: on SLURM as job arrays of at most the cluster's
    ``MaxArraySize`` tasks. A refusal of the first array is a ``ConfigError`` naming the field to change;
    of a later one (a QOS's MaxSubmitJobs reached), the arrays already queued go on alone (every task
    walks the whole queue) and the output says so."""
    from submitit.core.utils import FailedJobError

    on_slurm = run.executor.resolved_name() == "slurm"
    sizes = array_sizes(n_jobs, max_array_size() if on_slurm else None)
    if len(sizes) > 1:
        print(f"{n_jobs} tasks in {len(sizes)} job arrays (the cluster's MaxArraySize)", file=out)
    jobs: list[tp.Any] = []
    for size in sizes:
        try:
            with executor.batch():
                batch = [executor.submit(QueueJob(), *args) for _ in range(size)]
        except FailedJobError as e:
            if not jobs:
                raise ConfigError(refusal(str(e))) from None
            print(f"{refusal(str(e))}; the {len(jobs)} task(s) queued take the whole queue", file=out)
            break
        jobs += batch
    return jobs
