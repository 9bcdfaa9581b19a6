"""Following a launch again after its launcher died (an SSH session dropped, a login node rebooted): the
same command finds the launch whose jobs still run and follows them rather than submitting again."""

from __future__ import annotations

import getpass
import socket
import typing as tp
from pathlib import Path

import submitit

from pipeline.launch.liveness import cmdline, launch_running, local_job_running, process_running
from pipeline.store import Store


class FollowedLocalJob(submitit.LocalJob):
    """A local job another launcher started: no process handle here, so it is judged by ``/proc``."""

    def done(self, force_check: bool = False) -> bool:
        return self.paths.result_pickle.exists() or not local_job_running(str(self.job_id))


def running_launch(
    store: Store, config_uid: str, executor: str, todo: set[str]
) -> tuple[str, dict[str, tp.Any]] | None:
    """The newest launch of this config, by this user, on this executor, whose jobs still run and whose
    queue holds every video of ``todo`` (content hashes still to compute); None when there is none (then
    a launch submits as before, and its jobs wait for videos the running ones hold). A launch whose
    launcher still runs on this host is left to it; a local launch is followed from the host that made it
    only; debug jobs die with their launcher."""
    if executor == "debug":
        return None
    for launch_id, record in reversed(list(store.launches(config_uid).items())):
        if record.get("user") != getpass.getuser() or record.get("executor") != executor:
            continue
        here = record.get("host") == socket.gethostname()
        if executor == "local" and not here:
            continue
        if here and _launcher_alive(record):  # still followed: the same command again launches its own
            continue
        if todo <= set(record.get("videos", {})) and launch_running(record):
            return launch_id, record
    return None


def _launcher_alive(record: dict[str, tp.Any]) -> bool:
    """The launcher that made this launch still runs on this host (its pid, running Python's pipeline)."""
    pid = record.get("launcher_pid")
    return isinstance(pid, int) and process_running(pid) and "pipeline" in cmdline(pid)


def rejoin(executor: str, folder: Path, job_ids: list[str]) -> list[tp.Any]:
    """submitit handles on jobs already submitted into ``folder`` (results and logs found as the
    launcher that submitted them would)."""
    if executor == "slurm":
        return [submitit.SlurmJob(folder=str(folder / "%j"), job_id=j) for j in job_ids]
    return [FollowedLocalJob(folder=str(folder), job_id=j) for j in job_ids]
