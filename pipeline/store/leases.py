"""Per-video claims, so that concurrent launchers never compute the same video at the same time.

A lease is ``<store>/<config_uid>/_leases/<video_hash>.json``, created with ``O_CREAT | O_EXCL`` (atomic on
local and NFS v3+ file systems). Its holder renews it (touches the file) from a heartbeat thread; it lapses
``ttl`` seconds after the last renewal, or at once when its holder ran on this host and that process is gone.
A lapsed lease is taken over with ``attempt + 1``, which is how a video that kills its worker is counted.

Two workers can both take over the same lapsed lease only if they do so within the same few milliseconds;
even then the entry is stored once: the first manifest published names it, the other's rows are garbage
that ``gc`` reclaims (see ``pipeline.store.index``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import threading
import time
import typing as tp
import uuid
from pathlib import Path

from pipeline.common.files import make_shared_dirs, share, write_atomic


def current_job_id() -> str:
    """The scheduler's id of the job this process runs in (``<array>_<task>`` for array tasks)."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env.get('SLURM_ARRAY_TASK_ID', '')}"
    return env.get("SLURM_JOB_ID") or env.get("SUBMITIT_LOCAL_JOB_ID", "")


def _owner() -> dict[str, tp.Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "job_id": current_job_id(), "token": uuid.uuid4().hex}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclasses.dataclass
class LeaseState:
    """What a lease file says, and whether it still holds."""

    owner: dict[str, tp.Any]
    attempt: int
    age_s: float
    live: bool
    computed: bool = False
    """Its holder had computed the video and was waiting to publish it: a death then is not the video's."""


def read_lease(path: Path, ttl: float) -> LeaseState | None:
    try:
        mtime = path.stat().st_mtime
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return LeaseState({}, 1, 0.0, True)
    owner = dict(record.get("owner", {}))
    age = time.time() - mtime
    live = age < ttl
    if live and owner.get("host") == socket.gethostname() and isinstance(owner.get("pid"), int):
        live = _pid_alive(owner["pid"])
    return LeaseState(owner, int(record.get("attempt", 1)), age, live, bool(record.get("computed", False)))


class Lease:
    """A claim held by this process on one video."""

    def __init__(self, path: Path, owner: dict[str, tp.Any], attempt: int, previous: dict[str, tp.Any]) -> None:
        self.path = path
        self.owner = owner
        self.attempt = attempt
        self.previous = previous
        """The owner of the lapsed lease this one took over (empty for a first attempt)."""

    def renew(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.utime(self.path)

    def mark_computed(self) -> None:
        """Say in the lease that the video is computed, waiting to be published: if this worker dies now,
        whoever takes the lease over does not count the death against the video."""
        with contextlib.suppress(OSError, ValueError):
            record = json.loads(self.path.read_text())
            if record.get("owner", {}).get("token") == self.owner["token"]:
                write_atomic(self.path, json.dumps({**record, "computed": True}))

    def release(self) -> None:
        """Remove the lease if it is still ours."""
        with contextlib.suppress(OSError, ValueError):
            if json.loads(self.path.read_text()).get("owner", {}).get("token") == self.owner["token"]:
                self.path.unlink()


def _write(path: Path, record: dict[str, tp.Any], exclusive: bool) -> None:
    blob = json.dumps(record).encode()
    if exclusive:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o664)
        try:
            os.write(fd, blob)
        finally:
            os.close(fd)
        share(path)
        return
    write_atomic(path, blob)


def acquire(folder: Path, video_hash: str, ttl: float, launch: str = "") -> Lease | LeaseState:
    """Claim a video: a ``Lease`` if this process now holds it, else the holder's ``LeaseState``.

    A lapsed lease is taken over (the attempt counted), except one left by another job of the same
    ``launch``: a sibling that died leaves its video for a relaunch, as it would with a fixed share of the
    work (a requeued job has its own job id and takes its own lease back)."""
    make_shared_dirs(folder, folder.parent)
    path = folder / f"{video_hash}.json"
    owner = {**_owner(), "launch": launch}
    try:
        _write(path, {"owner": owner, "attempt": 1}, exclusive=True)
        return Lease(path, owner, 1, {})
    except FileExistsError:
        pass
    state = read_lease(path, ttl)
    if state is None:
        return acquire(folder, video_hash, ttl)
    if state.live:
        return state
    if launch and state.owner.get("launch") == launch and state.owner.get("job_id") != owner["job_id"]:
        return state
    attempt = state.attempt if state.computed else state.attempt + 1
    _write(path, {"owner": owner, "attempt": attempt, "previous": state.owner}, exclusive=False)
    time.sleep(0.05)
    mine = read_lease(path, ttl)
    if mine is None or mine.owner.get("token") != owner["token"]:
        return mine or LeaseState({}, attempt, 0.0, True)
    return Lease(path, owner, attempt, state.owner)


def live_leases(folder: Path, ttl: float) -> dict[str, LeaseState]:
    """Video hash -> state of every lease that still holds."""
    if not folder.is_dir():
        return {}
    out = {}
    for p in folder.glob("*.json"):
        state = read_lease(p, ttl)
        if state is not None and state.live:
            out[p.stem] = state
    return out


class Heartbeat:
    """Renews the leases held (one per video in flight) every ``ttl / 4`` seconds from a daemon thread."""

    def __init__(self, ttl: float) -> None:
        self.interval = max(ttl / 4, 0.05)
        self.held: dict[int, Lease] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="lease-heartbeat")
        self._thread.start()

    def hold(self, lease: Lease) -> None:
        self.held[id(lease)] = lease

    def drop(self, lease: Lease) -> None:
        self.held.pop(id(lease), None)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            for lease in list(self.held.values()):
                lease.renew()

    def stop(self) -> None:
        self._stop.set()


def lease_holder(path: Path) -> str:
    """The job id recorded in a lease file ("" when there is none)."""
    try:
        return str(json.loads(path.read_text()).get("owner", {}).get("job_id", ""))
    except (OSError, ValueError):
        return ""
