"""Where everything lives in a store: the one home of its folder and file names.

Layout::

    <store>/zarr.json                         root group
    <store>/<config_uid>/zarr.json            group; attrs: canonical config, the model's names
    <store>/<config_uid>/<video_hash>/        entry: array (*features, time) + attrs
    <store>/<config_uid>/_failed/<hash>.json  last failure of a video under that config
    <store>/<config_uid>/_index.json          table of the config's entries (listing reads this, not each entry)
    <store>/<config_uid>/_leases/             per-video claims (``pipeline.store.leases``)
    <store>/<config_uid>/_launches/           what each launch asked for, and its jobs
    <store>/_staging/                         entries being written (renamed into place when complete)
    <store>/_index/hashes.json                content hashes by (path, size, mtime); durations.json likewise
    <store>/_jobs/<config_uid>/               submitit's job folders and logs, launch summaries

Names starting with ``_`` are never config UIDs or video hashes.
"""

from __future__ import annotations

from pathlib import Path

STAGING = "_staging"
FAILED = "_failed"
LAUNCHES = "_launches"
LEASES = "_leases"
INDEX = "_index.json"
CACHES = "_index"
JOBS = "_jobs"


def staging(store: Path) -> Path:
    return store / STAGING


def caches(store: Path) -> Path:
    """The store-wide caches (content hashes, durations) that make a relaunch cheap."""
    return store / CACHES


def jobs(store: Path, config_uid: str) -> Path:
    """The config's job folders and logs (``<job id>_0_log.out`` / ``.err`` per job) and launch summaries."""
    return store / JOBS / config_uid


def is_reserved(name: str) -> bool:
    """A name the store uses for itself, never a config UID or a video hash."""
    return name.startswith(("_", "."))
