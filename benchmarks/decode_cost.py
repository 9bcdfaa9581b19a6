"""Core-seconds per video-second of one decoding process (``make bench``): planning, decoding and
preprocessing a 30 s video for the VideoMAE config (2 Hz, 16 frames per 1 s clip, the tiny model's real
``VideoMAEImageProcessor``), at 640x360 and 1280x720; with the largest difference between the pixels and a
direct per-frame call of the processor on independently decoded frames (the reference's way).

CPU time is the process's (``time.process_time``: every thread, FFmpeg's included), not wall time: the
machine is shared. Planning is timed alone, then the loop over the video's frames (the best of
``--repeats`` each), on one torch thread, as a decoding process runs it
(``pipeline.embedding.feeding.video_chunks``): its preprocessing calls, and the rest (decoding). Beside
them, measured in the same run on the same file, the floor: a plain FFmpeg decode of every frame on one
thread, nothing converted (every frame of the stream must be decoded, needed or not: the least one
decoding process can spend on a CPU), and the ratio of the stages' total to it. Prints a table; asserts
nothing. Figures of earlier code are history, in docs/performance.md. ``--smoke``: a 2 s video at one size.
"""

from __future__ import annotations

import argparse
import sys
import time
import typing as tp
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.throughput import CONFIGS, bench_frame, embedder_for  # noqa: E402
from pipeline.testing.sample import write_video  # noqa: E402
from pipeline.testing.tiny import ensure_tiny_model  # noqa: E402

CONFIG = "tiny_videomae 2 Hz, 16 frames / 1 s clip"
SIZES = ((640, 360), (1280, 720))
SECONDS = 30


def make_video(folder: Path, width: int, height: int, seconds: int = SECONDS) -> Path:
    """A 30 fps textured video (``throughput.bench_frame``) of ``seconds`` seconds, made once."""
    path = folder / f"bench_{seconds}s_{width}x{height}_30fps.mp4"
    if not path.exists():
        tmp = path.with_suffix(".part.mp4")
        write_video(tmp, fps=30, seconds=seconds, width=width, height=height, frame=bench_frame)
        tmp.rename(path)
    return path


def _cpu(fn: tp.Callable[[], tp.Any], repeats: int) -> tuple[float, tp.Any]:
    """The least process CPU time of ``repeats`` calls, and the last call's result."""
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.process_time()
        out = fn()
        best = min(best, time.process_time() - start)
    return best, out


def stage_costs(video: Path, models_dir: str, repeats: int) -> dict[str, tp.Any]:
    """One decoding process's work on ``video`` as the process does it (``feeding.video_chunks``):
    core-seconds of planning, of the whole loop's preprocessing calls (``Adapter.preprocess_frames``), and
    of the rest of the loop, which is decoding the frames the steps need (best of ``repeats`` loops each);
    and the pixels."""
    import torch

    from pipeline.embedding.adapters import adapter_class
    from pipeline.embedding.feeding import video_chunks
    from pipeline.embedding.steps import plan_steps

    embedder = embedder_for(CONFIG, models_dir)
    embed, num_frames = embedder.config, embedder.num_frames
    adapter = adapter_class(embed.model.family)(embedder.adapter.source, with_model=False)
    t_plan, steps = _cpu(lambda: plan_steps(str(video), embed, num_frames), repeats)
    preprocess = adapter.preprocess_frames
    spent = [0.0]

    def timed(*args: tp.Any, **kwargs: tp.Any) -> torch.Tensor:
        start = time.process_time()
        try:
            return preprocess(*args, **kwargs)
        finally:
            spent[0] += time.process_time() - start

    adapter.preprocess_frames = timed  # type: ignore[method-assign]
    best: dict[str, tp.Any] = {}
    for _ in range(repeats):
        spent[0] = 0.0
        start = time.process_time()
        chunks = list(video_chunks(str(video), steps, embed, adapter, None))
        t_loop = time.process_time() - start
        if not best or t_loop < best["loop"]:
            best = dict(loop=t_loop, preprocess=spent[0], chunks=chunks)
    numbers = [i for n, _ in best["chunks"] for i in n]
    pixels = torch.cat([p for _, p in best["chunks"]])
    return dict(
        plan=t_plan,
        decode=best["loop"] - best["preprocess"],
        preprocess=best["preprocess"],
        numbers=numbers,
        pixels=pixels,
        adapter=adapter,
    )


def floor_decode(video: Path) -> float:
    """Process CPU seconds of a plain FFmpeg decode of every frame of ``video`` on one thread, nothing
    converted: the least a decoding process can spend on this file."""
    import av

    start = time.process_time()
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        for _ in container.decode(stream):
            pass
    return time.process_time() - start


def reference_pixels(video: Path, numbers: list[int], adapter: tp.Any) -> tp.Any:
    """Each frame decoded by a plain PyAV pass (frame k the k-th of this constant-rate file) to a numpy
    rgb24 array and put through the processor alone, as the reference does with its clips' frames."""
    import av
    import torch

    from pipeline.embedding.adapters import pixel_values

    wanted = set(numbers)
    out: dict[int, torch.Tensor] = {}
    with av.open(str(video)) as container:
        for k, frame in enumerate(container.decode(container.streams.video[0])):
            if k in wanted:
                rgb = frame.to_ndarray(format="rgb24")
                values = pixel_values(adapter.processor(**adapter.processor_inputs([[rgb]], None)))
                out[k] = values[0, 0] if values.ndim == 5 else values[0]
            if k >= max(numbers):
                break
    return torch.stack([out[k] for k in numbers])


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", default=str(ROOT / ".bench"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="one 2 s video at 640x360, one repeat")
    args = parser.parse_args(argv)
    seconds, sizes = (2, SIZES[:1]) if args.smoke else (SECONDS, SIZES)
    repeats = 1 if args.smoke else args.repeats
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    models_dir = work / "models"
    ensure_tiny_model(str(CONFIGS[CONFIG]["model"]["name"]).removeprefix("tiny-"), models_dir)  # type: ignore[index]
    torch.set_num_threads(1)  # as a decoding process
    rows = []
    for width, height in sizes:
        video = make_video(work, width, height, seconds)
        costs = stage_costs(video, str(models_dir), repeats)
        floor = min(floor_decode(video) for _ in range(repeats))
        ref = reference_pixels(video, costs["numbers"], costs["adapter"])
        diff = float((costs["pixels"] - ref).abs().max())
        rows.append(((width, height), costs, floor, diff, len(costs["numbers"])))
    print(f"core-seconds per video-second, one decoding process, {CONFIG}, {seconds} s videos at 30 fps")
    print("| size | plan | decode | preprocess | total | floor: every frame decoded | total / floor | max abs diff |")
    print("|---|---|---|---|---|---|---|---|")
    for (width, height), costs, floor, diff, n in rows:
        now = [costs[k] / seconds for k in ("plan", "decode", "preprocess")]
        print(
            f"| {width}x{height} ({n} frames of {seconds * 30}) | {now[0]:.4f} | {now[1]:.4f} | {now[2]:.4f} | "
            f"{sum(now):.4f} | {floor / seconds:.4f} | {sum(now) / (floor / seconds):.2f}x | {diff:.1e} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
