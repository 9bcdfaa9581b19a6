"""The launcher on a real one-node SLURM cluster: job arrays, cancellation, time-outs, failures, sweeps."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import typing as tp
from pathlib import Path

import numpy as np
import pytest

from pipeline import launch_config
from pipeline.launch.slurm import confirmed_states
from pipeline.store import Store
from pipeline.testing import faults

from ..conftest import distinct_copies, run_cli

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]


def common(store: Path, videos: Path, models_dir: Path, **extra: tp.Any) -> list[str]:
    fields = {
        "executor": "slurm",
        "executor.cpus_per_task": 1,
        "videos": videos,
        "store": store,
        "models_dir": models_dir,
        "device": "cpu",
        "hydra.run.dir": store.parent / "hydra",
        "hydra.sweep.dir": store.parent / "hydra-sweep",
        **extra,
    }
    return [f"{k}={v}" for k, v in fields.items()]


def job_ids(output: str) -> list[str]:
    found = re.findall(r"submitted \d+ job\(s\) \(slurm\): ([\d_ ]+)", output)
    return [j for line in found for j in line.split()]


def flaky_squeue(folder: Path) -> dict[str, str]:
    """An environment whose ``squeue`` (first on PATH) fails one call in two and, of the others, answers
    one in two listing no job at all (a controller restarting, a federation's partial view)."""
    real = shutil.which("squeue")
    assert real
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / "squeue"
    exe.write_text(
        "#!/bin/sh\n"
        f"n=$(cat {folder}/calls 2>/dev/null || echo 0); n=$((n + 1)); echo $n > {folder}/calls\n"
        "case $((n % 4)) in\n"
        '  1|3) echo "slurm_load_jobs error: Socket timed out on send/recv operation" >&2; exit 1;;\n'
        "  2) exit 0;;\n"
        "esac\n"
        f'exec {real} "$@"\n'
    )
    exe.chmod(0o755)
    return {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


def _ended_states(ids: list[str], timeout: float = 60) -> dict[str, str]:
    """The tasks' states once SLURM has recorded the end of each (none running, pending or completing)."""
    deadline = time.monotonic() + timeout
    while True:
        states = confirmed_states(ids) or {}
        if len(states) == len(ids) and not {"RUNNING", "PENDING", "COMPLETING"} & set(states.values()):
            return states
        assert time.monotonic() < deadline, f"SLURM never recorded the end of {ids}: {states}"
        time.sleep(0.5)


def test_job_arrays_store_the_same_arrays_as_the_local_executor(
    make_run: tp.Any, sample_dir: Path, models_dir: Path, tmp_path: Path
) -> None:
    """Under an squeue that fails one call in two and lists nothing in one of the others: the launch
    follows its arrays to the end (exit 0), judging a job missing from squeue by the controller."""
    store = tmp_path / "slurm.zarr"
    env = flaky_squeue(tmp_path / "bin")
    res = run_cli(
        "-m", "model=tiny_videomae,tiny_xclip", *common(store, sample_dir, models_dir, videos_per_job=2), env=env
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert int((tmp_path / "bin" / "calls").read_text()) >= 2, "the flaky squeue was never asked"
    assert "squeue has not answered since" in res.stdout
    ids = job_ids(res.stdout)
    assert len(ids) == 4 and len({i.split("_")[0] for i in ids}) == 2, ids  # one array of 2 tasks per config
    # the launcher ends once the tasks wrote their results; SLURM records their end a moment later
    assert set(_ended_states(ids).values()) == {"COMPLETED"}
    accounted = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ids[0].split("_")[0]], text=True, capture_output=True
    )
    assert accounted.returncode == 0 and "COMPLETED" in accounted.stdout, accounted  # accounting is real here
    slurm_store = Store(store)
    for model in ("tiny-videomae", "tiny-xclip"):
        local = make_run(model, executor={"name": "local"}, store=str(tmp_path / f"local-{model}.zarr"))
        assert launch_config(local).ok
        local_store = Store(local.store)
        cuid = local.embed.uid()
        entries = local_store.entries(cuid)
        assert len(entries) == 3 and slurm_store.done_hashes(cuid) == {e.video_hash for e in entries}
        for e in entries:
            a, _ = local_store.load_numpy(e.uid)
            b, attrs = slurm_store.load_numpy(e.uid)
            assert np.array_equal(a, b), f"{model} {e.video_path}"
            assert attrs["job_id"] and "_" in attrs["job_id"]  # written by an array task


def test_scancel_of_one_array_task_then_relaunch_computes_only_the_missing(
    sample_dir: Path, models_dir: Path, tmp_path: Path
) -> None:
    videos = tmp_path / "videos"
    distinct_copies(sample_dir / "drift_25fps.mp4", videos, 6)
    store = tmp_path / "store.zarr"
    args = common(store, videos, models_dir, videos_per_job=3, frequency=1, flush_s=0)  # each video lands at once
    proc = run_cli(*args, env={faults.SLOW_S: "3"}, wait=False)
    lines: list[str] = []
    assert proc.stdout is not None
    while not job_ids("\n".join(lines)):
        line = proc.stdout.readline()
        assert line, "".join(lines)
        lines.append(line)
    victim = job_ids("\n".join(lines))[0]
    cuid = next(iter(Store(store).config_uids()), None)
    deadline = time.time() + 300
    while not (cuid and Store(store).done_hashes(cuid)):
        assert time.time() < deadline, "no video landed"
        time.sleep(0.5)
        cuid = next(iter(Store(store).config_uids()), None)
    subprocess.run(["scancel", victim], check=True)
    out, _ = proc.communicate(timeout=600)
    output = "".join(lines) + out
    assert proc.returncode == 1, output
    assert "NOT DONE" in output and f"job {victim} ended CANCELLED" in output, output
    assert cuid is not None
    done = {h: Store(store).locate(f"{cuid}/{h}") for h in Store(store).done_hashes(cuid)}
    assert 1 <= len(done) < 6
    relaunch = run_cli(*args)
    assert relaunch.returncode == 0, relaunch.stdout + relaunch.stderr
    assert f"computed {6 - len(done)}  cached {len(done)}  failed 0" in relaunch.stdout, relaunch.stdout
    assert len(Store(store).done_hashes(cuid)) == 6
    for h, where in done.items():
        assert Store(store).locate(f"{cuid}/{h}") == where  # untouched: the same rows of the same segment


def test_a_corrupt_video_fails_alone_and_is_stored_and_reported(
    sample_dir: Path, models_dir: Path, tmp_path: Path
) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    for p in sample_dir.glob("*.mp4"):
        (videos / p.name).write_bytes(p.read_bytes())
    raw = (sample_dir / "drift_25fps.mp4").read_bytes()
    (videos / "corrupt.mp4").write_bytes(raw[: len(raw) // 3])
    store = tmp_path / "store.zarr"
    res = run_cli(*common(store, videos, models_dir, videos_per_job=8))
    assert res.returncode == 1, res.stdout + res.stderr
    assert "computed 3  cached 0  failed 1" in res.stdout
    assert re.search(r"FAILED .*corrupt\.mp4: VideoError", res.stdout), res.stdout
    cuid = Store(store).config_uids()[0]
    (record,) = Store(store).failures(cuid).values()
    assert record["video_path"].endswith("corrupt.mp4") and record["error_type"] == "VideoError"
    assert record["message"] and record["time"] and re.fullmatch(r"\d+(_0)?", record["job_id"])
    status = subprocess.run(
        [sys.executable, "-m", "pipeline.status", f"store={store}", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    (row,) = json.loads(status.stdout)["configs"]
    assert (row["done"], row["failed"], row["pending"]) == (3, 1, 0)


def test_a_sweep_of_four_points_gives_four_uids_and_no_duplicate_entry(
    sample_dir: Path, models_dir: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store.zarr"
    res = run_cli("-m", "model=tiny_videomae,tiny_xclip", "frequency=1,2", *common(store, sample_dir, models_dir))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "sweep: 4 point(s)" in res.stdout
    table = res.stdout[res.stdout.index("sweep: 4 point(s)") :].splitlines()[3:7]
    assert len(table) == 4 and all(row.split()[-4:] == ["3", "0", "0", "0"] for row in table), table
    s = Store(store)
    uids = s.config_uids()
    assert len(uids) == 4 and len({s.config(u)["frequency"] for u in uids}) == 2
    for uid in uids:
        hashes = [e.video_hash for e in s.entries(uid)]
        assert len(hashes) == len(set(hashes)) == 3
    assert not list((store / "_staging").iterdir())
    again = run_cli("-m", "model=tiny_videomae,tiny_xclip", "frequency=1,2", *common(store, sample_dir, models_dir))
    assert again.returncode == 0 and "submitted" not in again.stdout  # all cached: nothing is computed twice


def test_wait_false_returns_at_once_and_status_shows_progress(
    sample_dir: Path, models_dir: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store.zarr"
    res = run_cli(*common(store, sample_dir, models_dir, wait="false"), env={faults.SLOW_S: "2"})
    assert res.returncode == 0, res.stdout + res.stderr
    assert job_ids(res.stdout) and "-m pipeline.status store=" in res.stdout
    status_cmd = [sys.executable, "-m", "pipeline.status", f"store={store}", "--json"]
    first = json.loads(subprocess.run(status_cmd, capture_output=True, text=True, check=True).stdout)["configs"][0]
    assert first["total"] == first["done"] + first["pending"] + first["running"] == 3 and first["done"] < 3
    # the same command, waiting this time (as after a launcher killed): it follows the array to the end
    again = run_cli(*common(store, sample_dir, models_dir), env={faults.SLOW_S: "2"})
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"following its {len(job_ids(res.stdout))} job(s)" in again.stdout and not job_ids(again.stdout)
    counts = re.search(r"computed (\d+)  cached (\d+)  failed 0\n", again.stdout)
    assert counts and int(counts[1]) + int(counts[2]) == 3, again.stdout
    (written,) = (store / "_jobs").glob("*/summary-*.txt")  # the launch's end, by its last job
    assert "the last to end" in written.read_text() and "computed 3" in written.read_text()
    assert "pace" in first and "left" in first["pace"]
    deadline = time.time() + 300
    while True:
        row = json.loads(subprocess.run(status_cmd, capture_output=True, text=True, check=True).stdout)["configs"][0]
        if row["done"] == 3:
            break
        assert time.time() < deadline, row
        time.sleep(1)
    assert row["pending"] == row["running"] == row["stopped"] == row["failed"] == 0


def test_cancel_stops_a_launchs_array_releases_its_leases_and_records_no_failure(
    sample_dir: Path, models_dir: Path, tmp_path: Path
) -> None:
    videos = tmp_path / "videos"
    distinct_copies(sample_dir / "bars_12fps.mp4", videos, 4)
    store_path = tmp_path / "store.zarr"
    args = common(store_path, videos, models_dir, videos_per_job=2, frequency=1, wait="false")
    res = run_cli(*args, env={faults.SLOW_S: "30"})
    assert res.returncode == 0, res.stdout + res.stderr
    ids = job_ids(res.stdout)
    store = Store(store_path)
    (cuid,) = store.config_uids()
    deadline = time.time() + 180
    while not list(store.leases(cuid).glob("*.json")) and time.time() < deadline:
        time.sleep(1)
    assert list(store.leases(cuid).glob("*.json")), "no worker started"
    cancel = subprocess.run(
        [sys.executable, "-m", "pipeline.cancel", f"store={store_path}", f"config={cuid}"],
        capture_output=True,
        text=True,
    )
    assert cancel.returncode == 0 and f"SLURM job {ids[0].split('_')[0]}" in cancel.stdout, cancel.stdout
    deadline = time.time() + 60
    while _squeue(ids) and time.time() < deadline:
        time.sleep(1)
    assert not _squeue(ids)
    assert not list(store.leases(cuid).glob("*.json")) and not store.failures(cuid)


def _squeue(ids: list[str]) -> str:
    array = ids[0].split("_")[0]
    return subprocess.run(["squeue", "-h", "-j", array], capture_output=True, text=True).stdout.strip()
