"""Per-video claims, so that concurrent launchers never compute the same video at the same time.

A lease on a video is a file ``<store>/<config_uid>/_leases/<video_hash>.<generation>.json``; the file of
the highest generation is the lease. Every lease file is written whole under a temporary name and
published by ``link()``, which fails if that generation exists: a lease file is never empty or half
written, and of two claimants racing for one generation exactly one wins.

- **Heartbeat**: the holder raises a counter inside its own file (``renew``, from ``Heartbeat``'s thread,
  which retries through I/O errors and says so). Only the holder ever writes its generation's file.
- **Lapse**, judged by the claimant on its own monotonic clock (``Watch``): the counter (the file's bytes)
  unchanged for ``ttl`` seconds, whatever the holder's or the file server's clocks say; or at once when
  the holder ran on this host and its process is gone. A first sight is never lapsed, so a claimant that
  meets a dead holder on another host takes its video after ``ttl`` seconds of watching it.
- **Taking over** a lapsed lease of generation ``g`` is creating generation ``g + 1``: one exclusive step.
  The taker then checks that ``g`` is still there (a holder that released it meanwhile was done: the taker
  backs off) and removes the older generations. A holder that finds ``g + 1`` knows it lost the lease; it
  never renews, marks or removes what is not its own.
- **Attempts**: a takeover counts ``attempt + 1`` (how a video that kills its workers is recorded as failed
  after ``max_attempts``), except when the holder had marked the video computed (``mark_computed``).

Even two holders at once (possible only around a release) compute a video twice at worst: the store's
commit log keeps the lower commit (``pipeline.store.log``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import socket
import threading
import time
import typing as tp
import uuid
from pathlib import Path

from pipeline.common import processes
from pipeline.common.files import link_new, make_shared_dirs, write_atomic
from pipeline.common.processes import Watch
from pipeline.common.retry import backoff

logger = logging.getLogger(__name__)


def current_job_id() -> str:
    """The scheduler's id of the job this process runs in (``<array>_<task>`` for array tasks)."""
    env = os.environ
    if env.get("SUBMITIT_LOCAL_JOB_ID"):  # a local job, also one started inside an salloc (which sets SLURM_*)
        return env["SUBMITIT_LOCAL_JOB_ID"]
    if env.get("SLURM_ARRAY_JOB_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env.get('SLURM_ARRAY_TASK_ID', '')}"
    return env.get("SLURM_JOB_ID", "")


def task_rank() -> int:
    """This process's rank among its SLURM job's tasks (one worker per GPU; 0 outside SLURM)."""
    return int(os.environ.get("SLURM_PROCID", "0") or 0)


def _owner() -> dict[str, tp.Any]:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "pid_space": processes.pid_space(),
        "job_id": current_job_id(),
        "task": str(task_rank()),
        "token": uuid.uuid4().hex,
    }


WATCH = Watch()
"""This process's watch, shared by its claims (a worker meets a busy video again later in its queue)."""


def file_of(folder: Path, video_hash: str, generation: int) -> Path:
    return folder / (f"{video_hash}.json" if generation == 0 else f"{video_hash}.{generation}.json")


def parse(name: str) -> tuple[str, int] | None:
    """(video hash, generation) of a lease file's name (generation 0: pipeline 0.3's ``<hash>.json``)."""
    if not name.endswith(".json") or name.startswith("."):
        return None
    stem = name[: -len(".json")]
    head, _, tail = stem.rpartition(".")
    if head and tail.isdigit():
        return head, int(tail)
    return stem, 0


def generations(folder: Path) -> dict[str, list[int]]:
    """Video hash -> the generations of its lease files, highest first."""
    out: dict[str, list[int]] = {}
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(folder):
            found = parse(name)
            if found is not None:
                out.setdefault(found[0], []).append(found[1])
    return {h: sorted(g, reverse=True) for h, g in out.items()}


def _tip(folder: Path, video_hash: str) -> int | None:
    found = [p for p in (parse(n) for n in _names(folder, video_hash)) if p is not None and p[0] == video_hash]
    return max((g for _, g in found), default=None)


def _names(folder: Path, video_hash: str) -> list[str]:
    try:
        return [n for n in os.listdir(folder) if n.startswith(video_hash)]
    except FileNotFoundError:
        return []


