"""Preprocessing frames as the pipeline does (``Adapter.preprocess_frames``: resized straight from the
decoder's buffers, the rest of the processor on a batch) equals the family's processor called on each frame
alone as the reference calls it (numpy frames; float images for image models), bit for bit, on real footage."""

from __future__ import annotations

import typing as tp

import numpy as np
import pytest
import torch

from pipeline.embedding import decoding
from pipeline.embedding.adapters import adapter_class, pixel_values, presizing_part

from ..conftest import FRAMEWISE, TINY

NOT_PRESIZED = {"tiny-vivit"}  # a numpy (PIL) processor: fed as before, frame by frame


def _frames(videos: tp.Any) -> list[np.ndarray]:
    """Decoded frames of the real clips (1280x720, 176x144, 640x272) and of a synthetic one."""
    frames: list[np.ndarray] = []
    for path in videos(["bbb", "ntsc", "bikes", "orbit"]):
        frames += [f for _, f in decoding.iter_frames(path, [0, 7, 31, 60])]
    return frames


@pytest.mark.parametrize("model", FRAMEWISE)
def test_preprocessed_frames_equal_the_processor_on_each_frame(make_run: tp.Any, videos: tp.Any, model: str) -> None:
    run = make_run(model)
    adapter = adapter_class(TINY[model])(run.model_source(), with_model=False)
    assert adapter.framewise
    assert (presizing_part(adapter.processor) is None) == (model in NOT_PRESIZED)
    frames = _frames(videos)
    by_shape: dict[tuple[int, ...], list[np.ndarray]] = {}
    for frame in frames:
        by_shape.setdefault(frame.shape, []).append(frame)
    for group in by_shape.values():
        ours = adapter.preprocess_frames(group)
        for frame, got in zip(group, ours, strict=True):
            alone = pixel_values(adapter.processor(**adapter.processor_inputs([[frame]], None)))
            alone = alone[0, 0] if alone.ndim == 5 else alone[0]
            assert got.dtype == alone.dtype == torch.float32
            assert torch.equal(got, alone), f"{model} {frame.shape}: max abs diff {(got - alone).abs().max()}"
