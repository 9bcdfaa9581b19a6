"""The commit log (``pipeline.store.log``): which commit wins, tombstones and revocations decided by pure
functions; then real processes killed, stalled past every timeout, or failed (full disk, ESTALE) at each
fault point of the write, commit, checkpoint, cleanup and gc paths, each followed by the store's
invariants (``invariants.Observer``)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import typing as tp
from pathlib import Path

import numpy as np
import pytest

from pipeline.common.processes import Watch
from pipeline.store import Store
from pipeline.store import log as commit_log
from pipeline.store.writer import WriterRevoked
from pipeline.testing import faults
from pipeline.tools import collect

from ..conftest import REPO, TALLY
from .invariants import Observer, digest

CFG = "cfg"


def _commit(
    version: int, kind: str, *hashes: str, writer: str = "", revoked: tuple[str, ...] = ()
) -> commit_log.Commit:
    return commit_log.Commit(version, kind, writer, hashes, tuple(f"seg{version}" for _ in hashes), revoked)


# --- the protocol's decisions, pure -------------------------------------------------------------------
def test_the_lowest_add_wins_until_a_tombstone_then_the_next_add() -> None:
    fold = commit_log.Fold(lambda h: h == "base")
    first, second = _commit(1, "add", "a", "base"), _commit(2, "add", "a", "b")
    for c in (first, second):
        fold.apply(c)
    assert fold.pending == {"a": (1, 0), "b": (2, 1)}  # the checkpoint's entry is not taken over
    assert fold.won(first, 0) and not fold.won(first, 1) and not fold.won(second, 0) and fold.won(second, 1)
    fold.apply(_commit(3, "remove", "a", "base"))
    assert not fold.present("a") and not fold.present("base") and fold.removed == {"base"}
    fold.apply(_commit(4, "add", "base", "a"))
    assert fold.pending["base"] == (4, 0) and fold.pending["a"] == (4, 1)


def test_a_revoked_writer_s_later_commits_are_void_its_earlier_ones_stand() -> None:
    fold = commit_log.Fold(lambda h: False)
    fold.apply(_commit(1, "add", "a", writer="w1"))
    fold.apply(_commit(2, "revoke", revoked=("w1",)))
    fold.apply(_commit(3, "add", "b", writer="w1"))  # resumed after a stall: too late
    fold.apply(_commit(4, "add", "b", writer="w2"))
    fold.apply(commit_log.Commit(5, commit_log.TORN))
    assert fold.pending == {"a": (1, 0), "b": (4, 0)} and fold.void == {3, 5}


def test_a_holder_is_lapsed_only_after_its_counter_stood_still_for_ttl_on_the_judge_s_clock() -> None:
    now = [1000.0]
    watch = Watch(clock=lambda: now[0])
    assert not watch.lapsed("w", 5, 30.0)  # a first sight never is, whatever the file's age
    now[0] += 29.0
    assert not watch.lapsed("w", 5, 30.0)
    now[0] += 1.0
    assert watch.lapsed("w", 5, 30.0)
    assert not watch.lapsed("w", 6, 30.0)  # it moved: alive, watched again from now
    now[0] += 29.9
    assert not watch.lapsed("w", 6, 30.0)


# --- files --------------------------------------------------------------------------------------------
def _attrs(i: int) -> dict[str, tp.Any]:
    return {"times": [k / 2 for k in range(6)], "model": "m", "video_path": f"/v/{i}.mp4", "frequency": 2.0}


def _value(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((4, 6)).astype(np.float32)


def _h(i: int) -> str:
    return f"{i:032x}"


def _seeded(path: Path, n: int = 3) -> tuple[Store, dict[str, str]]:
    import zarr

    from pipeline.config import format_version

    store = Store(path)
    store.ensure()
    config = {"family": "videomae", "format_version": format_version("videomae")}  # what gc judges a config by
    zarr.open_group(str(path / CFG), mode="a", zarr_format=3).attrs.update({"config": config})
    acked = {}
    for i in range(n):
        assert store.write(CFG, _h(i), _value(i), _attrs(i))
        acked[_h(i)] = digest(_value(i))
    store.compact(CFG)
    return store, acked


def test_racing_writers_with_different_values_one_wins_for_good_the_other_is_told(tmp_path: Path) -> None:
    store, acked = _seeded(tmp_path / "s.zarr", 1)
    observer = Observer(store.path, CFG)
    one, two = store.writer(CFG), Store(store.path).writer(CFG)
    one.add(_h(7), _value(70), _attrs(7))
    two.add(_h(7), _value(71), _attrs(7))
    two.catalog.refresh()  # both looked before either committed
    got_one = one.flush()
    two.catalog.contains = lambda h: False  # type: ignore[method-assign]  # it had looked before one's commit
    got_two = two.flush()
    assert got_one == {_h(7): True} and got_two == {_h(7): False}
    assert observer.look({**acked, _h(7): digest(_value(70))}) == []
    store.compact(CFG, grace_s=0)
    assert observer.look({**acked, _h(7): digest(_value(70))}) == []
    one.close()
    two.close()


def _two_checkpoints(tmp_path: Path) -> tuple[Store, dict[str, str], Path]:
    """A store with a checkpoint before the newest, its acknowledged writes and the newest's path."""
    store, acked = _seeded(tmp_path / "s.zarr")
    assert store.write(CFG, _h(5), _value(5), _attrs(5))
    acked[_h(5)] = digest(_value(5))
    store.compact(CFG, grace_s=0)
    newest = commit_log.checkpoint_path(store.path / CFG, commit_log.checkpoint_versions(store.path / CFG)[0])
    return store, acked, newest


