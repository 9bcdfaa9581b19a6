"""Per-video leases: concurrent launchers split the work; a dead holder's claim lapses and is counted."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import typing as tp
from pathlib import Path

from pipeline import launch_config
from pipeline.store import Store, content_hash
from pipeline.store import leases as lease
from pipeline.testing import faults

from ..conftest import distinct_copies, run_cli


def test_a_live_lease_blocks_and_a_dead_holders_lease_is_taken_over(tmp_path: Path) -> None:
    folder = tmp_path / "_leases"
    mine = lease.acquire(folder, "abc", ttl=60)
    assert isinstance(mine, lease.Lease) and mine.attempt == 1
    again = lease.acquire(folder, "abc", ttl=60)
    assert isinstance(again, lease.LeaseState) and again.live  # this process is alive
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    record = json.loads(mine.path.read_text())
    record["owner"]["pid"] = int(dead.stdout)
    mine.path.write_text(json.dumps(record))
    taken = lease.acquire(folder, "abc", ttl=60)
    assert isinstance(taken, lease.Lease) and taken.attempt == 2 and taken.previous["pid"] == int(dead.stdout)
    taken.release()
    assert not mine.path.exists()


def test_a_worker_dying_after_computing_a_video_is_not_counted_against_it(tmp_path: Path) -> None:
    """A computed video waits in its job's segment, its lease marked: a death then (another video's fault,
    say) does not bring it closer to being recorded as failed."""
    folder = tmp_path / "_leases"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    for computed, attempt in ((True, 1), (False, 2)):
        held = lease.acquire(folder, "v", ttl=60)
        assert isinstance(held, lease.Lease) and held.attempt == 1
        if computed:
            held.mark_computed()
        record = json.loads(held.path.read_text())
        assert record.get("computed", False) is computed
        record["owner"]["pid"] = int(dead.stdout)  # its worker is gone
        held.path.write_text(json.dumps(record))
        taken = lease.acquire(folder, "v", ttl=60)
        assert isinstance(taken, lease.Lease) and taken.attempt == attempt, (computed, taken)
        taken.release()


def test_a_dead_siblings_lease_is_left_for_a_relaunch_but_a_requeued_job_takes_its_own_back(
    tmp_path: Path, monkeypatch: tp.Any
) -> None:
    """Jobs of one launch share a queue: a sibling that died keeps its video (not done, as with a fixed
    share); the same job requeued, or another launch, takes the lapsed lease over."""
    folder = tmp_path / "_leases"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "9")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "0")

    def left_by(job: str, launch_id: str) -> None:
        owner = {"host": os.uname().nodename, "pid": int(dead.stdout), "job_id": job, "token": "t", "launch": launch_id}
        (folder / "v.json").write_text(json.dumps({"owner": owner, "attempt": 1}))

    folder.mkdir()
    left_by("9_1", "L1")
    held = lease.acquire(folder, "v", ttl=60, launch="L1")
    assert isinstance(held, lease.LeaseState) and held.owner["job_id"] == "9_1" and not held.live
    mine = lease.acquire(folder, "v", ttl=60, launch="L2")  # a relaunch
    assert isinstance(mine, lease.Lease) and mine.attempt == 2
    mine.release()
    left_by("9_0", "L1")
    requeued = lease.acquire(folder, "v", ttl=60, launch="L1")  # this job (9_0), requeued
    assert isinstance(requeued, lease.Lease) and requeued.previous["job_id"] == "9_0"


def test_a_lease_lapses_after_its_ttl_without_heartbeat(tmp_path: Path) -> None:
    folder = tmp_path / "_leases"
    first = lease.acquire(folder, "v", ttl=0.3)
    assert isinstance(first, lease.Lease)
    record = json.loads(first.path.read_text())
    record["owner"]["host"] = "another-node"  # not checkable by pid: only the TTL can free it
    first.path.write_text(json.dumps(record))
    assert isinstance(lease.acquire(folder, "v", ttl=0.3), lease.LeaseState)
    beat = lease.Heartbeat(ttl=0.3)
    beat.hold(first)
    time.sleep(0.6)
    assert isinstance(lease.acquire(folder, "v", ttl=0.3), lease.LeaseState)  # renewed: still held
    beat.stop()
    # judged by the claimant on its own clock: a first sight of the still counter, then the TTL of watching
    assert isinstance(lease.acquire(folder, "v", ttl=0.3), lease.LeaseState)
    time.sleep(0.4)
    taken = lease.acquire(folder, "v", ttl=0.3)
    assert isinstance(taken, lease.Lease) and taken.generation == 2 and not first.held()
    assert not first.renew() and first.path.exists() is False  # the old holder writes nothing any more


def test_a_video_whose_workers_keep_dying_is_recorded_as_failed(make_run: tp.Any, tmp_path: Path) -> None:
    run = make_run(max_attempts=2)
    store = Store(run.store)
    store.ensure()
    cuid = store.ensure_config(run.embed)
    target = next(iter(sorted(Path(run.videos).glob("*.mp4"))))
    vhash = content_hash(target)
    path = store.leases(cuid) / f"{vhash}.json"  # a lease left by pipeline 0.3's worker (generation 0)
    path.parent.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    owner = {"host": os.uname().nodename, "pid": int(dead.stdout), "job_id": "77_3"}
    path.write_text(json.dumps({"owner": owner, "attempt": 2}))
    summary = launch_config(run)
    assert len(summary.computed) == 2
    assert "WorkerDied: 2 worker(s) died while embedding this video (last: job 77_3" in summary.failed[str(target)]
    assert store.failures(cuid)[vhash]["error_type"] == "WorkerDied"
    assert not path.exists()


def test_two_launchers_at_once_split_the_videos_and_compute_none_twice(
    sample_dir: Path, models_dir: Path, tmp_path: Path
) -> None:
    videos = tmp_path / "videos"
    distinct_copies(sample_dir / "bars_12fps.mp4", videos, 6)
    store = tmp_path / "store.zarr"
    args = [
        f"videos={videos}", f"store={store}", f"models_dir={models_dir}", "device=cpu", "executor=local",
        "videos_per_job=6", "frequency=1", f"hydra.run.dir={tmp_path / 'hydra'}",
    ]  # fmt: skip
    procs = [run_cli(*args, env={faults.SLOW_S: "1"}, wait=False)]
    time.sleep(1.0)
    procs.append(run_cli(*args, env={faults.SLOW_S: "1"}, wait=False))
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    counts = []
    for out in outputs:
        m = re.search(r"computed (\d+)  cached (\d+)  failed 0", out)
        assert m and "computed twice" not in out, out
        counts.append((int(m[1]), int(m[2])))
    assert sum(c for c, _ in counts) == 6 and all(c + k == 6 and c >= 1 for c, k in counts), counts
    cuid = Store(store).config_uids()[0]
    assert len(Store(store).done_hashes(cuid)) == 6
    assert not any((store / cuid / "_leases").iterdir())


_RACE = r"""
import sys, time
from pathlib import Path
from pipeline.store import leases
folder, start = Path(sys.argv[1]), float(sys.argv[2])
while time.time() < start:
    time.sleep(0.001)
