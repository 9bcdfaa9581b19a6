"""The docs run as written: every ```bash and ```python block of the README and docs/, in order, in a
folder where `make run` has run (the bundled sample embedded with the defaults), as a newcomer would type
them. A stale name, flag or path fails here. Blocks fenced ```console or ```text (a SLURM cluster, a GPU, a
hub model, or printed output) are not run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from ..conftest import REPO

BLOCK = re.compile(r"^```(bash|python)\n(.*?)^```", re.S | re.M)


def doc_blocks() -> list[tuple[str, str, str]]:
    """``(file, language, code)`` of every runnable block, README first, then docs/ by name."""
    files = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    return [(f.name, lang, code) for f in files for lang, code in BLOCK.findall(f.read_text())]


def test_the_docs_have_runnable_blocks() -> None:
    found = {(name, lang) for name, lang, _ in doc_blocks()}
    assert ("README.md", "bash") in found and ("README.md", "python") in found, found


def test_every_command_and_snippet_in_the_docs_runs(models_dir: Path, tmp_path: Path) -> None:
    work = tmp_path / "checkout"
    work.mkdir()
    (work / ".venv").symlink_to(sys.prefix if _in_venv() else REPO / ".venv")  # the venv the tests run in
    (work / "examples").symlink_to(REPO / "examples")
    (work / "models").symlink_to(models_dir)  # the tiny models, built once for the session
    env = {**os.environ, "PIPELINE_THREADS": "1", "PYTHONPATH": str(REPO)}  # this checkout's package
    python = str(work / ".venv" / "bin" / "python")
    setup = [[python, "-m", "pipeline.testing.sample", "sample_videos"], [python, "-m", "pipeline.launch"]]
    for cmd in setup:  # what `make run` does
        done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    failures = []
    for name, lang, code in doc_blocks():
        cmd = ["bash", "-euo", "pipefail", "-c", code] if lang == "bash" else [python, "-c", code]
        done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            failures.append(f"{name} ```{lang}\n{code}\n--> exit {done.returncode}\n{done.stderr[-1500:]}")
    assert not failures, "\n\n".join(failures)


def _in_venv() -> bool:
    return sys.prefix != sys.base_prefix


REPO_PATH = re.compile(r"(?<![\w/.$-])((?:pipeline|tests|examples|benchmarks|docs|conf|jobs)/[\w./{},*<>-]*[\w*}>])")
FOREIGN = re.compile(r"(?<![\w.$-])(?:~|/(?:work|tmp|home|root|Users|scratch))/(?!pipeline-)[^\s`'\")]*|\.\./shared/")
"""Folders of someone's machine or beside the checkout, not the repository's, the package's own temporary ones
(``/tmp/pipeline-align``, ``/tmp/pipeline-slurm``) or clearly the user's (``/data/...``, ``/shared/...``)."""


def test_paths_in_the_docs_exist_in_the_repository() -> None:
    """Every repository path a document names exists (a moved test or module fails here), and no document
    names a folder of someone's machine (a scratch folder, another work tree)."""
    files = [REPO / "README.md", REPO / "CHANGELOG.md", *sorted((REPO / "docs").glob("*.md"))]
    missing, foreign = [], []
    for f in files:
        text = f.read_text()
        for path in REPO_PATH.findall(text):
            path = path.split("::")[0].rstrip(".")
            if any(c in path for c in "{*<"):
                continue  # a pattern or a placeholder (conf/model/*.yaml, pipeline/{status,gc}.py)
            if not (REPO / path).exists():
                missing.append(f"{f.name}: {path}")
        foreign += [f"{f.name}: {p}" for p in FOREIGN.findall(text)]
    assert not missing, "paths named in the docs that the repository lacks:\n" + "\n".join(missing)
    assert not foreign, "folders outside the repository named in the docs:\n" + "\n".join(foreign)
