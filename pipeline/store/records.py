"""What launches asked for and which videos failed: small JSON records beside a config's entries."""

from __future__ import annotations

import json
import os
import socket
import typing as tp
from pathlib import Path

from pipeline.common.files import now, write_atomic
from pipeline.store import layout
from pipeline.store.leases import current_job_id


def record_launch(
    config_dir: Path, launch_id: str, videos: dict[str, str], job_ids: list[str], executor: str = "", command: str = ""
) -> None:
    """Remember what a launch asked for (video hash -> path), its jobs and the command that made it, so that
    status can count what is pending and say how to relaunch, and cancel can find the jobs."""
    folder = config_dir / layout.LAUNCHES
    folder.mkdir(parents=True, exist_ok=True)
    record = {
        "time": now(),
        "videos": videos,
        "job_ids": job_ids,
        "host": socket.gethostname(),
        "launcher_pid": os.getpid(),
        "executor": executor,
        "command": command,
    }
    write_atomic(folder / f"{launch_id}.json", json.dumps(record))


def mark_cancelled(config_dir: Path, launch_id: str) -> None:
    """Note that ``pipeline.cancel`` stopped this launch's jobs: its videos not stored will not be run."""
    path = config_dir / layout.LAUNCHES / f"{launch_id}.json"
    record = json.loads(path.read_text())
    write_atomic(path, json.dumps({**record, "cancelled": now()}))


def launches(config_dir: Path) -> dict[str, dict[str, tp.Any]]:
    """Launch id -> its record, oldest first."""
    folder = config_dir / layout.LAUNCHES
    if not folder.is_dir():
        return {}
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def record_failure(config_dir: Path, video_hash: str, video_path: str, error: BaseException) -> None:
    """The video's last failure under this config (a later success removes it)."""
    folder = config_dir / layout.FAILED
    folder.mkdir(parents=True, exist_ok=True)
    record = {
        "video_path": video_path,
        "error_type": type(error).__name__,
        "message": str(error),
        "job_id": current_job_id(),
        "host": socket.gethostname(),
        "time": now(),
    }
    write_atomic(folder / f"{video_hash}.json", json.dumps(record, indent=1))


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
