"""Following a launch's jobs to the end, then settling each video of its queue: computed, cached, failed or not done."""

from __future__ import annotations

import re
import sys
import time
import typing as tp

from pipeline.common.progress import Progress
from pipeline.launch.discovery import known_durations
from pipeline.launch.submission import Submission
from pipeline.launch.summary import Summary
from pipeline.launch.worker import VideoResult
from pipeline.store import Store
from pipeline.store.leases import Watch, lease_holder, live_leases
from pipeline.store.records import failure_text

_ERROR_LINE = re.compile(r"^(?:[A-Za-z_][\w]*\.)*(\w*(?:Error|Exception|Died|Interrupt)): (.*)$")
_QUALIFIED_LINE = re.compile(r"^(?:[a-z_][\w]*\.)+([A-Z]\w*): (.*)$")
"""A traceback's last line for an exception of a module (``pipeline.launch.resources.NoGPU: ...``)."""


def job_error(text: str) -> str:
    """The exception a failed job raised, from submitit's report (traceback, then where the logs are)."""
    for pattern in (_ERROR_LINE, _QUALIFIED_LINE):
        for line in reversed(text.strip().splitlines()):
            match = pattern.match(line.strip())
            if match:
                return f"{match.group(1)}: {match.group(2)}"
    return text.strip().splitlines()[0] if text.strip() else ""


POLL_S = {"slurm": 2.0, "local": 0.25}
"""Seconds between looks at the jobs at first: squeue is asked sparingly; a local job is a process and a file."""
POLL_MAX_S = {"slurm": 60.0, "local": 0.25}
"""While nothing lands and no job ends, the looks grow 1.5 times apart up to this: a campaign of days asks
squeue about once a minute, not every 2 s."""


def next_poll(delay: float, changed: bool, kind: str) -> float:
    """Seconds until the next look: back to the first interval when something changed, else 1.5 times longer."""
    return POLL_S[kind] if changed else min(POLL_MAX_S[kind], delay * 1.5)


def follow(launch: Submission, *, out: tp.TextIO | None = None, bar_position: int = 0) -> Summary:
    """Show progress until every job is over, then fill the summary from the results and the store."""
    out = sys.stdout if out is None else out  # the stream of the call, not of the import
    summary, plan, store = launch.summary, launch.plan, Store(launch.run.store)

    ended: dict[str, str] | None = None
    if launch.jobs and launch.run.executor.name != "debug":
        remaining = {h for _, h in plan.to_compute}
        durations = known_durations(store)
        total_s = sum(durations.get(h, 0.0) for h in remaining)
        bar = Progress(
            len(remaining),
            f"stored ({plan.config_uid})",
            unit="videos",
            file=out,
            interval=launch.run.progress_s,
            total_seconds=total_s or None,
            position=bar_position,
        )
        kind = "slurm" if launch.on_slurm else "local"
        delay, note, n_ended = POLL_S[kind], "", 0
        with bar:
            while True:
                ended = launch.poll()
                if launch.squeue_note != note:
                    note = launch.squeue_note
                    print(note or "squeue answers again", file=out, flush=True)
                landed = remaining & store.done_hashes(plan.config_uid)
                remaining -= landed
                bar.update(len(landed), sum(durations.get(h, 0.0) for h in landed))
                if len(ended) == len(launch.jobs):
                    break
                delay = next_poll(delay, bool(landed) or len(ended) != n_ended, kind)
                n_ended = len(ended)
                time.sleep(delay)
    ended = launch.poll() if ended is None else ended
    best: dict[str, VideoResult] = {}
    dead: dict[str, str] = {}
    """Job id -> how a job that gave no results ended."""
    for job in launch.jobs:
        jid = str(job.job_id)
        if ended.get(jid):
            dead[jid] = f"ended {ended[jid]} before this video was stored"
            continue
        try:
            results: list[VideoResult] = job_result(job)
        except Exception as e:  # noqa: BLE001 - a crashed job leaves its videos undone, with the reason
            dead[jid] = f"failed: {job_error(str(e)) or type(e).__name__}"
            continue
        for r in results:
            if r.video_hash not in best or _RANK[r.status] > _RANK[best[r.video_hash].status]:
                best[r.video_hash] = r
    busy = settle(launch, store, best, dead)
    _wait_for_others(launch, busy, out)
    summary.elapsed_s = time.time() - launch.submitted
    if launch.jobs:
        store.compact(plan.config_uid)  # the launch's manifests merged into the config's index
    return summary


