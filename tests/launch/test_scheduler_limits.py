"""Scheduler limits: a launch larger than the cluster's MaxArraySize goes in several arrays, and a
submission SLURM refuses (partition, account, QOS, time limit) exits 2 naming the field to change."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.launch.slurm import array_sizes, max_array_size, refusal
from pipeline.store import Store

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
def test_on_slurm_a_refused_partition_exits_2_and_a_launch_past_max_array_size_goes_in_two_arrays(
    sample_dir: Path, models_dir: Path, tmp_path: Path
) -> None:
    refused = run_cli(*common(tmp_path / "refused.zarr", sample_dir, models_dir, **{"executor.partition": "nosuch"}))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "SLURM refused the submission" in refused.stderr and "executor.partition" in refused.stderr
    assert "Traceback" not in refused.stderr
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
