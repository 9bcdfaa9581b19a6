"""A launch's configuration: the computation (``EmbedConfig``) plus what does not change the numbers
(device, batch size, paths, executor), built from Hydra's flat dict with errors that name the field."""

from __future__ import annotations

import typing as tp
from pathlib import Path

import pydantic

from pipeline.config.embed import EmbedConfig
from pipeline.config.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
"""The launcher's Hydra configuration: ``config.yaml`` (its defaults are the models' below, checked by a
test) and the ``model/`` and ``executor/`` groups."""


class ExecutorConfig(pydantic.BaseModel):
    """Where jobs run. SLURM fields map onto sbatch options; local and debug ignore them."""

    model_config = pydantic.ConfigDict(extra="forbid")

    name: tp.Literal["local", "debug", "slurm", "auto"] = "local"
    """``auto``: SLURM where ``sbatch`` is on the PATH, local otherwise."""
    timeout_min: int = pydantic.Field(default=60, ge=1)
    cpus_per_task: int = pydantic.Field(default=2, ge=1)
    gpus_per_node: int | None = pydantic.Field(default=None, ge=0)
    """GPUs per task; None: one on SLURM unless ``device=cpu`` (``pipeline.launch.resources.task_gpus``)."""
    mem_gb: float | None = pydantic.Field(default=None, gt=0)
    """Memory per task; None: from the model's size on SLURM (``pipeline.launch.resources.default_mem_gb``)."""
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    array_parallelism: int = pydantic.Field(default=16, ge=1)
    """At most this many array tasks (jobs) of one launch run at once."""
    max_requeues: int = pydantic.Field(default=3, ge=0)
    """Time-outs after which a job is no longer requeued (pre-emptions do not count)."""
    signal_delay_s: int = pydantic.Field(default=90, ge=0)
    """SLURM signals a job this long before its time limit, so that it can checkpoint and requeue."""
    sbatch_args: dict[str, str | int | float | bool] = {}
    """Any other sbatch option, e.g. ``{mail-type: END}``."""
    setup: list[str] = []
    """Shell lines run before the worker starts (``module load ...``)."""

    def resolved_name(self) -> str:
        if self.name != "auto":
            return self.name
        import shutil

        return "slurm" if shutil.which("sbatch") else "local"


class RunConfig(pydantic.BaseModel):
    """A launch: what to embed, where the videos and the store are, how to run jobs."""

    model_config = pydantic.ConfigDict(extra="forbid")

    embed: EmbedConfig
    videos: str | list[str]
    """A folder (recursive), a glob pattern, one file, a list file of paths, or a list of any of these
    (``pipeline.launch.discovery.find_videos``)."""
    store: str = "embeddings.zarr"
    models_dir: str = "models"
    device: str = "auto"
    batch_size: int = 8
    videos_per_job: int = 8
    max_jobs: int = 4
    dry_run: bool = False
    wait: bool = True
    """False: submit, print the job ids and how to follow them, and return at once."""
    retry_failed: bool = False
    """Videos recorded as failed under this config are skipped by later launches unless this is set."""
    max_attempts: int = 3
    """A video whose worker died (killed, out of memory) this many times is recorded as failed."""
    max_failures_in_a_row: int = 8
    """A job whose videos fail (or are left not done) this many times in a row stops taking videos: a node
    without the video mount or a GPU in a bad state would otherwise go through the whole shared queue."""
    lease_ttl_s: float = 120.0
    """A worker's claim on a video lapses this long after its last heartbeat."""
    flush_s: float = pydantic.Field(default=120.0, ge=0)
    """A computed video waits at most this long in its job's segment before the segment is published (it is
    published anyway every 64 MiB, at the job's end and when the job is pre-empted or times out): what a
    ``kill -9`` can cost, against fewer, larger files. 0: each video published as soon as it is done."""
    progress_s: float = pydantic.Field(default=30.0, ge=0)
    """Where the output is a log file, not a terminal: seconds between two progress lines of the launcher,
    the hashing and probing steps and the jobs (in a terminal: the usual bars)."""
    verbose: bool = False
    """Let the libraries' own warnings and progress bars through (transformers, huggingface_hub)."""
    decoders: int | None = pydantic.Field(default=None, ge=0)
    """Decoding processes per job (None: one per CPU of the job but one, at least 2); 0: one video at a time
    in the model's process (the engine alone)."""
    executor: ExecutorConfig = ExecutorConfig()

    @pydantic.field_validator("batch_size", "videos_per_job", "max_jobs", "max_attempts", "max_failures_in_a_row")
    @classmethod
    def _at_least_one(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"must be at least 1 (got {value})")
        return value

    @pydantic.field_validator("lease_ttl_s")
    @classmethod
    def _positive(cls, value: float) -> float:
        if not value > 0:
            raise ValueError(f"must be positive (got {value})")
        return value

    @pydantic.field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value != "auto" and value.split(":")[0] not in ("cpu", "cuda", "mps"):
            raise ValueError(f"must be auto, cpu, cuda, cuda:N or mps (got {value!r})")
        return value

    @pydantic.model_validator(mode="after")
    def _preprocess_on_the_model_device(self) -> RunConfig:
        if self.embed.preprocess_device == "cuda" and self.device.split(":")[0] not in ("auto", "cuda"):
            raise ValueError(f"preprocess_device: cuda needs device=cuda or auto (got device={self.device!r})")
        return self

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def model_source(self) -> str:
        spec = self.embed.model
        return str(Path(self.models_dir) / spec.name) if spec.tiny else spec.name


_EMBED_FIELDS = set(EmbedConfig.model_fields)


def _errors_text(err: pydantic.ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith(("function-", "literal[")))
        loc = loc.removeprefix("embed").removeprefix(".")
        msg = e["msg"].removeprefix("Value error, ")
        if "(got " not in msg:
            msg = f"{msg} (got {e.get('input')!r})"
        lines.append(msg if not loc or msg.startswith(f"{loc}:") else f"{loc}: {msg}")
    return "; ".join(dict.fromkeys(lines))


def build_run_config(flat: tp.Mapping[str, tp.Any]) -> RunConfig:
    """A ``RunConfig`` from the flat Hydra dict (embed fields at top level); errors name the field."""
    data = dict(flat)
    data.pop("hydra", None)
    embed = {k: data.pop(k) for k in list(data) if k in _EMBED_FIELDS}
    for key in ("frequency", "clip_duration", "layers"):
        value = embed.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            embed[key] = float(value)
        if isinstance(value, list):
            embed[key] = [float(v) if isinstance(v, int) else v for v in value]
    try:
        return RunConfig.model_validate({"embed": embed, **data})
    except pydantic.ValidationError as e:
        raise ConfigError(_errors_text(e)) from None
