"""Hydra multiruns: every point is submitted first, then all are followed and summed up in one table.

A point whose config UID an earlier point already submits (``cache_n_layers`` with a sweep over
``layers``) is planned once that point is done, so that a sweep computes each video once.
"""

from __future__ import annotations

import os
import sys
import typing as tp

from hydra.experimental.callback import Callback

from pipeline.config import RunConfig
from pipeline.launch.following import follow
from pipeline.launch.launcher import Interrupted
from pipeline.launch.preflight import prepare_model
from pipeline.launch.submission import Submission, submit
from pipeline.launch.summary import render_summary, sweep_table

_SWEEP: list[tuple[list[str], Submission | RunConfig]] = []
"""The points of a multirun: a submitted launch, or a run whose config UID an earlier point already
submits (``cache_n_layers`` with a sweep over ``layers``): planned once that point is done."""


def submit_point(run: RunConfig, overrides: list[str], command: str = "") -> None:
    """Submit one point of a multirun, unless an earlier point computes the same entries."""
    run = prepare_model(run)
    key = (run.embed.uid(), os.path.abspath(run.store))
    submitted = {(h.plan.config_uid, os.path.abspath(h.run.store)) for _, h in _SWEEP if isinstance(h, Submission)}
    if key in submitted:
        print(f"[{' '.join(overrides)}] config {key[0]} is computed by an earlier point: planned after it")
        _SWEEP.append((overrides, run))
        return
    handle = submit(run, prepared=True, command=command)
    if handle is not None:
        _SWEEP.append((overrides, handle))


class SweepSummary(Callback):
    """Hydra callback: in a multirun, every point is submitted first; this follows them all and prints one table."""

    def on_multirun_start(self, config: tp.Any, **kwargs: tp.Any) -> None:
        _SWEEP.clear()

    def on_multirun_end(self, config: tp.Any, **kwargs: tp.Any) -> None:
        points = list(_SWEEP)
        _SWEEP.clear()
        if not points:
            return
        common = set.intersection(*(set(overrides) for overrides, _ in points))
        summaries = []
        try:
            for overrides, point in points:
                label = " ".join(o for o in overrides if o not in common) or "defaults"
                handle = point if isinstance(point, Submission) else submit(point, prepared=True)
                assert handle is not None
                summaries.append((label, follow(handle) if handle.jobs else handle.summary))
        except KeyboardInterrupt:
            print(str(Interrupted([h for _, h in points if isinstance(h, Submission) and h.jobs])), file=sys.stderr)
            sys.exit(130)
        print(sweep_table(summaries))
        if any(not s.ok for _, s in summaries):
            for label, s in summaries:
                if not s.ok:
                    print(f"[{label}]\n{render_summary(s)}")
            sys.exit(1)
