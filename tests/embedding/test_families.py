"""Every family with a tiny offline model runs through the pipeline: shapes and finite values."""

from __future__ import annotations

import typing as tp
from pathlib import Path

import numpy as np
import pytest

from pipeline import launch_config
from pipeline import store as store_mod
from pipeline.config import ConfigError, build_run_config
from pipeline.embedding.adapters import pixel_values

HIDDEN = 32
CASES: list[tuple[str, dict[str, tp.Any], tuple[int, ...]]] = [
    ("tiny-videomae", {}, (HIDDEN,)),
    ("tiny-timesformer", {}, (HIDDEN,)),
    ("tiny-vivit", {}, (HIDDEN,)),
    ("tiny-vjepa2", {"num_frames": 8}, (HIDDEN,)),
    ("tiny-vjepa2", {}, (HIDDEN,)),  # the family default: 64 frames per clip
    ("tiny-xclip", {}, (HIDDEN,)),
    ("tiny-xclip", {"layer_type": "mit", "token_aggregation": "none"}, (4, HIDDEN)),  # tokens = frames
    ("tiny-llava_next_video", {"layer_type": "USER: <video> ASSISTANT:", "num_frames": 4}, (HIDDEN,)),
    ("tiny-phi4_multimodal", {"num_frames": 2, "use_audio": False}, (HIDDEN,)),
    ("tiny-vit", {}, (HIDDEN,)),
    ("tiny-clip", {"token_aggregation": "none"}, (17, HIDDEN)),
    ("tiny-dinov2", {"layers": "all", "layer_aggregation": "none"}, (5, HIDDEN)),
]


@pytest.mark.parametrize(("model", "fields", "feature_shape"), CASES)
def test_family_runs_end_to_end(
    make_run: tp.Any, sample_dir: Path, model: str, fields: dict[str, tp.Any], feature_shape: tuple[int, ...]
) -> None:
    run = make_run(model, frequency=2.0, **fields)
    summary = launch_config(run)
    assert not summary.failed and len(summary.computed) == 3
    reader = store_mod.open(run.store)
    for video in sorted(sample_dir.glob("*.mp4")):
        arr = reader.load(config=run.embed, video=video)
        n_steps = int(round(arr.attrs["duration"] * 2.0))
        assert arr.shape == (n_steps, *feature_shape)
        assert np.isfinite(arr.values).all()
        assert float(arr.values.std()) > 0
        np.testing.assert_allclose(arr["time"].values, np.arange(n_steps) / 2.0)


def test_phi4_runs_with_and_without_the_clips_audio(make_run: tp.Any, videos: tp.Any, tmp_path: Path) -> None:
    """Frames as images of the chat prompt, and with ``use_audio`` each clip's audio: both land, apart."""
    folder = tmp_path / "with_audio"
    folder.mkdir()
    for path in videos(["orbit", "bbb"]):
        (folder / path.name).symlink_to(path)
    runs = [make_run("tiny-phi4_multimodal", videos=str(folder), frequency=1.0, use_audio=a) for a in (False, True)]
    assert runs[0].embed.uid() != runs[1].embed.uid()
    arrays = []
    for run in runs:
        summary = launch_config(run)
        assert not summary.failed and len(summary.computed) == 2
        arrays.append(store_mod.open(run.store).load(config=run.embed, video=folder / "orbit_30fps_audio.mp4"))
    assert arrays[0].shape == arrays[1].shape == (4, HIDDEN)
    assert np.isfinite(arrays[1].values).all()
    assert not np.allclose(arrays[0].values, arrays[1].values)  # the audio tokens change the states


def test_xclip_without_mit_reads_the_last_frame_of_each_clip(make_run: tp.Any, sample_dir: Path) -> None:
    from pipeline.embedding.engine import Embedder

    run = make_run("tiny-xclip", token_aggregation="none", layers="all", layer_aggregation="none")
    embedder = Embedder(run.embed, run.model_source())
    frames = [np.full((48, 64, 3), v, np.uint8) for v in (10, 80, 150, 220)]
    states = embedder.adapter.hidden_states([frames])
    alone = embedder.adapter.hidden_states([[frames[-1]] * 4])
    assert states.shape[:3] == (1, 5, 17)
    assert not np.allclose(states.numpy(), alone.numpy())  # cross-frame attention sees the whole clip
    assert states.shape == alone.shape


@pytest.mark.parametrize(
    ("model", "num_frames", "takes"),
    [
        ("tiny-videomae", 17, "exactly 16"),
        ("tiny-videomae", 8, "exactly 16"),  # passed validation once, then failed every video at run time
        ("tiny-timesformer", 2, "exactly 4"),
        ("tiny-vivit", 3, "exactly 4"),
        ("tiny-xclip", 8, "exactly 4"),
        ("tiny-vjepa2", 65, "1 to 64"),
        ("tiny-llava_next_video", 17, "1 to 16"),
        ("tiny-phi4_multimodal", 5, "1 to 4"),
    ],
)
def test_a_frame_count_the_model_cannot_take_fails_before_submission(
    make_run: tp.Any, model: str, num_frames: int, takes: str
) -> None:
    extra = {"layer_type": "USER: <video>"} if "llava" in model else {}
    run = make_run(model, num_frames=num_frames, **extra)
    with pytest.raises(ConfigError, match=f"num_frames: .* takes {takes} frames per clip .*got {num_frames}"):
        launch_config(run)
    assert not Path(run.store).exists()


