"""The tree's rules, checked: imports run one way (each subpackage imports only its own layer and the
layers below), no import cycles, and the config, the store, its reader and the tools run without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pipeline"

LAYERS = {"common": 0, "testing": 0, "config": 1, "embedding": 2, "store": 3, "launch": 4, "tools": 5, "align": 6}
"""Lowest first. The package's top-level modules (the public API, the command names) sit above them all."""
TOP = max(LAYERS.values()) + 1


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS):
        return LAYERS.get(parts[1], TOP)
    return TOP


def _imports(path: Path) -> set[str]:
    """Every ``pipeline`` module imported anywhere in the file (functions included), except under
    ``if TYPE_CHECKING``."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "pipeline"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "pipeline":
            assert node.level == 0, f"{path}: relative import; the tree uses absolute imports"
            modules = {f"{node.module}.{a.name}" for a in node.names if _is_module(f"{node.module}.{a.name}")}
            found |= modules
            if len(modules) < len(node.names):  # names defined in the module itself
                found.add(node.module)
    return found


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_belongs_to_a_known_layer() -> None:
    subpackages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert subpackages == set(LAYERS), f"a subpackage without a layer: {subpackages ^ set(LAYERS)}"


def test_imports_run_one_way() -> None:
    upward = [
        f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)})"
        for module, targets in _graph().items()
        for target in targets
        if _layer(target) > _layer(module)
    ]
    assert not upward, "\n".join(upward)


def test_there_are_no_import_cycles() -> None:
    graph = {m: {t for t in ts if t in _graph_keys()} for m, ts in _graph().items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt == node or _is_parent(nxt, node):
                continue  # a module's own package __init__ runs first: not a cycle of the code
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt] if nxt in path else [*path, nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def _graph_keys() -> set[str]:
    return {_module_name(p) for p in PACKAGE.rglob("*.py")}


def _is_parent(package: str, module: str) -> bool:
    return module.startswith(package + ".")


def test_the_layer_rules_catch_an_upward_import() -> None:
    """The check itself: a store module importing the launcher is reported."""
    assert _layer("pipeline.launch.worker") > _layer("pipeline.store.store")
    assert _layer("pipeline.store") == LAYERS["store"] and _layer("pipeline") == TOP


NO_TORCH = """
import runpy, sys
sys.modules["torch"] = None  # importing torch now raises ImportError
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize(
    "module",
    [
        "pipeline",
        "pipeline.config",
        "pipeline.store",
        "pipeline.store.reader",
        "pipeline.tools.status",
        "pipeline.tools.inspection",
        "pipeline.tools.report",
        "pipeline.tools.collect",
        "pipeline.tools.cancel",
        "pipeline.launch.slurm",
        "pipeline.align",
    ],
)
def test_the_config_the_store_and_the_tools_import_without_torch(module: str) -> None:
    code = f"import sys; sys.modules['torch'] = None; import {module}"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_status_and_a_plain_load_run_without_torch(tmp_path: Path) -> None:
    from pipeline.config import EmbedConfig
    from pipeline.store import Store

    store = Store(tmp_path / "s.zarr")
    store.ensure()
    embed = (
        EmbedConfig.model_validate({"model": {"name": "m", "family": "vit", "identity": "files-0"}}) if False else None
    )
    assert embed is None
    embed = EmbedConfig.model_validate({"model": {"name": "m", "family": "image", "identity": "files-00"}})
    cuid = store.ensure_config(embed)
    attrs = {"times": [0.0, 0.5], "config": embed.canonical(), "video_path": "/v.mp4", "frequency": 2.0}
    store.write(cuid, "ab" * 16, np.ones((3, 2), np.float32), attrs)
    status = subprocess.run(
        [sys.executable, "-c", NO_TORCH, "pipeline.status", f"store={store.path}", "--videos"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert status.returncode == 0, status.stderr
    assert cuid in status.stdout and "done" in status.stdout
    load = (
        "import sys; sys.modules['torch'] = None; import pipeline; "
        f"a = pipeline.open({str(store.path)!r}).load('{cuid}/{'ab' * 16}', start=0.4); print(a.dims, a.shape)"
    )
    done = subprocess.run([sys.executable, "-c", load], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "('time', 'feature') (1, 3)"


def test_a_job_pickled_before_the_move_still_unpickles() -> None:
    """A SLURM job submitted by 0.1 (``pipeline.worker.ShardJob``) and requeued after the upgrade."""
    import cloudpickle

    import pipeline  # noqa: F401 - installs the finder for moved modules
    from pipeline.launch.worker import QueueJob, VideoResult

    with (ROOT / "tests" / "fixtures" / "checkpoint-0.1.0.pkl").open("rb") as f:
        delayed = cloudpickle.load(f)
    assert isinstance(delayed.function, QueueJob)
    assert isinstance(delayed.function.results[0], VideoResult) and delayed.function.results[0].seconds == 1.5
    assert delayed.args[1] == [["b.mp4", "1" * 32]] or delayed.args[1] == [("b.mp4", "1" * 32)]
