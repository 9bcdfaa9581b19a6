"""What SLURM says of a launch's jobs: the one place that asks ``squeue``, ``sacct`` and ``scontrol``
(sacct needs accounting, which small clusters lack: ``scontrol show job`` stands in)."""

from __future__ import annotations

import shutil
import subprocess

ENDED = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}
"""Job states after which SLURM runs nothing more of a job (a requeued one is PENDING again)."""


def _ask(command: list[str]) -> str | None:
    """What a SLURM command printed; None where it is missing, failed or timed out (a busy controller)."""
    if shutil.which(command[0]) is None:
        return None
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def _expand(jid: str, state: str, states: dict[str, str]) -> None:
    """Record ``state`` for each array task ``jid`` names (``12_3``, ``12_[0-3]``, a plain job id)."""
    from submitit.slurm.slurm import read_job_id

    for parts in read_job_id(jid):
        if len(parts) == 3:
            states.update({f"{parts[0]}_{i}": state for i in range(int(parts[1]), int(parts[2]) + 1)})
        else:
            states["_".join(parts[:2])] = state


def _arrays(job_ids: list[str]) -> list[str]:
    return sorted({str(j).split("_")[0] for j in job_ids})


def squeue_states(job_ids: list[str]) -> dict[str, str] | None:
    """Array task id (``<array>_<task>``) -> state, for every task squeue still lists, ended ones included;
    None where squeue is missing or did not answer (an error, a time-out: a busy controller), which says
    nothing of the jobs, unlike an answer that lists none of them."""
    if not job_ids:
        return {}
    text = _ask(["squeue", "-h", "--states=all", "-o", "%i|%T", "-j", ",".join(_arrays(job_ids))])
    if text is None:
        return None
    states: dict[str, str] = {}
    for line in text.splitlines():
        jid, _, state = line.strip().partition("|")
        if jid:
            _expand(jid, state, states)
    return states


GONE = "GONE"
"""The state of a task the controller no longer knows: it ended more than ``MinJobAge`` ago."""


def confirmed_states(job_ids: list[str]) -> dict[str, str] | None:
    """The state of tasks that squeue did not list (a controller answering from a partial view, a task
    purged after it ended), from SLURM's accounting (``sacct``) or, where the cluster keeps none, from the
    controller itself (``scontrol show job``): a task the controller no longer knows is ``GONE``. None where
    neither answered: nothing is known of them."""
    if not job_ids:
        return {}
    arrays = ",".join(_arrays(job_ids))
    text = _ask(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", arrays])
    if text is not None and text.strip():
        states: dict[str, str] = {}
        for line in text.splitlines():
            jid, _, state = line.strip().partition("|")
            if jid:
                _expand(jid, state, states)
        return {j: states[j] for j in job_ids if j in states}
    return _controller_states(job_ids)


def _controller_states(job_ids: list[str]) -> dict[str, str] | None:
    states: dict[str, str] = {}
    for array in _arrays(job_ids):
        try:
            done = subprocess.run(["scontrol", "-o", "show", "job", array], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            return None
        if done.returncode != 0:
            if "invalid job id" not in (done.stderr + done.stdout).lower():
                return None
            states.update({j: GONE for j in job_ids if j.split("_")[0] == array})  # purged, every task
            continue
        known: dict[str, str] = {}
        for line in done.stdout.splitlines():
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            state = fields.get("JobState", "")
            if fields.get("ArrayJobId") and fields.get("ArrayTaskId"):
                _expand(f"{fields['ArrayJobId']}_[{fields['ArrayTaskId'].split('%')[0]}]", state, known)
            elif fields.get("JobId"):
                known[fields["JobId"]] = state
        states.update({j: known.get(j, GONE) for j in job_ids if j.split("_")[0] == array})
    return states


def has_ended(state: str) -> bool:
    """A state such as ``CANCELLED by 0`` means the job is over; a task the controller purged too."""
    return bool(state.split()) and state.split()[0] in ENDED | {GONE}


def listed_arrays(job_ids: list[str]) -> list[str] | None:
    """The array jobs among ``job_ids`` that squeue lists by default: pending, running, or still ending
    (``COMPLETING``: some of their processes may be alive). None where squeue is missing or did not answer."""
    arrays = _arrays(job_ids)
    if not arrays:
        return []
    text = _ask(["squeue", "-h", "-o", "%i", "-j", ",".join(arrays)])
    if text is None:
        return None
    return sorted({line.strip().split("_")[0] for line in text.splitlines() if line.strip()} & set(arrays))


def active_arrays(job_ids: list[str]) -> list[str]:
    """The array jobs among ``job_ids`` with a task that SLURM still runs or will run; every one of them
    where squeue does not answer (unknown is taken as running: nothing is released, a cancel is sent)."""
    states = squeue_states(job_ids)
    if states is None:
        return _arrays(job_ids)
    return sorted({tid.split("_")[0] for tid, state in states.items() if not has_ended(state)})


def max_array_size() -> int | None:
    """The cluster's ``MaxArraySize`` (array task ids stay below it), from ``scontrol show config``; None
    where scontrol is missing or does not say."""
    text = _ask(["scontrol", "show", "config"])
    for line in (text or "").splitlines():
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
