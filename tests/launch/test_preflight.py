"""Preflight, directly: what it checks before any job is submitted, and the identity it resolves."""

from __future__ import annotations

import typing as tp
from pathlib import Path

import pytest

from pipeline.config import ConfigError
from pipeline.launch.preflight import model_config, prepare_model


def test_a_tiny_model_is_built_and_its_identity_is_its_files(make_run: tp.Any) -> None:
    run = make_run()
    bare = run.model_copy(
        update={"embed": run.embed.model_copy(update={"model": run.embed.model.model_copy(update={"identity": None})})}
    )
    prepared = prepare_model(bare)
    assert prepared.embed.model.identity == run.embed.model.identity
    assert prepared.embed.model.identity is not None and prepared.embed.model.identity.startswith("content-")
    assert model_config(prepared).model_type == "videomae"


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"num_frames": 5}, r"num_frames: tiny-videomae takes exactly 16 frames per clip"),
        (
            {"model": {"name": "tiny-nope", "family": "videomae", "tiny": True}},
            r"model.name: no tiny model 'tiny-nope'",
        ),
    ],
)
def test_a_config_the_model_cannot_take_is_refused_naming_the_field(
    make_run: tp.Any, fields: dict[str, tp.Any], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        prepare_model(make_run(**fields) if "model" not in fields else _unresolved(make_run, fields))


def _unresolved(make_run: tp.Any, fields: dict[str, tp.Any]) -> tp.Any:
    run = make_run()
    return run.model_copy(
        update={"embed": run.embed.model_copy(update={"model": type(run.embed.model)(**fields["model"])})}
    )


def test_a_hub_name_absent_offline_fails_at_once_with_our_message(
    make_run: tp.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run = _unresolved(make_run, {"model": {"name": "nobody/no-such-model", "family": "videomae"}})
    with pytest.raises(
        ConfigError,
        match=r"model.name: .nobody/no-such-model. is neither a local folder nor in the Hugging Face cache, and",
    ):
        prepare_model(run)


FAMILIES = [
    "tiny-videomae",
    "tiny-timesformer",
    "tiny-vivit",
    "tiny-vjepa2",
    "tiny-xclip",
    "tiny-llava_next_video",
    "tiny-phi4_multimodal",
    "tiny-vit",
    "tiny-clip",
    "tiny-dinov2",
]


@pytest.mark.parametrize("model", FAMILIES)
def test_a_field_set_to_what_the_family_takes_anyway_keeps_the_uid(make_run: tp.Any, model: str) -> None:
    """One computation, one UID: the model's own frame count, a clip of one step and every default spelled
    out are the config left alone; a value that changes the numbers is another UID."""
    extra = {"layer_type": "USER: <video>"} if "llava" in model else {}
    base = prepare_model(make_run(model, **extra))
    frames = base.embed.model.default_num_frames
    assert (frames is not None) == base.embed.is_video
    spelled: list[dict[str, tp.Any]] = [
        {"clip_duration": 0.5},  # one step at the default 2 Hz
        {"frequency": 4.0, "clip_duration": 0.25},
        {"timing": "reference", "dtype": "float32", "token_aggregation": "mean", "layer_aggregation": "mean"},
        {"layers": [2 / 3], "max_imsize": None, "use_audio": True, "preprocess_device": "cpu"},
    ]
    if frames is not None:
        spelled.append({"num_frames": frames})
    for fields in spelled:
        same = prepare_model(make_run(model, **extra, **fields))
        expected = base if "frequency" not in fields else prepare_model(make_run(model, **extra, frequency=4.0))
        assert same.embed.uid() == expected.embed.uid(), fields
    if base.embed.is_video:
        assert prepare_model(make_run(model, **extra, clip_duration=1.0)).embed.uid() != base.embed.uid()


def test_a_reader_that_spells_out_the_frame_count_finds_the_launchers_entries(make_run: tp.Any) -> None:
    from pipeline.config import EmbedConfig
    from pipeline.store import Store

    run = prepare_model(make_run())
    store = Store(run.store)
    store.ensure()
    cuid = store.ensure_config(run.embed)
    fields = {"model": {"name": "tiny-videomae", "family": "videomae", "tiny": True}, "num_frames": 16}
    assert store.find_config(EmbedConfig.model_validate(fields)) == cuid
    with pytest.raises(KeyError, match="no config of 'tiny-videomae'"):
        store.find_config(EmbedConfig.model_validate({**fields, "num_frames": 8}))


def test_remote_code_that_others_can_write_is_refused(make_run: tp.Any, models_dir: Path, tmp_path: Path) -> None:
    """With trust_remote_code the model's code runs in every job: a folder, code file or config that the
    group can write is refused before any job, naming it; the same folder made the owner's alone passes."""
    import shutil

    from pipeline.launch.preflight import check_remote_code

    folder = tmp_path / "remote-model"
    shutil.copytree(models_dir / "tiny-videomae", folder)
    (folder / "modeling_custom.py").write_text("# the model's own code\n")
    for path in (folder, *folder.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    check_remote_code(folder)
    (folder / "modeling_custom.py").chmod(0o664)
    with pytest.raises(ConfigError, match=r"modeling_custom.py is writable by its group.*chmod go-w"):
        check_remote_code(folder)
    (folder / "modeling_custom.py").chmod(0o644)
    folder.chmod(0o775)
    with pytest.raises(ConfigError, match=r"remote-model is writable by its group"):
        check_remote_code(folder)
    run = make_run()
    spec = run.embed.model.model_copy(update={"name": str(folder), "tiny": False, "trust_remote_code": True})
    run = run.model_copy(update={"embed": run.embed.model_copy(update={"model": spec})})
    with pytest.raises(ConfigError, match="model.trust_remote_code"):
        prepare_model(run)
