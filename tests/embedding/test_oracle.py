"""The pipeline's stored arrays equal the literal reference loop within 1e-5, on real footage (Big Buck
Bunny, an NTSC clip, a 640x272 clip) and on the synthetic sample, every family, last step included.

Image models: under ``image_frames=seed`` a step whose frame lies past the end of the stream takes the
video's last frame (the reference's is random: it reads its image steps in a shuffled order), every other
step is the reference loop's; under ``image_frames=bin_end`` every step is neuralset 0.4.0's loop's."""

from __future__ import annotations

import typing as tp
from pathlib import Path

import numpy as np
import pytest

from pipeline import launch_config
from pipeline import store as store_mod
from pipeline.embedding.adapters import adapter_class

from ..conftest import REAL, TINY
from ..reference_loop import reference_image_model, reference_image_model_bin_end, reference_video_model

pytestmark = pytest.mark.slow
REAL_NTSC = REAL["ntsc"]

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
    ("tiny-vit", dict(frequency="native"), ["bbb"]),  # 133 steps, 132 frames: the last step past the end
]
BIN_END_CASES: list[tuple[str, dict[str, tp.Any], list[str]]] = [
    ("tiny-vit", dict(frequency=2.0, image_frames="bin_end"), ["bars", "drift", "ntsc", "bbb"]),
    (
        "tiny-vit",
        dict(frequency=5.0, image_frames="bin_end", layers=[0.25, 1.0], token_aggregation="cat", batch_size=4),
        ["ntsc", "drift"],
    ),
    ("tiny-vit", dict(frequency=0.3, image_frames="bin_end"), ["bikes", "bbb"]),  # the last step: the one before
    ("tiny-vit", dict(frequency=0.1, image_frames="bin_end"), ["bars", "ntsc"]),  # max(1, round(0.25)): one step
    ("tiny-vit", dict(frequency="native", image_frames="bin_end"), ["bars", "bbb"]),
    ("tiny-clip", dict(frequency=2.0, image_frames="bin_end"), ["bars", "bbb"]),
    ("tiny-dinov2", dict(frequency=3.0, image_frames="bin_end", token_aggregation="first"), ["drift", "bikes"]),
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
    "image_frames",
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
        if kwargs["frequency"] == "native":  # moviepy's rate: 29.97002997 for the NTSC clip
            from moviepy import VideoFileClip

            assert attrs["frequency"] == pytest.approx(VideoFileClip(str(path)).fps, abs=1e-9)
            assert path.name != REAL_NTSC or attrs["frequency"] == pytest.approx(30000 / 1001, abs=1e-9)
        assert got.shape == expected.shape, path.name
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0, err_msg=path.name)


@pytest.mark.parametrize(("model", "fields", "names"), VIDEO_CASES + IMAGE_CASES + BIN_END_CASES)
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
            rule = kwargs.get("image_frames", "seed")
            kwargs = {k: v for k, v in kwargs.items() if k != "image_frames"}
            if rule == "bin_end":
                return reference_image_model_bin_end(video, model_dir, **kwargs)
            return reference_image_model(video, model_dir, past_end="last_frame", **kwargs)
        return reference_video_model(video, model_dir, family, **kwargs)

    check_against_reference(make_run, model, fields, videos(names), tmp_path / "videos", reference)


@pytest.mark.parametrize(("name", "frequency"), [("drift", 2.0), ("bbb", 3.0), ("bikes", 0.3)])
def test_a_seed_image_step_past_the_end_takes_the_videos_last_frame(
    make_run: tp.Any, models_dir: Path, videos: tp.Any, tmp_path: Path, name: str, frequency: float
) -> None:
    """The seed's last image step asks for a frame past the end of the stream. The reference gives it
    whichever frame moviepy read before (its steps are read in a shuffled order; read in time order, the
    previous step's frame); the pipeline gives it the video's last frame, and every other step as the
    reference loop does."""
    (path,) = videos([name])
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / path.name).symlink_to(path)
    run = make_run("tiny-vit", videos=str(folder), frequency=frequency)
    assert not launch_config(run).failed
    got, _ = store_mod.open(run.store).load_numpy(config=run.embed, video=path)
    model_dir = str(models_dir / "tiny-vit")
    in_order = reference_image_model(str(path), model_dir, frequency=frequency)
    last_frame = reference_image_model(str(path), model_dir, frequency=frequency, past_end="last_frame")
    np.testing.assert_allclose(got, last_frame, atol=1e-5, rtol=0)
    np.testing.assert_allclose(got[:, :-1], in_order[:, :-1], atol=1e-5, rtol=0)
    np.testing.assert_array_equal(in_order[:, -1], in_order[:, -2])  # read in order: the previous step's frame
    assert np.abs(got[:, -1] - in_order[:, -1]).max() > 1e-3  # the video's last frame is another frame
