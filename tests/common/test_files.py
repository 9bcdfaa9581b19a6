"""What others read after a crash is on disk before it is named: a launch's queue and record, a video's
failure, the caches (``write_atomic(sync=True)``); heartbeats, rewritten every few seconds, are not synced."""

from __future__ import annotations

import os
import typing as tp
from pathlib import Path

import pytest

from pipeline.common import files
from pipeline.store import records


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What ``os.fsync`` was called on, in order: a file's name, or ``dir:<name>`` for a folder."""
    calls: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        target = Path(os.readlink(f"/proc/self/fd/{fd}"))
        calls.append(f"dir:{target.name}" if target.is_dir() else target.name)
        real(fd)

    monkeypatch.setattr(files.os, "fsync", fsync)
    return calls


def test_a_launch_s_queue_and_record_and_a_failure_are_synced_before_they_are_named(
    tmp_path: Path, synced: list[str]
) -> None:
    config_dir = tmp_path / "cfg"
    config_dir.mkdir()
    queue = records.write_queue(config_dir, "L1", [("a.mp4", "h1"), ("b.mp4", "h2")])
    assert records.read_queue(queue) == [("a.mp4", "h1"), ("b.mp4", "h2")]
    records.record_launch(config_dir, "L1", 2, ["7_0"])
    records.record_failure(config_dir, "h1", "a.mp4", ValueError("cannot decode"))
    # each: the data under its temporary name, then the folder once the rename gave it its name
    named = [c for c in synced if not c.startswith("dir:")]
    assert len(named) == 3 and all(c.startswith(".") for c in named), synced
    assert synced[1] == synced[3] == "dir:_launches" and synced[5] == "dir:_failed", synced
    assert {p.name for p in (config_dir / "_launches").iterdir()} == {"L1.json", queue.name}


def test_a_heartbeat_is_not_synced(tmp_path: Path, synced: list[str]) -> None:
    files.write_atomic(tmp_path / "beat.json", '{"counter": 1}')
    assert synced == [] and (tmp_path / "beat.json").read_text() == '{"counter": 1}'


def test_a_synced_write_that_fails_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    path = tmp_path / "record.json"
    files.write_atomic(path, "old", sync=True)

    def full(fd: int, data: tp.Any) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "write", full)
    with pytest.raises(OSError, match="No space left"):
        files.write_atomic(path, "new", sync=True)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["record.json"]