@dataclasses.dataclass
class LeaseState:
    """What a lease file says, and whether it still holds."""

    owner: dict[str, tp.Any]
    attempt: int
    age_s: float
    """Seconds since the file last changed, by this host's clock: for display and clean-up only."""
    live: bool
    computed: bool = False
    """Its holder had computed the video and was waiting to publish it: a death then is not the video's."""
    generation: int = 0
    counter: tp.Any = None
    """What the heartbeat changes (the file's bytes): a lapse is this unchanged for the TTL."""


def read_lease(path: Path, ttl: float, watch: Watch | None = None) -> LeaseState | None:
    """The lease in ``path`` (None: no such file). With a ``watch``, ``live`` is judged by its counter on
    this process's clock (or its holder gone on this host); without one, by the file's age on this host's
    clock, a presumption for display (``status``) and clean-up (``gc``), never for taking it over."""
    try:
        raw = path.read_bytes()
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    try:
        record = dict(json.loads(raw))
    except ValueError:
        record = {}  # unreadable (a 0.3 lease left empty): judged by the same rule, its bytes the counter
    owner = dict(record.get("owner", {}))
    found = parse(path.name)
    generation = found[1] if found else 0
    age = time.time() - mtime
    if processes.gone_here(owner):
        live = False
    elif watch is not None:
        live = not watch.lapsed(str(path), raw, ttl)
    else:
        live = age < ttl
    return LeaseState(
        owner,
        int(record.get("attempt", 1)),
        age,
        live,
        bool(record.get("computed", False)),
        generation,
        raw,
    )


class Lease:
    """A claim held by this process on one video (generation ``generation`` of its lease files)."""

    def __init__(
        self,
        path: Path,
        owner: dict[str, tp.Any],
        attempt: int,
        previous: dict[str, tp.Any],
        generation: int = 1,
        record: dict[str, tp.Any] | None = None,
    ) -> None:
        self.path = path
        self.owner = owner
        self.attempt = attempt
        self.previous = previous
        """The owner of the lapsed lease this one took over (empty for a first attempt)."""
        self.generation = generation
        self.record = dict(record or {"owner": owner, "attempt": attempt})
        self.lost = False
        found = parse(path.name)
        self._next = file_of(path.parent, found[0] if found else path.stem, generation + 1)

    def held(self) -> bool:
        """Still this process's: no later generation was created (a taker always creates the next one)."""
        if not self.lost and self._next.exists():
            self.lost = True
        return not self.lost

    def _rewrite(self, **changes: tp.Any) -> bool:
        if not self.held():
            return False
        record = {**self.record, **changes}
        write_atomic(self.path, json.dumps(record))
        self.record = record
        return True

    def renew(self) -> bool:
        """Raise the heartbeat counter; False when the lease was taken over (this process lost it)."""
        return self._rewrite(beat=int(self.record.get("beat", 0)) + 1)

    def mark_computed(self) -> None:
        """Say in the lease that the video is computed, waiting to be published: if this worker dies now,
        whoever takes the lease over does not count the death against the video."""
        with contextlib.suppress(OSError):
            self._rewrite(computed=True)

    def release(self) -> None:
        """Remove the lease if it is still ours."""
        with contextlib.suppress(OSError):
            if self.held():
                self.path.unlink(missing_ok=True)


def _create(folder: Path, video_hash: str, generation: int, record: dict[str, tp.Any]) -> Path | None:
    """Publish ``record`` as the given generation of the video's lease; None when it exists."""
    tmp = folder / f".{video_hash}.{uuid.uuid4().hex[:8]}.tmp"
    write_atomic(tmp, json.dumps(record))  # whole before it has a lease's name
    try:
        path = file_of(folder, video_hash, generation)
        return path if link_new(tmp, path) else None
    finally:
        tmp.unlink(missing_ok=True)


