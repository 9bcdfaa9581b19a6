"""GPU benchmark (``make bench-gpu``): the worker's batched path on base-size models built from their Configs.

For VideoMAE-base, ViT-base, V-JEPA 2 ViT-L and ViT-g (random weights, the real amount of compute; V-JEPA 2
at its processor's 256 px crop), over ``--videos`` distinct ``--seconds`` s 640x360 30 fps videos, it
prints end-to-end video-seconds per second of the worker's path (``Batcher``: decoding processes, shared
batches), the pure forward limit at the same batch size, the decode-and-preprocess limit of the worker's
own decoding processes alone (the same count and preprocessing, no model), the ratios, and the host syncs
``torch.cuda.set_sync_debug_mode("warn")`` saw in the worker's run; then the fp32 difference from the CPU
path, ``allow_tf32``'s from fp32 (not bit-exact: an option, off by default) and bf16's. Where there is no
CUDA device it says so and exits 0. It asserts nothing.

A run that fits one ten-minute call of a lent GPU: ``--only VideoMAE --videos 8 --seconds 30`` (one
config at a time; the full default run is longer; not yet timed on a GPU).

``--smoke`` runs the same path on the tiny VideoMAE (its Config class, random weights) on the CPU, over
two 2 s videos, float32: what the suite runs so that a change that breaks the script fails there.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import typing as tp
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONFIGS: dict[str, dict[str, tp.Any]] = {
    "VideoMAE-base bf16, 2 Hz, 16 frames / 1 s, batch 16": dict(
        build="videomae", frequency=2.0, clip_duration=1.0, dtype="bfloat16", batch=16
    ),
    "VideoMAE-base bf16, preprocess_device=cuda": dict(
        build="videomae", frequency=2.0, clip_duration=1.0, dtype="bfloat16", batch=16, preprocess_device="cuda"
    ),
    "ViT-base bf16, 4 Hz, batch 64": dict(build="vit", frequency=4.0, dtype="bfloat16", batch=64),
    "V-JEPA 2 ViT-L bf16, 1 Hz, 2 s clips, batch 4": dict(
        build="vjepa2_l", frequency=1.0, clip_duration=2.0, dtype="bfloat16", batch=4
    ),
    "V-JEPA 2 ViT-g bf16, 2 Hz, 4 s clips, layers 0.5,0.75,1 group_mean, batch 4": dict(
        build="vjepa2_g",
        frequency=2.0,
        clip_duration=4.0,
        dtype="bfloat16",
        batch=4,
        layers=[0.5, 0.75, 1.0],
        layer_aggregation="group_mean",
    ),
}


SMOKE = {
    "tiny VideoMAE fp32, 2 Hz, 16 frames / 1 s, batch 2": dict(
        build="tiny_videomae", frequency=2.0, clip_duration=1.0, dtype="float32", batch=2
    )
}
"""``--smoke``: the path on the CPU."""


def build(kind: str, folder: Path) -> tuple[Path, str]:
    """A base-size model of ``kind`` from its Config class (random weights), saved for ``from_pretrained``;
    ``tiny_videomae``: the tests' tiny one."""
    import torch
    import transformers as tr

    if kind == "tiny_videomae":
        from pipeline.testing.tiny import ensure_tiny_model

        return ensure_tiny_model("videomae", folder), "videomae"
    target = folder / kind
    family = {"videomae": "videomae", "vit": "image"}.get(kind, "vjepa2")
    if (target / "config.json").exists():
        return target, family
    torch.manual_seed(0)
    if kind == "videomae":
        model, proc = tr.VideoMAEModel(tr.VideoMAEConfig()), tr.VideoMAEImageProcessor()
    elif kind == "vit":
        model, proc = tr.ViTModel(tr.ViTConfig()), tr.ViTImageProcessor()
    elif kind == "vjepa2_l":
        model, proc = tr.VJEPA2Model(tr.VJEPA2Config()), tr.VJEPA2VideoProcessor()
    else:  # ViT-g: 1408 wide, 40 layers, 22 heads, 256 px crops
        cfg = tr.VJEPA2Config(hidden_size=1408, num_hidden_layers=40, num_attention_heads=22, mlp_ratio=48 / 11)
        model, proc = tr.VJEPA2Model(cfg), tr.VJEPA2VideoProcessor()
    model.save_pretrained(target)
    proc.save_pretrained(target)
    return target, family


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def run_config(
    name: str, cfg: dict[str, tp.Any], models: Path, videos: list[Path], seconds: float, device: str = "cuda"
) -> dict[str, float]:
    import torch

    from benchmarks.throughput import decoders_alone
    from pipeline.common.env import n_decoders
    from pipeline.config import build_run_config
    from pipeline.embedding.batcher import Batcher
    from pipeline.embedding.engine import Embedder

    source, family = build(cfg["build"], models)
    fields = {k: v for k, v in cfg.items() if k not in ("build", "batch")}
    run = build_run_config(
        {"model": {"name": str(source), "family": family}, "videos": ".", "device": device, **fields}
    )
    embedder = Embedder(run.embed, str(source), device=device, batch_size=cfg["batch"])
    decode = decoders_alone(videos, embedder, n_decoders(None))  # the same processes, preprocessing; no model
    todo = iter([(str(v), str(v), None) for v in videos])
    failed: dict[str, BaseException] = {}
    batcher = Batcher(embedder, n_decoders(None))
    syncs: list[warnings.WarningMessage] = []
    try:
        _sync(device)
        with warnings.catch_warnings(record=True) as syncs:
            warnings.simplefilter("always")
            if device == "cuda":
                torch.cuda.set_sync_debug_mode("warn")  # each host sync the worker makes, counted
            start = time.perf_counter()
            batcher.run(lambda: next(todo, None), lambda k, e: None, failed.__setitem__)
            _sync(device)
            t_worker = time.perf_counter() - start
            if device == "cuda":
                torch.cuda.set_sync_debug_mode(0)
    finally:
        batcher.close()
    assert not failed, failed
    n_syncs = sum("synchroniz" in str(w.message) for w in syncs)
    # the pure forward limit: the same batch of preprocessed clips, again and again, on the GPU, of the
    # shape the processor makes (V-JEPA 2's 256 px crop included: read from a frame it preprocessed)
    frames = embedder.num_frames or 1
    one = embedder.adapter.preprocess_frames([np.zeros((360, 640, 3), np.uint8)])[0]
    shape = (cfg["batch"], frames, *one.shape) if embedder.adapter.is_video else (cfg["batch"], *one.shape)
    pixels = torch.randn(shape, device=device)
    steps = round(cfg["frequency"] * seconds) * len(videos)
    for _ in range(3):
        embedder.reduce(embedder.adapter.hidden_states_from_pixels(pixels))
    _sync(device)
    reps = 20
    start = time.perf_counter()
    for _ in range(reps):
        embedder.reduce(embedder.adapter.hidden_states_from_pixels(pixels))
    _sync(device)
    per_batch = (time.perf_counter() - start) / reps
    t_forward = per_batch * steps / cfg["batch"]
    total = seconds * len(videos)
    return dict(worker=total / t_worker, forward=total / t_forward, decode=decode, syncs=float(n_syncs))


