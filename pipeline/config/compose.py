"""One way to name a config, for every entry point (the launch command line, ``pipeline.embed``,
``Store.load``, ``pipeline.align`` and its command): the launch command's words with the names of ``conf/``
(``"model=tiny_videomae layers=0.25"``), or the equivalent mapping
(``{"model": "tiny_videomae", "layers": 0.25}``; a group given as a mapping sets its fields,
``{"model": {"name": "/models/vm", "family": "videomae"}}``), composed by Hydra as the launch command does.

The words are checked before Hydra composes them (``check_overrides``), so that every configuration error, a
misspelt field or an unknown model or executor included, is a ``ConfigError`` (exit 2 in the commands) with our
words: a "did you mean" for a field, the list of choices for a config group. ``compose_run_config`` builds the
``RunConfig`` of such words with Hydra's compose API (one at a time: Hydra's state is global; a caller's own
Hydra, inside ``@hydra.main``, is kept); ``config_words`` turns any spelling into words;
``embed_config_of`` gives the ``EmbedConfig`` a spelling names; ``hydra_value`` writes a Python value as an
override's value."""

from __future__ import annotations

import functools
import numbers
import os
import re
import threading
import typing as tp
from pathlib import Path

import yaml

from pipeline.common.text import did_you_mean
from pipeline.config.embed import EmbedConfig, ModelSpec
from pipeline.config.errors import ConfigError
from pipeline.config.run import CONF_DIR, ExecutorConfig, RunConfig, build_run_config

_HYDRA = threading.Lock()

ConfigLike = str | tp.Mapping[str, tp.Any] | EmbedConfig
"""How a config is named: the launch command's words in one string, their mapping, or an ``EmbedConfig``."""

GROUPS = ("model", "executor")
"""Config groups: ``model=NAME`` picks ``conf/model/NAME.yaml``; their fields are set as ``model.name=...``."""


def _nested_fields() -> dict[str, set[str]]:
    return {"model": set(ModelSpec.model_fields), "executor": set(ExecutorConfig.model_fields)}


def _choices(conf_dir: Path, group: str) -> list[str]:
    return sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))


def _unknown(what: str, known: list[str]) -> ConfigError:
    hint = did_you_mean(what.rpartition(".")[2], known)
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
                    hint = did_you_mean(value, choices)
                    raise ConfigError(
                        f"{head}: no {head} {value!r} in conf/{head}/ ({hint}choices: {', '.join(choices)})"
                    )


def compose_run_config(words: tp.Sequence[str], conf_dir: Path | None = None) -> RunConfig:
    """The ``RunConfig`` that ``python -m pipeline.launch WORDS`` runs: the words checked
    (``check_overrides``), ``conf/`` composed with them by Hydra, the result validated
    (``build_run_config``). Every error is a ``ConfigError`` naming the field. No multirun (a sweep's
    ``a,b`` values are refused by Hydra's compose API)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    conf_dir = CONF_DIR if conf_dir is None else conf_dir
    words = list(words)
    check_overrides(words, conf_dir)
    with _HYDRA:  # Hydra's compose API is one global state: one composition at a time, the caller's kept
        outer = GlobalHydra.instance().hydra if GlobalHydra.instance().is_initialized() else None
        GlobalHydra.instance().clear()
        try:
            with initialize_config_dir(config_dir=str(conf_dir), version_base=None):
                cfg = compose("config", overrides=words)
        except Exception as e:  # noqa: BLE001 - Hydra's parse and composition errors have no common base
            raise ConfigError(f"cannot compose {' '.join(words)!r} from {conf_dir}: {e}") from None
        finally:
            if outer is not None:  # inside a @hydra.main app: its Hydra stays as it was
                GlobalHydra.instance().initialize(outer)
    try:
        flat = tp.cast(dict[str, tp.Any], OmegaConf.to_container(cfg, resolve=True))
    except Exception as e:  # noqa: BLE001 - an interpolation that does not resolve
        raise ConfigError(f"cannot resolve {' '.join(words)!r}: {e}") from None
    return build_run_config(flat)


def hydra_value(value: tp.Any) -> str:
    """``value`` as the value of a Hydra override, read back as the same value: strings (and paths) quoted,
    with Hydra's and OmegaConf's escapes (a quote, backslashes before it, ``${``), lists and dicts
    element by element, ``null``, ``true`` / ``false``, numbers (numpy's included) as Python writes them."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return repr(float(value))
    if isinstance(value, (str, os.PathLike)):
        text = re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", os.fspath(value))  # OmegaConf
        text = re.sub(r"(\\+)(?='|$)", r"\1\1", text).replace("'", "\\'")  # Hydra's quoted string
        return f"'{text}'"
    if isinstance(value, tp.Mapping):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    raise ConfigError(f"cannot write {value!r} ({type(value).__name__}) as a configuration value")


def group_words(group: str, value: str | tp.Mapping[str, tp.Any] | None) -> list[str]:
    """``model=NAME`` (a choice of ``conf/<group>/``), or one ``group.field=value`` word per field of a
    mapping (the executor's ``name``, a choice, picks its file; a model given by fields is a hub or local
    model unless it says ``tiny``)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [f"{group}={value}"]
    if not isinstance(value, tp.Mapping):
        raise ConfigError(f"{group}: a name in conf/{group}/ or a mapping of its fields (got {value!r})")
    fields = dict(value)
    words = []
    if group == "executor" and "name" in fields:
        words.append(f"executor={fields.pop('name')}")
    if group == "model":
        fields = {"tiny": False, "trust_remote_code": False, **fields}
    return words + [f"{group}.{k}={hydra_value(v)}" for k, v in fields.items()]


def config_words(config: ConfigLike) -> list[str]:
    """The launch command's words that name ``config``: a string split as a shell would, a mapping word by
    word (a config group by name or by its fields, ``group_words``)."""
    import shlex

    if isinstance(config, EmbedConfig):
        raise ConfigError("config: an EmbedConfig is a config already; it has no words")
    if isinstance(config, str):
        return shlex.split(config)
    if isinstance(config, tp.Mapping):
        words: list[str] = []
        for key, value in config.items():
            words += group_words(key, value) if key in GROUPS else [f"{key}={hydra_value(value)}"]
        return words
    if isinstance(config, (list, tuple)):
        raise ConfigError(
            f"config: a list names several configs (feature spaces, in pipeline.align); one config is a string "
            f"of launch words or their mapping (got {config!r})"
        )
    raise ConfigError(
        f'config: launch words ("model=tiny_videomae layers=0.25"), their mapping '
        f"({{'model': 'tiny_videomae', 'layers': 0.25}}) or an EmbedConfig (got {config!r})"
    )


def embed_config_of(config: ConfigLike) -> EmbedConfig:
    """The ``EmbedConfig`` that ``config`` names, composed as the launch command composes its words (the
    model's identity left unresolved: a reader finds it in the store by name and fields)."""
    if isinstance(config, EmbedConfig):
        return config
    return _composed_embed(tuple(config_words(config))).model_copy(deep=True)


@functools.lru_cache(maxsize=256)
def _composed_embed(words: tuple[str, ...]) -> EmbedConfig:
    """A reader names the same config for every video it loads: composed once per process (a copy handed out)."""
    return compose_run_config(words).embed
