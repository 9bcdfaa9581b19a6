"""``python -m pipeline.launch``: find videos, plan against the store, shard, submit, follow, summarise."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import glob
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
import typing as tp
import uuid
from pathlib import Path

from hydra.experimental.callback import Callback

from .config import ConfigError, RunConfig, build_run_config
from .decoding import VideoError
from .lease import live_leases
from .quiet import silence_libraries
from .store import Store, content_hash, path_key, write_atomic
from .worker import ShardJob, VideoResult

VIDEO_SUFFIXES = {".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts"}
LIST_SUFFIXES = {".txt", ".lst", ".list"}


def find_videos(spec: str) -> list[str]:
    """Video paths from a folder (recursive), a glob pattern, or a text file of paths (one per line)."""
    path = Path(spec)
    if path.is_dir():
        # Symlinks are kept even when dangling, so that a broken link is reported rather than skipped.
        found = sorted(
            str(p) for p in path.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and (p.is_file() or p.is_symlink())
        )
        if not found:
            raise ConfigError(f"videos: no video files ({', '.join(sorted(VIDEO_SUFFIXES))}) in folder {spec}")
        return found
    if path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
        base = path.parent
        lines = [ln.strip() for ln in path.read_text().splitlines()]
        found = [str(base / ln) for ln in lines if ln and not ln.startswith("#")]
        missing = [p for p in found if not Path(p).is_file()]
        if missing:
            raise ConfigError(f"videos: {len(missing)} listed file(s) missing in {spec}, first: {missing[0]}")
        if not found:
            raise ConfigError(f"videos: the list {spec} names no file")
        return found
    if path.is_file():
        return [str(path)]
    if glob.has_magic(spec):
        found = sorted(p for p in glob.glob(spec, recursive=True) if Path(p).is_file())
        if not found:
            raise ConfigError(f"videos: the pattern {spec!r} matches no file")
        return found
    raise ConfigError(f"videos: no such folder, file or pattern: {spec}")


def _unreadable(path: str, error: OSError) -> str:
    if os.path.islink(path) and not os.path.exists(path):
        return f"{path}: dangling symlink to {os.readlink(path)}"
    return f"{path}: cannot read ({error.strerror or error})"


def hash_videos(paths: list[str], store: Store) -> tuple[dict[str, str], dict[str, str]]:
    """Content hash of each readable path (reusing a cache keyed by path, size and mtime kept in the
    store), and the reason for each path that cannot be read (a dangling symlink, no permission)."""
    from tqdm import tqdm

    cache_file = store.path / "_index" / "hashes.json"
    try:
        cache: dict[str, str] = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}

    def key(p: str) -> str:
        st = os.stat(p)
        return f"{os.path.realpath(p)}|{st.st_size}|{st.st_mtime_ns}"

    keys: dict[str, str] = {}
    unreadable: dict[str, str] = {}
    for p in paths:
        try:
            keys[p] = key(p)
            if keys[p] not in cache and not os.access(p, os.R_OK):
                raise PermissionError(13, "permission denied")
        except OSError as e:
            unreadable[p] = _unreadable(p, e)
    todo = [p for p in keys if keys[p] not in cache]
    if todo:
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            for p, digest in tqdm(
                zip(todo, pool.map(content_hash, todo)),
                total=len(todo),
                desc="hashing videos",
                unit="video",
                disable=len(todo) < 20,
            ):
                cache[keys[p]] = digest
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(cache_file, json.dumps(cache))
    return {p: cache[k] for p, k in keys.items()}, unreadable


def video_durations(items: list[tuple[str, str]], store: Store) -> dict[str, float]:
    """Content hash -> duration in seconds of each ``(path, hash)``, probed once (container header only)
    and cached in the store by content hash, beside the hash cache."""
    from tqdm import tqdm

    from .decoding import container_seconds

    cache_file = store.path / "_index" / "durations.json"
    try:
        cache: dict[str, float] = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    todo = [(p, h) for p, h in items if h not in cache]
    if todo:
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            probed = pool.map(container_seconds, [p for p, _ in todo])
            for (_, h), seconds in tqdm(
                zip(todo, probed), total=len(todo), desc="probing durations", unit="video", disable=len(todo) < 20
            ):
                cache[h] = seconds
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(cache_file, json.dumps(cache))
    return {h: cache[h] for _, h in items}


@dataclasses.dataclass
class Plan:
    config_uid: str
    paths: list[str]
    hashes: dict[str, str]
    cached: list[str]
    to_compute: list[tuple[str, str]]
    """``(path, hash)`` in the order jobs claim them: longest first."""
    duplicates: dict[str, str]
    """path -> the path whose identical bytes are computed (or cached) instead."""
    failed_before: dict[str, str]
    """path -> the failure recorded by an earlier launch (not retried unless ``retry_failed``)."""
    unreadable: dict[str, str] = dataclasses.field(default_factory=dict)
    """path -> why its bytes cannot be read (no content hash, so it is reported and recorded by path)."""

    def n_jobs(self, videos_per_job: int, max_jobs: int) -> int:
        """Jobs to start: one per ``videos_per_job`` videos, at most ``max_jobs``. Each job claims the next
        unclaimed video of the launch until none is left, so no job idles while another has a queue."""
        return min(max_jobs, math.ceil(len(self.to_compute) / videos_per_job)) if self.to_compute else 0


def make_plan(run: RunConfig, store: Store, paths: list[str] | None = None) -> Plan:
    paths = find_videos(run.videos) if paths is None else paths
    hashes, unreadable = hash_videos(paths, store)
    cuid = run.embed.uid()
    done = store.done_hashes(cuid)
    failures = {} if run.retry_failed else store.failures(cuid)
    first: dict[str, str] = {}
    duplicates: dict[str, str] = {}
    failed_before: dict[str, str] = {}
    cached, to_compute = [], []
    for p in paths:
        if p in unreadable:
            continue
        h = hashes[p]
        if h in first:
            duplicates[p] = first[h]
            continue
        first[h] = p
        if h in done:
            cached.append(p)
        elif h in failures:
            f = failures[h]
            failed_before[p] = f"{f.get('error_type')}: {f.get('message')} (recorded {f.get('time')}, not retried)"
        else:
            to_compute.append((p, h))
    if to_compute:
        durations = video_durations(to_compute, store)
        to_compute.sort(key=lambda item: -durations[item[1]])  # longest first; ties keep name order
    return Plan(cuid, paths, hashes, cached, to_compute, duplicates, failed_before, unreadable)


def prepare_model(run: RunConfig) -> None:
    """Build a tiny model if asked, and check ``num_frames`` against the model's config before any job."""
    from .engine import resolve_num_frames
    from .tiny import TINY_FAMILIES, ensure_tiny_model

    spec = run.embed.model
    if spec.tiny:
        kind = spec.name.removeprefix("tiny-")
        if kind not in TINY_FAMILIES:
            raise ConfigError(f"model.name: no tiny model {spec.name!r} (known: tiny-{', tiny-'.join(TINY_FAMILIES)})")
        ensure_tiny_model(kind, run.models_dir)
    resolve_num_frames(run.embed, model_config(run))


