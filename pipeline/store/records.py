"""What launches asked for and which videos failed: small records beside a config's entries. A launch's
queue (every video it asked for, longest first) is one Parquet file that each of its tasks reads; its
record (JSON) holds the jobs and the command, whatever the number of videos."""

from __future__ import annotations

import getpass
import json
import os
import socket
import time
import typing as tp
import uuid
from pathlib import Path

from pipeline.common.files import make_shared_dirs, now, write_atomic
from pipeline.store import layout, tables
from pipeline.store.leases import current_job_id


def queue_path(config_dir: Path, launch_id: str) -> Path:
    return config_dir / layout.LAUNCHES / f"{launch_id}{layout.QUEUE_SUFFIX}"


def write_queue(config_dir: Path, launch_id: str, items: list[tuple[str, str]]) -> Path:
    """The launch's queue of ``(video_path, video_hash)``, in order, written once before any job starts."""
    path = queue_path(config_dir, launch_id)
    columns = {"video_path": [p for p, _ in items], "video_hash": [h for _, h in items]}
    tables.write_columns(path, columns, config_dir)
    return path


def read_queue(path: str | Path) -> list[tuple[str, str]]:
    """A launch's queue as its tasks walk it."""
    import pyarrow.parquet as pq

    columns = pq.read_table(path).to_pydict()
    return list(zip(columns["video_path"], columns["video_hash"]))


def record_launch(
    config_dir: Path,
    launch_id: str,
    n_videos: int,
    job_ids: list[str],
    executor: str = "",
    command: str = "",
    wait: bool = True,
) -> None:
    """Remember a launch (its queue was written by ``write_queue``): its jobs and the command that made it,
    so that status can count what is pending and say how to relaunch, and cancel can find the jobs."""
    folder = config_dir / layout.LAUNCHES
    make_shared_dirs(folder, config_dir)
    record = {
        "time": now(),
        "n_videos": n_videos,
        "queue": queue_path(config_dir, launch_id).name,
        "job_ids": job_ids,
        "host": socket.gethostname(),
        "user": getpass.getuser(),
        "launcher_pid": os.getpid(),
        "executor": executor,
        "command": command,
        "wait": wait,
    }
    write_atomic(folder / f"{launch_id}.json", json.dumps(record), sync=True)


def mark_cancelled(config_dir: Path, launch_id: str) -> None:
    """Note that ``pipeline.cancel`` stopped this launch's jobs: its videos not stored will not be run."""
    path = config_dir / layout.LAUNCHES / f"{launch_id}.json"
    record = json.loads(path.read_text())
    write_atomic(path, json.dumps({**record, "cancelled": now()}), sync=True)


def launches(config_dir: Path) -> dict[str, dict[str, tp.Any]]:
    """Launch id -> its record, oldest first, with ``videos`` (video hash -> path) read from its queue."""
    folder = config_dir / layout.LAUNCHES
    if not folder.is_dir():
        return {}
    out = {}
    for p in sorted(folder.glob("*.json")):
        record = json.loads(p.read_text())
        if "queue" in record:
            record["videos"] = {h: v for v, h in read_queue(folder / record["queue"])}
        out[p.stem] = record
    return out


def record_failure(config_dir: Path, video_hash: str, video_path: str, error: BaseException) -> None:
    """The video's last failure under this config (a later success removes it)."""
    folder = config_dir / layout.FAILED
    make_shared_dirs(folder, config_dir)
    record = {
        "video_path": video_path,
        "error_type": type(error).__name__,
        "message": str(error),
        "job_id": current_job_id(),
        "host": socket.gethostname(),
        "time": now(),
    }
    write_atomic(folder / f"{video_hash}.json", json.dumps(record, indent=1), sync=True)


def clear_failure(config_dir: Path, video_hash: str) -> None:
    (config_dir / layout.FAILED / f"{video_hash}.json").unlink(missing_ok=True)


def failures(config_dir: Path) -> dict[str, dict[str, tp.Any]]:
    """Video hash -> its recorded failure."""
    folder = config_dir / layout.FAILED
    if not folder.is_dir():
        return {}
    return {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}


def failure_text(record: tp.Mapping[str, tp.Any]) -> str:
    """One line for a recorded failure, as the summary, status and inspect print it."""
    return f"{record.get('error_type', 'Error')}: {record.get('message', '')}"


def record_measurement(store: Path, record: dict[str, tp.Any]) -> None:
    """What a job measured of its own speed (``pipeline.launch.estimate``), one file per job: jobs never
    write the same file, and a reader takes every file it finds."""
    folder = layout.measurements(store)
    make_shared_dirs(folder, store)
    name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.json"
    full = {**record, "job_id": current_job_id(), "host": socket.gethostname(), "time": now()}
    write_atomic(folder / name, json.dumps(full), sync=True)


def measurements(store: Path) -> list[dict[str, tp.Any]]:
    """Every measurement recorded in the store, oldest first (a file cut short is skipped)."""
    folder = layout.measurements(store)
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return out
