"""``python -m pipeline.cancel store=PATH [config=UID]``: cancel the running jobs of a config's launches.

SLURM jobs are cancelled with ``scancel`` (pending and running array tasks alike); local-executor jobs
(submitit controller processes on this host, and their tasks) are killed. The leases those jobs held are
released, so the next launch computes their videos at once; nothing is recorded as failed. Stored videos
stay stored.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import sys
import time
import typing as tp

from pipeline.launch.liveness import children, local_job_running
from pipeline.launch.slurm import active_arrays, listed_arrays
from pipeline.store import Store
from pipeline.store.leases import lease_files, lease_holder
from pipeline.tools.args import UsageError, chosen_configs, open_store, parse_args

USAGE = __doc__.strip().splitlines()[0].strip("`") if __doc__ else ""


def kill_local_job(job_id: str) -> bool:
    """Kill a submitit local job (its controller process and the tasks it started) if it still runs here."""
    if not local_job_running(job_id):
        return False
    pid = int(job_id)
    for task in children(pid):
        for grandchild in children(task):
            _kill(grandchild)
        _kill(task)
    _kill(pid)
    return True


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


STOP_WAIT_S = 120.0
"""How long cancel waits for the jobs it stopped to be gone before it releases their leases."""


def _slurm_gone(arrays: list[str]) -> bool:
    listed = listed_arrays(arrays)
    return listed is not None and not listed  # squeue silent: not known to be gone


def _local_gone(job_ids: list[str]) -> bool:
    return not any(local_job_running(j) for j in job_ids)


def _wait_until(done: tp.Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        time.sleep(0.5)


def cancel_config(store: Store, config_uid: str) -> list[str]:
    """Cancel every still-running job of the config's launches; release their leases. Returns what was
    cancelled, one line each."""
    cancelled: list[str] = []
    job_ids: list[str] = []
    for launch_id, record in store.launches(config_uid).items():
        ids = [str(j) for j in record.get("job_ids", [])]
        job_ids += ids
        stopped: list[str] = []
        if record.get("executor") == "slurm":
            active = active_arrays(ids)
            if active:
                subprocess.run(["scancel", *active], check=False, capture_output=True)
                stopped = [f"{config_uid}: SLURM job {a} (launch {launch_id})" for a in active]
                # their leases are released once their processes are gone: a worker still ending (SLURM
                # waits KillWait before its SIGKILL) or a task starting as it was cancelled could claim again
                _wait_until(functools.partial(_slurm_gone, active), STOP_WAIT_S)
        elif record.get("host") == socket.gethostname():
            stopped = [f"{config_uid}: local job {j} (launch {launch_id})" for j in ids if kill_local_job(j)]
            _wait_until(functools.partial(_local_gone, ids), STOP_WAIT_S)
        if stopped:
            store.mark_cancelled(config_uid, launch_id)
        cancelled += stopped
    released = 0
    arrays = {j.split("_")[0] for j in job_ids}  # an array job id covers its tasks; a local job id is itself
    folder = store.leases(config_uid)
    for vhash, path in lease_files(folder):
        owner_job = lease_holder(folder, vhash)
        if owner_job and owner_job.split("_")[0] in arrays:
            path.unlink(missing_ok=True)
            released += 1
    if released:
        cancelled.append(f"{config_uid}: released {released} lease(s)")
    return cancelled


def main(argv: list[str] | None = None) -> int:
    values, _, words = parse_args(argv, {"store", "config"}, set(), USAGE)
    if len(words) > 1:
        raise UsageError(f"unexpected argument {words[1]!r}\n{USAGE}")
    if words:
        values["config"] = words[0]
    store = open_store(values)
    lines = [line for uid in chosen_configs(store, values) for line in cancel_config(store, uid)]
    print("\n".join(lines) if lines else "no running job to cancel")
    print("nothing was recorded as failed; relaunch the same command to compute what is not stored")
    return 0


if __name__ == "__main__":
    sys.exit(main())
