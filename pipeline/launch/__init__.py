"""Launching: from a config and a folder of videos to jobs that fill the store, followed to a summary.

The steps, in the order a launch takes them: ``discovery`` (videos, hashes, durations), ``identity`` (what
the model's weights are), ``preflight`` (checks before any job), ``planning`` (the queue), ``executors`` and
``submission`` (one submitit job array), ``worker`` (what each job runs), ``following`` and ``summary``;
``launcher`` runs them for one config, ``sweep`` for a Hydra multirun, ``cli`` is ``python -m pipeline.launch``.
Beside them: ``estimate`` (what a launch will cost) and ``calibration`` (``python -m pipeline.calibrate``),
``pace`` (rate and ETA), ``resume`` (re-following a launch whose launcher died), ``liveness`` (whether a
launch's jobs run), ``ending`` (a ``wait=false`` launch's summary), ``slurm``, ``resources``, ``staging``.

Importing this package imports nothing else: ``pipeline.launch.SweepSummary`` (Hydra's callback) and
``launch_config`` load their modules on first use.
"""

from __future__ import annotations

import importlib
import typing as tp

_LAZY = {
    "SweepSummary": "pipeline.launch.sweep",
    "launch_config": "pipeline.launch.launcher",
    "main": "pipeline.launch.cli",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> tp.Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pipeline.launch' has no attribute {name!r}")
