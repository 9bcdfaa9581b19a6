"""Where everything lives in a store: the one home of its folder and file names.

Layout (``LAYOUT_VERSION`` 4)::

    <store>/zarr.json                            root group (attrs: pipeline_store = LAYOUT_VERSION)
    <store>/<config_uid>/zarr.json               group; attrs: canonical config, the model's names
    <store>/<config_uid>/<segment>/              zarr group written whole by one writer: ``embedding``
                                                 (row, *features), ``time`` (row, seconds), ``video``
                                                 (row, content hash), ``layer`` where layers are kept
    <store>/<config_uid>/_manifests/*.parquet    each names the entries of one segment (video hash, first
                                                 row, rows, attributes); an entry exists once named here
    <store>/<config_uid>/_index.parquet          the manifests compacted into one table, sorted by hash
    <store>/<config_uid>/_failed/<hash>.json     last failure of a video under that config
    <store>/<config_uid>/_leases/                per-video claims (``pipeline.store.leases``)
    <store>/<config_uid>/_compaction/            the claim of whoever compacts the index
    <store>/<config_uid>/_launches/<id>.json     what a launch asked for, its jobs; ``<id>.queue.parquet``
                                                 its queue, which every task of the launch reads
    <store>/_staging/                            segments being written (renamed into place when whole)
    <store>/_caches/hashes.parquet               content hashes by (path, size, mtime); durations.parquet
    <store>/_jobs/<config_uid>/                  submitit's job folders and logs, launch summaries

Names starting with ``_`` are never config UIDs or segments. Layout 3 (pipeline 0.2 and before) kept one
zarr array per entry at ``<config_uid>/<video_hash>/``; ``python -m pipeline.convert`` rewrites it.
"""

from __future__ import annotations

from pathlib import Path

LAYOUT_VERSION = 4
"""The store's layout (root attribute ``pipeline_store``): 3 had one array per entry, 4 packs segments."""

STAGING = "_staging"
FAILED = "_failed"
LAUNCHES = "_launches"
LEASES = "_leases"
MANIFESTS = "_manifests"
INDEX = "_index.parquet"
COMPACTION = "_compaction"
CACHES = "_caches"
JOBS = "_jobs"
QUEUE_SUFFIX = ".queue.parquet"

EMBEDDING = "embedding"
"""The segment's array of numbers, rows first; ``time`` and ``video`` run along the same rows."""
ROW = "row"


def staging(store: Path) -> Path:
    return store / STAGING


def caches(store: Path) -> Path:
    """The store-wide caches (content hashes, durations) that make a relaunch cheap."""
    return store / CACHES


def jobs(store: Path, config_uid: str) -> Path:
    """The config's job folders and logs (``<job id>_0_log.out`` / ``.err`` per job) and launch summaries."""
    return store / JOBS / config_uid


def is_reserved(name: str) -> bool:
    """A name the store uses for itself, never a config UID or a segment."""
    return name.startswith(("_", "."))
