"""The pipeline's stored arrays equal the literal reference loop within 1e-5."""

from __future__ import annotations

import typing as tp
from pathlib import Path

import numpy as np
import pytest

from pipeline import store as store_mod
from pipeline.launch import launch

from .reference_loop import reference_image_model, reference_video_model

pytestmark = pytest.mark.slow

VIDEO_CASES: list[tuple[str, dict[str, tp.Any]]] = [
    ("tiny-videomae", dict(frequency=2.0)),
    (
        "tiny-videomae",
        dict(
            frequency=3.0,
            clip_duration=1.0,
            num_frames=16,
            layers=[0.0, 1.0],
            layer_aggregation="group_mean",
            token_aggregation="first",
        ),
    ),
    (
        "tiny-videomae",
        dict(
            frequency=1.5, max_imsize=40, layers="all", layer_aggregation="none", token_aggregation="max", batch_size=3
        ),
    ),
    (
        "tiny-videomae",
        dict(
            frequency=2.0,
            clip_duration=0.3,
            layers=[0.25, 0.75],
            layer_aggregation="sum",
            token_aggregation="last",
            batch_size=1,
        ),
    ),
    ("tiny-xclip", dict(frequency=2.0)),
    (
        "tiny-xclip",
        dict(
            frequency=2.5,
            clip_duration=1.5,
            layer_type="mit",
            layers="all",
            layer_aggregation="mean",
            token_aggregation="mean",
            max_imsize=50,
        ),
    ),
]
IMAGE_CASES: list[tuple[str, dict[str, tp.Any]]] = [
    ("tiny-vit", dict(frequency=2.0)),
    (
        "tiny-vit",
        dict(frequency=5.0, layers=[0.25, 1.0], layer_aggregation="mean", token_aggregation="cat", batch_size=4),
    ),
    ("tiny-vit", dict(frequency=3.0, layers="all", layer_aggregation="group_mean", token_aggregation="first")),
]
VIDEOS = ["bars_12fps.mp4", "drift_25fps.mp4"]
_REF_FIELDS = (
    "frequency",
    "clip_duration",
    "num_frames",
    "max_imsize",
    "layers",
    "layer_aggregation",
    "token_aggregation",
    "layer_type",
)


def _check_against_reference(run: tp.Any, sample_dir: Path, reference: tp.Callable[[str], np.ndarray]) -> None:
    """Launch the pipeline, then compare each stored array with the reference loop's output."""
    summary = launch(run)
    assert not summary.failed
    reader = store_mod.open(run.store)
    for name in VIDEOS:
        got, attrs = reader.load_numpy(config=run.embed, video=sample_dir / name)
        assert attrs["frequency"] == run.embed.frequency
        expected = reference(str(sample_dir / name))
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("model", "fields"), VIDEO_CASES)
def test_video_models_match_reference(
    make_run: tp.Any, models_dir: Path, sample_dir: Path, model: str, fields: dict[str, tp.Any]
) -> None:
    run = make_run(model, **fields)
    kwargs = {k: v for k, v in fields.items() if k in _REF_FIELDS}
    family = run.embed.model.family
    _check_against_reference(
        run, sample_dir, lambda video: reference_video_model(video, str(models_dir / model), family, **kwargs)
    )


@pytest.mark.parametrize(("model", "fields"), IMAGE_CASES)
def test_image_models_match_reference(
    make_run: tp.Any, models_dir: Path, sample_dir: Path, model: str, fields: dict[str, tp.Any]
) -> None:
    run = make_run(model, **fields)
    kwargs = {k: v for k, v in fields.items() if k in _REF_FIELDS}
    _check_against_reference(
        run, sample_dir, lambda video: reference_image_model(video, str(models_dir / model), **kwargs)
    )
