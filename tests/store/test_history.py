"""A randomized history of the store as a cluster treats it: writer processes racing on the same videos
with different values, some with clocks skewed by libfaketime, some stopped with SIGSTOP (past gc's watch:
revoked) or killed with SIGKILL, a compactor looping from a node whose clock is an hour ahead, gc looping
from one a day ahead, and a reader checking the invariants all along (``invariants.Observer``). Writers
save some videos' progress before their entries, so that progress races, is fenced and collected too.

Seeded (``PIPELINE_HISTORY_SEED``, printed: it replays the plan, the processes' timing aside), with a minimum
count of each fault so that it cannot pass with nothing injected; the figures are printed at the end of
``make faults``."""

from __future__ import annotations

import glob
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.store import Store
from pipeline.testing import faults

from ..conftest import HISTORY, REPO
from .invariants import Observer
from .test_log import CFG, _seeded

_WRITER = r"""
import hashlib, json, sys, time
import numpy as np
from pipeline.store import Store, StoreError
path, cfg, writer, videos, ids = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].split(","), sys.argv[5]
store = Store(path)
out = store.writer(cfg)
with open(f"{ids}/{writer}", "w") as f:  # the test fences this writer by its id
    f.write(out.record.id)
try:
    for vhash in videos:
        data = np.full((4, 6), writer * 1000 + int(vhash, 16) % 1000, np.float32)
        if int(vhash, 16) % 3 == 0:  # a task interrupted half-way keeps its progress
            if out.save_progress(vhash, data[:, :3], {"times": [k / 2 for k in range(3)], "model": "m"}):
                print("PROGRESS", flush=True)
        out.add(vhash, data, {"times": [k / 2 for k in range(6)], "model": "m", "video_path": vhash})
        if store.flush(out)[vhash]:
            print(json.dumps({vhash: hashlib.sha256(data.tobytes()).hexdigest()[:16]}), flush=True)
        time.sleep(0.4)  # a worker computes between its flushes
except StoreError as e:
    print(f"REVOKED {e}", file=sys.stderr, flush=True)
    sys.exit(3)
out.close()
"""

_LOOP = r"""
import sys, time
from pipeline.store import Store
from pipeline.testing import faults
from pipeline.tools import collect
import os
path, cfg, what, stop = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
until = time.monotonic() + 300  # a bound, on this process's own clock (its wall clock may be skewed)
revoked = 0
while not os.path.exists(stop) and time.monotonic() < until:
    if what == "compact":
        Store(path).compact(cfg, grace_s=0.5)
    else:
        removals = collect.find_removals(Store(path), None, watch_s=1.0)
        revoked += len({r.revoke for r in removals if r.revoke})
        collect.apply(Store(path), removals)
    time.sleep(0.2)
print(f"REVOCATIONS {revoked}", flush=True)
"""

WRITERS = 10
VIDEOS = 24
MINIMUM = {"stalls": 2, "kills": 1, "skewed clocks": 3, "revocations": 1, "progress saved": 1}


def _faketime() -> str:
    """libfaketime's library, preloaded into a process to skew its clock (installed by jobs/faketime-up.sh)."""

    def found() -> str | None:
        return next(iter(sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))), None)

    if found() is None and os.geteuid() == 0:
        subprocess.run(["bash", str(REPO / "jobs" / "faketime-up.sh")], check=True)
    if found() is None:
        pytest.skip("libfaketime is missing and cannot be installed here (jobs/faketime-up.sh needs root)")
    return str(found())