def job_result(job: tp.Any) -> tp.Any:
    """What a job returned, read from its result file as soon as the job wrote it: a local job's process
    takes a second or two more to shut down (torch, its decoding processes), which ``job.result()`` waits
    for. A job that raised is left to ``job.result()``, which raises with its log."""
    from submitit.core.utils import pickle_load

    path = job.paths.result_pickle
    if path.exists():
        outcome, value = pickle_load(path)
        if outcome == "success":
            return value
    return job.result()


_RANK = {"computed": 4, "discarded": 3, "failed": 2, "not_done": 2, "cached": 1, "busy": 0}
"""Every job reports each video of the queue it reached; the most informative report wins."""


def settle(launch: Submission, store: Store, best: dict[str, VideoResult], dead: dict[str, str]) -> dict[str, str]:
    """Fill the summary, video by video of the queue, from the jobs' reports and the store; returns the
    videos another launcher's worker holds (to wait for)."""
    summary, cuid = launch.summary, launch.plan.config_uid
    ours = {str(j.job_id) for j in launch.jobs}
    failures = store.failures(cuid)
    busy: dict[str, str] = {}
    for path, vhash in launch.plan.to_compute:
        r = best.get(vhash)
        status = r.status if r else ""
        holder = r.holder if r else ""
        if status == "computed":
            summary.computed.append(path)
            if r and r.note:
                summary.flagged[path] = r.note
        elif status == "discarded":
            summary.discarded.append(path)
            summary.cached.append(path)
        elif status == "failed" and r:
            summary.failed[path] = r.error
        elif status == "not_done" and r and not store.has(cuid, vhash):
            summary.not_done[path] = r.error
        elif status == "cached":
            summary.cached.append(path)
        elif store.has(cuid, vhash):  # stored by a job of ours that died later, or by another launcher
            (summary.cached if holder and holder not in ours else summary.computed).append(path)
        elif vhash in failures:
            summary.failed[path] = failure_text(failures[vhash])
        elif holder and holder not in ours:
            busy[vhash] = path
        else:
            holder = lease_holder(store.leases(cuid), vhash) or holder
            jid = holder if holder in dead else next(iter(dead), "")
            summary.not_done[path] = f"job {jid} {dead[jid]}" if jid else "no job stored it"
    return busy


def _wait_for_others(launch: Submission, busy: dict[str, str], out: tp.TextIO) -> None:
    """Videos another launcher was computing: wait for them to land, fail, or for their lease to lapse."""
    if not busy:
        return
    store, cuid, summary = Store(launch.run.store), launch.plan.config_uid, launch.summary
    print(f"waiting for {len(busy)} video(s) that another launcher is computing", file=out)
    watch = Watch()  # a holder is judged by its heartbeat counter on this launcher's clock
    while busy:
        failures = store.failures(cuid)
        live = live_leases(store.leases(cuid), launch.run.lease_ttl_s, watch)
        for vhash, path in list(busy.items()):
            if store.has(cuid, vhash):
                summary.cached.append(path)
            elif vhash in failures:
                summary.failed[path] = failure_text(failures[vhash])
            elif vhash not in live:
                summary.not_done[path] = "another launcher's worker stopped before storing it"
            else:
                continue
            del busy[vhash]
        if busy:
            time.sleep(2.0)
