"""Every version the pipeline records, in one place.

``PIPELINE_VERSION`` is the installed package's (``pyproject.toml`` is its one home); ``FORMAT_VERSION``
(``IMAGE_FORMAT_VERSION`` for image models) changes the config UID when the stored numbers or layout
change; ``UID_VERSION`` pins exca's UID scheme.
"""

from __future__ import annotations

from importlib import metadata


def _installed_version() -> str:
    try:
        return metadata.version("pipeline")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


PIPELINE_VERSION = _installed_version()

FORMAT_VERSION = 3
"""Bump when the stored numbers or layout change for an unchanged config (2: torchvision processors and
the reference reader's frame rate, duration and end of stream; 3: exca UIDs holding the model's identity).
Image models have their own, ``IMAGE_FORMAT_VERSION``: a change to their numbers alone leaves video models'
entries where they are."""

IMAGE_FORMAT_VERSION = 4
"""The output-format version of image models (``format_version``): 4 since an image step whose frame lies
past the end of the stream takes the video's last frame under ``image_frames=seed`` (the reference's is a
random one, see docs/numbers.md); 3 before."""


def format_version(family_name: str) -> int:
    """The current output-format version of a model family: ``IMAGE_FORMAT_VERSION`` for image models,
    ``FORMAT_VERSION`` for the others (an unknown family's included)."""
    from pipeline.config.families import FAMILIES

    traits = FAMILIES.get(family_name)
    return IMAGE_FORMAT_VERSION if traits is not None and not traits.is_video else FORMAT_VERSION


UID_VERSION = 3
"""exca's UID scheme, pinned so that an exca upgrade (or ``CONFDICT_UID_VERSION``) cannot rename entries."""
