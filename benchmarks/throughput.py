"""Throughput benchmark (``make bench``): the literal reference loop, the pipeline's engine, and a plain
sequential decode, on the same machine in one run. Prints a table of speeds.

It also checks the numbers: every step whose frames lie within the stream must equal the reference loop's
(and the batched worker the engine's), bit for bit; the steps that ask for a frame past the stream's end
are printed apart with their difference and the documented rule that sets it (docs/numbers.md). Any other
difference makes it exit 1. ``--smoke``: the smallest sizes, to check that the script runs (the suite does).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.config import build_run_config  # noqa: E402
from pipeline.embedding import decoding  # noqa: E402
from pipeline.embedding.engine import Embedder  # noqa: E402
from pipeline.embedding.steps import plan_steps  # noqa: E402
from pipeline.testing.sample import write_video  # noqa: E402
from pipeline.testing.tiny import ensure_tiny_model  # noqa: E402

CONFIGS = {
    "tiny_videomae 2 Hz, 16 frames / 1 s clip": dict(
        model={"name": "tiny-videomae", "family": "videomae", "tiny": True}, frequency=2.0, clip_duration=1.0
    ),
    "tiny_vit 4 Hz": dict(model={"name": "tiny-vit", "family": "image", "tiny": True}, frequency=4.0),
}


_TEXTURES: dict[tuple[int, int], np.ndarray] = {}


def bench_frame(k: int, fps: float, width: int, height: int) -> np.ndarray:
    """A smooth random texture (upsampled noise, like natural footage) panning a few pixels per frame."""
    from PIL import Image

    if (width, height) not in _TEXTURES:
        noise = np.random.default_rng(0).integers(0, 255, (height // 16, width // 16, 3), dtype=np.uint8)
        _TEXTURES[width, height] = np.asarray(Image.fromarray(noise).resize((width, height), Image.BICUBIC))
    return np.roll(_TEXTURES[width, height], (k * 2, k * 3), axis=(0, 1))


def make_video(folder: Path, seconds: int) -> Path:
    path = folder / f"bench_{seconds}s_640x360_30fps.mp4"
    if not path.exists():
        tmp = path.with_suffix(".part.mp4")
        write_video(tmp, fps=30, seconds=seconds, width=640, height=360, frame=bench_frame)
        tmp.rename(path)
    return path


def make_distinct_videos(folder: Path, n: int, seconds: int, prefix: str = "worker") -> list[Path]:
    """``n`` videos of distinct content (the texture starts at a different offset in each)."""
    paths = []
    for v in range(n):
        path = folder / f"{prefix}_{v}_{seconds}s_640x360_30fps.mp4"
        if not path.exists():
            tmp = path.with_suffix(".part.mp4")
            write_video(
                tmp,
                fps=30,
                seconds=seconds,
                width=640,
                height=360,
                frame=lambda k, f, w, h, v=v: bench_frame(k + 97 * v, f, w, h),
            )
            tmp.rename(path)
        paths.append(path)
    return paths


def worker_row(videos: list[Path], models_dir: str, decoders: int) -> dict[str, float]:
    """The new worker (``Batcher``: decoding processes, shared batches) against the engine one video at a
    time, both with one loaded tiny VideoMAE, over the same videos: video-s/s each and the largest difference."""
    from pipeline.embedding.batcher import Batcher
    from pipeline.embedding.decoding import container_seconds

    embedder = embedder_for("tiny_videomae 2 Hz, 16 frames / 1 s clip", models_dir)
    total = sum(container_seconds(str(v)) for v in videos)
    start = time.perf_counter()
    engine = {str(v): embedder.embed(str(v)).data for v in videos}
    t_engine = time.perf_counter() - start
    batcher = Batcher(embedder, decoders)
    todo = iter([(str(v), str(v), None) for v in videos])
    ours: dict[str, np.ndarray] = {}
    failed: dict[str, BaseException] = {}
    try:
        start = time.perf_counter()
        batcher.run(lambda: next(todo, None), lambda k, e: ours.__setitem__(k, e.data), failed.__setitem__)
        t_worker = time.perf_counter() - start
    finally:
        batcher.close()
    assert not failed, failed
    diff = max(float(np.abs(ours[k] - engine[k]).max()) for k in engine)
    return dict(engine=total / t_engine, worker=total / t_worker, speedup=t_engine / t_worker, max_abs_diff=diff)


def decoders_alone(videos: list[Path], embedder: Embedder, decoders: int) -> float:
    """Video-s/s of the worker's decoding processes alone for ``embedder``'s config (same count, same plan
    and preprocessing, the same videos in flight), their messages taken and dropped: no model, the most the
    worker could reach (``benchmarks/gpu.py`` sets the worker beside it too)."""
    from pipeline.embedding.decoding import container_seconds
    from pipeline.embedding.feeding import DecoderSpec, Feeder

    config = embedder.config.model_dump(mode="json")
    spec = DecoderSpec(embedder.adapter.source, config, embedder.num_frames, embedder.preprocess_device)
    total = sum(container_seconds(str(v)) for v in videos)
    feeder = Feeder(spec, decoders)
    try:
        todo, open_ = [str(v) for v in videos], 0
        start = time.perf_counter()
        while todo or open_:
            while todo and open_ < decoders + 1:
                path = todo.pop(0)
                feeder.submit(path, path)
                open_ += 1
            message = feeder.get(timeout=5.0)
            assert message is not None, "the decoding processes stalled"
            if message[0] in ("done", "error", "died"):
                assert message[0] == "done", message
                open_ -= 1
        elapsed = time.perf_counter() - start
    finally:
        feeder.close()
    return total / elapsed


def assembly_ms(frame_shape: tuple[int, ...], clips: int = 16, frames: int = 16, repeats: int = 5) -> dict[str, float]:
    """Milliseconds to assemble one batch of ``clips`` clips of ``frames`` frames (float32 pixels, clips
    overlapping by half as at 2 Hz with 1 s clips of 16 frames from 30 fps): before, stacking the frames,
    then the clips, then copying to (pinned) memory; now, each frame copied once into a reused buffer
    (``pipeline.embedding.batcher.assemble``). Best of ``repeats``; the two batches must be equal."""
    import torch

    from pipeline.embedding.batcher import assemble

    pool = [torch.rand(frame_shape) for _ in range(clips * frames // 2 + frames)]
    index = [[c * frames // 2 + f for f in range(frames)] for c in range(clips)]
    pin = torch.cuda.is_available()

    def before() -> torch.Tensor:
        stacked = torch.stack([torch.stack([pool[i] for i in clip]) for clip in index])
        return stacked.pin_memory() if pin else stacked.clone()  # the copy pin_memory() makes

    buffer = torch.empty((clips, frames, *frame_shape), pin_memory=pin)

    def now() -> torch.Tensor:
        return assemble(buffer, [[pool[i] for i in clip] for clip in index])

    times = {}
    for name, fn in (("before", before), ("now", now)):
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
        times[name] = best * 1e3
    times["max_abs_diff"] = float((before() - now()).abs().max())
    times["mb"] = buffer.numel() * buffer.element_size() / 1e6
    return times


def decoding_costs(video: Path, models_dir: str) -> tuple[float, float, float, int, int]:
    """One decoding process's work on one video, each stage timed alone on one thread: planning, decoding
    the needed frames to RGB, preprocessing them (16 at a time); with the frames needed and in the file."""
    import torch

    from pipeline.embedding.adapters import adapter_class
    from pipeline.embedding.steps import plan_steps

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        embedder = embedder_for("tiny_videomae 2 Hz, 16 frames / 1 s clip", models_dir)
        adapter = adapter_class("videomae")(embedder.adapter.source, with_model=False)
        start = time.perf_counter()
        plan = plan_steps(str(video), embedder.config, embedder.num_frames)
        t_plan = time.perf_counter() - start
        wanted = np.unique(plan.index)
        start = time.perf_counter()
        frames = [f for _, f in decoding.iter_frames(video, wanted)]
        t_decode = time.perf_counter() - start
        start = time.perf_counter()
        for i in range(0, len(frames), 16):
            adapter.preprocess_frames(frames[i : i + 16])
        t_pre = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    return t_plan, t_decode, t_pre, len(wanted), int(plan.timing.n_frames or 0)


def print_worker_row(args: argparse.Namespace, work: Path, models_dir: Path) -> dict[str, float]:
    from pipeline.common.env import n_decoders

    decoders = n_decoders(args.decoders)
    videos = make_distinct_videos(work, args.worker_videos, args.worker_seconds)
    t_plan, t_decode, t_pre, wanted, total = decoding_costs(videos[0], str(models_dir))
    print(
        f"one decoding process, one {args.worker_seconds} s video: plan {t_plan:.2f} s, decode {wanted} of {total} "
        f"frames {t_decode:.2f} s, preprocess them {t_pre:.2f} s ({t_pre / wanted * 1e3:.2f} ms per frame)"
    )
    row = worker_row(videos, str(models_dir), decoders)
    embedder = embedder_for("tiny_videomae 2 Hz, 16 frames / 1 s clip", str(models_dir))
    row["decoders_alone"] = decoders_alone(videos, embedder, decoders)
    row["of_decoders"] = row["worker"] / row["decoders_alone"]
    for label, shape in (
        ("tiny_videomae", (3, 32, 32)),
        ("VideoMAE-base", (3, 224, 224) if not args.smoke else (3, 64, 64)),
    ):
        t = assembly_ms(shape)
        row[f"assembly_{label}_before_ms"], row[f"assembly_{label}_ms"] = t["before"], t["now"]
        row["max_abs_diff"] = max(row["max_abs_diff"], t["max_abs_diff"])
        print(
            f"batch assembly, 16 clips x 16 frames of {'x'.join(map(str, shape))} float32 ({t['mb']:.0f} MB, {label}): "
            f"stacked twice then copied {t['before']:.1f} ms, into a reused buffer {t['now']:.1f} ms "
            f"({t['before'] / t['now']:.1f}x), max abs diff {t['max_abs_diff']:.0e}"
        )
    print(
        f"\n| {args.worker_videos} videos x {args.worker_seconds} s, tiny_videomae 2 Hz "
        "| engine, one video at a time (video-s/s) | "
        f"worker, {decoders} decoding process(es) (video-s/s) | speedup | max abs diff |"
    )
    print("|---|---|---|---|---|")
    print(
        f"| one worker, batch 16 | {row['engine']:.2f} | {row['worker']:.2f} | {row['speedup']:.2f}x | "
        f"{row['max_abs_diff']:.1e} |"
    )
    print(
        f"the worker's {decoders} decoding process(es) alone (no model): {row['decoders_alone']:.2f} video-s/s; "
        f"the worker reaches {row['of_decoders']:.0%} of it (target: at least 80%)"
    )
    return row


def plain_decode(path: Path) -> float:
    """The decode limit: every frame of the file decoded and converted to RGB, in order."""
    import av

    start = time.perf_counter()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            frame.to_ndarray(format="rgb24")
    return time.perf_counter() - start


def engine_decode(path: Path, embedder: Embedder, freq: float) -> float:
    """The engine's own decoding pass alone: the frames its clips (or steps) need, one pass."""
    wanted = np.unique(plan_steps(str(path), embedder.config, embedder.num_frames).index)
    start = time.perf_counter()
    for _ in decoding.iter_frames(path, wanted):
        pass
    return time.perf_counter() - start


