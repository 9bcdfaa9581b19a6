"""What SLURM says of a launch's jobs: the one place that asks ``squeue`` (sacct needs accounting, which
small clusters lack)."""

from __future__ import annotations

import shutil
import subprocess

ENDED = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}
"""Job states after which SLURM runs nothing more of a job (a requeued one is PENDING again)."""


def squeue_states(job_ids: list[str]) -> dict[str, str] | None:
    """Array task id (``<array>_<task>``) -> state, for every task squeue still lists, ended ones included;
    None where squeue is missing or did not answer (an error, a time-out: a busy controller), which says
    nothing of the jobs, unlike an answer that lists none of them."""
    from submitit.slurm.slurm import read_job_id

    arrays = sorted({str(j).split("_")[0] for j in job_ids})
    if not arrays:
        return {}
    if shutil.which("squeue") is None:
        return None
    try:
        text = subprocess.run(
            ["squeue", "-h", "--states=all", "-o", "%i|%T", "-j", ",".join(arrays)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    states = {}
    for line in text.splitlines():
        jid, _, state = line.strip().partition("|")
        for parts in read_job_id(jid):
            if len(parts) == 3:
                states.update({f"{parts[0]}_{i}": state for i in range(int(parts[1]), int(parts[2]) + 1)})
            else:
                states["_".join(parts[:2])] = state
    return states


def has_ended(state: str) -> bool:
    """A state such as ``CANCELLED by 0`` means the job is over."""
    return bool(state.split()) and state.split()[0] in ENDED


def listed_arrays(job_ids: list[str]) -> list[str] | None:
    """The array jobs among ``job_ids`` that squeue lists by default: pending, running, or still ending
    (``COMPLETING``: some of their processes may be alive). None where squeue is missing or did not answer."""
    arrays = sorted({str(j).split("_")[0] for j in job_ids})
    if not arrays:
        return []
    if shutil.which("squeue") is None:
        return None
    try:
        text = subprocess.run(
            ["squeue", "-h", "-o", "%i", "-j", ",".join(arrays)], capture_output=True, text=True, timeout=60, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return sorted({line.strip().split("_")[0] for line in text.splitlines() if line.strip()} & set(arrays))


def active_arrays(job_ids: list[str]) -> list[str]:
    """The array jobs among ``job_ids`` with a task that SLURM still runs or will run; every one of them
    where squeue does not answer (unknown is taken as running: nothing is released, a cancel is sent)."""
    states = squeue_states(job_ids)
    if states is None:
        return sorted({str(j).split("_")[0] for j in job_ids})
    return sorted({tid.split("_")[0] for tid, state in states.items() if not has_ended(state)})


def max_array_size() -> int | None:
    """The cluster's ``MaxArraySize`` (array task ids stay below it), from ``scontrol show config``; None
    where scontrol is missing or does not say."""
    if shutil.which("scontrol") is None:
        return None
    try:
        text = subprocess.run(
            ["scontrol", "show", "config"], capture_output=True, text=True, timeout=60, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in text.splitlines():
        name, _, value = line.partition("=")
        if name.strip() == "MaxArraySize" and value.strip().isdigit():
            return int(value.strip())
    return None


def array_sizes(n_jobs: int, limit: int | None) -> list[int]:
    """Tasks per job array for ``n_jobs`` tasks where an array holds at most ``limit`` (task ids 0 to
    ``limit - 1``): one array when it fits, else full arrays and the rest."""
    if not limit or n_jobs <= limit:
        return [n_jobs] if n_jobs else []
    return [limit] * (n_jobs // limit) + ([n_jobs % limit] if n_jobs % limit else [])


_REFUSALS = (
    ("invalid partition", "executor.partition", "a partition of this cluster (`sinfo -s` lists them)"),
    ("invalid account", "executor.account", "an account you may use (`sacctmgr show assoc user=$USER`)"),
    ("invalid qos", "executor.qos", "a QOS of your account (`sacctmgr show assoc user=$USER format=qos`)"),
    (
        "accounting/qos policy",
        "max_jobs, executor.timeout_min or executor.qos",
        "fewer tasks or a shorter time limit within your QOS's limits (`sacctmgr show qos`: MaxSubmitJobs, "
        "MaxWall; `squeue -u $USER` counts what you have queued)",
    ),
    ("time limit", "executor.timeout_min", "a time limit within the partition's (`sinfo -o '%P %l'`)"),
    (
        "node configuration is not available",
        "executor.cpus_per_task, executor.mem_gb, executor.gpus_per_node or executor.constraint",
        "what the partition's nodes have (`sinfo -o '%P %c %m %G %f'`)",
    ),
    ("gres", "executor.gpus_per_node or executor.sbatch_args", "a GPU request this cluster knows (`sinfo -o '%G'`)"),
    ("array", "max_jobs", "fewer tasks than the cluster's MaxArraySize (`scontrol show config`)"),
)


def refusal(stderr: str) -> str:
    """What to tell the user when sbatch refused a submission: sbatch's own line, the field to change and
    to what."""
    lines = [line.strip() for line in stderr.splitlines() if "error" in line.lower()]
    said = lines[-1] if lines else (stderr.strip().splitlines() or ["(sbatch said nothing)"])[-1]
    low = said.lower()
    for marker, field, what in _REFUSALS:
        if marker in low:
            return f"SLURM refused the submission ({said}): set {field} to {what}"
    return f"SLURM refused the submission ({said}): check the executor fields (docs/slurm.md#executor-fields)"
