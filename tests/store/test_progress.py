"""A video's partial progress (``SegmentWriter.save_progress``, ``Store.progress``): keyed by (config,
video), never an entry, the furthest wins, replaced by the entry, carried through checkpoints, fenced and
collected like any writer's segment; then real processes killed or out of space at each point of saving
it, followed by the store's invariants."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import typing as tp
from pathlib import Path

import numpy as np
import pytest

from pipeline.store import Store
from pipeline.store import log as commit_log
from pipeline.store.writer import WriterRevoked
from pipeline.testing import faults
from pipeline.tools import collect

from ..conftest import REPO, TALLY
from .invariants import Observer, digest
from .test_log import CFG, _attrs, _h, _seeded, _value

VIDEO = _h(40)


def _steps(value: np.ndarray, n: int) -> tuple[np.ndarray, dict[str, tp.Any]]:
    """The first ``n`` steps of an entry's value and attributes: what a task interrupted there had."""
    attrs = _attrs(40)
    return value[..., :n], {**attrs, "times": attrs["times"][:n], "steps": n}


def _commit(version: int, kind: str, *hashes: str, rows: tuple[int, ...] = (), writer: str = "") -> commit_log.Commit:
    segments = tuple(f"seg{version}" for _ in hashes)
    return commit_log.Commit(version, kind, writer, hashes, segments, rows=rows or tuple(1 for _ in hashes))


# --- the decisions, pure ------------------------------------------------------------------------------
def test_the_furthest_progress_holds_until_the_entry_or_a_tombstone_replaces_it() -> None:
    fold = commit_log.Fold(lambda h: False, base=10, base_steps={"b": 5, "c": 2}.get)
    fold.apply(_commit(11, "progress", "a", rows=(2,)))
    fold.apply(_commit(12, "progress", "a", "b", rows=(4, 3)))  # b's 3 steps: behind the checkpoint's 5
    fold.apply(_commit(13, "progress", "a", "c", rows=(4, 3)))  # a as far as 12: the first to get there holds
    assert fold.progress == {"a": (12, 0, 4), "c": (13, 1, 3)} and not fold.present("a")
    assert (fold.steps("a"), fold.steps("b"), fold.steps("c")) == (4, 5, 3)
    fold.apply(_commit(14, "add", "a"))
    fold.apply(_commit(15, "progress", "a", rows=(9,)))  # a task that had not seen the entry: moot
    fold.apply(_commit(16, "remove", "b", "c"))
    assert fold.progress == {} and fold.pending == {"a": (14, 0)}
    assert fold.steps("a") is fold.steps("b") is fold.steps("c") is None


# --- files --------------------------------------------------------------------------------------------
def test_progress_is_never_an_entry_and_the_next_task_builds_on_it(tmp_path: Path) -> None:
    store, acked = _seeded(tmp_path / "s.zarr")
    observer = Observer(store.path, CFG)
    value = _value(40)
    first, second, stale = (Store(store.path).writer(CFG) for _ in range(3))
    assert first.save_progress(VIDEO, *_steps(value, 2))
    data, attrs = Store(store.path).progress(CFG, VIDEO) or (None, {})
    assert np.array_equal(data, value[..., :2]) and attrs["times"] == [0.0, 0.5] and attrs["steps"] == 2
    assert not Store(store.path).has(CFG, VIDEO) and VIDEO not in Store(store.path).done_hashes(CFG)
    assert observer.look(acked) == []
    assert second.save_progress(VIDEO, *_steps(value, 4))  # the next task went on from step 2
    assert not stale.save_progress(VIDEO, *_steps(value, 3))  # a stalled task that got less far
    catalog = Store(store.path).catalog(CFG)
    catalog.refresh()
    committed = catalog.tip
    Store(store.path).compact(CFG, grace_s=0)
    assert store.write(CFG, _h(41), _value(41), _attrs(41))
    acked[_h(41)] = digest(_value(41))
    Store(store.path).compact(CFG, grace_s=0)  # the progress commits are cleaned up: the checkpoint holds it
    left = [commit_log.version_of(p.name) or 0 for p in (store.path / CFG / "_log").glob("*.parquet")]
    assert min(left, default=committed + 1) > committed
    data, attrs = Store(store.path).progress(CFG, VIDEO) or (None, {})
    assert np.array_equal(data, value[..., :4]) and attrs["steps"] == 4
    assert observer.look(acked) == []
    # the two segments the log still names stay; the one no longer named goes once its writer closed
    first.close()
    stale.close()
    collect.apply(store, collect.find_removals(Store(store.path), None))
    assert Store(store.path).progress(CFG, VIDEO) is not None and observer.look(acked) == []
    second.add(VIDEO, value, _attrs(40))
    assert second.flush() == {VIDEO: True}
    acked[VIDEO] = digest(value)
    assert Store(store.path).progress(CFG, VIDEO) is None and Store(store.path).catalog(CFG).progress_rows() == []
    assert not second.save_progress(VIDEO, *_steps(value, 5))  # the entry is there: nothing more to keep
    second.close()
    collect.apply(store, collect.find_removals(Store(store.path), None))
    named = Store(store.path).catalog(CFG).rows_by_segment()
    left = {p.name for p in (store.path / CFG).iterdir() if p.name.startswith("s")}
    assert left == set(named) and observer.look(acked) == []