def test_a_torn_checkpoint_is_skipped_for_the_one_before_it_and_its_commits(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store, acked, newest = _two_checkpoints(tmp_path)
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # a crash that tore it
    assert Observer(store.path, CFG).look(acked) == []
    assert "torn or empty" in caplog.text
    newest.write_bytes(b"")
    assert Observer(store.path, CFG).look(acked) == []
    # a compaction writes a newer checkpoint; the torn one is cleaned up like any other behind it
    assert store.write(CFG, _h(6), _value(6), _attrs(6))
    acked[_h(6)] = digest(_value(6))
    Store(store.path).compact(CFG, grace_s=0)
    assert Observer(store.path, CFG).look(acked) == []
    assert not newest.exists()


def test_a_checkpoint_whose_pages_rotted_under_a_whole_footer_is_caught_by_their_checksums(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store, acked, newest = _two_checkpoints(tmp_path)
    blob = bytearray(newest.read_bytes())
    for k in range(8, 40):  # inside the first page, well before the footer
        blob[k] ^= 0xFF
    newest.write_bytes(bytes(blob))
    commit_log.open_checkpoint(store.path / CFG, commit_log.version_of(newest.name) or 0)  # the footer is whole
    assert Observer(store.path, CFG).look(acked) == []
    assert "torn" in caplog.text or "cannot be read whole" in caplog.text


def test_estale_on_reads_is_retried_and_the_read_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store, acked = _seeded(tmp_path / "s.zarr")
    monkeypatch.setenv(faults.AT, "read=estale*3")
    with caplog.at_level(logging.WARNING):
        assert Observer(store.path, CFG).look(acked) == []
    assert "Stale file handle while reading" in caplog.text, caplog.text
    TALLY["faults injected"] += 1


# --- real processes at fault points -------------------------------------------------------------------
_CHILD = r"""
import hashlib, json, sys
import numpy as np
from pipeline.store import Store
path, cfg, spec = sys.argv[1:4]
store = Store(path)
out = store.writer(cfg)
for item in spec.split(","):
    vhash, seed = item.split(":")
    data = np.random.default_rng(int(seed)).standard_normal((4, 6)).astype(np.float32)
    out.add(vhash, data, {"times": [k / 2 for k in range(6)], "model": "m", "video_path": vhash, "frequency": 2.0})
    if store.flush(out)[vhash]:
        print(json.dumps({vhash: hashlib.sha256(data.tobytes()).hexdigest()[:16]}), flush=True)
if "--compact" in sys.argv:
    store.compact(cfg, grace_s=0)
out.close()
"""


def _child(store: Path, spec: str, fault: str = "", markers: Path | None = None, compact: bool = True) -> tp.Any:
    env = {**os.environ, faults.AT: fault, "PIPELINE_WRITER_BEAT_S": "0.2"}
    if markers is not None:
        env[faults.MARKERS] = str(markers)
    args = [sys.executable, "-c", _CHILD, str(store), CFG, spec] + (["--compact"] if compact else [])
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _acks(stdout: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in stdout.splitlines():
        if line.startswith("{"):
            out.update(json.loads(line))
    return out


def _garbage(store: Store, watch_s: float = 0.0) -> list[collect.Removal]:
    return collect.find_removals(Store(store.path), None, watch_s=watch_s)


def _recover_and_check(store: Store, observer: Observer, acked: dict[str, str], hashes: list[str]) -> None:
    """gc (the dead writer revoked, its files removed), the same videos written again with other values by
    a new writer, a compaction: the invariants hold at each step and nothing of the dead writer is left."""
    collect.apply(store, _garbage(store))
    assert observer.look(acked) == []
    fresh = Store(store.path)
    for k, vhash in enumerate(hashes):
        if fresh.write(CFG, vhash, _value(100 + k), _attrs(k)):
            acked[vhash] = digest(_value(100 + k))
    fresh.compact(CFG, grace_s=0)
    fresh.compact(CFG, grace_s=0)
    assert observer.look(acked) == []
    assert set(acked) <= {e.video_hash for e in Store(store.path).entries(CFG)}
    left = [p.name for p in (store.path / "_staging").iterdir()] if (store.path / "_staging").is_dir() else []
    records = list((store.path / "_writers").glob("*.json")) if (store.path / "_writers").is_dir() else []
    temps = [p.name for p in (store.path / CFG).glob("_*/.*.tmp")]
    assert not left and not records and not temps, (left, records, temps)


POINTS = [p for p in faults.POINTS if p not in ("gc-revoked", "read", "group-written", "fact-written", "facts-mirror")]
"""The writer's points (a config's facts are a launcher's: ``test_facts.py``)."""


@pytest.mark.parametrize("action", ["kill", "enospc"])
@pytest.mark.parametrize("point", POINTS)
def test_a_writer_faulted_at_each_point_breaks_no_promise(tmp_path: Path, point: str, action: str) -> None:
    store, acked = _seeded(tmp_path / "s.zarr")
    observer = Observer(store.path, CFG)
    assert observer.look(acked) == []
    child = _child(store.path, f"{_h(10)}:10,{_h(11)}:11", f"{point}={action}")
    stdout, stderr = child.communicate(timeout=120)
    if action == "kill":
        assert child.returncode == -signal.SIGKILL, stderr[-2000:]
    else:
        assert child.returncode == 1 and "No space left on device" in stderr, stderr[-2000:]
    TALLY["faults injected"] += 1
    acked.update(_acks(stdout))
    assert observer.look(acked) == []
    _recover_and_check(store, observer, acked, [_h(10), _h(11)])


def _stopped(markers: Path, point: str, child: tp.Any, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while not (markers / point).exists():
        assert child.poll() is None, child.communicate()[1][-2000:]
        assert time.monotonic() < deadline, f"the child never reached {point}"
        time.sleep(0.05)
    pid = int((markers / point).read_text())
    while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "T":
        time.sleep(0.01)
    return pid


def test_a_compaction_stalled_past_every_timeout_loses_nothing(tmp_path: Path) -> None:
    """A compactor stops (SIGSTOP) with its checkpoint written aside; meanwhile writers commit, two other
    compactions publish newer checkpoints and clean up every commit behind them; then it resumes and
    publishes its older checkpoint and cleans up too. Every entry stays, with its value."""
    store, acked = _seeded(tmp_path / "s.zarr")
    observer = Observer(store.path, CFG)
    markers = tmp_path / "markers"
    markers.mkdir()
    child = _child(store.path, f"{_h(10)}:10", "checkpoint-written=stall", markers)
    pid = _stopped(markers, "checkpoint-written", child)
    for i in (20, 21, 22):
        assert store.write(CFG, _h(i), _value(i), _attrs(i))
        acked[_h(i)] = digest(_value(i))
        Store(store.path).compact(CFG, grace_s=0)
    assert observer.look(acked) == []
    os.kill(pid, signal.SIGCONT)
    stdout, stderr = child.communicate(timeout=120)
    assert child.returncode == 0, stderr[-2000:]
    acked.update(_acks(stdout))
    assert _h(10) in acked and observer.look(acked) == []
    TALLY["faults injected"] += 1
    assert store.write(CFG, _h(23), _value(23), _attrs(23))
    acked[_h(23)] = digest(_value(23))
    Store(store.path).compact(CFG, grace_s=0)
    assert observer.look(acked) == []


@pytest.mark.parametrize("point", ["segment-staged", "segment-placed", "commit-written"])
def test_gc_fences_a_stalled_writer_instead_of_deleting_what_it_will_publish(tmp_path: Path, point: str) -> None:
    """A writer stops (SIGSTOP, its heartbeat with it) before its commit. gc watches its counter stand still,
    revokes it in the log, then removes its files. The writer resumes and commits: the commit is void,
    the writer is told its video was not written, and a new writer computes it."""
    store, acked = _seeded(tmp_path / "s.zarr")
    observer = Observer(store.path, CFG)
    markers = tmp_path / "markers"
    markers.mkdir()
    child = _child(store.path, f"{_h(10)}:10", f"{point}=stall", markers, compact=False)
    pid = _stopped(markers, point, child)
    assert not _garbage(store)  # alive as far as a glance can tell
    removals = _garbage(store, watch_s=1.5)
    assert any("is dead (revoked first)" in r.reason for r in removals), removals
    collect.apply(store, removals)
    assert observer.look(acked) == []
    os.kill(pid, signal.SIGCONT)
    stdout, stderr = child.communicate(timeout=120)
    assert child.returncode == 1 and WriterRevoked.__name__ in stderr and "not written" in stderr, stderr[-2000:]
    assert _acks(stdout) == {} and observer.look(acked) == []
    assert _h(10) not in {e.video_hash for e in Store(store.path).entries(CFG)}
    TALLY["faults injected"] += 1
    _recover_and_check(store, observer, acked, [_h(10)])


def test_a_dead_writer_s_commit_that_landed_before_its_revocation_keeps_its_segment(tmp_path: Path) -> None:
    """gc judged the writer dead after it had committed (killed right after linking): the revocation
    comes after, so its entry stands and gc, looking again after revoking, keeps its segment."""
    store, acked = _seeded(tmp_path / "s.zarr")
    observer = Observer(store.path, CFG)
    child = _child(store.path, f"{_h(10)}:10", "commit-linked=kill", compact=False)
    child.communicate(timeout=120)
    catalog = Store(store.path).catalog(CFG)
    catalog.refresh()
    [segment] = catalog.commits[catalog.tip].segments
    collect.apply(store, _garbage(store))
    assert (store.path / CFG / segment).is_dir()
    assert observer.look(acked) == [] and _h(10) in {e.video_hash for e in Store(store.path).entries(CFG)}


def test_a_writer_revoked_after_its_commit_keeps_that_write_and_writes_nothing_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gc revokes a writer between its commit and its look at the log: the commit came first, so the entry
    stands and the writer is told it was written; its next flush raises ``WriterRevoked``."""
    store, acked = _seeded(tmp_path / "s.zarr")
    out = store.writer(CFG)
    real = commit_log.faults.point

    revoking: list[bool] = []

    def revoke_after_link(name: str) -> None:
        real(name)
        if name == "commit-linked" and not revoking:
            revoking.append(True)  # once: the revocation is a commit too
            Store(store.path).catalog(CFG).revoke([out.record.id])

    monkeypatch.setattr(commit_log.faults, "point", revoke_after_link)
    out.add(_h(8), _value(8), _attrs(8))
    assert out.flush() == {_h(8): True}
    monkeypatch.setattr(commit_log.faults, "point", real)
    acked[_h(8)] = digest(_value(8))
    assert Observer(store.path, CFG).look(acked) == []
    out.add(_h(9), _value(9), _attrs(9))
    with pytest.raises(WriterRevoked, match="not written"):
        out.flush()
    assert _h(9) not in {e.video_hash for e in Store(store.path).entries(CFG)}


def test_gc_revokes_even_a_writer_it_saw_no_record_of_before_removing_its_files(tmp_path: Path) -> None:
    """A writer whose record a cached listing hid looks closed: gc revokes it all the same, so if it was
    alive, its commit after the removal is void and it is told so, rather than naming a deleted segment."""
    store, acked = _seeded(tmp_path / "s.zarr")
    out = store.writer(CFG)
    out.record.start()
    hidden = out.record.path.read_bytes()
    out.record.path.unlink()  # as a stale listing would show it: no record
    staged = store.path / "_staging" / f"{CFG}-s{0:013d}-{out.record.id}-{0:08x}"
    staged.mkdir(parents=True)
    removals = collect.find_removals(Store(store.path), None)
    assert [(r.path.name, r.revoke) for r in removals] == [(staged.name, (CFG, out.record.id))]
    out.record.path.write_bytes(hidden)  # it was alive all along
    collect.apply(store, removals)
    out.add(_h(9), _value(9), _attrs(9))
    with pytest.raises(WriterRevoked):
        out.flush()
    assert Observer(store.path, CFG).look(acked) == []


def test_a_writer_reads_the_log_up_to_its_own_commit_through_a_stale_name_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NFS may answer a lookup of a commit it saw missing from its cache for a while: the writer, knowing its
    own commit exists, looks again with backoff until it reads up to it, rather than reporting its video
    as another writer's."""
    store, acked = _seeded(tmp_path / "s.zarr")
    real = commit_log.read_commit
    hidden = {"left": 3}

    def stale(config_dir: Path, version: int) -> commit_log.Commit:
        if version == 4 and hidden["left"]:  # the writer's own commit, after the seeded three
            hidden["left"] -= 1
            raise FileNotFoundError(2, "No such file (a cached lookup)", str(version))
        return real(config_dir, version)

    out = store.writer(CFG)
    out.catalog.refresh()
    monkeypatch.setattr(commit_log, "read_commit", stale)
    out.add(_h(9), _value(9), _attrs(9))
    assert out.flush() == {_h(9): True} and hidden["left"] == 0
    out.close()
    acked[_h(9)] = digest(_value(9))
    assert Observer(store.path, CFG).look(acked) == []