def model_config(run: RunConfig) -> tp.Any:
    """The model's transformers config: a local folder or the hub cache first; the hub only when it can be
    reached (a name absent from the cache fails in seconds offline, not after a minute of retries)."""
    from transformers import AutoConfig

    spec = run.embed.model
    source = run.model_source()
    kwargs = {"trust_remote_code": spec.trust_remote_code}
    try:
        return AutoConfig.from_pretrained(source, local_files_only=True, **kwargs)
    except (OSError, ValueError) as e:
        local_error = e
    if Path(source).exists() or os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        raise ConfigError(f"model.name: cannot load the config of {spec.name!r} ({local_error})") from local_error
    if not hub_reachable():
        raise ConfigError(
            f"model.name: {spec.name!r} is neither a local folder nor in the Hugging Face cache, and the hub "
            "cannot be reached (download it where there is a network, or point model.name at a folder)"
        )
    try:
        return AutoConfig.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as e:
        raise ConfigError(f"model.name: cannot load the config of {spec.name!r} ({e})") from e


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face endpoint answers a TCP connection within ``timeout`` seconds."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname or "", url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


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


@dataclasses.dataclass
class Summary:
    config_uid: str
    store: str
    computed: list[str] = dataclasses.field(default_factory=list)
    cached: list[str] = dataclasses.field(default_factory=list)
    failed: dict[str, str] = dataclasses.field(default_factory=dict)
    not_done: dict[str, str] = dataclasses.field(default_factory=dict)
    """Videos left undone because their job ended without finishing them (cancelled, killed): relaunch."""
    duplicates: dict[str, str] = dataclasses.field(default_factory=dict)
    discarded: list[str] = dataclasses.field(default_factory=list)
    """Computed here but stored first by another worker: wasted work, never a second copy."""
    job_ids: list[str] = dataclasses.field(default_factory=list)
    full_list: str = ""
    """Where the summary with every line was written, when the printed one leaves lines out."""
    flagged: dict[str, str] = dataclasses.field(default_factory=dict)
    """Computed videos the user should know about: a variable frame rate timed exactly, not as the
    reference would (its note is also in the entry's ``timing_note`` attribute)."""

    @property
    def ok(self) -> bool:
        return not self.failed and not self.not_done

    def render(self, examples: int | None = 5) -> str:
        """Counts first, then at most ``examples`` lines per kind (``None``: every line)."""
        lines = [
            f"config {self.config_uid}  store {self.store}",
            f"  computed {len(self.computed)}  cached {len(self.cached)}  failed {len(self.failed)}"
            + (f"  not done {len(self.not_done)}" if self.not_done else "")
            + (f"  duplicates {len(self.duplicates)}" if self.duplicates else "")
            + (f"  computed twice {len(self.discarded)}" if self.discarded else "")
            + (f"  flagged {len(self.flagged)}" if self.flagged else ""),
        ]
        kinds = [
            ("same bytes as {why}: {path}", "duplicates", self.duplicates),
            ("FLAGGED {path}: {why}", "flagged", self.flagged),
            ("FAILED {path}: {why}", "failed", self.failed),
            ("NOT DONE {path}: {why}", "not done", self.not_done),
        ]
        for line, kind, items in kinds:
            shown = list(items.items())[:examples] if examples is not None else list(items.items())
            lines += ["  " + line.format(path=p, why=why) for p, why in shown]
            if len(items) > len(shown):
                lines.append(f"  ... {len(items) - len(shown)} more {kind} (all of them: {self.full_list or '?'})")
        if self.not_done:
            lines.append("  relaunch the same command to compute what is not done (stored videos are skipped)")
        return "\n".join(lines)

    @property
    def truncated(self) -> bool:
        return any(len(d) > 5 for d in (self.duplicates, self.flagged, self.failed, self.not_done))


