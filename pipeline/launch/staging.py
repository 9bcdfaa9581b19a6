"""Weights staged once, before any job: the launcher downloads the exact snapshot the jobs will load (the
files ``from_pretrained`` reads, not READMEs or other frameworks' weights) into the Hugging Face cache
(``HF_HOME``: on a cluster, project space the nodes share), and jobs load it offline (``HF_HUB_OFFLINE=1``
in their environment): compute nodes need no internet, and hundreds of tasks do not download the same
gigabytes into their home folders."""

from __future__ import annotations

import sys
import typing as tp
from pathlib import Path

from pipeline.config import ConfigError, RunConfig
from pipeline.launch.model_files import folder_files, has_weights, loaded_files, missing_files
from pipeline.launch.preflight import hub_reachable

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
"""What a job's environment holds so that its loads never reach for the hub."""


def stage(run: RunConfig, out: tp.TextIO | None = None) -> Path | None:
    """Download the snapshot ``run``'s jobs load (``embed.model.commit``) into the
    Hugging Face cache, or check it is all there when the hub cannot be reached; returns its folder (None
    for a local folder model: nothing to stage)."""
    out = sys.stdout if out is None else out
    spec = run.embed.model
    commit = spec.hub_revision()
    if commit is None or Path(run.model_source()).is_dir():
        return None
    from huggingface_hub import HfApi, snapshot_download, try_to_load_from_cache
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    if not hub_reachable():
        cached = try_to_load_from_cache(spec.name, "config.json", revision=commit)
        folder = Path(cached).parent if isinstance(cached, str) else None
        if folder is None:
            raise ConfigError(
                f"model.name: {spec.name}@{commit[:12]} is not in the Hugging Face cache ({_cache_dir()}) and the "
                "hub cannot be reached: the jobs load offline, so stage it once where there is a network (the "
                "same launch there, with the same HF_HOME)"
            )
        names = loaded_files(folder_files(folder), spec.trust_remote_code)
        missing = missing_files(folder, names)
        if missing or not has_weights(names):
            what = f"lacks {', '.join(missing[:3])}" if missing else "holds no weights"
            raise ConfigError(f"model.name: the staged snapshot {folder} {what}: stage it again online")
        return folder
    try:
        files = [s.rfilename for s in HfApi().model_info(spec.name, revision=commit).siblings or []]
    except Exception as e:  # noqa: BLE001 - the hub's answer, whatever it is, said to the user
        raise ConfigError(f"model.name: cannot list the files of {spec.name}@{commit[:12]} on the hub ({e})") from e
    wanted = loaded_files(files, spec.trust_remote_code)
    print(f"staging {spec.name}@{commit[:12]} ({len(wanted)} files) into {_cache_dir()}", file=out, flush=True)
    show = getattr(out, "isatty", lambda: False)()
    if show:
        enable_progress_bars()
    try:
        folder = Path(snapshot_download(spec.name, revision=commit, allow_patterns=wanted))
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"model.name: cannot download {spec.name}@{commit[:12]} ({e})") from e
    finally:
        if show:
            disable_progress_bars()
    missing = missing_files(folder, wanted)
    if missing:
        raise ConfigError(f"model.name: staging {spec.name}@{commit[:12]} left out {', '.join(missing[:3])}")
    return folder


def _cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)
