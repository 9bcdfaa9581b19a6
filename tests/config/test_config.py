from __future__ import annotations

import typing as tp
from pathlib import Path

import pytest

from pipeline.config import ConfigError, build_run_config

BASE: dict[str, tp.Any] = {"model": {"name": "tiny-videomae", "family": "videomae", "tiny": True}, "videos": "v"}


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"frequency": 0}, "frequency: must be a positive number"),
        ({"frequency": "fast"}, "frequency: "),
        ({"clip_duration": -1.0}, "clip_duration: must be a positive number"),
        ({"num_frames": 0}, "num_frames: must be at least 1"),
        ({"max_imsize": 0}, "max_imsize: must be at least 1"),
        ({"layers": [0.2, 1.5]}, "layers: relative depths must lie in \\[0, 1\\]"),
        ({"layers": []}, "layers: needs at least one"),
        ({"layer_aggregation": "median"}, "layer_aggregation: "),
        ({"token_aggregation": "avg"}, "token_aggregation: "),
        ({"dtype": "float64"}, "dtype: "),
        ({"batch_size": 0}, "batch_size: must be at least 1"),
        ({"device": "tpu"}, "device: must be auto, cpu"),
        ({"frequncy": 2.0}, "frequncy: Extra inputs are not permitted"),
    ],
)
def test_bad_values_name_their_field(fields: dict[str, tp.Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_run_config({**BASE, **fields})


def test_native_frequency_and_integer_values_are_accepted() -> None:
    run = build_run_config({**BASE, "frequency": "native", "layers": [0, 1], "clip_duration": 2})
    assert run.embed.frequency == "native" and run.embed.layers == [0.0, 1.0] and run.embed.clip_duration == 2.0


def test_every_field_can_be_overridden_from_the_command_line() -> None:
    """Hydra refuses an override of a key the config does not hold: each field has a line in conf/."""
    from pathlib import Path

    import yaml

    from pipeline.config import EmbedConfig, RunConfig

    conf = yaml.safe_load((Path(__file__).resolve().parents[2] / "conf" / "config.yaml").read_text())
    fields = (set(EmbedConfig.model_fields) | set(RunConfig.model_fields)) - {"embed", "model", "executor"}
    assert fields <= set(conf), sorted(fields - set(conf))


def test_conf_defaults_are_the_pydantic_defaults() -> None:
    """One home per default: a field left out of a reader's config means what the launcher's YAML says."""
    from pathlib import Path

    import yaml

    from pipeline.config import EmbedConfig, ExecutorConfig, RunConfig

    conf_dir = Path(__file__).resolve().parents[2] / "conf"
    conf = yaml.safe_load((conf_dir / "config.yaml").read_text())
    models = {"embed", "model", "executor", "videos"}  # videos: the YAML names the bundled sample; required here
    for name, field in {**EmbedConfig.model_fields, **RunConfig.model_fields}.items():
        if name not in models:
            assert conf[name] == field.default, (
                f"{name}: conf/config.yaml says {conf[name]!r}, the model {field.default!r}"
            )
    local = yaml.safe_load((conf_dir / "executor" / "local.yaml").read_text())
    for name, value in local.items():
        assert value == ExecutorConfig.model_fields[name].default, f"executor.{name}"


def test_image_frames_enters_the_uid_of_image_models_only_and_only_when_set() -> None:
    from pipeline.config import FORMAT_VERSION, IMAGE_FORMAT_VERSION, EmbedConfig

    def uid(family: str, **fields: tp.Any) -> str:
        model = {"name": f"tiny-{family}", "family": family, "tiny": True, "identity": "files-0"}
        return EmbedConfig.model_validate({"model": model, **fields}).uid()

    assert uid("image", image_frames="seed") == uid("image")
    assert uid("image", image_frames="bin_end") != uid("image")
    assert "image_frames=bin_end" in uid("image", image_frames="bin_end")
    assert uid("clip", image_frames="bin_end") != uid("clip")
    assert uid("videomae", image_frames="bin_end") == uid("videomae")  # video models ignore it
    with pytest.raises(ConfigError, match="image_frames: "):
        build_run_config({**BASE, "image_frames": "middle"})
    image = EmbedConfig(model={"name": "v", "family": "image"}).canonical()
    video = EmbedConfig(model={"name": "v", "family": "videomae"}).canonical()
    assert (image["format_version"], video["format_version"]) == (IMAGE_FORMAT_VERSION, FORMAT_VERSION) == (4, 3)


def test_allow_tf32_is_an_option_outside_the_default_and_in_the_uid_when_set(make_run: tp.Any) -> None:
    """Off by default (PyTorch's float32 matrix products, the reference's numbers, the UID unchanged); on,
    TensorFloat-32 on a GPU only, in the UID; refused for a dtype that never computes in TF32. On the CPU it
    changes nothing: the same numbers."""
    import numpy as np
    import torch

    from pipeline.embedding.engine import Embedder, matmul_precision

    default, tf32 = make_run(), make_run(allow_tf32=True)
    assert "allow_tf32" not in default.embed.canonical() and default.embed.uid() != tf32.embed.uid()
    assert "allow_tf32" in tf32.embed.uid()
    with pytest.raises(ConfigError, match="allow_tf32: only float32"):
        build_run_config({**BASE, "allow_tf32": True, "dtype": "bfloat16"})
    assert matmul_precision(tf32.embed, "cuda:1") == "high"
    assert matmul_precision(tf32.embed, "cpu") == matmul_precision(default.embed, "cuda") == "highest"
    video = str(next(iter(sorted(Path(default.videos).glob("*.mp4")))))
    plain = Embedder(default.embed, default.model_source()).embed(video).data
    asked = Embedder(tf32.embed, tf32.model_source())
    assert torch.get_float32_matmul_precision() == "highest"
    np.testing.assert_array_equal(asked.embed(video).data, plain)
