"""What a computation is and how a launch runs it: validated pydantic configs and the config UID.

Nothing in this subpackage imports torch: the store, its readers and the tools build configs too.
"""

from pipeline.config.compose import ConfigLike, compose_run_config, config_words, embed_config_of
from pipeline.config.embed import (
    EmbedConfig,
    ImageFrames,
    LayerAggregation,
    Layers,
    ModelSpec,
    TokenAggregation,
    is_commit,
)
from pipeline.config.errors import ConfigError
from pipeline.config.families import FAMILIES, Family, family
from pipeline.config.run import CONF_DIR, ExecutorConfig, RunConfig, build_run_config
from pipeline.config.uid import config_uid, looks_like_config_uid
from pipeline.config.versions import FORMAT_VERSION, IMAGE_FORMAT_VERSION, PIPELINE_VERSION, UID_VERSION, format_version

__all__ = [
    "CONF_DIR",
    "FAMILIES",
    "FORMAT_VERSION",
    "IMAGE_FORMAT_VERSION",
    "PIPELINE_VERSION",
    "UID_VERSION",
    "ConfigError",
    "ConfigLike",
    "EmbedConfig",
    "ExecutorConfig",
    "Family",
    "ImageFrames",
    "LayerAggregation",
    "Layers",
    "ModelSpec",
    "RunConfig",
    "TokenAggregation",
    "build_run_config",
    "compose_run_config",
    "config_words",
    "embed_config_of",
    "config_uid",
    "family",
    "format_version",
    "is_commit",
    "looks_like_config_uid",
]
