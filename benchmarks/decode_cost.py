"""Core-seconds per video-second of one decoding process (``make bench``): planning, decoding and
preprocessing a 30 s video for the VideoMAE config (2 Hz, 16 frames per 1 s clip, the tiny model's real
``VideoMAEImageProcessor``), at 640x360 and 1280x720; with the largest difference between the pixels and a
direct per-frame call of the processor on independently decoded frames (the reference's way).

CPU time is the process's (``time.process_time``: every thread, FFmpeg's included), not wall time: the
machine is shared. Planning is timed alone, then the loop over the video's frames (the best of
``--repeats`` each), on one torch thread, as a decoding process runs it
(``pipeline.embedding.feeding.video_chunks``): its preprocessing calls, and the rest (decoding). Prints a
table; asserts nothing.
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

BEFORE: dict[tuple[int, int], tuple[float, float, float]] = {
    (640, 360): (0.0010, 0.0342, 0.0279),
    (1280, 720): (0.0029, 0.0836, 0.0941),
}
"""BEFORE: core-seconds per video-second (plan, decode, preprocess) of the code before issue 18 (commit
c42f1c7: 9311829 with ``feeding.video_chunks`` factored out), measured once on the 2-core development machine on
2026-11-26 by ``.venv/bin/python benchmarks/decode_cost.py`` (max abs diff 0 at both sizes)."""


def make_video(folder: Path, width: int, height: int) -> Path:
    """A 30 fps textured video (``throughput.bench_frame``) of ``SECONDS`` seconds, made once."""
    path = folder / f"bench_{SECONDS}s_{width}x{height}_30fps.mp4"
    if not path.exists():
        tmp = path.with_suffix(".part.mp4")
        write_video(tmp, fps=30, seconds=SECONDS, width=width, height=height, frame=bench_frame)
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


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", default=str(ROOT / ".bench"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    models_dir = work / "models"
    ensure_tiny_model(str(CONFIGS[CONFIG]["model"]["name"]).removeprefix("tiny-"), models_dir)  # type: ignore[index]
    torch.set_num_threads(1)  # as a decoding process
    rows = []
    for width, height in SIZES:
        video = make_video(work, width, height)
        costs = stage_costs(video, str(models_dir), args.repeats)
        ref = reference_pixels(video, costs["numbers"], costs["adapter"])
        diff = float((costs["pixels"] - ref).abs().max())
        rows.append(((width, height), costs, diff, len(costs["numbers"])))
    print(f"core-seconds per video-second, one decoding process, {CONFIG}, {SECONDS} s videos at 30 fps")
    print("| size | code | plan | decode | preprocess | total | max abs diff vs per-frame processor |")
    print("|---|---|---|---|---|---|---|")
    for size, costs, diff, n in rows:
        b = BEFORE[size]
        now = [costs[k] / SECONDS for k in ("plan", "decode", "preprocess")]
        name = f"{size[0]}x{size[1]} ({n} frames)"
        print(f"| {name} | before (measured once) | {b[0]:.4f} | {b[1]:.4f} | {b[2]:.4f} | {sum(b):.4f} | 0 |")
        print(f"| {name} | now | {now[0]:.4f} | {now[1]:.4f} | {now[2]:.4f} | {sum(now):.4f} | {diff:.1e} |")
        cut = [f"{x / y:.2f}x" for x, y in zip([*b, sum(b)], [*now, sum(now)], strict=True)]
        print(f"| {name} | before / now | {' | '.join(cut)} | |")


if __name__ == "__main__":
    main()
