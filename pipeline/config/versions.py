"""Every version the pipeline records, in one place.

``PIPELINE_VERSION`` is the installed package's (``pyproject.toml`` is its one home); ``FORMAT_VERSION``
changes the config UID when the stored numbers or layout change; ``UID_VERSION`` pins exca's UID scheme.
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
the reference reader's frame rate, duration and end of stream; 3: exca UIDs holding the model's identity)."""

UID_VERSION = 3
"""exca's UID scheme, pinned so that an exca upgrade (or ``CONFDICT_UID_VERSION``) cannot rename entries."""