def test_a_tombstone_drops_a_video_s_progress(tmp_path: Path) -> None:
    store, _ = _seeded(tmp_path / "s.zarr", 1)
    out = store.writer(CFG)
    assert out.save_progress(VIDEO, *_steps(_value(40), 3))
    store.remove_entries(CFG, [VIDEO])
    assert Store(store.path).progress(CFG, VIDEO) is None
    out.close()


def test_a_revoked_writer_s_progress_is_void_and_it_is_told(tmp_path: Path) -> None:
    store, acked = _seeded(tmp_path / "s.zarr")
    out = store.writer(CFG)
    assert out.save_progress(VIDEO, *_steps(_value(40), 2))
    Store(store.path).catalog(CFG).revoke([out.record.id])  # gc presumed it dead
    with pytest.raises(WriterRevoked, match="not written"):
        out.save_progress(VIDEO, *_steps(_value(40), 4))
    data, _ = Store(store.path).progress(CFG, VIDEO) or (None, {})
    assert data is not None and data.shape[-1] == 2  # what it saved before its revocation stands
    assert Observer(store.path, CFG).look(acked) == []


def test_a_checkpoint_keeps_progress_beside_it_and_a_torn_one_falls_back(tmp_path: Path) -> None:
    """The checkpoint's progress is a file of its own, read only by who asks for progress; torn, the
    checkpoint is skipped for the one before it; left alone by a compaction that died before linking its
    checkpoint, cleanup removes it."""
    store, acked = _seeded(tmp_path / "s.zarr")
    out = store.writer(CFG)
    assert out.save_progress(VIDEO, *_steps(_value(40), 3))
    out.close()
    Store(store.path).compact(CFG, grace_s=3600)
    catalog = Store(store.path).catalog(CFG)
    catalog.refresh()
    side = commit_log.progress_path(store.path / CFG, catalog.base)
    assert side.is_file() and not commit_log.progress_path(store.path / CFG, 1).exists()
    assert Store(store.path).has(CFG, _h(0)) and catalog._base_progress is None  # an entry's reader never reads it
    assert (Store(store.path).progress(CFG, VIDEO) or (np.zeros((4, 0)), {}))[0].shape[-1] == 3
    side.write_bytes(side.read_bytes()[:40])  # torn: the checkpoint before it, and the commits after that
    data, _ = Store(store.path).progress(CFG, VIDEO) or (None, {})
    assert data is not None and data.shape[-1] == 3 and Observer(store.path, CFG).look(acked) == []
    orphan = commit_log.progress_path(store.path / CFG, 999)
    orphan.write_bytes(b"left by a compaction killed before its checkpoint")
    os.utime(orphan, (0, 0))
    commit_log.cleanup(store.path / CFG)
    assert not orphan.exists() and Observer(store.path, CFG).look(acked) == []


def test_a_revocation_keeps_its_number_through_checkpoints(tmp_path: Path) -> None:
    """A writer revoked at commit R, read from a later checkpoint: its commits before R still count and
    its later ones do not, so a stalled writer is told it was revoked however the log was compacted."""
    store, _ = _seeded(tmp_path / "s.zarr")
    out = store.writer(CFG)
    assert out.save_progress(VIDEO, *_steps(_value(40), 2))
    revoked_at = Store(store.path).catalog(CFG).revoke([out.record.id])
    assert store.write(CFG, _h(41), _value(41), _attrs(41))
    Store(store.path).compact(CFG, grace_s=0)
    catalog = Store(store.path).catalog(CFG)
    catalog.refresh()
    assert catalog.base > revoked_at and catalog.fold().revoked_at[out.record.id] == revoked_at


