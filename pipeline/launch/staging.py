"""Weights staged once, before any job: the launcher downloads the exact snapshot the jobs will load (the
files ``from_pretrained`` reads, not READMEs or other frameworks' weights) into the Hugging Face cache
(``HF_HOME``: on a cluster, project space the nodes share), and jobs load it offline (``HF_HUB_OFFLINE=1``
in their environment): compute nodes need no internet, and hundreds of tasks do not download the same
gigabytes into their home folders."""

from __future__ import annotations

import fnmatch
import sys
import typing as tp
from pathlib import Path

from pipeline.config import ConfigError, RunConfig
from pipeline.launch.preflight import hub_reachable

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
"""What a job's environment holds so that its loads never reach for the hub."""
CONFIGS = ("*.json", "*.txt", "*.model", "*.tiktoken", "*.jinja")
"""Configs, processor and tokenizer files (``vocab.txt``, ``merges.txt``, sentencepiece models)."""
WEIGHTS = ("*.safetensors", "pytorch_model*.bin", "model*.bin")
"""Weight files; a repository with safetensors loads those alone."""


def loaded_files(files: tp.Iterable[str], trust_remote_code: bool) -> list[str]:
    """Which of a repository's files ``from_pretrained`` of a model and its processor reads: configs,
    processor and tokenizer files, the safetensors weights (PyTorch ``.bin`` weights where there are none),
    and the remote code where ``trust_remote_code`` is set."""
    files = sorted(files)

    def matching(patterns: tp.Iterable[str]) -> list[str]:
        return [f for f in files if any(fnmatch.fnmatch(Path(f).name, p) for p in patterns)]

    top = [f for f in files if "/" not in f]  # an adapter's safetensors in a subfolder are not the model's
    weights = [f for f in matching(WEIGHTS) if f in top]
    weights = [f for f in weights if f.endswith(".safetensors")] or weights
    code = matching(("*.py",)) if trust_remote_code else []
    return sorted({*matching(CONFIGS), *weights, *code} - {".gitattributes"})


def stage(run: RunConfig, out: tp.TextIO | None = None) -> Path | None:
    """Download the snapshot ``run``'s jobs load (``embed.model.identity``, a hub commit) into the
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
        if not any(any(p.match(w) for w in WEIGHTS) for p in folder.iterdir()):
            raise ConfigError(f"model.name: the staged snapshot {folder} holds no weights: stage it again online")
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
    missing = [f for f in wanted if not (folder / f).exists()]
    if missing:
        raise ConfigError(f"model.name: staging {spec.name}@{commit[:12]} left out {', '.join(missing[:3])}")
    return folder


def _cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)
