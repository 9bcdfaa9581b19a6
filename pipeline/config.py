"""Validated configuration and the config UID.

``EmbedConfig`` holds every field that changes the numbers; its canonical form, hashed, is the
config UID. ``RunConfig`` adds what does not (device, batch size, paths, executor).
"""

from __future__ import annotations

import math
import typing as tp
from pathlib import Path

import pydantic

from .aggregation import LayerAggregation, TokenAggregation
from .models import adapter_class

FORMAT_VERSION = 3
"""Bump when the stored numbers or layout change for an unchanged config (2: torchvision processors and
the reference reader's frame rate, duration and end of stream; 3: exca UIDs holding the model's identity)."""

UID_VERSION = 3
"""exca's UID scheme, pinned so that an exca upgrade (or ``CONFDICT_UID_VERSION``) cannot rename entries."""

DTYPES = ("float32", "float16", "bfloat16")


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the field."""


class ModelSpec(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    name: str
    """Hub id or local folder; for ``tiny`` models, the folder name under ``models_dir``."""
    family: str
    tiny: bool = False
    trust_remote_code: bool = False
    identity: str | None = None
    """What the weights are: the hub snapshot's commit (40 hex digits), or ``files-<hash>`` of a local
    folder's files. The launcher resolves it before any job (``pipeline.identity``), replacing any value
    given; a reader may set it to pick one of several stored versions of a model."""

    def hub_revision(self) -> str | None:
        """The commit to load from the hub, so that every worker loads the snapshot the UID names."""
        return None if self.identity is None or self.identity.startswith("files-") else self.identity

    @pydantic.field_validator("family")
    @classmethod
    def _known_family(cls, value: str) -> str:
        adapter_class(value)
        return value


class EmbedConfig(pydantic.BaseModel):
    """Everything that changes the stored numbers."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    model: ModelSpec
    frequency: float | tp.Literal["native"] = 2.0
    clip_duration: float | None = None
    num_frames: int | None = None
    max_imsize: int | None = None
    layers: float | list[float] | tp.Literal["all"] = 2 / 3
    layer_aggregation: LayerAggregation = "mean"
    cache_n_layers: int | tp.Literal["all"] | None = None
    """Store the token-aggregated states of this many evenly spaced layers (``all``: every layer);
    ``layers`` and ``layer_aggregation`` then leave the UID and are applied when reading."""
    token_aggregation: TokenAggregation = "mean"
    layer_type: str = ""
    use_audio: bool = False
    dtype: tp.Literal["float32", "float16", "bfloat16"] = "float32"
    preprocess_device: tp.Literal["cpu", "cuda"] = "cpu"
    """``cuda``: the processor runs on the model's GPU (faster; pixels differ from the CPU's by up to one
    intensity level, so it is part of the UID when set)."""
    timing: tp.Literal["reference", "exact"] = "reference"
    """``reference``: the frame rate, duration and end-of-stream frames the reference's reader sees
    (``pipeline.reference_reader``); ``exact``: the exact container duration and presentation times."""

    @pydantic.field_validator("frequency")
    @classmethod
    def _positive_frequency(cls, value: float | str) -> float | str:
        if value != "native" and not (isinstance(value, float) and math.isfinite(value) and value > 0):
            raise ValueError(f"must be a positive number of Hz or 'native' (got {value!r})")
        return value

    @pydantic.field_validator("clip_duration")
    @classmethod
    def _positive_clip(cls, value: float | None) -> float | None:
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError(f"must be a positive number of seconds (got {value!r})")
        return value

    @pydantic.field_validator("num_frames", "max_imsize", "cache_n_layers")
    @classmethod
    def _positive_int(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and value < 1:
            raise ValueError(f"must be at least 1 (got {value!r})")
        return value

    @pydantic.field_validator("layers")
    @classmethod
    def _fractions(cls, value: tp.Any) -> tp.Any:
        if value == "all":
            return value
        values = value if isinstance(value, list) else [value]
        if not values:
            raise ValueError("needs at least one relative depth")
        for v in values:
            if not (math.isfinite(v) and 0 <= v <= 1):
                raise ValueError(f"relative depths must lie in [0, 1] (got {v!r})")
        return value

    @pydantic.model_validator(mode="after")
    def _family_rules(self) -> EmbedConfig:
        adapter = adapter_class(self.model.family)
        try:
            adapter.check_layer_type(self.layer_type)
        except ValueError as e:
            raise ValueError(str(e)) from None
        if self.preprocess_device != "cpu" and not adapter.framewise:
            raise ValueError(
                f"preprocess_device: the {self.model.family} family's processor takes whole clips, on the CPU "
                f"(got {self.preprocess_device!r})"
            )
        return self

    @property
    def is_video(self) -> bool:
        return adapter_class(self.model.family).is_video

    def canonical(self) -> dict[str, tp.Any]:
        """The fields that change the numbers, normalised, plus the output-format version. ``model`` is the
        model's identity (``pipeline.identity``), not its name: a renamed folder is the same model."""
        adapter = adapter_class(self.model.family)
        spec = self.model
        identity = spec.identity
        if spec.hub_revision() is not None:
            identity = f"{spec.name}@{identity}"
        out: dict[str, tp.Any] = {
            "format_version": FORMAT_VERSION,
            "model": identity,
            "family": spec.family,
            "frequency": self.frequency,
            "token_aggregation": self.token_aggregation,
            "dtype": self.dtype,
            "timing": self.timing,
        }
        if self.cache_n_layers is None:
            layers: tp.Any = self.layers
            if layers != "all":
                layers = sorted(set(layers if isinstance(layers, list) else [layers]))
            out.update(layers=layers, layer_aggregation=self.layer_aggregation)
        else:
            out["cache_n_layers"] = self.cache_n_layers
        if adapter.is_video:
            out.update(
                clip_duration=self.clip_duration,
                num_frames=self.num_frames,
                max_imsize=self.max_imsize,
                layer_type=self.layer_type,
            )
        if adapter.uses_audio:
            out["use_audio"] = self.use_audio
        if self.preprocess_device != "cpu":
            out["preprocess_device"] = self.preprocess_device
        return out

    def uid(self) -> str:
        """exca's UID of the canonical config after the family: the fields that differ from their defaults,
        readable, then a hash of every field (``videomae-frequency=3,layers=0.50-1f2e3d4c``)."""
        if self.model.identity is None:
            raise ConfigError(
                f"model.identity: the identity of {self.model.name!r} is not resolved (the launcher resolves it; "
                "readers find a config in the store with Store.find_config)"
            )
        return config_uid(self.canonical(), EmbedConfig.model_construct(model=self.model).canonical())


_NOT_SHOWN = ("format_version", "model", "family")
_SHELL_UNSAFE = {ord(c): None for c in "(){}"}


def config_uid(canonical: dict[str, tp.Any], defaults: dict[str, tp.Any]) -> str:
    """``<family>-<fields that differ from defaults>-<hash of every field>`` with exca's ``ConfDict`` UID.
    The model's identity is hashed, never shown (hub names hold ``/``); brackets are dropped from the
    readable part so that a UID can be pasted into a shell unquoted."""
    from exca import ConfDict

    shown = {k: v for k, v in canonical.items() if k not in _NOT_SHOWN and defaults.get(k, ...) != v}
    digest = ConfDict(canonical).to_uid(version=UID_VERSION).rsplit("-", 1)[1]
    readable = ConfDict(shown).to_uid(version=UID_VERSION).rsplit("-", 1)[0] if shown else ""
    return "-".join(p for p in (canonical["family"], readable.translate(_SHELL_UNSAFE), digest) if p)


class ExecutorConfig(pydantic.BaseModel):
    """Where jobs run. SLURM fields map onto sbatch options; local and debug ignore them."""

    model_config = pydantic.ConfigDict(extra="forbid")

    name: tp.Literal["local", "debug", "slurm", "auto"] = "local"
    """``auto``: SLURM where ``sbatch`` is on the PATH, local otherwise."""
    timeout_min: int = pydantic.Field(default=60, ge=1)
    cpus_per_task: int = pydantic.Field(default=2, ge=1)
    gpus_per_node: int = pydantic.Field(default=0, ge=0)
    mem_gb: float | None = pydantic.Field(default=None, gt=0)
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    array_parallelism: int = pydantic.Field(default=16, ge=1)
    """At most this many array tasks (shards) of one launch run at once."""
    max_requeues: int = pydantic.Field(default=3, ge=0)
    """Time-outs after which a shard is no longer requeued (pre-emptions do not count)."""
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
    videos: str
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
    lease_ttl_s: float = 120.0
    """A worker's claim on a video lapses this long after its last heartbeat."""
    verbose: bool = False
    """Let the libraries' own warnings and progress bars through (transformers, huggingface_hub)."""
    decoders: int | None = pydantic.Field(default=None, ge=0)
    """Decoding processes per job (None: one per CPU of the job but one, at least 2); 0: one video at a time
    in the model's process (the engine alone)."""
    executor: ExecutorConfig = ExecutorConfig()

    @pydantic.field_validator("batch_size", "videos_per_job", "max_jobs", "max_attempts")
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
