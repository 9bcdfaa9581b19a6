"""What a computation is: the fields that change the stored numbers, and their canonical form.

``EmbedConfig`` holds every field that changes the numbers; its canonical form, hashed
(``pipeline.config.uid``), is the config UID. Nothing here imports torch: readers and tools use it.
"""

from __future__ import annotations

import math
import re
import typing as tp

import pydantic

from pipeline.config.errors import ConfigError
from pipeline.config.families import family
from pipeline.config.uid import config_uid
from pipeline.config.versions import format_version

LayerAggregation = tp.Literal["mean", "sum", "group_mean", "none"]
TokenAggregation = tp.Literal["first", "last", "mean", "sum", "max", "cat", "none"]
Layers = float | list[float] | tp.Literal["all"]
ImageFrames = tp.Literal["seed", "bin_end"]
_COMMIT = re.compile(r"[0-9a-f]{40}")


def is_commit(value: str) -> bool:
    """``value`` is a hub commit (40 hex digits), not a branch or tag name."""
    return bool(_COMMIT.fullmatch(value))


class ModelSpec(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    name: str
    """Hub id or local folder; for ``tiny`` models, the folder name under ``models_dir``."""
    family: str
    tiny: bool = False
    trust_remote_code: bool = False
    revision: str | None = None
    """The user's pin of a hub model: a branch, tag or commit (None: the default branch). Not in the UID:
    what it resolves to is (``identity``)."""
    commit: str | None = None
    """The commit the pin resolved to, which every job loads offline. The launcher resolves it; recorded in
    the store (``model_commits``), not in the UID."""
    identity: str | None = None
    """What the weights are: ``content-<hash>`` over the loaded files' paths and SHA-256 (weights, configs,
    processor and tokenizer files, remote code), for hub snapshots and folders alike; in a store written by
    0.3, its form (``<name>@<commit>``, ``files-<hash>``). The launcher resolves it before any job
    (``pipeline.launch.identity``), replacing any value given; a reader may set it (or a 0.3 commit) to
    pick one of several stored versions of a model."""

    default_num_frames: int | None = None
    """Frames per clip the model takes when ``num_frames`` is not set (video models). The launcher resolves
    it from the model's config, like ``identity``; ``num_frames`` equal to it is the same computation,
    so the canonical config leaves it out."""

    def hub_revision(self) -> str | None:
        """The commit to load from the hub, so that every worker loads the snapshot the UID names."""
        return self.commit

    @pydantic.field_validator("family")
    @classmethod
    def _known_family(cls, value: str) -> str:
        family(value)
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
    use_audio: bool = True
    """Phi-4 multimodal: pass each clip's audio (the reference's default); other families ignore it."""
    dtype: tp.Literal["float32", "float16", "bfloat16"] = "float32"
    preprocess_device: tp.Literal["cpu", "cuda"] = "cpu"
    """``cuda``: the processor runs on the model's GPU (faster; pixels differ from the CPU's by up to one
    intensity level, so it is part of the UID when set)."""
    allow_tf32: bool = False
    """float32 on a GPU: let matrix products run in TensorFloat-32 (``torch.set_float32_matmul_precision
    ("high")``: faster on Ampere and later, about 1e-3 relative error, not bit-exact). Off: PyTorch's
    default, the reference's numbers. Part of the UID when set."""
    timing: tp.Literal["reference", "exact"] = "reference"
    """``reference``: the frame rate, duration and end-of-stream frames the reference's reader sees
    (``pipeline.embedding.reference_reader``); ``exact``: the exact container duration and presentation times."""
    image_frames: ImageFrames = "seed"
    """Image models: where each output step's frame is taken. ``seed``: ``linspace(0, duration, n)``, the
    reference extractor's (neuralset 0.0.2); ``bin_end``: the end of each step's bin,
    ``linspace(0, duration, n + 1)[1:]``, neuralset 0.4.0's. Video models ignore it."""

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
        traits = family(self.model.family)
        try:
            traits.check_layer_type(self.layer_type)
        except ValueError as e:
            raise ValueError(str(e)) from None
        if self.allow_tf32 and self.dtype != "float32":
            raise ValueError(f"allow_tf32: only float32 computes in TensorFloat-32 (got dtype={self.dtype})")
        if self.preprocess_device != "cpu" and not traits.framewise:
            raise ValueError(
                f"preprocess_device: the {self.model.family} family's processor takes whole clips, on the CPU "
                f"(got {self.preprocess_device!r})"
            )
        return self

    @property
    def is_video(self) -> bool:
        return family(self.model.family).is_video

    def canonical(self) -> dict[str, tp.Any]:
        """The fields that change the numbers, normalised, plus the output-format version. ``model`` is the
        model's identity (``pipeline.launch.identity``), not its name: a renamed folder is the same model."""
        traits = family(self.model.family)
        spec = self.model
        identity = spec.identity
        if identity is not None and is_commit(identity):  # a 0.3 hub identity, as a reader picks it
            identity = f"{spec.name}@{identity}"
        out: dict[str, tp.Any] = {
            "format_version": format_version(spec.family),
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
        if traits.is_video:
            out.update(
                clip_duration=self.effective_clip_duration(),
                num_frames=None if self.num_frames == spec.default_num_frames else self.num_frames,
                max_imsize=self.max_imsize,
                layer_type=self.layer_type,
            )
        elif self.image_frames != "seed":
            out["image_frames"] = self.image_frames
        if traits.uses_audio:
            out["use_audio"] = self.use_audio
        if self.preprocess_device != "cpu":
            out["preprocess_device"] = self.preprocess_device
        if self.allow_tf32:
            out["allow_tf32"] = True
        return out

    def frames_per_clip(self, hf_config: tp.Any) -> int | None:
        """Frames per clip (None for image models): the configured value, else the model's; a count the
        model cannot take is a ``ConfigError`` naming ``num_frames`` (the launcher's preflight raises it
        before any job is submitted)."""
        traits = family(self.model.family)
        if not traits.is_video:
            return None
        fewest, most, why = traits.frame_range(hf_config)
        if self.num_frames is None:
            return most
        if not fewest <= self.num_frames <= most:
            takes = f"exactly {most}" if fewest == most else f"{fewest} to {most}"
            raise ConfigError(
                f"num_frames: {self.model.name} takes {takes} frames per clip ({why}; got {self.num_frames})"
            )
        return self.num_frames

    def effective_clip_duration(self) -> float | None:
        """``clip_duration``, or None where it is one output step, the duration a clip takes anyway: one
        computation, one UID. Compared exactly, since the engine computes ``1 / frequency`` itself."""
        if self.frequency != "native" and self.clip_duration == 1 / self.frequency:
            return None
        return self.clip_duration

    def uid(self) -> str:
        """exca's UID of the canonical config after the family: the fields that differ from their defaults,
        readable, then a hash of every field (``videomae-frequency=3,layers=0.50-1f2e3d4c``)."""
        if self.model.identity is None:
            raise ConfigError(
                f"model.identity: the identity of {self.model.name!r} is not resolved (the launcher resolves it; "
                "readers find a config in the store with Store.find_config)"
            )
        return config_uid(self.canonical(), EmbedConfig.model_construct(model=self.model).canonical())