_SLURM_ENDED = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}


def _slurm_states(jobs: list[tp.Any]) -> dict[str, str]:
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


def submit(run: RunConfig, *, out: tp.TextIO = sys.stdout) -> Launch | None:
    """Plan one config and submit its jobs as one job array; None when there is nothing to submit."""
    paths = find_videos(run.videos)
    prepare_model(run)
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


_ERROR_LINE = re.compile(r"^(?:[A-Za-z_][\w]*\.)*(\w*(?:Error|Exception|Died|Interrupt)): (.*)$")


def job_error(text: str) -> str:
    """The exception a failed job raised, from submitit's report (traceback, then where the logs are)."""
    for line in reversed(text.strip().splitlines()):
        match = _ERROR_LINE.match(line.strip())
        if match:
            return f"{match.group(1)}: {match.group(2)}"
    return text.strip().splitlines()[0] if text.strip() else ""


def follow(launch: Launch, *, out: tp.TextIO = sys.stdout, bar_position: int = 0) -> Summary:
    """Show progress until every job is over, then fill the summary from the results and the store."""
    from tqdm import tqdm

    summary, plan, store = launch.summary, launch.plan, Store(launch.run.store)

    def poll() -> dict[str, str]:
        return launch.job_ended(_slurm_states(launch.jobs) if launch.on_slurm else {})

    ended: dict[str, str] | None = None
    if launch.jobs and launch.run.executor.name != "debug":
        remaining = {h for _, h in plan.to_compute}
        with tqdm(total=len(remaining), desc=plan.config_uid, unit="video", position=bar_position, file=out) as bar:
            while True:
                ended = poll()
                landed = {h for h in remaining if store.has(plan.config_uid, h)}
                remaining -= landed
                bar.update(len(landed))
                if len(ended) == len(launch.jobs):
                    break
                time.sleep(2.0)
    ended = poll() if ended is None else ended
    best: dict[str, VideoResult] = {}
    dead: dict[str, str] = {}
    """Job id -> how a job that gave no results ended."""
    for job in launch.jobs:
        jid = str(job.job_id)
        if ended.get(jid):
            dead[jid] = f"ended {ended[jid]} before this video was stored"
            continue
        try:
            results: list[VideoResult] = job.result()
        except Exception as e:  # noqa: BLE001 - a crashed job leaves its videos undone, with the reason
            dead[jid] = f"failed: {job_error(str(e)) or type(e).__name__}"
            continue
        for r in results:
            if r.video_hash not in best or _RANK[r.status] > _RANK[best[r.video_hash].status]:
                best[r.video_hash] = r
    busy = _settle(launch, store, best, dead)
    _wait_for_others(launch, busy, out)
    return summary


