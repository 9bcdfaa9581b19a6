"""How long a launch will take, said before it is submitted: the video-seconds and forward steps it has to
compute, and what they cost at the rate jobs measured (``pipeline.store.records.measurements``) for the
same model on the same kind of device, or a calibration measured (``pipeline.calibrate``).

Costs are counted in forward steps (one clip, or one frame for an image model, through the model), which
scale right: ``frequency=4`` runs twice the steps of ``frequency=2`` over the same video-seconds. A job's
rate is its steps over the seconds it was busy (from its first video to its last, model loaded): in the
batched worker several videos overlap, so an entry's own ``seconds`` overstates its cost. The model's
load is counted once per job. Where jobs ran the batched worker they also measured its two stages (the
model's seconds per step, the decoding processes' CPU seconds per frame): the measured rate is scaled to
the decoding processes the launch's jobs will have, the slower stage setting the pace.
"""

from __future__ import annotations

import dataclasses
import math
import typing as tp

from pipeline.common.progress import duration_text
from pipeline.config import EmbedConfig, RunConfig
from pipeline.embedding.timegrid import n_output_steps

NATIVE_HZ = 30.0
"""Steps per video-second assumed for ``frequency=native`` (one per frame; the files' rates are not probed)."""


def cost_key(embed: EmbedConfig, device_type: str) -> str:
    """What a forward step's cost depends on: the model (its identity), the clip's frames, the image size
    cap, the dtype, the tower run, audio, and the kind of device; not the output rate, layers or pooling."""
    model = embed.model
    parts = [
        model.name,
        model.identity or "",
        f"frames={embed.num_frames}",
        f"imsize={embed.max_imsize}",
        embed.dtype,
        f"layer_type={embed.layer_type}",
        f"audio={embed.use_audio}",
        f"preprocess={embed.preprocess_device}",
        device_type,
        *(["tf32"] if embed.allow_tf32 else []),
    ]
    return "|".join(str(p) for p in parts)


def target_device(run: RunConfig) -> str:
    """The kind of device the launch's jobs will run on: ``cuda`` or ``cpu``."""
    from pipeline.launch.resources import task_gpus

    if run.device != "auto":
        return "cuda" if run.device.startswith("cuda") else "cpu"
    if run.executor.resolved_name() == "slurm":
        return "cuda" if task_gpus(run) else "cpu"
    return "cuda" if run.resolved_device().startswith("cuda") else "cpu"


def target_decoders(run: RunConfig) -> int:
    """Decoding processes each job of ``run`` will run (``decoders``, else its CPUs but one, at least two)."""
    from pipeline.common.env import n_decoders

    if run.decoders is not None:
        return run.decoders
    if run.executor.resolved_name() == "slurm":
        return max(2, run.executor.cpus_per_task - 1)
    return n_decoders(None)


@dataclasses.dataclass(frozen=True)
class Stages:
    """The batched worker's two stages, as jobs measured them: the model's seconds per step, and the
    decoding processes' CPU seconds per frame (decode and preprocess), with frames per step."""

    forward_per_step: float
    decode_per_frame: float
    frames_per_step: float
    decoders: float
    """The decoding processes per job where they were measured (weighted by steps)."""

    def per_step(self, decoders: float) -> float:
        """A job's seconds per step with ``decoders`` processes: the slower stage sets the pace."""
        return max(self.forward_per_step, self.decode_per_frame * self.frames_per_step / max(1.0, decoders))

    def describe(self, decoders: int) -> str:
        decode = self.decode_per_frame * self.frames_per_step / max(1, decoders)
        pace = "decoding sets the pace" if decode > self.forward_per_step else "the model sets the pace"
        return (
            f"model {self.forward_per_step * 1000:.3g} ms/step, decoding {self.decode_per_frame * 1000:.3g} ms/frame "
            f"x {self.frames_per_step:.3g} frames/step over {decoders} process(es): {pace}"
        )


