"""Time before it is spent: the dry run's estimate and where it comes from, a calibration where nothing is
measured, jobs sized to their time limit, and the pace status reports."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import typing as tp
from pathlib import Path

import pytest

from pipeline import launch_config
from pipeline.launch import pace
from pipeline.launch.estimate import Estimate, Rate, cost_key, estimate, measured_rate, video_steps
from pipeline.store import Store

from ..conftest import REPO, distinct_copies


def _record(key: str, steps: int, busy_s: float, source: str = "job", load_s: float = 2.0) -> dict[str, tp.Any]:
    return {"cost_key": key, "steps": steps, "busy_s": busy_s, "load_s": load_s, "source": source}


def test_steps_scale_with_the_rate_and_the_cost_key_ignores_what_does_not_cost(make_run: tp.Any) -> None:
    assert video_steps(10.0, 4.0) == 2 * video_steps(10.0, 2.0) == 40
    assert video_steps(0.1, 2.0) == 1  # a video is at least one step
    base = make_run()
    same = make_run(frequency=4.0, layers=[0.5, 1.0], token_aggregation="first")
    assert cost_key(base.embed, "cpu") == cost_key(same.embed, "cpu") != cost_key(base.embed, "cuda")
    assert cost_key(base.embed, "cpu") != cost_key(make_run(max_imsize=32).embed, "cpu")
    assert cost_key(base.embed, "cpu") != cost_key(make_run(dtype="bfloat16").embed, "cpu")


def test_the_rate_is_steps_over_busy_seconds_of_the_same_key() -> None:
    records = [_record("a", 100, 50.0), _record("a", 300, 50.0, "calibration"), _record("b", 10, 1000.0)]
    rate = measured_rate(records, "a")
    assert rate is not None and rate.seconds_per_step == pytest.approx(0.25) and rate.n == 2
    assert rate.sources == {"job": 1, "calibration": 1} and rate.steps == 400
    assert measured_rate(records, "c") is None
    assert measured_rate([_record("a", 0, 5.0)], "a") is None  # a job that ran no step says nothing


def test_the_stages_scale_a_rate_to_the_decoding_processes_a_job_will_have() -> None:
    """Jobs with 2 decoding processes, each 40 ms of CPU per frame at 2 frames per step (40 ms per step
    with two), against a model at 10 ms per step: decoding sets their pace; with 8 processes the model
    does, and the measured rate is scaled by 10/40."""
    records = [
        {**_record("a", 100, 5.0), "decoders": 2, "frames": 200, "decode_cpu_s": 8.0, "forward_s": 1.0},
        {**_record("a", 100, 5.0), "decoders": 2, "frames": 200, "decode_cpu_s": 8.0, "forward_s": 1.0},
    ]
    rate = measured_rate(records, "a")
    assert rate is not None and rate.stages is not None
    assert rate.stages.per_step(2) == pytest.approx(0.04) and rate.stages.per_step(8) == pytest.approx(0.01)
    assert rate.for_decoders(2).seconds_per_step == pytest.approx(0.05)
    assert rate.for_decoders(8).seconds_per_step == pytest.approx(0.05 * 0.25)
    assert "decoding sets the pace" in rate.describe("m", "cpu", 2)
    assert "the model sets the pace" in rate.describe("m", "cpu", 8)


def test_an_estimate_sizes_jobs_and_names_the_videos_longer_than_a_job() -> None:
    rate = Rate(seconds_per_step=2.0, load_s=30.0, n=3, steps=900, sources={"job": 3}, devices=["H100"])
    videos = [("/v/film.mp4", 7200.0, 14400), ("/v/short.mp4", 60.0, 120)]
    cost = Estimate(videos, rate, "from 3 jobs", n_jobs=1, limit_s=3510.0, requeues=3)
    assert cost.device_s == pytest.approx(14520 * 2.0 + 30.0)
    assert cost.jobs_needed() == 9  # each job's work fits one time limit
    text = "\n".join(cost.lines())
    assert "film.mp4 (~8h00m)" in text and "short.mp4" not in text.split("\n", 1)[1]
    assert "more than max_requeues=3" in text  # 8 h in jobs of 58 min: 8 requeues, 3 allowed
    assert "more than 1 job(s) can run within their limits" in text
    wide = Estimate(videos, rate, "from 3 jobs", n_jobs=9, limit_s=3510.0, requeues=9)
    assert "up to 8 needed" in "\n".join(wide.lines()) and "can run within" not in "\n".join(wide.lines())
    assert wide.wall_s == pytest.approx(30.0 + 14400 * 2.0)  # the film sets the floor


def test_pace_counts_video_seconds_and_gives_an_eta() -> None:
    now = 10_000.0
    landed = [(now - 1000, 500.0), (now - 300, 120.0), (now - 60, 60.0)]
    p = pace.pace(landed, since=now - 1200, now=now, left_s=360.0)
    assert p.recent == pytest.approx(180.0 / pace.WINDOW_S) and p.overall == pytest.approx(680.0 / 1200)
    assert p.eta_s == pytest.approx(360.0 / p.recent)
    young = pace.pace([(now - 30, 60.0)], since=now - 60, now=now, left_s=0.0)
    assert young.recent == pytest.approx(1.0) and young.eta_s == 0.0  # over the minute since the launch
    assert pace.pace([], since=None, now=now, left_s=10.0).eta_s is None
    assert pace.epoch("2026-12-03T05:00:00.000+00:00") == pytest.approx(1796274000.0)
    assert "ETA" in pace.render(p) and "no ETA yet" in pace.render(pace.Pace(None, None, 5.0))


def test_dry_run_estimate_from_a_calibration_then_from_jobs(make_run: tp.Any, sample_dir: Path, tmp_path: Path) -> None:
    """Nothing measured: the dry run says so and how to measure; ``pipeline.calibrate`` on the local
    executor records a rate the next dry run uses; a launch's job records its own, and the summary sets
    the estimate beside the time taken. A rate that says the work outlasts the jobs' limits makes the
    launch ask for more jobs, naming the videos longer than one job."""
    run = make_run(dry_run=True, max_jobs=4)
    out = io.StringIO()
    launch_config(run, out=out)
    assert "estimate: " in out.getvalue() and "no rate measured yet for tiny-videomae on cpu" in out.getvalue()
    assert "pipeline.calibrate" in out.getvalue()

    calibrated = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.calibrate",
            "model=tiny_videomae",
            f"videos={sample_dir}",
            f"store={run.store}",
            f"models_dir={run.models_dir}",
            "device=cpu",
            "executor=local",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PIPELINE_THREADS": "1"},
        timeout=600,
    )
    assert calibrated.returncode == 0, calibrated.stdout + calibrated.stderr
    assert "measured: " in calibrated.stdout and "from 1 calibration of tiny-videomae on cpu" in calibrated.stdout
    (record,) = Store(run.store).measurements()
    assert record["source"] == "calibration" and record["steps"] > 0 and record["job_id"]

    out = io.StringIO()
    launch_config(run, out=out)
    assert "of device time" in out.getvalue() and "from 1 calibration of tiny-videomae" in out.getvalue()

    out = io.StringIO()
    summary = launch_config(run.model_copy(update={"dry_run": False}), out=out)
    assert summary.ok and summary.estimated_s is not None and summary.elapsed_s is not None
    assert "(estimated " in out.getvalue()
    sources = sorted(r["source"] for r in Store(run.store).measurements())
    assert sources == ["calibration", "job"]
    (job,) = [r for r in Store(run.store).measurements() if r["source"] == "job"]
    assert job["frames"] > 0 and job["decode_cpu_s"] > 0 and job["forward_s"] > 0  # the batched worker's stages
    out = io.StringIO()
    launch_config(make_run(frequency=4.0, dry_run=True, store=run.store), out=out)  # another config, same cost
    assert "from 1 calibration and 1 job of tiny-videomae" in out.getvalue() and "sets the pace" in out.getvalue()

    # a slow device, as a measurement would say: the launch asks for more jobs and names the long videos
    long_videos = tmp_path / "long"
    distinct_copies(sample_dir / "orbit_30fps_audio.mp4", long_videos, 3)
    slow = make_run(videos=str(long_videos), dry_run=True, max_jobs=3, videos_per_job=8)
    slow = slow.model_copy(update={"executor": slow.executor.model_copy(update={"timeout_min": 2})})
    Store(run.store).record_measurement(_record(cost_key(slow.embed, "cpu"), 10, 6000.0))
    out = io.StringIO()
    launch_config(slow.model_copy(update={"store": run.store}), out=out)
    text = out.getvalue()
    assert "3 to compute in 3 job(s)" in text and "3 video(s) need longer than one job's limit" in text, text
    cost = estimate(slow, [("/v/a.mp4", "h")], {"h": 4.0}, [_record(cost_key(slow.embed, "cpu"), 10, 6000.0)], 1)
    assert cost.steps == 8 and cost.video_time(8) == pytest.approx(4800.0) and cost.limit_s == 60.0
