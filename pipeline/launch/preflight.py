"""Checks made before any job is submitted: the model's config is found (fast offline), the frame count
fits it, and the model's identity (the content of the files that load) is resolved for the config UID."""

from __future__ import annotations

import functools
import typing as tp
from pathlib import Path

from pipeline.common.env import hub_offline
from pipeline.config import ConfigError, EmbedConfig, RunConfig


def prepare_model(run: RunConfig) -> RunConfig:
    """Build a tiny model if asked, check ``num_frames`` against the model's config, and return ``run`` with
    the model's identity resolved: every job loads, and every entry is keyed by, that snapshot."""
    from pipeline.launch.identity import resolve_content, with_alias
    from pipeline.testing.tiny import TINY_FAMILIES, ensure_tiny_model

    spec = run.embed.model
    if spec.tiny:
        kind = spec.name.removeprefix("tiny-")
        if kind not in TINY_FAMILIES:
            raise ConfigError(f"model.name: no tiny model {spec.name!r} (known: tiny-{', tiny-'.join(TINY_FAMILIES)})")
        ensure_tiny_model(kind, run.models_dir)
    if spec.trust_remote_code and Path(run.model_source()).is_dir():
        check_remote_code(Path(run.model_source()))
    hf_config = model_config(run)  # errors in the config before the store is made
    run.embed.frames_per_clip(hf_config)
    online = not Path(run.model_source()).exists() and not hub_offline() and hub_reachable()
    run = resolve_content(run, online=online)
    if run.embed.model.commit is not None:  # the config of the commit the jobs load (the cache's main may lag)
        hf_config = model_config(run)
        run.embed.frames_per_clip(hf_config)
    spec = run.embed.model
    spec = spec.model_copy(update={"default_num_frames": _without_num_frames(run.embed).frames_per_clip(hf_config)})
    run = run.model_copy(update={"embed": run.embed.model_copy(update={"model": spec})})
    return with_alias(run, online=online)


def check_remote_code(folder: Path) -> None:
    """With ``trust_remote_code`` the model's ``.py`` files run in every job, named by its configs: refuse
    a folder, such a file, or a folder above one up to two levels (a hub cache's ``snapshots/`` and
    ``models--org--name/``; sticky folders such as ``/tmp`` excepted), or transformers' module cache where
    the code is copied to and imported from, that anyone but its owner can write: a lab member could put
    their code there and have it run as you on the cluster."""
    import stat

    from transformers.utils import HF_MODULES_CACHE

    code = [p.resolve() for p in sorted(folder.rglob("*.py"))]
    configs = [p.resolve() for p in sorted(folder.glob("*.json"))]
    top = folder.resolve()
    places = [top, top.parent, top.parent.parent, *code, *configs, *(f.parent for f in code + configs)]
    modules = Path(HF_MODULES_CACHE)
    places += [m for m in (modules, modules / "transformers_modules") if m.exists()]
    for where in dict.fromkeys(places):
        mode = where.stat().st_mode
        if mode & (stat.S_IWGRP | stat.S_IWOTH) and not (where.is_dir() and mode & stat.S_ISVTX):
            who = "its group" if mode & stat.S_IWGRP else "everyone"
            raise ConfigError(
                f"model.trust_remote_code: {where} is writable by {who}, and the model's code runs in every job: "
                f"whoever can write it can run code as you; chmod go-w {where} (or copy the model to a folder of "
                "your own, and set HF_MODULES_CACHE to one of your own)"
            )


def _without_num_frames(embed: EmbedConfig) -> EmbedConfig:
    return embed.model_copy(update={"num_frames": None})


def model_config(run: RunConfig) -> tp.Any:
    """The model's transformers config: a local folder or the hub cache first; the hub only when it can be
    reached (a name absent from the cache fails in seconds offline, not after a minute of retries)."""
    from transformers import AutoConfig

    spec = run.embed.model
    source = run.model_source()
    kwargs: dict[str, tp.Any] = {"trust_remote_code": spec.trust_remote_code}
    if not Path(source).exists() and (spec.commit or spec.revision):
        kwargs["revision"] = spec.commit or spec.revision  # the snapshot the jobs load, not the cache's main
    try:
        return AutoConfig.from_pretrained(source, local_files_only=True, **kwargs)
    except (OSError, ValueError) as e:
        local_error = e
    if Path(source).exists():
        raise ConfigError(f"model.name: cannot load the config of {spec.name!r} ({local_error})") from local_error
    if hub_offline():
        raise ConfigError(
            f"model.name: {spec.name!r} is neither a local folder nor in the Hugging Face cache, and "
            "HF_HUB_OFFLINE=1 keeps the hub out (download it where there is a network, or point model.name at a folder)"
        )
    if not hub_reachable():
        raise ConfigError(
            f"model.name: {spec.name!r} is neither a local folder nor in the Hugging Face cache, and the hub "
            "cannot be reached (download it where there is a network, or point model.name at a folder)"
        )
    try:
        return AutoConfig.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as e:
        raise ConfigError(f"model.name: cannot load the config of {spec.name!r} ({e})") from e


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 5.0) -> bool:
    """Whether the Hugging Face endpoint (``HF_ENDPOINT``: a lab's mirror too) answers within ``timeout``
    seconds, asked through huggingface_hub's own HTTP client, so that ``HTTPS_PROXY`` and ``NO_PROXY`` are
    respected; asked once per process (a sweep's points do not each wait for an unreachable hub)."""
    if hub_offline():
        return False
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    try:
        get_session().head(constants.ENDPOINT, timeout=timeout)  # any answer, even an error page, is an answer
        return True
    except Exception:  # noqa: BLE001 - refused, timed out, a proxy that does not answer: unreachable
        return False