@dataclasses.dataclass(frozen=True)
class Rate:
    """Seconds per forward step, and per job to load the model, from ``n`` measurements."""

    seconds_per_step: float
    load_s: float
    n: int
    steps: int
    sources: dict[str, int]
    devices: list[str]
    stages: Stages | None = None

    def for_decoders(self, decoders: int) -> Rate:
        """The rate with ``decoders`` decoding processes per job: the jobs' measured rate, scaled by what the
        stages say changes between the decoding processes they had and these."""
        if self.stages is None:
            return self
        scale = self.stages.per_step(decoders) / self.stages.per_step(self.stages.decoders)
        return dataclasses.replace(self, seconds_per_step=self.seconds_per_step * scale)

    def describe(self, model: str, device_type: str, decoders: int | None = None) -> str:
        kinds = " and ".join(f"{k} {'job' if s == 'job' else s}{'s' if k > 1 else ''}" for s, k in self.sources.items())
        where = ", ".join(self.devices) or device_type
        split = f"; {self.stages.describe(decoders)}" if self.stages is not None and decoders else ""
        return f"from {kinds} of {model} on {where} ({self.steps:,} steps measured{split})"


def measured_rate(records: list[dict[str, tp.Any]], key: str) -> Rate | None:
    """The rate of the measurements under ``key``; None when none measured a step."""
    mine = [r for r in records if r.get("cost_key") == key and r.get("steps", 0) > 0 and r.get("busy_s", 0) > 0]
    if not mine:
        return None
    steps = sum(int(r["steps"]) for r in mine)
    busy = sum(float(r["busy_s"]) for r in mine)
    sources: dict[str, int] = {}
    for r in mine:
        sources[str(r.get("source", "job"))] = sources.get(str(r.get("source", "job")), 0) + 1
    split = [r for r in mine if r.get("frames") and r.get("forward_s") is not None and r.get("decoders")]
    stages = None
    if split:
        split_steps = sum(int(r["steps"]) for r in split)
        frames = sum(int(r["frames"]) for r in split)
        stages = Stages(
            forward_per_step=sum(float(r["forward_s"]) for r in split) / split_steps,
            decode_per_frame=sum(float(r["decode_cpu_s"]) for r in split) / frames,
            frames_per_step=frames / split_steps,
            decoders=sum(float(r["decoders"]) * int(r["steps"]) for r in split) / split_steps,
        )
    return Rate(
        stages=stages,
        seconds_per_step=busy / steps,
        load_s=sum(float(r.get("load_s", 0.0)) for r in mine) / len(mine),
        n=len(mine),
        steps=steps,
        sources=sources,
        devices=sorted({str(r.get("device_name", "")) for r in mine if r.get("device_name")}),
    )


def video_steps(duration: float, frequency: float | str) -> int:
    """Forward steps for a video of ``duration`` seconds at ``frequency`` (``native``: ``NATIVE_HZ``)."""
    freq = NATIVE_HZ if frequency == "native" else float(frequency)
    return max(1, n_output_steps(duration, freq))


