"""What a task asks the scheduler for by default (a GPU on SLURM unless device=cpu, memory from the model's
size), and what a task checks on its node (the GPUs it asked for)."""

from __future__ import annotations

import shutil
import typing as tp
from pathlib import Path

import pytest
from transformers import VideoMAEConfig, XCLIPConfig

from pipeline.launch import resources
from pipeline.launch.executors import make_executor


def test_a_slurm_task_asks_for_one_gpu_unless_the_device_is_the_cpu_or_the_user_said(make_run: tp.Any) -> None:
    assert resources.task_gpus(make_run(executor={"name": "slurm"}, device="auto")) == 1
    assert resources.task_gpus(make_run(executor={"name": "slurm"}, device="cpu")) == 0
    assert resources.task_gpus(make_run(executor={"name": "slurm", "gpus_per_node": 2})) == 2
    assert resources.task_gpus(make_run(executor={"name": "local"}, device="auto")) == 0


def test_memory_grows_with_the_weights_and_the_decoding_processes() -> None:
    assert resources.default_mem_gb(10 << 20, 2) == resources.MIN_GB  # a tiny model
    vit_l = int(1.2 * 2**30)  # VideoMAE-large's float32 weights
    assert resources.default_mem_gb(vit_l, 8) == 4 + 3 + 7  # the job, 2.5x its weights, 7 decoding processes
    assert resources.default_mem_gb(vit_l, 16) > resources.default_mem_gb(vit_l, 8)


def test_a_parameter_count_from_the_config_is_near_the_model_s() -> None:
    base = resources.parameters_from_config(VideoMAEConfig())  # VideoMAE-base: 86 M parameters
    assert 75e6 < base < 95e6
    clip = resources.parameters_from_config(XCLIPConfig())  # its vision and text towers both count
    assert clip > resources.parameters_from_config(XCLIPConfig().vision_config)


def test_a_local_model_s_weights_are_its_files(make_run: tp.Any) -> None:
    from pipeline.launch.preflight import prepare_model

    run = prepare_model(make_run())
    weights, how = resources.model_bytes(run.model_source(), None)
    files = [p for p in Path(run.model_source()).iterdir() if p.suffix == ".safetensors"]
    assert files and weights == sum(p.stat().st_size for p in files) and "weight files" in how


@pytest.mark.skipif(shutil.which("sbatch") is None, reason="needs SLURM's sbatch (make slurm-up installs it)")
def test_the_sbatch_options_carry_the_gpu_and_the_memory_unless_the_user_set_them(
    make_run: tp.Any, tmp_path: Path
) -> None:
    run, note = resources.sized(make_run(executor={"name": "slurm"}, device="auto"), lambda: None)
    params = make_executor(run, tmp_path).parameters
    assert params["gpus_per_node"] == 1 and params["mem"] == f"{resources.MIN_GB * 1024}MB", params
    assert "1 GPU(s)" in note and f"{resources.MIN_GB} GB" in note
    mine, note = resources.sized(make_run(executor={"name": "slurm", "mem_gb": 3, "gpus_per_node": 0}), lambda: None)
    params = make_executor(mine, tmp_path).parameters
    assert "gpus_per_node" not in params and params["mem"] == "3072MB" and note == ""


def test_a_slurm_task_that_asked_for_a_gpu_and_sees_none_stops_loudly(
    make_run: tp.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the task would see it")
    run, _ = resources.sized(make_run(executor={"name": "slurm"}, device="auto"), lambda: None)
    resources.check_gpus(run)  # outside a SLURM job: nothing to check
    monkeypatch.setenv("SLURM_JOB_ID", "123")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with pytest.raises(resources.NoGPU, match=r"job 123 .* asked for 1 GPU\(s\) and torch sees none.*device=cpu"):
        resources.check_gpus(run)
    resources.check_gpus(run.model_copy(update={"device": "cpu"}))  # the user chose the CPU


def test_a_gpu_job_keeps_two_torch_threads_and_is_told_when_it_has_too_few_cpus_to_decode() -> None:
    assert resources.batched_threads("cuda", 16) == 2 and resources.batched_threads("cpu", 16) == 16
    assert resources.batched_threads("cpu", None) is None
    assert "executor.cpus_per_task=8" in (resources.few_cpus_warning("cuda", 2) or "")
    assert resources.few_cpus_warning("cuda", 8) is None and resources.few_cpus_warning("cpu", 1) is None