def acquire(
    folder: Path, video_hash: str, ttl: float, launch: str = "", watch: Watch | None = None
) -> Lease | LeaseState:
    """Claim a video: a ``Lease`` if this process now holds it, else the holder's ``LeaseState``.

    A lapsed lease (``watch``, by default this process's ``WATCH``) is taken over, the attempt counted,
    except one left by another job of the same ``launch``: a sibling that died leaves its video for a
    relaunch, as it would with a fixed share of the work (a requeued job has its own job id and takes its
    own lease back at once)."""
    watch = WATCH if watch is None else watch
    make_shared_dirs(folder, folder.parent)
    owner = {**_owner(), "launch": launch}
    for _ in range(8):  # only claims racing this one's make it look again
        tip = _tip(folder, video_hash)
        if tip is None:
            path = _create(folder, video_hash, 1, {"owner": owner, "attempt": 1})
            if path is not None:
                return Lease(path, owner, 1, {}, 1)
            continue
        state = read_lease(file_of(folder, video_hash, tip), ttl, watch)
        if state is None:
            continue  # released or taken over meanwhile
        # this job's, from an earlier run of it (requeued): the same job and the same task of it (a job
        # may run one worker per GPU, each a task: siblings, not an earlier self)
        mine = (
            state.owner.get("job_id")
            and state.owner.get("job_id") == owner["job_id"]
            and state.owner.get("task", "0") == owner["task"]
        )
        if state.live and not (mine and state.owner.get("launch") == launch and state.owner.get("pid") != owner["pid"]):
            return state
        if not state.live and launch and state.owner.get("launch") == launch and not mine:
            return state
        attempt = state.attempt if state.computed else state.attempt + 1
        record = {"owner": owner, "attempt": attempt, "previous": state.owner}
        path = _create(folder, video_hash, tip + 1, record)
        if path is None:
            continue  # another claimant took it first: look at what it wrote
        if not file_of(folder, video_hash, tip).exists():  # released while this one judged it: back off
            path.unlink(missing_ok=True)
            continue
        for older in (g for g in generations(folder).get(video_hash, []) if g <= tip):
            file_of(folder, video_hash, older).unlink(missing_ok=True)
        return Lease(path, owner, attempt, state.owner, tip + 1, record)
    current = _tip(folder, video_hash)
    found = read_lease(file_of(folder, video_hash, current), ttl) if current is not None else None
    return found or LeaseState({}, 1, 0.0, True)


def live_leases(folder: Path, ttl: float, watch: Watch | None = None) -> dict[str, LeaseState]:
    """Video hash -> state of every lease that still holds (by its counter with a ``watch``, else by its
    age on this host's clock: a presumption)."""
    out = {}
    for video_hash, gens in generations(folder).items():
        state = read_lease(file_of(folder, video_hash, gens[0]), ttl, watch)
        if state is not None and state.live:
            out[video_hash] = state
    return out


def lease_files(folder: Path) -> list[tuple[str, Path]]:
    """(video hash, path) of every lease file."""
    return [(h, file_of(folder, h, g)) for h, gens in sorted(generations(folder).items()) for g in gens]


class Heartbeat:
    """Renews the leases held (one per video in flight) every ``ttl / 4`` seconds from a daemon thread.
    A renewal that fails (ESTALE, EIO, a full disk) is retried sooner and logged; a lease is given up only
    when it was taken over, or after renewals failed for longer than ``ttl`` (others take it then)."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.interval = max(ttl / 4, 0.05)
        self.held: dict[int, Lease] = {}
        self._failing_since: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="lease-heartbeat")
        self._thread.start()

    def hold(self, lease: Lease) -> None:
        self.held[id(lease)] = lease

    def drop(self, lease: Lease) -> None:
        self.held.pop(id(lease), None)

    def beat_once(self) -> None:
        failed = 0
        for key, lease in list(self.held.items()):
            try:
                if not lease.renew():
                    logger.warning("lease on %s was taken over by another worker", lease.path.name)
                    self.held.pop(key, None)
            except OSError as e:
                failed += 1
                logger.warning("cannot renew lease %s (%s); retrying", lease.path, e)
        now_s = time.monotonic()
        if not failed:
            self._failing_since = None
        elif self._failing_since is None:
            self._failing_since = now_s
        elif now_s - self._failing_since > self.ttl:
            logger.error("lease renewals failed for %.0f s: giving up %d lease(s)", now_s - self._failing_since, failed)
            self.held.clear()

    def _beat(self) -> None:
        attempt = 0
        while not self._stop.wait(self._wait_s(attempt)):
            self.beat_once()
            attempt = attempt + 1 if self._failing_since is not None else 0

    def _wait_s(self, attempt: int) -> float:
        return self.interval if self._failing_since is None else backoff(attempt, 0.5, self.interval)

    def stop(self) -> None:
        self._stop.set()


def lease_holder(folder: Path, video_hash: str) -> str:
    """The job id recorded in a video's lease ("" when there is none)."""
    tip = _tip(folder, video_hash)
    if tip is None:
        return ""
    try:
        return str(json.loads(file_of(folder, video_hash, tip).read_text()).get("owner", {}).get("job_id", ""))
    except (OSError, ValueError):
        return ""
