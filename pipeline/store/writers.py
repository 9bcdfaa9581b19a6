"""Writers' liveness records, so that ``gc`` can fence a writer instead of guessing from ages.

Each writer that stages segments holds ``<store>/_writers/<writer>.json``: its host, pid, job and a
heartbeat **counter** that a thread raises every ``BEAT_S``. The record is created before the writer
stages anything and removed when it closes; its segments and staging folders carry its id in their names.

Whether a writer is dead is judged by whoever wants its files, on its own clock (``Watch``): the counter
unchanged for ``ttl`` seconds of the judge's monotonic clock, whatever the writer's or the file server's
clocks say; or, on the writer's own host, its process gone. A writer judged dead is revoked in the log
(``pipeline.store.log``) before anything of it is removed, so a writer that was only stalled publishes
nothing that counts when it resumes, and learns it was revoked.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import threading
import time
import typing as tp
import uuid
from pathlib import Path

from pipeline.common import processes
from pipeline.common.files import make_shared_dirs, now, write_atomic
from pipeline.common.retry import backoff
from pipeline.store import layout
from pipeline.store.leases import current_job_id

BEAT_S = 10.0
"""How often a writer raises its heartbeat counter (``PIPELINE_WRITER_BEAT_S`` overrides it: tests)."""
_ID = re.compile(r"^s\d{13}-([0-9a-f]{12})-[0-9a-f]{8}$")

logger = logging.getLogger(__name__)


def new_id() -> str:
    return uuid.uuid4().hex[:12]


def writer_of(segment: str) -> str | None:
    """The writer id in a segment's name, None for a segment written before writers had ids (pipeline 0.3)."""
    found = _ID.match(segment)
    return found.group(1) if found else None


class WriterRecord:
    """This process's record as a writer of ``config_uid``: ``start`` creates it and its heartbeat,
    ``close`` removes it. ``revoked`` turns True when the record was removed by someone else (``gc``
    presumed this writer dead)."""

    def __init__(self, store: Path, config_uid: str, beat_s: float | None = None) -> None:
        self.id = new_id()
        self.store, self.config_uid = store, config_uid
        self.beat_s = beat_s or float(os.environ.get("PIPELINE_WRITER_BEAT_S") or BEAT_S)
        self.path = layout.writers(store) / f"{self.id}.json"
        self.beat = 0
        self.revoked = False
        self._started = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _record(self) -> dict[str, tp.Any]:
        return {
            "writer": self.id,
            "config_uid": self.config_uid,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "pid_space": processes.pid_space(),
            "job_id": current_job_id(),
            "beat": self.beat,
            "started": now(),
        }

    def start(self) -> None:
        """Create the record (before anything is staged under this writer's id) and start beating."""
        if self._started:
            return
        make_shared_dirs(self.path.parent, self.store)
        write_atomic(self.path, json.dumps(self._record()))
        self._started = True
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"writer-{self.id}")
        self._thread.start()

    def check(self) -> None:
        """Note whether the record is gone (removed by ``gc``: this writer was revoked)."""
        if self._started and not self.path.exists():
            self.revoked = True

    def renew(self) -> None:
        """Raise the counter, in place (never creating the file: a record that gc removed stays removed, and
        this writer knows it was revoked). A reader that catches the file mid-write sees the counter move."""
        self.beat += 1
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_TRUNC)
        except FileNotFoundError:
            self.revoked = True
            return
        try:
            os.write(fd, json.dumps(self._record()).encode())
        finally:
            os.close(fd)

    def _run(self) -> None:
        failures = 0
        while not self._stop.wait(self.beat_s if not failures else backoff(failures, 1.0, self.beat_s)):
            try:
                self.renew()
                if failures:
                    logger.warning("store: writer %s renews its record again after %d failure(s)", self.id, failures)
                failures = 0
            except OSError as e:  # a transient NFS error must not let the record lapse: try again sooner
                failures += 1
                logger.warning("store: writer %s cannot renew %s (%s); retrying", self.id, self.path, e)
            if self.revoked:
                return

    def close(self) -> None:
        """Stop beating and remove the record (this writer will publish nothing more)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.beat_s)
        if self._started and not self.revoked:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        self._started = False


def records(store: Path) -> dict[str, dict[str, tp.Any]]:
    """Writer id -> its record (an unreadable record reads as one without a host, judged by its counter:
    its bytes)."""
    folder = layout.writers(store)
    out: dict[str, dict[str, tp.Any]] = {}
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(folder):
            if not name.endswith(".json") or name.startswith("."):
                continue
            try:
                text = (folder / name).read_text()
            except FileNotFoundError:
                continue
            try:
                record = dict(json.loads(text))
            except ValueError:
                record = {"beat": text}
            out[name[: -len(".json")]] = record
    return out


def gone_here(record: tp.Mapping[str, tp.Any]) -> bool:
    """The record's process ran where this one can see its pid, and is gone: dead, whatever any clock says."""
    return processes.gone_here(dict(record))


def judge(store: Path, watch_s: float, wanted: tp.Collection[str] | None = None) -> dict[str, str]:
    """Writer id -> ``live``, ``dead`` or ``unknown`` for the records of ``store`` (those in ``wanted`` if
    given). Gone on this host: dead at once; else watched for ``watch_s`` seconds (0: not watched,
    ``unknown``): a counter that moved is live, one that did not is dead."""
    found = {w: r for w, r in records(store).items() if wanted is None or w in wanted}
    verdict: dict[str, str] = {}
    watch = processes.Watch()
    for writer, record in found.items():
        if gone_here(record):
            verdict[writer] = "dead"
        else:
            watch.lapsed(writer, record.get("beat"), watch_s)
    watched = [w for w in found if w not in verdict]
    if watched and watch_s > 0:
        deadline = time.monotonic() + watch_s
        while watched and time.monotonic() < deadline:
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            again = records(store)
            for writer in list(watched):
                if writer not in again:
                    verdict[writer] = "closed"
                    watched.remove(writer)
                elif again[writer].get("beat") != found[writer].get("beat"):
                    verdict[writer] = "live"
                    watched.remove(writer)
        last = records(store)
        for writer in watched:
            if writer not in last:
                verdict[writer] = "closed"
            else:
                verdict[writer] = "dead" if watch.lapsed(writer, last[writer].get("beat"), watch_s) else "live"
    for writer in watched:
        verdict.setdefault(writer, "unknown")
    return verdict
