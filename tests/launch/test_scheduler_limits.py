"""Scheduler limits: a launch larger than the cluster's MaxArraySize goes in several arrays, and a
submission SLURM refuses (partition, account, QOS, time limit) exits 2 naming the field to change."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.launch.slurm import array_sizes, max_array_size, refusal
from pipeline.store import Store
from pipeline.testing import faults

from ..conftest import distinct_copies, run_cli
from .test_slurm import common, job_ids


def test_tasks_are_split_into_arrays_of_at_most_the_cluster_s_size() -> None:
    assert array_sizes(7, 4) == [4, 3] and array_sizes(8, 4) == [4, 4] and array_sizes(3, 4) == [3]
    assert array_sizes(5, None) == [5] and array_sizes(0, 4) == []


@pytest.mark.parametrize(
    ("sbatch_said", "field"),
    [  # sbatch's own words (slurm_errno.c)
        ("sbatch: error: Batch job submission failed: Invalid partition name specified", "executor.partition"),
        (
            "sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified",
            "executor.account",
        ),
        ("sbatch: error: Batch job submission failed: Invalid qos specification", "executor.qos"),
        (
            "sbatch: error: Batch job submission failed: Job violates accounting/QOS policy (job submit limit, "
            "user's size and/or time limits)",
            "max_jobs, executor.timeout_min or executor.qos",
        ),
        (
            "sbatch: error: Batch job submission failed: Requested time limit is invalid (missing or exceeds some "
            "limit)",
            "executor.timeout_min",
        ),
        (
            "sbatch: error: Batch job submission failed: Requested node configuration is not available",
            "executor.mem_gb",
        ),
    ],
)
def test_a_refusal_names_sbatch_s_words_and_the_field_to_change(sbatch_said: str, field: str) -> None:
    told = refusal(f"some log line\n{sbatch_said}\n")
    assert sbatch_said.removeprefix("sbatch: error: ") in told and field in told


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm_cluster")
def test_on_slurm_refused_partition_account_and_qos_exit_2_and_a_launch_past_max_array_size_goes_in_two_arrays(
    sample_dir: Path, models_dir: Path, tmp_path: Path
) -> None:
    refused = run_cli(*common(tmp_path / "refused.zarr", sample_dir, models_dir, **{"executor.partition": "nosuch"}))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "SLURM refused the submission" in refused.stderr and "executor.partition" in refused.stderr
    assert "Traceback" not in refused.stderr
    # accounting is real on the test cluster (slurmdbd): an unknown account, and a QOS that allows two
    # queued jobs asked for three, are refused by sbatch before any job, naming the field to change
    no_account = run_cli(*common(tmp_path / "a.zarr", sample_dir, models_dir, **{"executor.account": "nosuch"}))
    assert no_account.returncode == 2 and "executor.account" in no_account.stderr, no_account.stderr
    over_qos = run_cli(
        *common(tmp_path / "q.zarr", sample_dir, models_dir, videos_per_job=1, **{"executor.qos": "two"})
    )
    assert over_qos.returncode == 2 and "executor.qos" in over_qos.stderr, over_qos.stdout + over_qos.stderr
    assert "accounting/QOS policy" in over_qos.stderr, over_qos.stderr
    limit = max_array_size()
    assert limit == 4, f"jobs/slurm-up.sh sets MaxArraySize=4, the cluster says {limit}"
    videos = tmp_path / "videos"
    distinct_copies(sample_dir / "bars_12fps.mp4", videos, 6)
    store = tmp_path / "store.zarr"
    res = run_cli(*common(store, videos, models_dir, videos_per_job=1, max_jobs=6, frequency=1))
    assert res.returncode == 0, res.stdout + res.stderr
    ids: list[str] = job_ids(res.stdout)
    arrays: dict[str, list[str]] = {}
    for task in ids:
        arrays.setdefault(task.split("_")[0], []).append(task)
    assert sorted(map(len, arrays.values())) == [2, 4] and "6 tasks in 2 job arrays" in res.stdout, res.stdout
    assert "computed 6  cached 0  failed 0" in res.stdout, res.stdout
    cuid = Store(store).config_uids()[0]
    assert len(Store(store).done_hashes(cuid)) == 6


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm_cluster")
def test_on_slurm_a_task_given_a_gpu_it_cannot_see_stops_loudly(
    sample_dir: Path, models_dir: Path, tmp_path: Path
) -> None:
    """The test cluster counts two GPUs and has none (a count-only resource): a task asks for one (the
    default on SLURM unless device=cpu), SLURM grants it, torch sees none, and the task stops with NoGPU
    rather than run on the CPU; its videos are left not done."""
    res = run_cli(*common(tmp_path / "gpu.zarr", sample_dir, models_dir, device="auto"))
    assert res.returncode == 1, res.stdout + res.stderr
    assert "each task asks for 1 GPU(s)" in res.stdout, res.stdout
    assert "NoGPU" in res.stdout and "asked for 1 GPU(s) and torch sees none" in res.stdout, res.stdout
    assert "not done 3" in res.stdout, res.stdout


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm_cluster")
def test_on_slurm_out_of_memory_halves_the_batch_and_a_broken_device_leaves_videos_not_done(
    sample_dir: Path, models_dir: Path, tmp_path: Path
) -> None:
    """Injected in the jobs' forward passes: batches of more than one clip run out of memory (every video is
    still computed, one clip at a time, the same numbers); a CUDA error other than out of memory leaves the
    videos not done, recorded against none of them."""
    store = tmp_path / "oom.zarr"
    res = run_cli(*common(store, sample_dir, models_dir, batch_size=4), env={faults.OOM_ABOVE: "1"})
    assert res.returncode == 0 and "computed 3  cached 0  failed 0" in res.stdout, res.stdout + res.stderr
    cuid = Store(store).config_uids()[0]
    logs = "".join(p.read_text() for p in (store / "_jobs" / cuid).rglob("*_log.err"))
    assert "out of memory with a batch of" in logs and "batches of 1 clips from now on" in logs, logs[-3000:]
    broken = tmp_path / "broken.zarr"
    res = run_cli(*common(broken, sample_dir, models_dir), env={faults.DEVICE_ERROR: "1"})
    assert res.returncode == 1 and "not done 3" in res.stdout, res.stdout + res.stderr
    assert "the environment's fault" in res.stdout and "illegal memory access" in res.stdout, res.stdout
    assert not Store(broken).failures(Store(broken).config_uids()[0])