def peak_rss_mb(path: Path, name: str, models_dir: Path) -> float:
    """Peak RSS of a fresh process that embeds ``path`` with the engine."""
    code = (
        f"import resource, sys; sys.path.insert(0, {str(ROOT)!r})\n"
        "from benchmarks.throughput import embedder_for\n"
        f"embedder_for({name!r}, {str(models_dir)!r}).embed({str(path)!r})\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


PAST_END_RULE = {
    True: "clip frames past the stream's end: the reference reader's end-of-stream rule, followed (must be 0)",
    False: "image step past the stream's end: the video's last frame (docs/numbers.md, 'The last image step')",
}
"""Why a step past the end may differ from the reference loop, by ``is_video``."""


def compare_steps(
    ref: np.ndarray, ours: np.ndarray, past_end: np.ndarray | None
) -> tuple[float, list[tuple[int, float]]]:
    """The largest difference over the steps (last axis) whose frames lie within the stream, and
    ``(step, difference)`` of each step past its end."""
    diff = np.abs(ref - ours).reshape(-1, ref.shape[-1]).max(axis=0)
    past = np.zeros(diff.shape, bool) if past_end is None else np.asarray(past_end, bool)
    within = float(diff[~past].max()) if (~past).any() else 0.0
    return within, [(int(k), float(diff[k])) for k in np.flatnonzero(past)]


def reference_output(name: str, video: Path, models_dir: Path, is_video: bool) -> np.ndarray:
    """The literal reference loop's output for config ``name`` (``tests/reference_loop.py``)."""
    from tests.reference_loop import reference_image_model, reference_video_model

    cfg = CONFIGS[name]
    model_dir, freq = str(models_dir / cfg["model"]["name"]), float(cfg["frequency"])  # type: ignore[index, arg-type]
    if is_video:
        return reference_video_model(str(video), model_dir, "videomae", frequency=freq, clip_duration=1.0)
    return reference_image_model(str(video), model_dir, frequency=freq)


def embedder_for(name: str, models_dir: str, batch_size: int = 16) -> Embedder:
    run = build_run_config({**CONFIGS[name], "videos": ".", "models_dir": models_dir, "device": "cpu"})
    return Embedder(run.embed, run.model_source(), device="cpu", batch_size=batch_size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", default=str(ROOT / ".bench"))
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--long-seconds", type=int, default=600)
    parser.add_argument("--json", default="")
    parser.add_argument("--worker-seconds", type=int, default=30, help="length of each worker video")
    parser.add_argument("--worker-videos", type=int, default=8, help="videos of the worker row")
    parser.add_argument("--decoders", type=int, default=None, help="decoding processes (default: CPUs - 1)")
    parser.add_argument("--worker-only", action="store_true", help="only the worker row")
    parser.add_argument("--only", default="", help="only the configs whose name contains this (no worker row)")
    parser.add_argument("--smoke", action="store_true", help="the smallest sizes: checks that the script runs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.seconds, args.long_seconds, args.worker_seconds, args.worker_videos = 2, 3, 1, 2
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    models_dir = work / "models"
    for family in ("videomae", "vit"):
        ensure_tiny_model(family, models_dir)
    if args.worker_only:
        return 0 if print_worker_row(args, work, models_dir)["max_abs_diff"] == 0 else 1
    t0 = time.perf_counter()
    video = make_video(work, args.seconds)
    long_video = make_video(work, args.long_seconds)
    print(f"videos ready in {time.perf_counter() - t0:.1f} s: {video.name}, {long_video.name}")
    plain = min(plain_decode(video) for _ in range(2))
    results, past_rows = [], []
    for name, cfg in CONFIGS.items():
        if args.only not in name:
            continue
        embedder = embedder_for(name, str(models_dir))
        freq = float(cfg["frequency"])  # type: ignore[arg-type]
        start = time.perf_counter()
        ours = embedder.embed(str(video))
        t_engine = time.perf_counter() - start
        t_decode = min(engine_decode(video, embedder, freq) for _ in range(2))
        start = time.perf_counter()
        ref = reference_output(name, video, models_dir, embedder.adapter.is_video)
        t_ref = time.perf_counter() - start
        steps = plan_steps(str(video), embedder.config, embedder.num_frames)
        within, past = compare_steps(ref, ours.data, steps.past_end)
        past_rows += [(name, k, d, embedder.adapter.is_video) for k, d in past]
        rss_short = peak_rss_mb(video, name, models_dir)
        rss_long = peak_rss_mb(long_video, name, models_dir)
        results.append(
            dict(
                config=name,
                reference_s=t_ref,
                engine_s=t_engine,
                reference_video_s_per_s=args.seconds / t_ref,
                engine_video_s_per_s=args.seconds / t_engine,
                speedup=t_ref / t_engine,
                max_abs_diff=within,
                steps=int(ref.shape[-1]),
                steps_past_end=len(past),
                engine_decode_s=t_decode,
                plain_decode_s=plain,
                decode_ratio=t_decode / plain,
                rss_mb_short=rss_short,
                rss_mb_long=rss_long,
                rss_ratio=rss_long / rss_short,
            )
        )
    header = (
        f"| config | reference (video-s/s) | engine (video-s/s) | speedup | max abs diff, steps within the stream "
        f"| engine decode / plain decode | peak RSS {args.seconds} s / {args.long_seconds} s |"
    )
    print(header)
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['config']} | {r['reference_video_s_per_s']:.2f} | {r['engine_video_s_per_s']:.2f} | "
            f"{r['speedup']:.1f}x | {r['max_abs_diff']:.1e} ({r['steps'] - r['steps_past_end']} of {r['steps']}) | "
            f"{r['engine_decode_s']:.2f} s / {r['plain_decode_s']:.2f} s = {r['decode_ratio']:.2f} | "
            f"{r['rss_mb_short']:.0f} MB / {r['rss_mb_long']:.0f} MB = {r['rss_ratio']:.2f} |"
        )
    if past_rows:
        print(f"\nsteps past the stream's end of the {args.seconds} s video (not compared; the rule sets them):")
        for name, k, d, is_video in past_rows:
            print(f"  {name}, step {k}: max abs diff {d:.1e}: {PAST_END_RULE[is_video]}")
    import torch

    print(f"torch threads: {torch.get_num_threads()}, batch size 16, device cpu")
    worker_diff = 0.0
    if not args.only:
        row = print_worker_row(args, work, models_dir)
        results.append(dict(config="worker", **row))
        worker_diff = row["max_abs_diff"]
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    wrong = [r["config"] for r in results if r["config"] != "worker" and r["max_abs_diff"] != 0]
    wrong += ["worker against the engine"] if worker_diff != 0 else []
    # a video model's clip past the end follows the reference's own rule: it must not differ either
    wrong += [f"{name} step {k} past the end" for name, k, d, is_video in past_rows if is_video and d != 0]
    if wrong:
        print(f"DIFFERENCE within the stream: {', '.join(wrong)} (must be 0)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
