"""A job's work: load the model once, walk the launch's queue, and pack the videos it computes into segments
of its own, published every ``SEGMENT_BYTES`` or ``flush_s`` (``pipeline.store.writer``) and at the end."""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
import time
import typing as tp

from pipeline.common.env import job_cpus, n_decoders
from pipeline.common.failures import environmental, not_the_video
from pipeline.common.files import now
from pipeline.common.progress import Progress
from pipeline.common.quiet import silence_libraries
from pipeline.config import PIPELINE_VERSION, RunConfig
from pipeline.embedding.partial import Partial, Resume
from pipeline.launch.discovery import known_durations
from pipeline.launch.ending import job_ended
from pipeline.launch.estimate import cost_key
from pipeline.launch.resources import (
    batched_threads,
    check_gpus,
    device_name,
    few_cpus_warning,
    peak_memory_bytes,
)
from pipeline.store import Store, StoreError
from pipeline.store.leases import Heartbeat, Lease, acquire, current_job_id, task_rank
from pipeline.store.records import read_queue
from pipeline.store.writer import SegmentWriter
from pipeline.testing import faults


class WorkerDied(RuntimeError):
    """A video's worker was killed (or died) too many times while embedding it."""


class JobStopped(RuntimeError):
    """A job failed ``max_failures_in_a_row`` videos in a row and stopped taking more (a node without the
    video mount, a GPU in a bad state): the rest of the shared queue is left to the other jobs."""


@dataclasses.dataclass
class VideoResult:
    video_path: str
    video_hash: str
    status: tp.Literal["computed", "cached", "failed", "busy", "discarded", "not_done"]
    """``busy``: another live worker holds this video's lease; ``discarded``: computed, but another
    worker stored it first (only possible when two take over one lapsed lease at the same instant)."""
    error: str = ""
    seconds: float = 0.0
    holder: str = ""
    """``busy``: the job id of the worker holding the video's lease."""
    sibling: bool = False
    """``busy``: held by another job of the same launch (never waited for: it stores it or leaves it)."""
    note: str = ""
    """Something the user should know about a computed video (exact timing for a variable frame rate)."""


def environment_versions() -> dict[str, str]:
    """The libraries whose versions can change the numbers, recorded in every entry."""
    from importlib.metadata import version

    return {name: version(name) for name in ("torch", "torchvision", "transformers", "av")}


class Streak:
    """A job's failures in a row (failed or not done; a video handed to the writer ends a streak): past
    ``limit`` more than the videos in flight at once (``in_flight``: one brief outage of the video mount
    fails them all together) the job stops taking videos, so that a broken node does not fail or skip the
    whole shared queue in minutes."""

    def __init__(self, limit: int, in_flight: int = 1) -> None:
        self.limit, self.in_flight, self.count, self.last = limit, in_flight, 0, ""

    def add(self, result: VideoResult | None) -> None:
        """A video's outcome (None: computed, handed to the writer)."""
        if result is None or result.status in ("computed", "discarded"):
            self.count = 0
        elif result.status in ("failed", "not_done"):
            self.count += 1
            self.last = f"{result.video_path}: {result.error}"

    @property
    def broken(self) -> bool:
        return self.count >= self.limit + self.in_flight - 1

    def error(self) -> JobStopped:
        return JobStopped(
            f"job {current_job_id() or os.getpid()} on {socket.gethostname()} stopped taking videos after "
            f"{self.count} failures in a row (max_failures_in_a_row={self.limit}, with {self.in_flight} video(s) in "
            f"flight at once; last: {self.last}); its node "
            "or device may be broken: the other jobs take the rest of the queue, and a relaunch what is left"
        )


def _announce_device(run: RunConfig) -> None:
    """Say, in the job's log, which worker of its SLURM job this is and which devices it was given (several
    workers per job on a multi-GPU node: one GPU each)."""
    env = os.environ
    rank, workers = env.get("SLURM_LOCALID", "0"), env.get("SLURM_NTASKS_PER_NODE") or env.get("SLURM_NTASKS", "1")
    print(
        f"worker {rank} of {workers} of job {current_job_id() or os.getpid()} on {socket.gethostname()}: device "
        f"{run.resolved_device()}, CUDA_VISIBLE_DEVICES={env.get('CUDA_VISIBLE_DEVICES', 'unset')}",
        file=sys.stderr,
        flush=True,
    )


