"""Running like an operator: a summary and a plan that fit a screen, Ctrl-C without a traceback, cancel,
a fast offline failure for a model that is not there, and no library noise by default."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import typing as tp
from pathlib import Path

import pytest

from pipeline import launch_config
from pipeline.launch.summary import Summary, render_summary
from pipeline.store import Store, caches, content_hash
from pipeline.testing import faults

from ..conftest import REPO, distinct_copies, run_cli


def test_a_summary_fits_a_screen_and_names_the_file_with_every_line(tmp_path: Path) -> None:
    summary = Summary("videomae-x", str(tmp_path / "store.zarr"))
    summary.cached = [f"/v/{i}.mp4" for i in range(110)]
    summary.duplicates = {f"/v/dup{i}.mp4": f"/v/{i % 110}.mp4" for i in range(890)}
    summary.failed = {f"/v/bad{i}.mp4": "VideoError: cannot open as a video" for i in range(30)}
    printed = render_summary(summary)
    lines = printed.splitlines()
    assert len(lines) <= 16, printed
    assert lines[1].split() == ["computed", "0", "cached", "110", "failed", "30", "duplicates", "890"]
    assert "... 885 more duplicates" in printed and "... 25 more failed" in printed
    full = Path(summary.full_list)
    assert full.is_file() and str(full) in printed
    text = full.read_text()
    assert all(f"/v/dup{i}.mp4" in text for i in range(890)) and text.count("FAILED") == 30


def test_a_small_summary_is_printed_whole(tmp_path: Path) -> None:
    summary = Summary("videomae-x", str(tmp_path / "store.zarr"), failed={"/v/a.mp4": "VideoError: x"})
    assert "FAILED /v/a.mp4: VideoError: x" in render_summary(summary)
    assert not summary.full_list and not (tmp_path / "store.zarr").exists()


def test_a_dry_run_plan_fits_a_screen(make_run: tp.Any, sample_dir: Path, tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    distinct_copies(sample_dir / "bars_12fps.mp4", videos, 40)
    out = io.StringIO()
    launch_config(make_run(videos=str(videos), dry_run=True, videos_per_job=2, max_jobs=20), out=out)
    text = out.getvalue()
    assert len(text.splitlines()) <= 8, text
    assert "40 to compute in 20 job(s)" in text and "longest first: " in text and "(37 more)" in text


def _cli_args(videos: Path, store: Path, models_dir: Path, *extra: str) -> list[str]:
    return [f"videos={videos}", f"store={store}", f"models_dir={models_dir}", "device=cpu", *extra]


def test_ctrl_c_says_what_runs_then_cancel_stops_it_and_records_no_failure(
    models_dir: Path, sample_dir: Path, tmp_path: Path
) -> None:
    videos, store_path = tmp_path / "videos", tmp_path / "store.zarr"
    distinct_copies(sample_dir / "bars_12fps.mp4", videos, 6)
    args = _cli_args(videos, store_path, models_dir, "executor=local", "videos_per_job=3", "frequency=1")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "broken.mp4").write_bytes(b"not a video")  # recorded as failed under the same config first
    assert run_cli(*_cli_args(broken, store_path, models_dir, "executor=debug", "frequency=1")).returncode == 1
    launcher = run_cli(*args, env={faults.SLOW_S: "20"}, wait=False)
    leases = store_path.glob("*/_leases/*.json")
    deadline = time.time() + 240
    while not list(leases) and time.time() < deadline and launcher.poll() is None:
        time.sleep(0.5)
        leases = store_path.glob("*/_leases/*.json")
    os.killpg(launcher.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the launcher's whole process group
    launcher.wait(timeout=60)
    out = _drain(launcher)
    assert launcher.returncode == 130, out[-3000:]
    assert "Traceback" not in out and "KeyboardInterrupt" not in out, out[-3000:]
    assert "interrupted: 2 job(s) of config" in out and "still running" in out, out[-3000:]
    store = Store(store_path)
    (cuid,) = store.config_uids()
    assert f"-m pipeline.cancel store={store_path} {cuid}" in out
    (record,) = [r for r in store.launches(cuid).values() if r["executor"] == "local"]
    pids = [int(j) for j in record["job_ids"]]
    assert all(_alive(p) for p in pids)  # Ctrl-C stopped the launcher, not its jobs
    row = _status(store_path)  # the tools agree: each video in one column, adding up
    assert (row["total"], row["failed"], row["stopped"]) == (7, 1, 0) and row["running"] >= 1, row
    assert row["running"] + row["pending"] + row["done"] == 6, row

    # the same command again, its launcher gone: it follows the jobs still running, submits nothing
    resumed = run_cli(*args, env={faults.SLOW_S: "20"}, wait=False)
    assert resumed.stdout is not None
    seen = ""
    while "nothing submitted" not in seen and resumed.poll() is None:
        seen += resumed.stdout.readline()
    os.killpg(resumed.pid, signal.SIGINT)
    resumed.wait(timeout=60)
    seen += _drain(resumed)
    assert f"following its 2 job(s) ({' '.join(record['job_ids'])}), nothing submitted" in seen, seen[-3000:]
    assert "interrupted: 2 job(s) of config" in seen and "submitted 2 job(s)" not in seen, seen[-3000:]
    assert [r["job_ids"] for r in store.launches(cuid).values() if r["executor"] == "local"] == [record["job_ids"]]

    cancel = subprocess.run(
        [sys.executable, "-m", "pipeline.cancel", f"store={store_path}", cuid], cwd=REPO, capture_output=True, text=True
    )
    assert cancel.returncode == 0, cancel.stderr
    assert cancel.stdout.count("local job") == 2 and "released" in cancel.stdout, cancel.stdout
    deadline = time.time() + 30
    while any(_alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in pids)
    assert not list(store.leases(cuid).glob("*.json"))
    assert set(store.failures(cuid)) == {content_hash(broken / "broken.mp4")}  # the cancel recorded none
    stored = len(store.done_hashes(cuid))
    row = _status(store_path, "--videos")
    assert (row["total"], row["done"], row["failed"], row["running"], row["pending"]) == (7, stored, 1, 0, 0), row
    assert row["stopped"] == 6 - stored and {v["why"] for v in row["videos"] if "why" in v} == {"cancelled"}
    assert all(v["video_path"] for v in row["videos"])
    text = subprocess.run(
        [sys.executable, "-m", "pipeline.status", f"store={store_path}"], cwd=REPO, capture_output=True, text=True
    ).stdout
    assert f"stopped: {cuid} has {6 - stored} video(s) that no job will run" in text and f"videos={videos}" in text

    again = run_cli(*args, "executor=debug", timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"computed {6 - stored}  cached {stored}  failed 0" in again.stdout, again.stdout


def _status(store: Path, *flags: str) -> dict[str, tp.Any]:
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.status", f"store={store}", "--json", *flags],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)["configs"]
    return tp.cast(dict[str, tp.Any], row)


def _drain(proc: subprocess.Popen[str]) -> str:
    """What an exited process wrote to its pipe; its jobs keep the pipe open, so read without waiting
    for the end of the stream."""
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    return proc.stdout.read() or ""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_hub_model_absent_offline_is_a_config_error(tmp_path: Path) -> None:
    """Not in the cache and no hub: exit 2 naming model.name. The 'hub' is a closed port on this machine."""
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "a.mp4").write_bytes(b"x")
    env = {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf")}
    done = run_cli("model=videomae", f"videos={videos}", f"store={tmp_path / 's.zarr'}", env=env, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "model.name: 'MCG-NJU/videomae-base' is neither a local folder nor in the Hugging Face cache" in done.stderr
    assert not (tmp_path / "s.zarr").exists()
    offline = run_cli("model=videomae", f"videos={videos}", env={**env, "HF_HUB_OFFLINE": "1"}, timeout=120)
    assert offline.returncode == 2, offline.stderr
    assert "config error: model.name: 'MCG-NJU/videomae-base' is neither a local folder" in offline.stderr
    assert "HF_HUB_OFFLINE=1" in offline.stderr and "internet" not in offline.stderr


@pytest.mark.parametrize(
    ("override", "said"),
    [
        ("frequncy=2", "config error: frequncy: no such field (did you mean 'frequency'?"),
        ("executor.partiton=gpu", "config error: executor.partiton: no such field (did you mean 'partition'?"),
        ("model=nonexistent", "config error: model: no model 'nonexistent' in conf/model/ (choices: clip,"),
        ("model=tiny_videomea", "did you mean 'tiny_videomae'?"),
        (
            "executor=foo",
            "config error: executor: no executor 'foo' in conf/executor/ (choices: auto, debug, local, slurm)",
        ),
        ("layers=[0.5", "config error: cannot read the command line"),
    ],
)
def test_every_configuration_error_exits_2_with_our_message(override: str, said: str, tmp_path: Path) -> None:
    done = run_cli(override, f"store={tmp_path / 's.zarr'}", timeout=120)
    assert done.returncode == 2 and said in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "s.zarr").exists()


def test_library_noise_stays_out_unless_verbose(sample_dir: Path, tmp_path: Path) -> None:
    noise = ("Writing model shards", "Loading weights", "[transformers]")
    # the libraries' own defaults, not the test session's (an in-process launch earlier may have quietened it)
    env = {"TRANSFORMERS_VERBOSITY": "warning", "HF_HUB_DISABLE_PROGRESS_BARS": "0"}
    for verbose in (False, True):
        store = tmp_path / f"s{verbose}.zarr"
        args = _cli_args(sample_dir / "bars_12fps.mp4", store, tmp_path / f"models{verbose}", "executor=local")
        done = run_cli(*args, f"verbose={str(verbose).lower()}", env=env, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        logs = "".join(p.read_text() for p in store.glob("_jobs/*/*/*_log.err"))
        heard = [n for n in noise if n in done.stdout + done.stderr + logs]
        assert heard if verbose else not heard, (verbose, heard)
        assert "computed 1" in done.stdout  # our own lines stay


def test_the_queue_runs_longest_first(make_run: tp.Any, sample_dir: Path, tmp_path: Path) -> None:
    """Durations are probed once (cached by content hash) and the queue is ordered longest first."""
    from pipeline.launch.planning import make_plan

    run = make_run()
    store = Store(run.store)
    store.ensure()
    plan = make_plan(run, store)
    names = [Path(p).name for p, _ in plan.to_compute]
    assert names == ["orbit_30fps_audio.mp4", "drift_25fps.mp4", "bars_12fps.mp4"]  # 4 s, 3 s, 2.5 s
    assert set(caches.read(store.path, "durations")) == {h for _, h in plan.to_compute}


def test_two_jobs_share_one_queue_and_compute_each_video_once(
    models_dir: Path, sample_dir: Path, tmp_path: Path
) -> None:
    videos, store_path = tmp_path / "videos", tmp_path / "store.zarr"
    distinct_copies(sample_dir / "bars_12fps.mp4", videos, 6)
    args = _cli_args(videos, store_path, models_dir, "executor=local", "videos_per_job=3", "frequency=1")
    # 6 videos of at least 5 s each: 30 s of work, far longer than the gap between the two jobs' start-ups
    done = run_cli(*args, env={faults.SLOW_S: "5"}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "6 to compute in 2 job(s)" in done.stdout and "computed 6  cached 0  failed 0" in done.stdout
    store = Store(store_path)
    jobs = [store.load_numpy(e.uid)[1]["job_id"] for e in store.entries()]
    assert len(jobs) == 6 and len(set(jobs)) == 2, jobs  # both jobs took videos from the one queue


def test_a_launch_writes_nothing_in_the_working_directory(models_dir: Path, sample_dir: Path, tmp_path: Path) -> None:
    """Only the store: no .hydra/ runs, no logs; a multirun's multirun.yaml goes to the temporary folder."""
    work, tmp = tmp_path / "cwd", tmp_path / "tmp"
    work.mkdir()
    tmp.mkdir()
    args = [f"videos={sample_dir / 'bars_12fps.mp4'}", f"store={work / 's.zarr'}", f"models_dir={models_dir}"]
    done = run_cli(*args, "executor=debug", cwd=work, env={"TMPDIR": str(tmp)}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    sweep = run_cli("-m", *args, "executor=debug", "frequency=1,2", cwd=work, env={"TMPDIR": str(tmp)}, timeout=600)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    assert sorted(os.listdir(work)) == ["s.zarr"]
    assert list(tmp.glob("pipeline-sweeps/*/multirun.yaml")) and list(tmp.glob("pipeline-runs/*"))


def test_a_wait_false_launch_records_its_end_without_a_launcher(
    models_dir: Path, sample_dir: Path, tmp_path: Path
) -> None:
    """The last job of a ``wait=false`` launch writes its summary into the store; where none did (that job
    killed first: its summary removed here), status writes it once every job has ended. Status shows the
    pace while it runs and the end after."""
    store_path = tmp_path / "store.zarr"
    args = _cli_args(sample_dir, store_path, models_dir, "executor=local", "videos_per_job=2", "wait=false")
    res = run_cli(*args)
    assert res.returncode == 0 and "not waiting" in res.stdout, res.stdout + res.stderr
    store = Store(store_path)
    (cuid,) = store.config_uids()
    (launch_id,) = store.launches(cuid)
    summary = store_path / "_jobs" / cuid / f"summary-{launch_id}.txt"
    deadline = time.time() + 300
    while not summary.exists():
        assert time.time() < deadline, "no job wrote the launch's summary"
        time.sleep(0.5)
    text = summary.read_text()
    assert "the last to end" in text and "computed 3  cached 0  failed 0" in text, text
    record = store.launches(cuid)[launch_id]
    deadline = time.time() + 60  # the jobs' processes exit
    while any(_alive(int(j)) for j in record["job_ids"]) and time.time() < deadline:
        time.sleep(0.2)
    summary.unlink()
    row = _status(store_path)
    assert row["summaries"] == [str(summary)] and row["done"] == 3 and row["eta_seconds"] == 0.0, row
    assert "written by pipeline.status" in summary.read_text()
    shown = subprocess.run(
        [sys.executable, "-m", "pipeline.status", f"store={store_path}"], cwd=REPO, capture_output=True, text=True
    ).stdout
    assert f"ended: {cuid}: computed 3  cached 0  failed 0 (the launch's summary: {summary})" in shown, shown