_RANK = {"computed": 4, "discarded": 3, "failed": 2, "cached": 1, "busy": 0}
"""Every job reports each video of the queue it reached; the most informative report wins."""


def _settle(launch: Launch, store: Store, best: dict[str, VideoResult], dead: dict[str, str]) -> dict[str, str]:
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
        elif status == "cached":
            summary.cached.append(path)
        elif store.has(cuid, vhash):  # stored by a job of ours that died later, or by another launcher
            (summary.cached if holder and holder not in ours else summary.computed).append(path)
        elif vhash in failures:
            summary.failed[path] = f"{failures[vhash].get('error_type')}: {failures[vhash].get('message')}"
        elif holder and holder not in ours:
            busy[vhash] = path
        else:
            holder = lease_holder(store.leases(cuid) / f"{vhash}.json") or holder
            jid = holder if holder in dead else next(iter(dead), "")
            summary.not_done[path] = f"job {jid} {dead[jid]}" if jid else "no job stored it"
    return busy


def lease_holder(path: Path) -> str:
    """The job id recorded in a lease file ("" when there is none)."""
    try:
        return str(json.loads(path.read_text()).get("owner", {}).get("job_id", ""))
    except (OSError, ValueError):
        return ""


def _wait_for_others(launch: Launch, busy: dict[str, str], out: tp.TextIO) -> None:
    """Videos another launcher was computing: wait for them to land, fail, or for their lease to lapse."""
    if not busy:
        return
    store, cuid, summary = Store(launch.run.store), launch.plan.config_uid, launch.summary
    print(f"waiting for {len(busy)} video(s) that another launcher is computing", file=out)
    while busy:
        failures = store.failures(cuid)
        live = live_leases(store.leases(cuid), launch.run.lease_ttl_s)
        for vhash, path in list(busy.items()):
            if store.has(cuid, vhash):
                summary.cached.append(path)
            elif vhash in failures:
                summary.failed[path] = f"{failures[vhash].get('error_type')}: {failures[vhash].get('message')}"
            elif vhash not in live:
                summary.not_done[path] = "another launcher's worker stopped before storing it"
            else:
                continue
            del busy[vhash]
        if busy:
            time.sleep(2.0)


def launch(run: RunConfig, *, out: tp.TextIO = sys.stdout) -> Summary:
    """Plan, submit and (unless ``wait=false``) follow one config; returns the summary (printed as well)."""
    handle = submit(run, out=out)
    assert handle is not None
    if run.dry_run:
        return handle.summary
    if not run.wait and handle.jobs:
        print(f"not waiting; follow with: {status_command(run)}", file=out)
        return handle.summary
    try:
        summary = follow(handle, out=out)
    except KeyboardInterrupt:
        raise Interrupted([handle]) from None
    print(render_summary(summary), file=out)
    return summary