def _set_threads() -> None:
    import torch

    cpus = job_cpus()
    if cpus:
        torch.set_num_threads(cpus)


def _attrs(run: RunConfig, embedder: tp.Any, emb: tp.Any, path: str, vhash: str, seconds: float) -> dict[str, tp.Any]:
    return {
        "frequency": emb.frequency,
        "start": emb.start,
        "duration": emb.duration,
        "times": emb.times,
        "model": run.embed.model.name,
        "family": run.embed.model.family,
        "layer_indices": emb.layer_indices,
        "num_frames": emb.num_frames,
        "clip_duration": emb.clip_duration,
        "timing": emb.timing,
        "timing_note": emb.timing_note,
        "processor": embedder.processor_name,
        "versions": environment_versions(),
        "config_uid": run.embed.uid(),
        "config": run.embed.canonical(),
        "run_config": run.model_dump(mode="json"),
        "video_path": os.path.abspath(path),
        "video_hash": vhash,
        "pipeline_version": PIPELINE_VERSION,
        "job_id": current_job_id(),
        "host": socket.gethostname(),
        "device_name": device_name(embedder.adapter.device),
        "peak_memory_bytes": peak_memory_bytes(embedder.adapter.device),
        "created": now(),
        "seconds": seconds,
    }


def work_queue(
    run_dict: dict[str, tp.Any],
    items: list[tuple[str, str]],
    results: list[VideoResult] | None = None,
    launch: str = "",
    job: QueueJob | None = None,
) -> list[VideoResult]:
    """Walk the launch's queue of ``(video_path, content_hash)``, longest first, embedding each video that
    is neither stored nor claimed by another worker (its lease): every job of a launch walks the same queue,
    so each takes the next unclaimed video and none idles while another has a queue. Failures are
    recorded, not raised.

    ``results`` is filled as videos finish (a requeued job passes what it already did, and skips it).
    """
    from pipeline.embedding.engine import Embedder

    run = RunConfig.model_validate(run_dict)
    silence_libraries(run.verbose)
    store = Store(run.store)
    cuid = run.embed.uid()
    results = [] if results is None else results
    seen = {r.video_hash for r in results if r.status != "busy"}
    results[:] = [r for r in results if r.status != "busy"]
    pending = [(p, h) for p, h in items if h not in seen]
    stored = store.done_hashes(cuid)
    if all(h in stored for _, h in pending):
        results.extend(VideoResult(p, h, "cached") for p, h in pending)
        _ended(run, store, launch)
        return results
    check_gpus(run)
    _set_threads()
    _announce_device(run)
    loading = time.perf_counter()
    embedder = Embedder(run.embed, run.model_source(), device=run.resolved_device(), batch_size=run.batch_size)
    load_s, busy_from, busy_until = time.perf_counter() - loading, time.perf_counter(), None
    heartbeat = Heartbeat(run.lease_ttl_s)
    committer = Committer(store, store.writer(cuid, flush_s=run.flush_s), heartbeat, results)
    batched = bool(n_decoders(run.decoders)) and embedder.batchable
    streak = Streak(run.max_failures_in_a_row, n_decoders(run.decoders) + 1 if batched else 1)
    if job is not None:
        job.committer = committer  # for checkpoint: a pre-empted job publishes what it computed
        if task_rank() > 0:
            _checkpoint_on_signal(committer)
    try:
        durations = known_durations(store)
        total_s = sum(durations.get(h, 0.0) for _, h in pending)
        bar = Progress(
            len(pending), f"embedding ({cuid})", unit="videos", interval=run.progress_s, total_seconds=total_s or None
        )
        with bar:

            def progress(vhash: str = "", embedded: bool = False) -> None:
                bar.update(1, durations.get(vhash, 0.0) if embedded else 0.0)

            def walk(items: list[tuple[str, str]], step: tp.Callable[..., tp.Any]) -> None:
                n = n_decoders(run.decoders)
                if n and embedder.batchable:
                    _run_batched(run, store, embedder, heartbeat, committer, items, launch, n, step, streak)
                else:
                    for path, vhash in items:
                        if streak.broken:
                            break
                        outcome = _one_video(run, store, embedder, heartbeat, committer, path, vhash, launch)
                        if outcome is not None:
                            results.append(outcome)
                        if outcome is None or outcome.status in ("failed", "not_done"):
                            streak.add(outcome)
                        step(vhash, embedded=outcome is None)

            walk(pending, progress)
            committer.flush()  # what this job computed lands before it waits on others' videos
            busy_until = time.perf_counter()
            if streak.broken:
                raise streak.error()
            _revisit_busy(run, results, walk)
        committer.flush()
    except StoreError:
        committer.abandon()
        raise
    except BaseException:
        committer.flush_quietly()  # a job stopped (cancelled, interrupted) keeps what it computed
        raise
    finally:
        heartbeat.stop()
        committer.out.close()
        _measure(run, store, embedder, load_s, (busy_until or time.perf_counter()) - busy_from, committer.stages)
    _ended(run, store, launch)
    return results


