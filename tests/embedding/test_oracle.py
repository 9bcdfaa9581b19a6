"""The pipeline's stored arrays equal the literal reference loop within 1e-5, on real footage (Big Buck
Bunny, an NTSC clip, a 640x272 clip) and on the synthetic sample, every family, last step included."""

from __future__ import annotations

import typing as tp
from pathlib import Path

import numpy as np
import pytest

from pipeline import launch_config
from pipeline import store as store_mod
from pipeline.embedding.adapters import adapter_class

from ..conftest import TINY
from ..reference_loop import reference_image_model, reference_video_model

pytestmark = pytest.mark.slow

VIDEO_CASES: list[tuple[str, dict[str, tp.Any], list[str]]] = [
    ("tiny-videomae", dict(frequency=2.0), ["bars", "drift", "ntsc", "bbb"]),
    (
        "tiny-videomae",  # clips longer than a step: the reader seeks back before every clip
        dict(
            frequency=3.0,
            clip_duration=1.7,
            num_frames=16,
            layers=[0.0, 1.0],
            layer_aggregation="group_mean",
            token_aggregation="first",
        ),
        ["ntsc", "drift"],
    ),
    (
        "tiny-videomae",
        dict(
            frequency=1.5, max_imsize=40, layers="all", layer_aggregation="none", token_aggregation="max", batch_size=3
        ),
        ["bbb", "bars"],
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
        ["bikes"],
    ),
    ("tiny-xclip", dict(frequency=2.0), ["bars", "ntsc"]),
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
        ["drift", "bbb"],
    ),
    ("tiny-timesformer", dict(frequency=2.0, clip_duration=0.8), ["ntsc", "bars"]),
    ("tiny-vivit", dict(frequency=3.0), ["drift", "ntsc"]),
    ("tiny-vjepa2", dict(frequency=2.0, num_frames=8), ["bbb", "bars"]),
    ("tiny-vjepa2", dict(frequency=1.0), ["ntsc"]),  # the family default: 64 frames per clip
    ("tiny-llava_next_video", dict(frequency=2.0, num_frames=4, layer_type="USER: <video> ASSISTANT:"), ["ntsc"]),
    ("tiny-phi4_multimodal", dict(frequency=1.0, num_frames=3, use_audio=False), ["ntsc", "bars"]),
    (
        "tiny-llava_next_video",
        dict(frequency=1.0, num_frames=6, layer_type="<video> what happens?", token_aggregation="last", batch_size=2),
        ["bars", "bbb"],
    ),
]
IMAGE_CASES: list[tuple[str, dict[str, tp.Any], list[str]]] = [
    ("tiny-vit", dict(frequency=2.0), ["bars", "drift", "ntsc", "bbb"]),
    (
        "tiny-vit",
        dict(frequency=5.0, layers=[0.25, 1.0], layer_aggregation="mean", token_aggregation="cat", batch_size=4),
        ["ntsc"],
    ),
    ("tiny-vit", dict(frequency=3.0, layers="all", layer_aggregation="group_mean", token_aggregation="first"), ["bbb"]),
    ("tiny-vit", dict(frequency=0.3), ["bikes"]),  # steps 125 frames apart: the reader reopens the file
    ("tiny-vit", dict(frequency="native"), ["ntsc"]),
    ("tiny-clip", dict(frequency=2.0), ["bars", "bbb"]),
    ("tiny-dinov2", dict(frequency=2.0, token_aggregation="first"), ["drift", "ntsc"]),
]
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


def check_against_reference(
    make_run: tp.Any,
    model: str,
    fields: dict[str, tp.Any],
    paths: list[Path],
    folder: Path,
    reference: tp.Callable[[str, dict[str, tp.Any]], np.ndarray],
) -> None:
    """Launch the pipeline over ``paths``, then compare each stored array with the reference loop's."""
    folder.mkdir()
    for path in paths:
        (folder / path.name).symlink_to(path)
    run = make_run(model, videos=str(folder), **fields)
    summary = launch_config(run)
    assert not summary.failed and len(summary.computed) == len(paths)
    reader = store_mod.open(run.store)
    kwargs = {k: v for k, v in fields.items() if k in _REF_FIELDS}
    for path in paths:
        got, attrs = reader.load_numpy(config=run.embed, video=path)
        assert attrs["timing"] == "reference"
        expected = reference(str(path), kwargs)
        if kwargs["frequency"] == "native":
            assert attrs["frequency"] == pytest.approx(30000 / 1001, abs=1e-9)
        assert got.shape == expected.shape, path.name
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0, err_msg=path.name)


@pytest.mark.parametrize(("model", "fields", "names"), VIDEO_CASES + IMAGE_CASES)
def test_models_match_reference(
    make_run: tp.Any,
    models_dir: Path,
    videos: tp.Any,
    tmp_path: Path,
    model: str,
    fields: dict[str, tp.Any],
    names: list[str],
) -> None:
    family = TINY[model]
    model_dir = str(models_dir / model)

    def reference(video: str, kwargs: dict[str, tp.Any]) -> np.ndarray:
        if not adapter_class(family).is_video:
            if kwargs["frequency"] == "native":
                from moviepy import VideoFileClip

                kwargs = {**kwargs, "frequency": VideoFileClip(video).fps}
            return reference_image_model(video, model_dir, **kwargs)
        return reference_video_model(video, model_dir, family, **kwargs)

    check_against_reference(make_run, model, fields, videos(names), tmp_path / "videos", reference)
