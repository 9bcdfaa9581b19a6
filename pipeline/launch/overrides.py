"""The launcher's command line checked before Hydra composes it, so that every configuration error, a
misspelt field or an unknown model or executor included, is a ``ConfigError`` (exit 2) with our words:
a "did you mean" for a field, the list of choices for a config group."""

from __future__ import annotations

import difflib
from pathlib import Path

import yaml

from pipeline.config import ConfigError, ExecutorConfig, ModelSpec

GROUPS = ("model", "executor")
"""Config groups: ``model=NAME`` picks ``conf/model/NAME.yaml``; their fields are set as ``model.name=...``."""


def _nested_fields() -> dict[str, set[str]]:
    return {"model": set(ModelSpec.model_fields), "executor": set(ExecutorConfig.model_fields)}


def _choices(conf_dir: Path, group: str) -> list[str]:
    return sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))


def _unknown(what: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(what.rpartition(".")[2], known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return ConfigError(f"{what}: no such field ({hint}fields: {', '.join(known)})")


def check_overrides(args: list[str], conf_dir: Path) -> None:
    """Raise ``ConfigError`` for an override that names no field or no choice of a config group.
    Flags (``-m``, ``--cfg``...) and ``hydra.*`` overrides are Hydra's own and pass."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    words = [a for a in args if not a.startswith("-")]
    try:
        overrides = OverridesParser.create().parse_overrides(words)
    except HydraException as e:
        raise ConfigError(f"cannot read the command line: {e}") from None
    top = sorted({*yaml.safe_load((conf_dir / "config.yaml").read_text())} - {"defaults", "hydra"} | set(GROUPS))
    nested = _nested_fields()
    for override in overrides:
        key = override.key_or_group
        head, _, rest = key.partition(".")
        if head == "hydra":
            continue
        if head not in top:
            raise _unknown(key, top)
        if rest and head in nested and rest.split(".")[0] not in nested[head]:
            raise _unknown(key, sorted(nested[head]))
        if head in GROUPS and not rest and not override.is_delete():
            values = (
                list(override.sweep_string_iterator())
                if override.is_sweep_override()
                else [override.get_value_element_as_str()]
            )
            choices = _choices(conf_dir, head)
            for value in values:
                if value not in choices:
                    close = difflib.get_close_matches(value, choices, n=1)
                    hint = f"did you mean {close[0]!r}? " if close else ""
                    raise ConfigError(
                        f"{head}: no {head} {value!r} in conf/{head}/ ({hint}choices: {', '.join(choices)})"
                    )