def _checkpoint_on_signal(committer: Committer) -> None:
    """On a pre-emption or time-out, submitit checkpoints rank 0 of a multi-task job alone (the other
    tasks' handler returns at once), so each other worker (one per GPU) publishes what waits and saves its
    videos in flight itself on the same signal, before submitit's handler runs. It then goes on: rank 0
    requeues the job, which stops every task; if rank 0 had already ended, nobody requeues, and the work
    goes on to its end."""
    import signal

    before = signal.getsignal(signal.SIGUSR2)

    def save(signum: int, frame: tp.Any) -> None:
        committer.flush_on_signal()
        committer.save_in_flight()
        if callable(before):
            before(signum, frame)

    signal.signal(signal.SIGUSR2, save)


def _ended(run: RunConfig, store: Store, launch: str) -> None:
    """A job of a ``wait=false`` launch is done: the last one writes the launch's summary into the store."""
    if launch and not run.wait:
        written = job_ended(store, run.embed.uid(), launch, current_job_id())
        if written:
            print(f"the launch's summary: {written}", file=sys.stderr, flush=True)


def _measure(run: RunConfig, store: Store, embedder: tp.Any, load_s: float, busy_s: float, stages: tp.Any) -> None:
    """Record this job's rate for the launcher's estimates (``pipeline.launch.estimate``), with where the
    time went in the batched path; a record that cannot be written costs the estimate one measurement,
    never the job."""
    if not embedder.steps_run:
        return
    device = embedder.adapter.device
    split = {}
    if stages is not None and stages.frames:
        split = {"decode_cpu_s": stages.decode_cpu_s, "frames": stages.frames, "forward_s": stages.forward_s}
    try:
        store.record_measurement(
            {
                **split,
                "source": "job",
                "cost_key": cost_key(run.embed, device.type),
                "model": run.embed.model.name,
                "config_uid": run.embed.uid(),
                "steps": embedder.steps_run,
                "busy_s": busy_s,
                "load_s": load_s,
                "device_type": device.type,
                "device_name": device_name(device),
                "decoders": n_decoders(run.decoders),
                "cpus": job_cpus(),
            }
        )
    except OSError as e:
        print(f"measurement not recorded: {e}", file=sys.stderr, flush=True)


SIBLING_POLL_S = 2.0
"""How often rank 0 of a task looks whether the videos its other workers hold are stored (it reports them)."""
REVISIT_TTLS = 1.25
"""A job that met videos held by other workers comes back to them for this many lease TTLs: long enough
to see a dead holder's heartbeat stand still (a lease is judged by whoever wants it, on its own clock)."""


Walk = tp.Callable[[list[tuple[str, str]], tp.Callable[..., tp.Any]], None]


def _revisit_busy(run: RunConfig, results: list[VideoResult], walk: Walk) -> None:
    """Claim again, every ``lease_ttl_s / 4``, the videos another worker held: those it stores are found
    stored, those whose holder died (its counter still for ``lease_ttl_s``) are taken over and computed.
    Rank 0 of a task with one worker per GPU waits as long as another worker of its task holds a video:
    submitit reports the task's end, and so the launcher settles its videos, when rank 0 returns."""
    deadline = time.monotonic() + REVISIT_TTLS * run.lease_ttl_s
    me = current_job_id()
    while True:
        busy = [r for r in results if r.status == "busy" and not r.sibling]
        siblings = {r.video_hash for r in busy if me and r.holder == me}  # held by this task's other workers
        ours = bool(siblings) and task_rank() == 0
        left = deadline - time.monotonic()
        if not busy or (left <= 0 and not ours):
            return
        time.sleep(min(SIBLING_POLL_S, run.lease_ttl_s / 4) if ours else min(run.lease_ttl_s / 4, left))
        again = {r.video_hash for r in busy}
        results[:] = [r for r in results if r.video_hash not in again]
        walk([(r.video_path, r.video_hash) for r in busy], lambda *_, **__: None)
        for r in results:  # stored meanwhile by another worker of this task: computed by this task
            if r.video_hash in siblings and r.status == "cached":
                r.status = "computed"