def test_the_launcher_exits_2_on_a_frame_count_before_submitting(tmp_path: Path, models_dir: Path) -> None:
    from ..conftest import run_cli

    store = tmp_path / "store.zarr"
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "a.mp4").write_bytes(b"not read")
    done = run_cli(
        "model=tiny_videomae", "num_frames=8", f"videos={videos}", f"store={store}", f"models_dir={models_dir}"
    )
    assert done.returncode == 2, done.stderr
    assert "num_frames: tiny-videomae takes exactly 16 frames per clip" in done.stderr
    assert not store.exists()


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


def test_a_pil_backed_processor_is_refused(models_dir: Path) -> None:
    """Without torchvision, transformers falls back to PIL processors whose numbers differ: refused."""
    import transformers

    from pipeline.embedding.adapters import require_torchvision_backend

    pil = transformers.VideoMAEImageProcessorPil.from_pretrained(models_dir / "tiny-videomae")
    with pytest.raises(RuntimeError, match="VideoMAEImageProcessorPil is not torchvision-backed"):
        require_torchvision_backend(pil, "tiny-videomae")
    require_torchvision_backend(transformers.AutoProcessor.from_pretrained(models_dir / "tiny-videomae"), "x")


@pytest.mark.parametrize("model", ["tiny-videomae", "tiny-timesformer", "tiny-vivit", "tiny-vjepa2", "tiny-xclip"])
def test_framewise_preprocessing_equals_the_processor_on_clips(make_run: tp.Any, model: str) -> None:
    """Preprocessing each frame once and stacking gives the processor's own clip output, bit for bit."""
    import torch

    from pipeline.embedding.engine import Embedder

    embedder = Embedder(make_run(model).embed, make_run(model).model_source())
    adapter, nf = embedder.adapter, embedder.num_frames or 0
    assert adapter.framewise
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (45, 70, 3), dtype=np.uint8) for _ in range(nf + 2)]
    frames.append(np.zeros((45, 70, 3), np.uint8))  # a uniform frame
    clips = [frames[0:nf], frames[3 : nf + 3]]
    whole = pixel_values(adapter.processor(**adapter.processor_inputs(clips, None)))
    per_frame = adapter.preprocess_frames(frames)
    assembled = torch.stack([per_frame[0:nf], per_frame[3 : nf + 3]])
    assert torch.equal(whole, assembled)
    torch.testing.assert_close(adapter.hidden_states(clips), adapter.hidden_states_from_pixels(assembled))


@pytest.mark.parametrize("model", ["tiny-vit", "tiny-clip", "tiny-dinov2"])
def test_framewise_preprocessing_equals_the_processor_on_images(make_run: tp.Any, model: str) -> None:
    import torch

    from pipeline.embedding.engine import Embedder

    adapter = Embedder(make_run(model).embed, make_run(model).model_source()).adapter
    rng = np.random.default_rng(1)
    frames = [[rng.integers(0, 255, (45, 70, 3), dtype=np.uint8)] for _ in range(3)]
    whole = pixel_values(adapter.processor(**adapter.processor_inputs(frames, None)))
    assert torch.equal(whole, adapter.preprocess_frames([f[0] for f in frames]))


def test_vjepa2_runs_its_encoder_alone_with_the_full_forwards_states(make_run: tp.Any) -> None:
    """V-JEPA 2's predictor never runs (a forward hook counts its calls), and the states equal those of
    the model's full forward, predictor included, bit for bit (the oracle tests check the numbers too)."""
    import torch

    from pipeline.embedding.engine import Embedder

    run = make_run("tiny-vjepa2", num_frames=8)
    adapter = Embedder(run.embed, run.model_source()).adapter
    calls: list[int] = []
    hook = adapter.model.predictor.register_forward_hook(lambda *_: calls.append(1))
    rng = np.random.default_rng(2)
    clips = [[rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(8)] for _ in range(2)]
    try:
        ours = adapter.hidden_states(clips)
    finally:
        hook.remove()
    assert calls == []
    inputs = adapter.prepare(adapter.processor(**adapter.processor_inputs(clips, None)))
    inputs["pixel_values_videos"] = inputs.pop("pixel_values", inputs.get("pixel_values_videos"))
    with torch.inference_mode():
        full = adapter.model(**inputs, output_hidden_states=True)
    assert full.predictor_output is not None
    assert torch.equal(ours, adapter.read_states(full, 2))