got = leases.acquire(folder, "v", ttl=60)
print("WON" if isinstance(got, leases.Lease) else "LOST", flush=True)
"""


def test_of_many_claimants_racing_for_a_lapsed_lease_exactly_one_wins(tmp_path: Path) -> None:
    """Eight processes see one dead holder's lease (this host, pid gone: lapsed at once) and take it over
    at the same instant: creating the next generation is one exclusive step, so one wins."""
    folder = tmp_path / "_leases"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    for round_ in range(3):
        for p in folder.glob("*"):
            p.unlink()
        held = lease.acquire(folder, "v", ttl=60)
        assert isinstance(held, lease.Lease)
        record = json.loads(held.path.read_text())
        record["owner"]["pid"] = int(dead.stdout)
        held.path.write_text(json.dumps(record))
        start = time.time() + 2.0
        procs = [
            subprocess.Popen([sys.executable, "-c", _RACE, str(folder), str(start)], stdout=subprocess.PIPE, text=True)
            for _ in range(8)
        ]
        outcomes = [p.communicate(timeout=60)[0].strip() for p in procs]
        assert sorted(outcomes) == ["LOST"] * 7 + ["WON"], (round_, outcomes)
        assert [g for g in lease.generations(folder)["v"]] == [2]


def test_an_empty_lease_and_a_skewed_clock_are_judged_by_the_counter_alone(tmp_path: Path) -> None:
    """A lease left empty (pipeline 0.3, a full disk) is not live forever; a live holder whose file's
    mtime says a day ago (the file server's clock) is not lapsed; a dead one whose mtime lies in the
    future is, after the TTL on the claimant's own clock."""
    folder = tmp_path / "_leases"
    folder.mkdir()
    (folder / "empty.json").write_bytes(b"")
    watch = lease.Watch()
    assert isinstance(lease.acquire(folder, "empty", ttl=0.2, watch=watch), lease.LeaseState)
    time.sleep(0.3)
    assert isinstance(lease.acquire(folder, "empty", ttl=0.2, watch=watch), lease.Lease)

    live = lease.acquire(folder, "live", ttl=0.2, watch=lease.Watch())
    assert isinstance(live, lease.Lease)
    record = json.loads(live.path.read_text())
    record["owner"]["host"] = "another-node"
    live.record = record
    beat = lease.Heartbeat(ttl=0.2)
    beat.hold(live)
    for _ in range(4):
        os.utime(live.path, (time.time() - 86400, time.time() - 86400))  # "a day old" by the server's clock
        assert isinstance(lease.acquire(folder, "live", ttl=0.2, watch=watch), lease.LeaseState)
        time.sleep(0.12)
    beat.stop()

    gone = lease.acquire(folder, "gone", ttl=0.2, watch=lease.Watch())
    assert isinstance(gone, lease.Lease)
    gone.record["owner"] = {**gone.record["owner"], "host": "another-node"}
    gone.renew()
    os.utime(gone.path, (time.time() + 3600, time.time() + 3600))  # "fresh for an hour": its clock is ahead
    assert isinstance(lease.acquire(folder, "gone", ttl=0.2, watch=watch), lease.LeaseState)
    time.sleep(0.3)
    taken = lease.acquire(folder, "gone", ttl=0.2, watch=watch)
    assert isinstance(taken, lease.Lease) and taken.attempt == 2
    # the old holder's release and mark do nothing to the new holder's lease
    gone.mark_computed()
    gone.release()
    assert taken.path.exists() and not json.loads(taken.path.read_text()).get("computed")


def test_the_heartbeat_survives_transient_errors_and_says_so(
    tmp_path: Path, monkeypatch: tp.Any, caplog: tp.Any
) -> None:
    import errno

    held = lease.acquire(tmp_path / "_leases", "v", ttl=60)
    assert isinstance(held, lease.Lease)
    beat = lease.Heartbeat(ttl=60)
    beat.stop()
    beat.hold(held)
    real = lease.write_atomic
    failures = iter([OSError(errno.ESTALE, "Stale file handle"), OSError(errno.EIO, "Input/output error")])

    def flaky(path: Path, data: tp.Any) -> None:
        error = next(failures, None)
        if error is not None:
            raise error
        real(path, data)

    monkeypatch.setattr(lease, "write_atomic", flaky)
    beat.beat_once()
    beat.beat_once()
    assert id(held) in beat.held and "cannot renew lease" in caplog.text
    beat.beat_once()
    assert json.loads(held.path.read_text())["beat"] == 1 and id(held) in beat.held


def test_a_dead_pid_proves_nothing_from_another_pid_namespace_of_the_same_host_name(tmp_path: Path) -> None:
    """A container shares its host's name: a pid that does not exist here may live there. Only a record
    of this boot and PID namespace is judged by its pid; another is judged by its counter alone."""
    from pipeline.common import processes

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    here = {"host": os.uname().nodename, "pid": int(dead.stdout), "pid_space": processes.pid_space()}
    elsewhere = {**here, "pid_space": f"{os.uname().nodename}/another-boot/4026531836"}
    assert processes.gone_here(here) and not processes.gone_here(elsewhere)
    folder = tmp_path / "_leases"
    folder.mkdir()
    (folder / "v.1.json").write_text(json.dumps({"owner": elsewhere, "attempt": 1}))
    assert isinstance(lease.acquire(folder, "v", ttl=60, watch=lease.Watch()), lease.LeaseState)
