"""``python -m pipeline.launch``: plan a config against the store, submit its jobs, follow them, summarise.

The steps live in modules named for them: ``discovery`` (videos, hashes, durations), ``planning`` (the
queue), ``preflight`` (checks before any job), ``submission`` (submitit executors and job arrays),
``following`` (progress, then each video's outcome) and ``summary``. This module runs them for one config
or a Hydra sweep, and handles Ctrl-C.
"""

from __future__ import annotations

import os
import sys
import typing as tp
from pathlib import Path

from hydra.experimental.callback import Callback

from .config import ConfigError, RunConfig, build_run_config
from .following import follow
from .preflight import prepare_model
from .quiet import silence_libraries
from .submission import Launch, submit
from .summary import Summary, render_summary, sweep_table


def launch(run: RunConfig, *, out: tp.TextIO = sys.stdout) -> Summary:
    """Plan, submit and (unless ``wait=false``) follow one config; returns the summary (printed as well)."""
    handle = submit(run, out=out)
    assert handle is not None
    if run.dry_run:
        return handle.summary
    if not run.wait and handle.jobs:
        print(f"not waiting; follow with: {status_command(run)}", file=out)
        return handle.summary
    try:
        summary = follow(handle, out=out)
    except KeyboardInterrupt:
        raise Interrupted([handle]) from None
    print(render_summary(summary), file=out)
    return summary


class Interrupted(Exception):
    """Ctrl-C while following jobs: they go on; the message says which, and how to follow or cancel them."""

    def __init__(self, handles: list[Launch]) -> None:
        lines = []
        for handle in handles:
            try:
                ended = handle.poll()
            except Exception:  # noqa: BLE001 - a second Ctrl-C or a scheduler hiccup: list every job
                ended = {}
            running = [str(j.job_id) for j in handle.jobs if str(j.job_id) not in ended]
            store, cuid = os.path.abspath(handle.run.store), handle.plan.config_uid
            if running:
                lines += [
                    f"interrupted: {len(running)} job(s) of config {cuid} still running: {' '.join(running)}",
                    f"  follow them: {sys.executable} -m pipeline.status store={store}",
                    f"  cancel them: {sys.executable} -m pipeline.cancel store={store} {cuid}",
                ]
            else:
                lines.append(f"interrupted: no job of config {cuid} is still running")
        super().__init__("\n".join(lines) or "interrupted before any job was submitted")


def status_command(run: RunConfig) -> str:
    return f"{sys.executable} -m pipeline.status store={os.path.abspath(run.store)}"


_SWEEP: list[tuple[list[str], Launch | RunConfig]] = []
"""The points of a multirun: a submitted launch, or a run whose config UID an earlier point already
submits (``cache_n_layers`` with a sweep over ``layers``): planned once that point is done."""


def _submit_point(run: RunConfig, overrides: list[str]) -> None:
    """Submit one point of a multirun, unless an earlier point computes the same entries."""
    run = prepare_model(run)
    key = (run.embed.uid(), os.path.abspath(run.store))
    submitted = {(h.plan.config_uid, os.path.abspath(h.run.store)) for _, h in _SWEEP if isinstance(h, Launch)}
    if key in submitted:
        print(f"[{' '.join(overrides)}] config {key[0]} is computed by an earlier point: planned after it")
        _SWEEP.append((overrides, run))
        return
    handle = submit(run, prepared=True)
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
                handle = point if isinstance(point, Launch) else submit(point, prepared=True)
                assert handle is not None
                summaries.append((label, handle, follow(handle) if handle.jobs else handle.summary))
        except KeyboardInterrupt:
            print(str(Interrupted([h for _, h in points if isinstance(h, Launch) and h.jobs])), file=sys.stderr)
            sys.exit(130)
        print(sweep_table(summaries))
        if any(not s.ok for _, _, s in summaries):
            for label, _, s in summaries:
                if not s.ok:
                    print(f"[{label}]\n{render_summary(s)}")
            sys.exit(1)


def main() -> None:
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import DictConfig, OmegaConf

    conf_dir = str(Path(__file__).resolve().parent.parent / "conf")

    @hydra.main(config_path=conf_dir, config_name="config", version_base=None)
    def _run(cfg: DictConfig) -> None:
        flat = tp.cast(dict[str, tp.Any], OmegaConf.to_container(cfg, resolve=True))
        hydra_cfg = HydraConfig.get()
        silence_libraries(bool(flat.get("verbose", False)))
        try:
            run = build_run_config(flat)
            if hydra_cfg.mode == RunMode.MULTIRUN:
                _submit_point(run, list(hydra_cfg.overrides.task))
                return
            summary = launch(run)
        except Interrupted as e:
            print(str(e), file=sys.stderr)
            sys.exit(130)
        except KeyboardInterrupt:
            print("interrupted before any job was submitted", file=sys.stderr)
            sys.exit(130)
        except ConfigError as e:
            print(f"config error: {e}", file=sys.stderr)
            sys.exit(2)
        except OSError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        if not summary.ok:
            sys.exit(1)

    _run()


if __name__ == "__main__":
    # Run the imported module's main, so that the Hydra callback (``pipeline.launch.SweepSummary``) and
    # the task function share one ``_SWEEP`` list rather than one each in ``__main__`` and ``pipeline.launch``.
    from pipeline import launch as _module

    _module.main()
