"""Which of a model's files load, and the identity of their content: what the config UID names a model by.

``from_pretrained`` of a model and its processor reads configs, processor and tokenizer files, the weights
(safetensors where there are any) and, with ``trust_remote_code``, the repository's Python code; nothing
else (a README, another framework's weights) changes the numbers, so nothing else enters the identity. The
identity is a hash over each loaded file's path and the SHA-256 of its bytes, the hash the hub itself keeps
for every large file: a hub snapshot and a folder holding the same files are the same model.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import typing as tp
from pathlib import Path

CONFIGS = ("*.json", "*.txt", "*.model", "*.tiktoken", "*.jinja")
"""Configs, processor and tokenizer files (``vocab.txt``, ``merges.txt``, sentencepiece models)."""
WEIGHTS = ("model.safetensors", "model-*-of-*.safetensors", "pytorch_model.bin", "pytorch_model-*-of-*.bin")
"""The weight files transformers loads (one file, or the shards its ``*.index.json`` names); a repository
with safetensors loads those alone. Other files (``model.fp16.safetensors``, another library's weights)
are variants it does not load."""
PREFIX = "content-"
"""How a content identity begins (``files-`` and ``<name>@<commit>`` are 0.3's, kept for its stores)."""


def loaded_files(files: tp.Iterable[str], trust_remote_code: bool) -> list[str]:
    """Which of a repository's files (paths inside it) ``from_pretrained`` of a model and its processor
    reads: configs, processor and tokenizer files, the safetensors weights (PyTorch ``.bin`` weights where
    there are none), and the remote code where ``trust_remote_code`` is set."""
    files = sorted(f for f in files if not any(part.startswith(".") for part in f.split("/")))  # as folders

    def matching(patterns: tp.Iterable[str]) -> list[str]:
        return [f for f in files if any(fnmatch.fnmatch(Path(f).name, p) for p in patterns)]

    top = [f for f in files if "/" not in f]  # an adapter's weights in a subfolder are not the model's
    weights = [f for f in matching(WEIGHTS) if f in top]
    weights = [f for f in weights if f.endswith(".safetensors")] or weights
    code = matching(("*.py",)) if trust_remote_code else []
    return sorted({*matching(CONFIGS), *weights, *code} - {".gitattributes"})


def has_weights(files: tp.Iterable[str]) -> bool:
    return any(any(fnmatch.fnmatch(Path(f).name, w) for w in WEIGHTS) for f in files)


def missing_files(folder: Path, names: tp.Iterable[str]) -> list[str]:
    """Which of ``names`` (paths inside ``folder``) cannot be read there (absent, a dangling link of a
    cache whose blob is gone), and the weight shards a ``*.index.json`` of the folder names that are absent:
    a snapshot staged in part loads in no job."""
    import json

    wanted = set(names)
    kind = ".safetensors" if any(n.endswith(".safetensors") for n in wanted) else ".bin"
    for index in folder.glob("*.index.json"):
        try:
            shards = {str(v) for v in json.loads(index.read_text()).get("weight_map", {}).values()}
        except (OSError, ValueError, AttributeError):
            continue  # not an index of weights this loads (it is checked as a file above)
        if shards and all(s.endswith(kind) for s in shards):  # the index of the weights that load
            wanted |= shards
    return sorted(n for n in wanted if not (folder / n).is_file())


def content_identity(sha256s: tp.Mapping[str, str]) -> str:
    """``content-<hash>`` over each loaded file's path (inside the model) and the SHA-256 of its bytes."""
    digest = hashlib.blake2b(digest_size=16)
    for name in sorted(sha256s):
        digest.update(f"{name}\0{sha256s[name]}\n".encode())
    return PREFIX + digest.hexdigest()


def folder_files(folder: Path) -> list[str]:
    """The files of a model folder, as paths inside it, sorted; hidden files and folders (``.cache``,
    ``.git``) are not part of it."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [(Path(root) / f).relative_to(folder).as_posix() for f in files if not f.startswith(".")]
    return sorted(found)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest()
