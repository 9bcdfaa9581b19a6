"""V-JEPA 2 without its predictor (``make bench``): the CPU time of one forward of V-JEPA 2 ViT-L's
architecture (its Config class's defaults, random weights) on one real-size clip (16 frames of 256 px:
2048 tokens) with the predictor skipped, as the pipeline runs it, against the full forward, and the hidden
states the pipeline reads compared bit for bit. ``--frames`` and ``--crop`` make the clip smaller (the
predictor's share of the compute shrinks with the tokens). ``--smoke``: a tiny config, to check that the
script runs.
"""

from __future__ import annotations

import argparse
import sys
import time
import typing as tp


def best_of(fn: tp.Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    import torch
    import transformers as tr

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="a tiny config: checks that the script runs")
    args = parser.parse_args(argv)
    fields: dict[str, tp.Any] = {"crop_size": args.crop, "frames_per_clip": args.frames}
    name = "V-JEPA 2 ViT-L (the Config's defaults)"
    if args.smoke:
        tiny = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, pred_hidden_size=16)
        fields.update(tiny, pred_num_hidden_layers=1, pred_num_attention_heads=2, crop_size=32, frames_per_clip=4)
        args.frames, args.repeats = 4, 1
        name = "a tiny V-JEPA 2"
    torch.manual_seed(0)
    model = tr.VJEPA2Model(tr.VJEPA2Config(**fields)).eval()
    crop = fields["crop_size"]
    pixels = torch.randn(1, args.frames, 3, crop, crop)

    def forward(skip: bool) -> tp.Any:
        with torch.inference_mode():
            return model(pixel_values_videos=pixels, output_hidden_states=True, skip_predictor=skip)

    alone, full = forward(True), forward(False)
    equal = all(torch.equal(a, b) for a, b in zip(alone.hidden_states, full.hidden_states))
    t_alone, t_full = best_of(lambda: forward(True), args.repeats), best_of(lambda: forward(False), args.repeats)
    tokens = alone.last_hidden_state.shape[1]
    print(
        f"{name}, {args.frames} frames of {crop} px ({tokens} tokens), {torch.get_num_threads()} torch threads, "
        f"best of {args.repeats}: full forward {t_full:.3f} s, predictor skipped {t_alone:.3f} s "
        f"({t_full / t_alone:.2f}x faster); hidden states equal bit for bit: {equal}"
    )
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