@dataclasses.dataclass(frozen=True)
class Estimate:
    """What a launch costs: ``videos`` ``(path, video-seconds, steps)`` to compute, longest first."""

    videos: list[tuple[str, float, int]]
    rate: Rate | None
    source: str
    n_jobs: int
    limit_s: float
    """One job's time before its warning signal: what a video may take before it is resumed after a requeue."""
    requeues: int

    @property
    def video_s(self) -> float:
        return sum(d for _, d, _ in self.videos)

    @property
    def steps(self) -> int:
        return sum(s for _, _, s in self.videos)

    def video_time(self, steps: int) -> float:
        assert self.rate is not None
        return steps * self.rate.seconds_per_step

    @property
    def device_s(self) -> float | None:
        if self.rate is None:
            return None
        return self.video_time(self.steps) + self.n_jobs * self.rate.load_s

    @property
    def wall_s(self) -> float | None:
        """The jobs share the work (each takes the next video); the longest video sets a floor."""
        if self.rate is None or not self.n_jobs:
            return None
        longest = max((self.video_time(s) for _, _, s in self.videos), default=0.0)
        return self.rate.load_s + max(self.video_time(self.steps) / self.n_jobs, longest)

    def jobs_needed(self) -> int:
        """Jobs for the work to fit in one time limit each (one wave)."""
        if self.device_s is None or self.limit_s <= 0:
            return 0
        return math.ceil(self.device_s / self.limit_s)

    def too_long(self) -> list[tuple[str, float]]:
        """Videos that need longer than one job's limit: computed across requeues (resumed each time)."""
        if self.rate is None:
            return []
        return [(p, t) for p, _, s in self.videos if (t := self.video_time(s)) > self.limit_s]

    def lines(self) -> list[str]:
        head = f"estimate: {duration_text(self.video_s)} of video, {self.steps:,} forward steps to compute"
        if self.rate is None or self.device_s is None or self.wall_s is None:
            return [f"{head}; {self.source}"]
        out = [
            f"{head}: about {_device_time(self.device_s)}, {duration_text(self.wall_s)} wall time with "
            f"{self.n_jobs} job(s); {self.source}"
        ]
        capacity = self.n_jobs * self.limit_s * (1 + self.requeues)
        if self.device_s > capacity:
            out.append(
                f"  more than {self.n_jobs} job(s) can run within their limits ({duration_text(capacity)} in all, "
                "requeues included): raise max_jobs, executor.timeout_min or executor.max_requeues, or relaunch "
                "after"
            )
        long = self.too_long()
        if long:
            names = ", ".join(f"{p.rsplit('/', 1)[-1]} (~{duration_text(t)})" for p, t in long[:3])
            more = f" and {len(long) - 3} more" if len(long) > 3 else ""
            requeues = math.ceil(max(t for _, t in long) / self.limit_s) - 1
            fate = (
                f"each goes on where it stopped after a requeue (up to {requeues} needed, max_requeues={self.requeues})"
                if requeues <= self.requeues
                else f"the longest needs {requeues} requeues, more than max_requeues={self.requeues}: raise "
                "executor.timeout_min or executor.max_requeues"
            )
            out.append(
                f"  {len(long)} video(s) need longer than one job's limit ({duration_text(self.limit_s)}): "
                f"{names}{more}; {fate}"
            )
        return out


def _device_time(seconds: float) -> str:
    return f"{seconds / 3600:.3g} device-hours" if seconds >= 3600 else f"{duration_text(seconds)} of device time"


def estimate(
    run: RunConfig,
    to_compute: list[tuple[str, str]],
    durations: dict[str, float],
    records: list[dict[str, tp.Any]],
    n_jobs: int,
    calibrate_hint: str = "",
) -> Estimate:
    """The cost of computing ``to_compute`` (``(path, hash)``) with ``n_jobs`` jobs of ``run``."""
    device_type = target_device(run)
    decoders = target_decoders(run)
    rate = measured_rate(records, cost_key(run.embed, device_type))
    if rate is not None:
        rate = rate.for_decoders(decoders)
    videos = [
        (p, durations.get(h, 0.0), video_steps(durations.get(h, 0.0), run.embed.frequency)) for p, h in to_compute
    ]
    if rate is not None:
        source = rate.describe(run.embed.model.name, device_type, decoders)
    else:
        source = f"no rate measured yet for {run.embed.model.name} on {device_type}" + (
            f": {calibrate_hint} measures one" if calibrate_hint else ""
        )
    if run.embed.frequency == "native":
        source += f" (frequency=native counted as {NATIVE_HZ:g} steps per video-second)"
    limit_s = max(60.0, run.executor.timeout_min * 60.0 - run.executor.signal_delay_s)
    return Estimate(videos, rate, source, n_jobs, limit_s, run.executor.max_requeues)
