"""What a job asks the scheduler for when the user did not say (a GPU on SLURM unless ``device=cpu``, memory
from the model's size), and what a job checks it got on its node (the GPUs it asked for, its CPUs)."""

from __future__ import annotations

import math
import os
import socket
import typing as tp
from pathlib import Path

from pipeline.config import RunConfig

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack")
BASE_GB = 4.0
"""A job's own memory before the model: Python, torch, transformers, PyAV, the queue."""
WEIGHT_FACTOR = 2.5
"""Host memory per byte of weights: loaded on the host, then moved to the device (some transiently twice)."""
PER_DECODER_GB = 1.0
"""A decoding process: PyAV, the frames it holds and the preprocessed chunks it has in flight."""
MIN_GB = 8
"""The least a task asks for (some sites default to 256 MB per core, where nothing loads)."""


class NoGPU(RuntimeError):
    """A SLURM task asked for GPUs and its torch sees none: stopped at once rather than run on the CPU."""


def task_gpus(run: RunConfig) -> int:
    """GPUs each task asks for: ``executor.gpus_per_node`` when set; else one on SLURM unless ``device=cpu``."""
    if run.executor.gpus_per_node is not None:
        return run.executor.gpus_per_node
    return 1 if run.executor.resolved_name() == "slurm" and run.device != "cpu" else 0


def weights_bytes(folder: Path) -> int:
    """Bytes of the weight files in a model folder (a local model or a snapshot of the hub's cache)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.suffix in WEIGHT_SUFFIXES and p.is_file())


def parameters_from_config(config: tp.Any) -> int:
    """Parameters a transformer of this config holds, about: per layer 4 H^2 (attention) and 2 H I (MLP),
    over the config and its sub-configs (X-CLIP's vision and text towers); for sizing memory, not more."""
    total = 0
    hidden, layers = getattr(config, "hidden_size", None), getattr(config, "num_hidden_layers", None)
    if isinstance(hidden, int) and isinstance(layers, int):
        inner = getattr(config, "intermediate_size", None) or 4 * hidden
        total += layers * (4 * hidden * hidden + 2 * hidden * int(inner))
    for name in ("vision_config", "text_config", "predictor_config"):
        sub = getattr(config, name, None)
        if sub is not None and sub is not config:
            total += parameters_from_config(sub)
    return total


def model_bytes(source: str, config: tp.Any) -> tuple[int, str]:
    """The model's weights in bytes, and how that is known: the files of its folder or of its cached hub
    snapshot, else a count of parameters from its config (float32)."""
    folder = Path(source)
    if not folder.is_dir():
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(source, "config.json")
        except Exception:  # noqa: BLE001 - not cached, or not a repository name: estimated below
            cached = None
        folder = Path(cached).parent if isinstance(cached, str) else folder
    if folder.is_dir():
        found = weights_bytes(folder)
        if found:
            return found, f"its weight files in {folder}"
    return 4 * parameters_from_config(config), "a parameter count from its config"


def default_mem_gb(weights: int, cpus: int) -> int:
    """Host memory for one task, in GB: the job itself, its model's weights, and one decoding process per
    CPU but one (at least two), rounded up; at least ``MIN_GB``."""
    needed = BASE_GB + WEIGHT_FACTOR * weights / 2**30 + PER_DECODER_GB * max(2, cpus - 1)
    return max(MIN_GB, math.ceil(needed))


def sized(run: RunConfig, config: tp.Callable[[], tp.Any]) -> tuple[RunConfig, str]:
    """``run`` with what its tasks ask for made explicit (GPUs, and on SLURM memory, when not given; the
    model's transformers config from ``config()`` where it is needed), and a line saying so for the launch's
    output ("" when the user set the memory or jobs run here)."""
    ex = run.executor
    update: dict[str, tp.Any] = {"gpus_per_node": task_gpus(run)}
    note = ""
    if ex.resolved_name() == "slurm" and ex.mem_gb is None:
        weights, how = model_bytes(run.model_source(), config())
        update["mem_gb"] = float(default_mem_gb(weights, ex.cpus_per_task))
        note = (
            f"each task asks for {update['gpus_per_node']} GPU(s) and {update['mem_gb']:.0f} GB of memory "
            f"(weights {weights / 2**30:.2f} GB, from {how}; executor.mem_gb and executor.gpus_per_node set them)"
        )
    return run.model_copy(update={"executor": ex.model_copy(update=update)}), note


def check_gpus(run: RunConfig) -> None:
    """In a SLURM task that asked for GPUs: raise ``NoGPU`` if torch sees none (a CPU build of torch, a
    node without its driver, a ``--gres`` the site ignores), naming what it saw."""
    asked = run.executor.gpus_per_node or 0
    if not asked or "SLURM_JOB_ID" not in os.environ or run.device == "cpu":
        return
    import torch

    if torch.cuda.is_available():
        return
    raise NoGPU(
        f"job {os.environ['SLURM_JOB_ID']} on {socket.gethostname()} asked for {asked} GPU(s) and torch sees none "
        f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}, torch {torch.__version__} "
        f"built for CUDA {torch.version.cuda or 'none'}): install a CUDA build of torch in the jobs' environment, "
        "check the partition's GPUs (executor.partition, executor.sbatch_args: {gres: 'gpu:1'} where the site "
        "wants --gres), or run on the CPU with device=cpu"
    )


GPU_JOB_MIN_CPUS = 4
"""Below this, a GPU job's decoding processes cannot keep its GPU busy (a warning says so)."""


def batched_threads(device_type: str, cpus: int | None) -> int | None:
    """Torch threads of the model's process in the batched path: on a GPU two at most (the forward runs on
    the device; the job's other CPUs decode), on the CPU the job's CPUs (the forward is the work; None:
    torch's default)."""
    if device_type == "cuda":
        return min(2, cpus or 2)
    return cpus


def few_cpus_warning(device_type: str, cpus: int | None) -> str | None:
    """What to tell a GPU job given too few CPUs to decode for its GPU (None: enough, or on the CPU)."""
    if device_type != "cuda" or cpus is None or cpus >= GPU_JOB_MIN_CPUS:
        return None
    return (
        f"this GPU job has {cpus} CPU(s): its {max(2, cpus - 1)} decoding processes are unlikely to keep the GPU "
        f"busy; ask for at least {GPU_JOB_MIN_CPUS * 2} (executor.cpus_per_task=8)"
    )


def device_name(device: tp.Any) -> str:
    """What an entry records of the device that computed it: the GPU's model, or the CPU's."""
    import platform

    if getattr(device, "type", str(device)) == "cuda":
        import torch

        return str(torch.cuda.get_device_name(device))
    return f"cpu ({platform.processor() or platform.machine()})"


def peak_memory_bytes(device: tp.Any) -> int:
    """The job's peak memory so far on ``device``: what torch allocated on a GPU, the process's resident
    set on the CPU (the worker's own, not its decoding processes')."""
    if getattr(device, "type", str(device)) == "cuda":
        import torch

        return int(torch.cuda.max_memory_allocated(device))
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
