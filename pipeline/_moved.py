"""Modules that moved in 0.2, still importable under their old names for pickles made before the move.

A SLURM job submitted before an upgrade is requeued from its pickle, which names ``pipeline.worker``;
this finder answers that name with the module's new home. Nothing else should import old names.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import typing as tp

MOVED = {"pipeline.worker": "pipeline.launch.worker"}


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return importlib.import_module(self.target)

    def exec_module(self, module: types.ModuleType) -> None:
        """The target module is already executed."""


class MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: tp.Any, target: tp.Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Alias(MOVED[fullname]))


def install() -> None:
    if not any(isinstance(f, MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(MovedFinder())
