"""Whether a launch's jobs still run: SLURM asked through ``squeue``, local jobs (submitit controllers and
the tasks they start) and in-process debug launches looked up in ``/proc`` on the host that ran them."""

from __future__ import annotations

import socket
import typing as tp
from pathlib import Path

from pipeline.launch.slurm import active_arrays


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


def process_running(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] != "Z"


def local_job_running(job_id: str) -> bool:
    """A submitit local job (its controller process, whose pid is the job id) still runs on this host."""
    return job_id.isdigit() and process_running(int(job_id)) and "submitit" in cmdline(int(job_id))


def launch_running(record: tp.Mapping[str, tp.Any]) -> bool:
    """Whether a job of this launch may still take videos. Cancelled launches are over; a launch made on
    another host, whose processes cannot be seen from here, is taken to be running."""
    if record.get("cancelled"):
        return False
    job_ids = [str(j) for j in record.get("job_ids", [])]
    executor = record.get("executor")
    if executor == "slurm":
        return bool(active_arrays(job_ids))
    if record.get("host") != socket.gethostname():
        return True
    if executor == "debug":  # its jobs run inside the launcher
        pid = record.get("launcher_pid")
        return isinstance(pid, int) and process_running(pid)
    return any(local_job_running(j) for j in job_ids)
