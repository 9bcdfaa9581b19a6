"""``python -m pipeline.calibrate``: where no job has measured a model's rate on a kind of device yet, one job
on the launch's own executor (on SLURM it waits in the queue like any other) embeds the first steps of a
few of the launch's videos and records its rate in the store; the launch's estimate then rests on it.

The job runs the engine in one process (``Embedder.embed_first``), without the batched worker's decoding
processes: where decoding limits the worker, its rate is a conservative one. Jobs of real launches
record theirs too, and those take over as they come (``pipeline.launch.estimate``).
"""

from __future__ import annotations

import sys
import time
import typing as tp

from pipeline.common.files import make_private_dir
from pipeline.config import ConfigError, RunConfig
from pipeline.launch.discovery import find_videos, known_durations
from pipeline.launch.estimate import cost_key, estimate
from pipeline.launch.executors import make_executor
from pipeline.launch.planning import make_plan
from pipeline.launch.preflight import model_config, prepare_model
from pipeline.launch.resources import check_gpus, device_name, sized
from pipeline.launch.staging import stage
from pipeline.store import Store, layout

VIDEOS = 3
"""Videos sampled: the launch's longest ones to compute (or, all stored, its first ones)."""
STEPS = 16
"""Steps embedded from the start of each sampled video."""


class CalibrationJob:
    """What the calibration job runs: load the model, embed the first ``steps`` of each video, record the
    rate (the model's load apart)."""

    def __call__(self, run_dict: dict[str, tp.Any], paths: list[str], steps: int) -> dict[str, tp.Any]:
        from pipeline.embedding.engine import Embedder

        run = RunConfig.model_validate(run_dict)
        check_gpus(run)
        loading = time.perf_counter()
        embedder = Embedder(run.embed, run.model_source(), device=run.resolved_device(), batch_size=run.batch_size)
        load_s = time.perf_counter() - loading
        busy_from = time.perf_counter()
        for path in paths:
            embedder.embed_first(path, steps)
        device = embedder.adapter.device
        record = {
            "source": "calibration",
            "cost_key": cost_key(run.embed, device.type),
            "model": run.embed.model.name,
            "config_uid": run.embed.uid(),
            "steps": embedder.steps_run,
            "busy_s": time.perf_counter() - busy_from,
            "load_s": load_s,
            "device_type": device.type,
            "device_name": device_name(device),
        }
        Store(run.store).record_measurement(record)
        return record


def calibrate(run: RunConfig, *, out: tp.TextIO | None = None) -> int:
    """Measure the rate of ``run``'s model on its executor's device and print the launch's estimate with it."""
    out = sys.stdout if out is None else out
    paths = find_videos(run.videos)
    run = prepare_model(run)
    store = Store(run.store)
    store.ensure()
    plan = make_plan(run, store, paths)
    sample = [p for p, _ in plan.to_compute[:VIDEOS]] or [p for p in paths if p not in plan.unreadable][:VIDEOS]
    if not sample:
        raise ConfigError(f"videos: none of the {len(paths)} video(s) can be read to calibrate on")
    store.ensure_config(run.embed)
    folder = make_private_dir(layout.user_jobs(store.path, plan.config_uid), store.path)
    run, _ = sized(run, lambda: model_config(run))
    staged = stage(run, out=out) is not None
    executor = make_executor(run, folder, offline=staged)
    job = executor.submit(CalibrationJob(), run.model_dump(mode="json"), sample, STEPS)
    print(
        f"calibrating: job {job.job_id} ({run.executor.resolved_name()}) embeds the first {STEPS} steps of "
        f"{len(sample)} video(s)",
        file=out,
        flush=True,
    )
    record = job.result()
    rate = record["busy_s"] / max(1, record["steps"])
    print(
        f"measured: {record['steps']} steps in {record['busy_s']:.1f} s on {record['device_name']} "
        f"({rate * 1000:.1f} ms per step; the model loaded in {record['load_s']:.1f} s)",
        file=out,
    )
    n_jobs = plan.n_jobs(run.videos_per_job, run.max_jobs) or 1
    cost = estimate(run, plan.to_compute, known_durations(store), store.measurements(), n_jobs)
    print("\n".join(cost.lines()) if plan.to_compute else "nothing left to compute for this config", file=out)
    return 0