class Committer:
    """Computed videos wait in the job's segment writer, their leases held, until it publishes them; only
    then are they results (a requeued job computes again what was never published)."""

    def __init__(self, store: Store, out: SegmentWriter, heartbeat: Heartbeat, results: list[VideoResult]) -> None:
        self.store, self.out, self.heartbeat, self.results = store, out, heartbeat, results
        self.waiting: list[tuple[VideoResult, Lease]] = []
        self.busy = False
        self.in_flight: tp.Callable[[], dict[str, Partial]] = dict
        """The steps computed so far of each video being computed (content hash -> ``Partial``)."""
        self.stages: tp.Any = None
        """The batched path's ``Stages`` (decoding and model time), for the job's measurement."""

    def add(self, result: VideoResult, claim: Lease, data: tp.Any, attrs: dict[str, tp.Any]) -> None:
        self.busy = True
        try:
            self.out.add(result.video_hash, data, attrs)
            self.waiting.append((result, claim))
            claim.mark_computed()
        finally:
            self.busy = False
        if self.out.due():
            self.flush()

    def flush(self) -> None:
        self.busy = True
        pending = list(self.out.waiting)
        failed: dict[str, Exception] = {}
        try:
            try:
                written = self.store.flush(self.out) if self.waiting else {}
            except StoreError:
                raise
            except Exception:  # noqa: BLE001 - an entry the store cannot take: one by one, to name it
                written, failed = self._one_by_one(pending)
            for result, _ in self.waiting:
                error = failed.get(result.video_hash)
                if error is not None:
                    self.store.record_failure(self.out.config_uid, result.video_hash, result.video_path, error)
                    result.status, result.error = "failed", f"{type(error).__name__}: {error}"
                else:
                    result.status = "computed" if written.get(result.video_hash) else "discarded"
                self.results.append(result)
        finally:
            self.abandon()
            self.busy = False

    def _one_by_one(self, pending: list[tp.Any]) -> tuple[dict[str, bool], dict[str, Exception]]:
        """Publish each waiting entry alone (those of the segment that failed): the one the store refuses
        fails alone, as a video that raised while computing would."""
        written: dict[str, bool] = {}
        failed: dict[str, Exception] = {}
        for p in pending:
            try:
                # found stored, it is most likely by the part of the segment write that went through
                self.store.write(self.out.config_uid, p.video_hash, p.data, p.attrs)
                written[p.video_hash] = True
            except StoreError:
                raise
            except Exception as e:  # noqa: BLE001 - recorded as this video's failure
                if environmental(e):  # the store's, not the video's: the job stops, the videos stay not done
                    raise StoreError(e.errno if isinstance(e, OSError) else None, f"store: {e}") from e
                failed[p.video_hash] = e
        return written, failed

    def flush_on_signal(self) -> None:
        """Publish what waits, from a signal handler (pre-emption, time-out), unless the signal came in the
        middle of this committer's own work: then what waits is computed again after the requeue."""
        if not self.busy:
            self.flush_quietly()

    def save_in_flight(self) -> None:
        """From a signal handler (pre-emption, time-out): keep the steps computed so far of each video
        being computed as its progress in the store, for whichever task takes it next (unless the signal
        came in the middle of this committer's own work)."""
        if self.busy:
            return
        self.busy = True
        try:
            for vhash, partial in self.in_flight().items():
                if not 0 < partial.done < len(partial.rows):
                    continue
                data, attrs = partial.progress()
                try:
                    kept = self.out.save_progress(vhash, data, {**attrs, "job_id": current_job_id(), "saved": now()})
                except Exception as e:  # noqa: BLE001 - already stopping; the video is computed again
                    print(f"progress of {vhash} not saved: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
                    continue
                if kept:
                    print(
                        f"progress of {vhash} saved: {partial.done} of {len(partial.rows)} steps",
                        file=sys.stderr,
                        flush=True,
                    )
        finally:
            self.busy = False

    def flush_quietly(self) -> None:
        try:
            self.flush()
        except Exception:  # noqa: BLE001 - already stopping for another reason
            pass

    def abandon(self) -> None:
        """Let go of the leases of what waits (unpublished: a relaunch computes it)."""
        for _, claim in self.waiting:
            self.heartbeat.drop(claim)
            claim.release()
        self.waiting = []
        self.out.waiting = []


def _claim(run: RunConfig, store: Store, path: str, vhash: str, launch: str) -> Lease | VideoResult:
    """This worker's lease on a video, or why it is not to be embedded here (stored, held, died too often)."""
    cuid = run.embed.uid()
    if store.has(cuid, vhash):
        return VideoResult(path, vhash, "cached")
    claim = acquire(store.leases(cuid), vhash, run.lease_ttl_s, launch)
    if not isinstance(claim, Lease):
        holder = claim.owner
        job = str(holder.get("job_id") or "")
        note = f"held by job {job or '?'} on {holder.get('host', '?')}"
        ours = bool(job) and job == current_job_id() and task_rank() == 0  # a worker of this task: waited for
        sibling = bool(launch) and holder.get("launch") == launch and not ours
        return VideoResult(path, vhash, "busy", note, holder=job, sibling=sibling)
    if store.has(cuid, vhash):
        claim.release()
        return VideoResult(path, vhash, "cached")
    if claim.attempt > run.max_attempts:
        prev = claim.previous
        died = WorkerDied(
            f"{claim.attempt - 1} worker(s) died while embedding this video (last: job "
            f"{prev.get('job_id') or '?'} on {prev.get('host', '?')}, pid {prev.get('pid', '?')})"
        )
        claim.release()
        return _failure(run, store, path, vhash, died, 0.0)
    return claim


def _resume(run: RunConfig, store: Store, path: str, vhash: str) -> Resume | None:
    """The steps an interrupted task saved for this video (``Committer.save_in_flight``), to continue from."""
    found = store.progress(run.embed.uid(), vhash)
    if found is None:
        return None
    resume = Resume.from_progress(*found)
    saved_by = found[1].get("job_id") or "?"
    print(
        f"resuming {path} at step {resume.start} of {resume.n_steps} (saved by job {saved_by})",
        file=sys.stderr,
        flush=True,
    )
    return resume


def _commit(
    run: RunConfig,
    committer: Committer,
    embedder: tp.Any,
    emb: tp.Any,
    path: str,
    vhash: str,
    started: float,
    claim: Lease,
) -> None:
    """Hand a computed embedding to the job's writer (with its lease); a store that cannot take it stops
    the job (StoreError)."""
    faults.after_video()
    seconds = time.perf_counter() - started
    result = VideoResult(path, vhash, "computed", seconds=seconds, note=emb.timing_note)
    committer.add(result, claim, emb.data, _attrs(run, embedder, emb, path, vhash, seconds))


def _failure(run: RunConfig, store: Store, path: str, vhash: str, error: BaseException, started: float) -> VideoResult:
    """A video that raised: recorded against it if the fault is its own; an environment's fault (an I/O
    error, a stale handle, the file missing on this node) leaves it not done, for a relaunch to retry."""
    seconds = time.perf_counter() - started if started else 0.0
    text = f"{type(error).__name__}: {error}"
    if not_the_video(error):
        note = f"{text} (the environment's fault: not recorded against the video)"
        return VideoResult(path, vhash, "not_done", note, seconds)
    store.record_failure(run.embed.uid(), vhash, path, error)
    return VideoResult(path, vhash, "failed", text, seconds)


def _one_video(
    run: RunConfig,
    store: Store,
    embedder: tp.Any,
    heartbeat: Heartbeat,
    committer: Committer,
    path: str,
    vhash: str,
    launch: str = "",
) -> VideoResult | None:
    """One video with the engine alone (``decoders=0``, and families whose processor takes whole clips);
    None when it was handed to the writer (its result comes when it is published)."""
    claim = _claim(run, store, path, vhash, launch)
    if not isinstance(claim, Lease):
        return claim
    started = time.perf_counter()
    heartbeat.hold(claim)
    committer.in_flight = lambda: {vhash: embedder.partial} if embedder.partial is not None else {}
    try:
        emb = embedder.embed(path, _resume(run, store, path, vhash))
    except Exception as e:  # noqa: BLE001 - one bad video must not stop the job
        heartbeat.drop(claim)
        claim.release()
        return _failure(run, store, path, vhash, e, started)
    except BaseException:
        heartbeat.drop(claim)
        claim.release()
        raise
    try:
        _commit(run, committer, embedder, emb, path, vhash, started, claim)
    except BaseException:
        if not any(c is claim for _, c in committer.waiting):
            heartbeat.drop(claim)
            claim.release()
        raise
    return None


def _run_batched(
    run: RunConfig,
    store: Store,
    embedder: tp.Any,
    heartbeat: Heartbeat,
    committer: Committer,
    pending: list[tuple[str, str]],
    launch: str,
    n: int,
    progress: tp.Callable[..., tp.Any],
    streak: Streak,
) -> None:
    """The queue through ``Batcher``: ``n`` decoding processes, several videos in flight, shared batches."""
    from pipeline.embedding.batcher import Batcher

    queue = iter(pending)
    claims: dict[str, tuple[str, Lease, float]] = {}

    def next_video() -> tuple[str, str, Resume | None] | None:
        if streak.broken:
            return None
        for path, vhash in queue:
            claim = _claim(run, store, path, vhash, launch)
            if isinstance(claim, Lease):
                heartbeat.hold(claim)
                claims[vhash] = (path, claim, time.perf_counter())
                try:
                    resume = _resume(run, store, path, vhash)
                except Exception as e:  # noqa: BLE001 - progress unreadable: the video fails alone
                    failed(vhash, e)
                    continue
                return vhash, path, resume
            committer.results.append(claim)
            progress()
        return None

    def done(vhash: str, emb: tp.Any) -> None:
        path, claim, started = claims.pop(vhash)
        streak.add(None)
        try:
            _commit(run, committer, embedder, emb, path, vhash, started, claim)
        except BaseException:
            heartbeat.drop(claim)
            claim.release()
            raise
        finally:
            progress(vhash, embedded=True)

    def failed(vhash: str, error: BaseException) -> None:
        path, claim, started = claims.pop(vhash)
        try:
            committer.results.append(_failure(run, store, path, vhash, error, started))
            streak.add(committer.results[-1])
        finally:
            heartbeat.drop(claim)
            claim.release()
            progress()

    import torch

    device = embedder.adapter.device.type
    threads = batched_threads(device, job_cpus())
    if threads:
        torch.set_num_threads(threads)
    warning = few_cpus_warning(device, job_cpus())
    if warning:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    batcher = Batcher(embedder, n)
    committer.in_flight = batcher.partials
    committer.stages = batcher.stages
    try:
        batcher.run(next_video, done, failed)
    finally:
        batcher.close()
        for _, claim, _ in claims.values():
            heartbeat.drop(claim)
            claim.release()


class QueueJob:
    """The callable submitted per array task: it walks the launch's queue. On pre-emption or time-out,
    submitit calls ``checkpoint`` and requeues the job with the returned submission: the same queue,
    carrying the videos already done."""

    def __init__(self, done: list[VideoResult] | None = None) -> None:
        self.results: list[VideoResult] = list(done or [])
        self.committer: Committer | None = None

    def __getstate__(self) -> dict[str, tp.Any]:
        return {"results": self.results}

    def __setstate__(self, state: dict[str, tp.Any]) -> None:
        self.results, self.committer = state.get("results", []), None

    def __call__(
        self, run_dict: dict[str, tp.Any], items: list[tuple[str, str]] | str, launch: str = ""
    ) -> list[VideoResult]:
        """``items``: the path of the launch's queue file (a list of ``(path, hash)`` before 0.3)."""
        os.umask(os.umask(0o022) | 0o022)  # the result submitit pickles for the launcher: writable by none but us
        queue = read_queue(items) if isinstance(items, str) else items
        return work_queue(run_dict, queue, self.results, launch, job=self)

    def checkpoint(self, run_dict: dict[str, tp.Any], items: list[tuple[str, str]] | str, launch: str = "") -> tp.Any:
        import submitit

        if self.committer is not None:
            self.committer.flush_on_signal()  # published now: the requeued job finds them stored
            self.committer.save_in_flight()  # and continues the videos in flight from their last step

        return submitit.helpers.DelayedSubmission(QueueJob(self.results), run_dict, items, launch)


ShardJob = QueueJob
"""The name jobs submitted before 0.2 pickled (``pipeline.worker.ShardJob``): a job requeued across the
upgrade unpickles into ``QueueJob`` (``pipeline._moved`` maps the old module)."""
