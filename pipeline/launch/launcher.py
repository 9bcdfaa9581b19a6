"""One config from plan to summary: submit its jobs, follow them (unless ``wait=false``), summarise.

Ctrl-C while following leaves the jobs running: ``Interrupted`` says which, and how to follow or cancel.
"""

from __future__ import annotations

import os
import sys
import typing as tp

from pipeline.config import RunConfig
from pipeline.launch.following import follow
from pipeline.launch.submission import Submission, submit
from pipeline.launch.summary import Summary, render_summary


def launch_config(run: RunConfig, *, out: tp.TextIO | None = None, command: str = "") -> Summary:
    """Plan, submit and (unless ``wait=false``) follow one config; returns the summary (printed as well).
    ``command``: the command line that asked for it (recorded, for status to say how to relaunch)."""
    out = sys.stdout if out is None else out  # the stream of the call, not of the import
    taken: list[Submission] = []
    try:
        handle = submit(run, out=out, command=command, taken=taken)
        assert handle is not None
        if run.dry_run:
            return handle.summary
        if not run.wait and handle.jobs:
            print(f"not waiting; follow with: {status_command(run)}", file=out)
            return handle.summary
        summary = follow(handle, out=out)
    except KeyboardInterrupt:
        if not taken:
            raise  # before any job: the command says so
        raise Interrupted(taken) from None
    print(render_summary(summary), file=out)
    return summary


class Interrupted(Exception):
    """Ctrl-C while following jobs: they go on; the message says which, and how to follow or cancel them."""

    def __init__(self, handles: list[Submission]) -> None:
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