def test_progress_read_while_it_is_overtaken_and_collected_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader of progress stalls mid-read while another task saves further progress and gc collects the
    segment it was reading (zarr would read the missing shard as zeros): it reads the new progress."""
    from pipeline.store import reader

    store, _ = _seeded(tmp_path / "s.zarr")
    value = _value(40)
    first = store.writer(CFG)
    assert first.save_progress(VIDEO, *_steps(value, 2))
    first.close()
    real = reader.read_window
    overtaken: list[str] = []

    def stalled(path: Path, cuid: str, row: tp.Any, start: tp.Any, stop: tp.Any) -> tp.Any:
        found = real(path, cuid, row, start, stop)
        if not overtaken:
            further = Store(store.path).writer(CFG)
            assert further.save_progress(VIDEO, *_steps(value, 5))
            further.close()
            overtaken.append(row["segment"])
            shutil.rmtree(path / cuid / row["segment"])  # as gc does once no commit names it
        return found

    monkeypatch.setattr(reader, "read_window", stalled)
    data, attrs = Store(store.path).progress(CFG, VIDEO) or (None, {})
    assert overtaken and data is not None and np.array_equal(data, value[..., :5]) and attrs["steps"] == 5


# --- real processes at fault points -------------------------------------------------------------------
_CHILD = r"""
import sys
import numpy as np
from pipeline.store import Store
path, cfg, vhash, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
out = Store(path).writer(cfg)
data = np.random.default_rng(40).standard_normal((4, 6)).astype(np.float32)[..., :steps]
times = [k / 2 for k in range(steps)]
print("SAVED" if out.save_progress(vhash, data, {"times": times, "model": "m", "steps": steps}) else "NOT", flush=True)
out.close()
"""

POINTS = ["segment-staged", "segment-placed", "commit-written", "commit-linked"]


@pytest.mark.parametrize("action", ["kill", "enospc"])
@pytest.mark.parametrize("point", POINTS)
def test_a_task_faulted_while_saving_progress_leaves_the_earlier_progress_or_the_new(
    tmp_path: Path, point: str, action: str
) -> None:
    """A task saves 4 steps over another's 2 and is killed (or finds the disk full) at each point: the
    progress is then 2 steps or 4, loads whole, is never listed; gc cleans up after the dead task and the
    next task saves and stores the entry."""
    store, acked = _seeded(tmp_path / "s.zarr")
    observer = Observer(store.path, CFG)
    value = _value(40)
    earlier = store.writer(CFG)
    assert earlier.save_progress(VIDEO, *_steps(value, 2))
    earlier.close()
    env = {**os.environ, faults.AT: f"{point}={action}", "PIPELINE_WRITER_BEAT_S": "0.2"}
    args = [sys.executable, "-c", _CHILD, str(store.path), CFG, VIDEO, "4"]
    child = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    if action == "kill":
        assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    else:
        assert child.returncode == 1 and "No space left on device" in child.stderr, child.stderr[-2000:]
    TALLY["faults injected"] += 1
    data, _ = Store(store.path).progress(CFG, VIDEO) or (None, {})
    assert data is not None and np.array_equal(data, value[..., : data.shape[-1]])
    assert data.shape[-1] == (4 if point == "commit-linked" else 2)  # linked: the commit stands
    assert observer.look(acked) == []
    collect.apply(store, collect.find_removals(Store(store.path), None))
    assert Store(store.path).progress(CFG, VIDEO) is not None and observer.look(acked) == []
    out = Store(store.path).writer(CFG)
    out.save_progress(VIDEO, *_steps(value, 5))
    out.add(VIDEO, value, _attrs(40))
    assert out.flush() == {VIDEO: True}
    out.close()
    acked[VIDEO] = digest(value)
    collect.apply(store, collect.find_removals(Store(store.path), None))
    Store(store.path).compact(CFG, grace_s=0)
    assert observer.look(acked) == [] and Store(store.path).progress(CFG, VIDEO) is None
    left = {p.name for p in (store.path / CFG).iterdir() if p.name.startswith("s")}
    assert left == set(Store(store.path).catalog(CFG).rows_by_segment())
