"""Preflight, directly: what it checks before any job is submitted, and the identity it resolves."""

from __future__ import annotations

import typing as tp

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
    assert prepared.embed.model.identity is not None and prepared.embed.model.identity.startswith("files-")
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
    with pytest.raises(ConfigError, match=r"model.name: cannot load the config of 'nobody/no-such-model'"):
        prepare_model(run)