class Interrupted(Exception):
    """Ctrl-C while following jobs: they go on; the message says which, and how to follow or cancel them."""

    def __init__(self, handles: list[Launch]) -> None:
        lines = []
        for handle in handles:
            try:
                ended = handle.job_ended(_slurm_states(handle.jobs) if handle.on_slurm else {})
            except Exception:  # noqa: BLE001 - a second Ctrl-C or a scheduler hiccup: list every job
                ended = {}
            running = [str(j.job_id) for j in handle.jobs if str(j.job_id) not in ended]
            store, cuid = os.path.abspath(handle.run.store), handle.plan.config_uid
            if running:
                lines += [
                    f"interrupted: {len(running)} job(s) of config {cuid} still running: {' '.join(running)}",
                    f"  follow them: {sys.executable} -m pipeline.status store={store}",
                    f"  cancel them: {sys.executable} -m pipeline.cancel store={store} {cuid}",
                ]
            else:
                lines.append(f"interrupted: no job of config {cuid} is still running")
        super().__init__("\n".join(lines) or "interrupted before any job was submitted")


def render_summary(summary: Summary) -> str:
    """The summary as printed: a screenful; with more lines than that, every line goes to a file beside the
    config's job logs, named in what is printed."""
    if summary.truncated:
        path = Path(summary.store) / "_jobs" / summary.config_uid / f"summary-{time.strftime('%Y%m%d-%H%M%S')}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        summary.full_list = str(path)
        write_atomic(path, summary.render(examples=None) + "\n")
    return summary.render()


def status_command(run: RunConfig) -> str:
    return f"{sys.executable} -m pipeline.status store={os.path.abspath(run.store)}"


_SWEEP: list[tuple[list[str], Launch]] = []


class SweepSummary(Callback):
    """Hydra callback: in a multirun, every point is submitted first; this follows them all and prints one table."""

    def on_multirun_start(self, config: tp.Any, **kwargs: tp.Any) -> None:
        _SWEEP.clear()

    def on_multirun_end(self, config: tp.Any, **kwargs: tp.Any) -> None:
        points = list(_SWEEP)
        _SWEEP.clear()
        if not points:
            return
        common = set.intersection(*(set(overrides) for overrides, _ in points))
        summaries = []
        try:
            for overrides, handle in points:
                label = " ".join(o for o in overrides if o not in common) or "defaults"
                summaries.append((label, handle, follow(handle) if handle.jobs else handle.summary))
        except KeyboardInterrupt:
            print(str(Interrupted([h for _, h in points if h.jobs])), file=sys.stderr)
            sys.exit(130)
        print(sweep_table(summaries))
        if any(not s.ok for _, _, s in summaries):
            for label, _, s in summaries:
                if not s.ok:
                    print(f"[{label}]\n{render_summary(s)}")
            sys.exit(1)


def sweep_table(rows: list[tuple[str, Launch, Summary]]) -> str:
    header = ("point", "config uid", "computed", "cached", "failed", "not done")
    body = [
        (label, s.config_uid, str(len(s.computed)), str(len(s.cached)), str(len(s.failed)), str(len(s.not_done)))
        for label, _, s in rows
    ]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return f"sweep: {len(rows)} point(s)\n" + "\n".join(lines)


def main() -> None:
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import DictConfig, OmegaConf

    conf_dir = str(Path(__file__).resolve().parent.parent / "conf")

    @hydra.main(config_path=conf_dir, config_name="config", version_base=None)
    def _run(cfg: DictConfig) -> None:
        flat = tp.cast(dict[str, tp.Any], OmegaConf.to_container(cfg, resolve=True))
        hydra_cfg = HydraConfig.get()
        silence_libraries(bool(flat.get("verbose", False)))
        try:
            run = build_run_config(flat)
            if hydra_cfg.mode == RunMode.MULTIRUN:
                handle = submit(run)
                if handle is not None:
                    _SWEEP.append((list(hydra_cfg.overrides.task), handle))
                return
            summary = launch(run)
        except Interrupted as e:
            print(str(e), file=sys.stderr)
            sys.exit(130)
        except KeyboardInterrupt:
            print("interrupted before any job was submitted", file=sys.stderr)
            sys.exit(130)
        except ConfigError as e:
            print(f"config error: {e}", file=sys.stderr)
            sys.exit(2)
        except OSError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        if not summary.ok:
            sys.exit(1)

    _run()


if __name__ == "__main__":
    # Run the imported module's main, so that the Hydra callback (``pipeline.launch.SweepSummary``) and
    # the task function share one ``_SWEEP`` list rather than one each in ``__main__`` and ``pipeline.launch``.
    from pipeline import launch as _module

    _module.main()
