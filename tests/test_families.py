"""Every family with a tiny offline model runs through the pipeline: shapes and finite values."""

from __future__ import annotations

import importlib.util
import typing as tp
from pathlib import Path

import numpy as np
import pytest

from pipeline import store as store_mod
from pipeline.config import ConfigError, build_run_config
from pipeline.launch import launch, prepare_model

HIDDEN = 32
CASES: list[tuple[str, dict[str, tp.Any], tuple[int, ...]]] = [
    ("tiny-videomae", {}, (HIDDEN,)),
    ("tiny-timesformer", {}, (HIDDEN,)),
    ("tiny-vivit", {}, (HIDDEN,)),
    ("tiny-vjepa2", {"num_frames": 8}, (HIDDEN,)),
    ("tiny-vjepa2", {}, (HIDDEN,)),  # the family default: 64 frames per clip
    ("tiny-xclip", {}, (HIDDEN,)),
    ("tiny-xclip", {"layer_type": "mit", "token_aggregation": "none"}, (4, HIDDEN)),  # tokens = frames
    ("tiny-vit", {}, (HIDDEN,)),
    ("tiny-clip", {"token_aggregation": "none"}, (17, HIDDEN)),
    ("tiny-dinov2", {"layers": "all", "layer_aggregation": "none"}, (5, HIDDEN)),
]


@pytest.mark.parametrize(("model", "fields", "feature_shape"), CASES)
def test_family_runs_end_to_end(
    make_run: tp.Any, sample_dir: Path, model: str, fields: dict[str, tp.Any], feature_shape: tuple[int, ...]
) -> None:
    run = make_run(model, frequency=2.0, **fields)
    summary = launch(run)
    assert not summary.failed and len(summary.computed) == 3
    reader = store_mod.open(run.store)
    for video in sorted(sample_dir.glob("*.mp4")):
        arr = reader.load(config=run.embed, video=video)
        n_steps = int(round(arr.attrs["duration"] * 2.0))
        assert arr.shape == (*feature_shape, n_steps)
        assert np.isfinite(arr.values).all()
        assert float(arr.values.std()) > 0
        np.testing.assert_allclose(arr["time"].values, np.arange(n_steps) / 2.0)


def test_xclip_without_mit_reads_the_last_frame_of_each_clip(make_run: tp.Any, sample_dir: Path) -> None:
    from pipeline.engine import Embedder

    run = make_run("tiny-xclip", token_aggregation="none", layers="all", layer_aggregation="none")
    embedder = Embedder(run.embed, run.model_source())
    frames = [np.full((48, 64, 3), v, np.uint8) for v in (10, 80, 150, 220)]
    states = embedder.adapter.hidden_states([frames])
    alone = embedder.adapter.hidden_states([[frames[-1]] * 4])
    assert states.shape[:3] == (1, 5, 17)
    assert not np.allclose(states.numpy(), alone.numpy())  # cross-frame attention sees the whole clip
    assert states.shape == alone.shape


def test_num_frames_above_the_model_maximum_fails_before_submission(make_run: tp.Any) -> None:
    run = make_run("tiny-videomae", num_frames=17)
    with pytest.raises(ConfigError, match="num_frames: .* at most 16"):
        launch(run)
    assert not Path(run.store).exists()


@pytest.mark.parametrize(
    ("family", "fields", "match"),
    [
        ("llava_next_video", {"layer_type": "USER: hello"}, "layer_type: .*<video>"),
        ("videomae", {"layer_type": "mit"}, "layer_type: the videomae family has no layer type"),
        ("xclip", {"layer_type": "vision"}, "layer_type: X-CLIP accepts"),
        ("nosuch", {}, "model.family: unknown family 'nosuch'"),
    ],
)
def test_family_rules_are_checked_at_the_boundary(family: str, fields: dict[str, tp.Any], match: str) -> None:
    flat = {"model": {"name": "some/model", "family": family}, "videos": "x", **fields}
    with pytest.raises(ConfigError, match=match):
        build_run_config(flat)


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="only meaningful without torchvision")
def test_families_needing_torchvision_say_so(make_run: tp.Any) -> None:
    """LLaVA-NeXT-Video and Phi-4 processors exist only as torchvision backends in transformers 5."""
    import transformers

    with pytest.raises(ImportError, match="(?i)torchvision"):
        transformers.LlavaNextVideoVideoProcessor()
    run = make_run("tiny-videomae")
    prepare_model(run)  # the offline families are unaffected
