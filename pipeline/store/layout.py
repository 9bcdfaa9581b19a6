"""Where everything lives in a store: the one home of its folder and file names.

Layout (``LAYOUT_VERSION`` 5)::

    <store>/zarr.json                            root group (attrs: pipeline_store = LAYOUT_VERSION)
    <store>/<config_uid>/zarr.json               group; attrs: canonical config, and a mirror of its facts
    <store>/<config_uid>/_facts/<key>-<digest>.json  a fact a launch learned (a name of the model, a commit
                                                 its jobs loaded, its content identity, its frame count);
                                                 never rewritten
    <store>/<config_uid>/<segment>/              zarr group written whole by one writer: ``embedding``
                                                 (row, *features), ``time`` (row, seconds), ``video``
                                                 (row, content hash), ``layer`` where layers are kept;
                                                 named ``s<ms>-<writer>-<random>``
    <store>/<config_uid>/_log/<N>.parquet        commit N (20 digits): entries added (video hash, segment,
                                                 first row, rows, attributes), removed, or writers revoked
    <store>/<config_uid>/_checkpoints/<N>.parquet  every entry as of commit N, sorted by hash; never rewritten
    <store>/<config_uid>/_failed/<hash>.json     last failure of a video under that config
    <store>/<config_uid>/_leases/                per-video claims (``pipeline.store.leases``)
    <store>/<config_uid>/_launches/<id>.json     what a launch asked for, its jobs; ``<id>.queue.parquet``
                                                 its queue, which every task of the launch reads
    <store>/_writers/<writer>.json               a live writer's heartbeat (``pipeline.store.writers``)
    <store>/_staging/<config_uid>-<segment>/     segments being written (renamed into place when whole)
    <store>/_caches/hashes.parquet               content hashes by (path, size, mtime), and hashes/ the
                                                 chunks appended since (``pipeline.store.caches``); the
                                                 same for durations by content hash
    <store>/_measurements/<time>-<id>.json       what a job (or ``pipeline.calibrate``) measured: forward steps
                                                 run, seconds busy, per model (``pipeline.launch.estimate``)
    <store>/_jobs/<config_uid>/<user>/           that user's job folders and logs (only the user can write
                                                 them: jobs unpickle what they hold); launch summaries above

How the log and checkpoints make a consistent, durable store is ``pipeline.store.log`` (docs/store.md).
Names starting with ``_`` are never config UIDs or segments. Layout 4 (pipeline 0.3) listed entries in
``_manifests/`` and one ``_index.parquet`` rewritten in place; layout 3 (0.2 and before) kept one zarr array
per entry at ``<config_uid>/<video_hash>/``; ``python -m pipeline.convert`` rewrites either.
"""

from __future__ import annotations

import getpass
from pathlib import Path

LAYOUT_VERSION = 5
"""The store's layout (root attribute ``pipeline_store``): 3 had one array per entry, 4 packs segments
listed by manifests and an index, 5 lists them by a commit log and checkpoints."""

STAGING = "_staging"
FAILED = "_failed"
LAUNCHES = "_launches"
LEASES = "_leases"
LOG = "_log"
CHECKPOINTS = "_checkpoints"
FACTS = "_facts"
"""What launches learned about a config: a file per fact, never rewritten (``pipeline.store.facts``)."""
WRITERS = "_writers"
MANIFESTS = "_manifests"
"""Layout 4's list of entries (with ``INDEX`` and ``COMPACTION``): read only to convert it."""
INDEX = "_index.parquet"
COMPACTION = "_compaction"
CACHES = "_caches"
MEASUREMENTS = "_measurements"
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


def measurements(store: Path) -> Path:
    """What jobs measured of their speed, per model and device: the launcher's estimates come from them."""
    return store / MEASUREMENTS


def writers(store: Path) -> Path:
    return store / WRITERS


def jobs(store: Path, config_uid: str) -> Path:
    """The config's launch summaries, and each user's job folder (``user_jobs``)."""
    return store / JOBS / config_uid


def user_jobs(store: Path, config_uid: str, user: str | None = None) -> Path:
    """One user's job folders of a config: submitit's pickled submissions and results, which the jobs
    unpickle and run, and their logs (``<job id>_0_log.out`` / ``.err``): this user's alone to write
    (``files.make_private_dir``), since a lab shares a store's data, never its code."""
    return jobs(store, config_uid) / (user or getpass.getuser())


def is_reserved(name: str) -> bool:
    """A name the store uses for itself, never a config UID or a segment."""
    return name.startswith(("_", "."))