def precision(models: Path, video: Path, device: str = "cuda", kind: str = "videomae") -> tuple[float, float, float]:
    """VideoMAE-base on one video: fp32 on ``device`` against the CPU path, fp32 with ``allow_tf32``
    against fp32, and bf16 against fp32."""
    from pipeline.config import build_run_config
    from pipeline.embedding.engine import Embedder

    source, _ = build(kind, models)
    out = {}
    runs = (
        ("cpu", "float32", False),
        (device, "float32", False),
        (device, "float32", True),
        (device, "bfloat16", False),
    )
    for where, dtype, tf32 in runs:
        run = build_run_config(
            {"model": {"name": str(source), "family": "videomae"}, "videos": ".", "device": where, "dtype": dtype,
             "allow_tf32": tf32}
        )  # fmt: skip
        out[where, dtype, tf32] = Embedder(run.embed, str(source), device=where, batch_size=16).embed(str(video)).data
    fp32 = out[device, "float32", False]
    return (
        float(np.abs(fp32 - out["cpu", "float32", False]).max()),
        float(np.abs(out[device, "float32", True] - fp32).max()),
        float(np.abs(out[device, "bfloat16", False] - fp32).max()),
    )


def main(argv: list[str] | None = None) -> int:
    from benchmarks.throughput import make_distinct_videos

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", default=str(ROOT / ".bench" / "gpu"))
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--only", default="", help="run the configs whose name contains this")
    parser.add_argument("--smoke", action="store_true", help="the tiny VideoMAE on the CPU: checks the script runs")
    args = parser.parse_args(argv)
    import torch

    configs, device, kind = CONFIGS, "cuda", "videomae"
    if args.smoke:
        configs, device, kind, args.videos, args.seconds = SMOKE, "cpu", "tiny_videomae", 2, 2
    elif not torch.cuda.is_available():
        print("bench-gpu: no CUDA device on this machine; nothing measured")
        return 0
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    videos = make_distinct_videos(work, args.videos, args.seconds, prefix="gpu")
    card = torch.cuda.get_device_name() if device == "cuda" else "CPU (smoke)"
    print(f"{card}, {os.cpu_count()} CPUs, {len(videos)} videos x {args.seconds} s")
    print(
        "| config | worker (video-s/s) | forward limit (video-s/s) | decoding processes alone (video-s/s) "
        "| worker / forward | worker / decoding | host syncs |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, cfg in configs.items():
        if args.only and args.only not in name:
            continue
        r = run_config(name, cfg, work / "models", videos, args.seconds, device)
        print(
            f"| {name} | {r['worker']:.1f} | {r['forward']:.1f} | {r['decode']:.1f} | "
            f"{r['worker'] / r['forward']:.0%} | {r['worker'] / r['decode']:.0%} | {r['syncs']:.0f} |",
            flush=True,
        )
    fp32, tf32, bf16 = precision(work / "models", videos[0], device, kind)
    print(
        f"VideoMAE, one video: fp32 {device} vs CPU max abs diff {fp32:.1e}; allow_tf32 vs fp32 {tf32:.1e} "
        f"(not bit-exact: an option, off by default); bf16 vs fp32 {bf16:.1e}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