def _spawn(
    faketime: str, skew: str | None, script: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """A Python process of its own (signals reach it), its wall clock ``skew`` off (monotonic untouched)."""
    env = {**os.environ, "PIPELINE_WRITER_BEAT_S": "0.2", **(env or {})}
    if skew:
        # a constant offset moves the monotonic clock too, which leaves its differences (all the store uses)
        # exact; FAKETIME_DONT_FAKE_MONOTONIC=1 would be cleaner, but libfaketime 0.9.10 then fails Python's
        # time.sleep (an absolute clock_nanosleep on the monotonic clock) with EINVAL
        env.update({"LD_PRELOAD": faketime, "FAKETIME": skew})
    cmd = [sys.executable, "-c", script, *args]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _revoked(store: Path, writer: str) -> bool:
    """Whether the log says ``writer`` was revoked (a fresh reader's look)."""
    catalog = Store(store).catalog(CFG)
    catalog.refresh()
    return writer in catalog.revoked


def _acks(stdout: str) -> dict[str, str]:
    return {k: v for line in stdout.splitlines() if line.startswith("{") for k, v in json.loads(line).items()}


@pytest.mark.slow
def test_a_random_history_of_racing_stalled_killed_and_skewed_processes_breaks_no_promise(tmp_path: Path) -> None:
    faketime = _faketime()
    probe = _spawn(faketime, "+1d", "import time; print(time.time())")
    assert float(probe.communicate()[0]) > time.time() + 86000, "libfaketime did not skew the probe's clock"
    seed = int(os.environ.get("PIPELINE_HISTORY_SEED") or random.SystemRandom().randrange(1 << 30))
    rng = random.Random(seed)
    print(f"history seed {seed} (PIPELINE_HISTORY_SEED={seed} replays it)")
    HISTORY["seed"] = seed
    store, acked = _seeded(tmp_path / "s.zarr")
    observer = Observer(store.path, CFG)
    counts = dict.fromkeys(MINIMUM, 0)
    pool = [f"{0xA000 + i:032x}" for i in range(VIDEOS)]
    stop = tmp_path / "stop"  # the loops run until the writers are done
    loops = [
        _spawn(faketime, "+1h", _LOOP, str(store.path), CFG, "compact", str(stop)),
        _spawn(faketime, "+1d", _LOOP, str(store.path), CFG, "gc", str(stop)),
    ]
    counts["skewed clocks"] += 2
    writers: dict[int, subprocess.Popen[str]] = {}
    markers, ids = tmp_path / "markers", tmp_path / "ids"
    markers.mkdir()
    ids.mkdir()
    for w in range(WRITERS):
        skew = rng.choice([None, None, "-90s", "+90s", "-5m"])
        counts["skewed clocks"] += skew is not None
        videos = rng.sample(pool, 16)
        # the first stops itself with its segment in place, uncommitted: gc must fence it, not delete under it
        env = {faults.AT: "segment-placed=stall", faults.MARKERS: str(markers)} if w == 0 else None
        writers[w] = _spawn(
            faketime, skew, _WRITER, str(store.path), CFG, str(w + 1), ",".join(videos), str(ids), env=env
        )
        time.sleep(rng.uniform(0.0, 0.3))
    broken: list[str] = []
    operations = 0
    deadline = time.monotonic() + 30
    while not (markers / "segment-placed").exists() and time.monotonic() < deadline and writers[0].poll() is None:
        time.sleep(0.05)
    assert (markers / "segment-placed").exists(), writers[0].communicate()[1][-3000:]
    counts["stalls"] += 1
    stopped = [int((markers / "segment-placed").read_text())]
    for k in range(3):  # two more stalls and a kill, of writers still running
        time.sleep(rng.uniform(0.2, 0.8))
        running = [w for w in sorted(writers) if w != 0 and writers[w].poll() is None and writers[w].pid not in stopped]
        if not running:
            break
        w = rng.choice(running)
        if k == 2:
            writers[w].send_signal(signal.SIGKILL)
            counts["kills"] += 1
        else:
            writers[w].send_signal(signal.SIGSTOP)
            counts["stalls"] += 1
            stopped.append(writers[w].pid)
    # stopped until gc has fenced the first (its heartbeat still for gc's 1 s watch), then a little longer
    fenced = (ids / "1").read_text()
    deadline = time.monotonic() + 120
    while not _revoked(store.path, fenced) and time.monotonic() < deadline:
        broken += observer.look()
        operations += 1
    assert _revoked(store.path, fenced), f"seed {seed}: gc never revoked writer {fenced}, stopped with its segment"
    stopped_until = time.monotonic() + rng.uniform(0.0, 1.0)
    while time.monotonic() < stopped_until:
        broken += observer.look()
        operations += 1
    for pid in stopped:
        os.kill(pid, signal.SIGCONT)
    while any(p.poll() is None for p in writers.values()):
        broken += observer.look()
        operations += 1
        time.sleep(0.2)
    time.sleep(1.0)  # a gc and a compaction more over what the writers left
    stop.touch()
    while any(p.poll() is None for p in loops):
        broken += observer.look()
        operations += 1
        time.sleep(0.2)
    outcomes: list[str] = []
    for w, proc in writers.items():
        stdout, stderr = proc.communicate()
        acked.update(_acks(stdout))
        operations += stdout.count("\n")
        counts["progress saved"] += stdout.count("PROGRESS")
        outcomes.append(f"writer {w + 1}: exit {proc.returncode}")
        assert proc.returncode in (0, 3, -signal.SIGKILL), stderr[-3000:]
    for proc in loops:
        stdout, stderr = proc.communicate()
        assert proc.returncode == 0, stderr[-3000:]
        said = [line.split()[1] for line in stdout.splitlines() if line.startswith("REVOCATIONS")]
        counts["revocations"] += sum(map(int, said))
    broken += observer.look(acked)
    Store(store.path).compact(CFG, grace_s=0)
    broken += observer.look(acked)
    injected = sum(n for k, n in counts.items() if k != "progress saved")
    HISTORY.update(
        {"histories": 1, "operations": operations, "faults injected": injected, "broken invariants": len(broken)}
    )
    HISTORY["by fault"] = dict(counts)
    print(f"history seed {seed}: {operations} operations, faults {counts}, outcomes {outcomes}")
    assert not broken, f"seed {seed}: " + "\n".join(broken[:20])
    short = {k: (counts[k], n) for k, n in MINIMUM.items() if counts[k] < n}
    assert not short, f"seed {seed}: too few faults injected (got, needed): {short}"
    assert set(acked) <= {e.video_hash for e in Store(store.path).entries(CFG)}
