"""Writing entries: a writer packs the entries it computes into segments of its own, each written whole
aside and synced, renamed into place, then published by a commit (``pipeline.store.log``). Never two
writers in one file: zarr's partial shard writes read, modify and rewrite a shard, which concurrent writers
would corrupt. A writer holds a liveness record (``pipeline.store.writers``) while it may publish, and
reports a video as written only when its commit holds the entry once the log is read up to it."""

from __future__ import annotations

import dataclasses
import errno
import logging
import math
import os
import shutil
import sys
import time
import typing as tp
import uuid
from pathlib import Path

import numpy as np

from pipeline.common.failures import ENVIRONMENT_ERRNOS, environmental
from pipeline.common.files import fsync_dir, make_shared_dirs, share, share_tree, sync_tree
from pipeline.store import layout, manifest
from pipeline.store import log as commit_log
from pipeline.store.dims import output_dims
from pipeline.store.index import COMPACT_AFTER, Catalog
from pipeline.store.writers import WriterRecord
from pipeline.testing import faults

logger = logging.getLogger(__name__)

TIME_CHUNK = 256
"""Rows (time steps) per chunk: reading a time window reads only its chunks of the segment's shard."""
SEGMENT_BYTES = 64 << 20
"""A writer flushes its segment once this many bytes of numbers are waiting (each segment is one shard
file per array: a million 20-step entries of 64 float32 features make about 80 segments); the worker also
flushes once its oldest waiting entry has waited ``RunConfig.flush_s``."""


class StoreError(OSError):
    """The store itself cannot take writes (full, read-only, failing I/O): no video is to blame, so the job
    stops and its videos stay not done."""


class WriterRevoked(StoreError):
    """This writer was presumed dead (stalled past its heartbeat's lapse) and revoked by ``gc``: what it
    published since is void, its videos are not written and will be computed again."""


@dataclasses.dataclass
class Pending:
    """An entry computed, not yet published: ``data`` is ``(*features, time)``."""

    video_hash: str
    data: np.ndarray
    attrs: dict[str, tp.Any]


def segment_name(writer: str) -> str:
    """A name no other writer will take: milliseconds since the epoch, the writer's id, then random."""
    return f"s{time.time_ns() // 1_000_000:013d}-{writer}-{uuid.uuid4().hex[:8]}"


def _sharded(group: tp.Any, name: str, values: np.ndarray, dims: list[str], **attrs: tp.Any) -> None:
    """One array of the segment: chunks of ``TIME_CHUNK`` rows in one shard file, written in one go."""
    rows = max(values.shape[0], 1)
    chunk = (min(rows, TIME_CHUNK), *values.shape[1:])
    array = group.create_array(
        name,
        shape=values.shape,
        dtype=values.dtype if values.dtype.kind != "U" else str,
        chunks=chunk,
        shards=(chunk[0] * math.ceil(rows / chunk[0]), *values.shape[1:]),
        dimension_names=dims,
        chunk_key_encoding={"name": "default", "separator": "."},
        attributes=attrs,
    )
    array[...] = values


def write_segment(
    store: Path, config_uid: str, entries: list[Pending], catalog: Catalog, writer: str, kind: str = commit_log.ADD
) -> tuple[str, int]:
    """Write ``entries`` (one feature shape and dtype) as one segment of ``config_uid``, sync it, and
    commit it as ``kind`` (entries added, or videos' progress); returns the segment's name and its commit's
    number. Nothing is visible before the commit."""
    import zarr

    first = entries[0]
    segment = segment_name(writer)
    staging = layout.staging(store) / f"{config_uid}-{segment}"
    make_shared_dirs(staging.parent, store)
    rows, starts = 0, []
    for e in entries:
        starts.append(rows)
        rows += e.data.shape[-1]
    try:
        config = first.attrs.get("config", {}) or {}
        dims, coords = output_dims(
            first.data.ndim,
            list(first.attrs.get("layer_indices") or []),
            str(first.attrs.get("layer_aggregation") or config.get("layer_aggregation", "")),
            str(config.get("token_aggregation", "")),
        )
        group = zarr.open_group(str(staging), mode="w", zarr_format=3)
        group.attrs.update({"config_uid": config_uid, "entries": len(entries), "pipeline_store": layout.LAYOUT_VERSION})
        data = np.concatenate([np.moveaxis(e.data, -1, 0) for e in entries])
        feature_dims = [layout.ROW, *dims[1:]]
        _sharded(group, layout.EMBEDDING, data, feature_dims, coordinates="time video")
        times = np.concatenate([np.asarray(e.attrs.get("times", []), dtype=np.float64) for e in entries])
        if times.shape != (rows,):
            raise ValueError(f"store: entry times do not match their rows ({times.shape[0]} times, {rows} rows)")
        _sharded(group, "time", times, [layout.ROW], units="s", long_name="time from the video's start")
        videos = np.concatenate([np.full(e.data.shape[-1], e.video_hash) for e in entries])
        _sharded(group, "video", videos, [layout.ROW], long_name="content hash of the video file")
        for name, values in coords.items():
            if name in feature_dims:
                _sharded(group, name, np.asarray(values, dtype=np.int64), [name])
        faults.in_write()
        faults.point("segment-staged")
        share_tree(staging)
        sync_tree(staging)  # the data on disk before any commit names it
        if not (store / config_uid / "zarr.json").exists():  # a bare writer: the config's group, plain
            make_shared_dirs(store / config_uid, store)
            zarr.open_group(str(store / config_uid), mode="a", zarr_format=3)
            share(store / config_uid / "zarr.json")
        os.rename(staging, store / config_uid / segment)
        fsync_dir(store / config_uid)
        faults.point("segment-placed")
        rows_out = [
            manifest.manifest_row(e.video_hash, segment, start, e.data.shape, str(e.data.dtype), e.attrs)
            for e, start in zip(entries, starts)
        ]
        version = catalog.commit(kind, manifest.to_table(rows_out), writer=writer)
    except OSError as e:
        if environmental(e):
            what = (
                f"entry {config_uid}/{first.video_hash}"
                if len(entries) == 1
                else f"{len(entries)} entries of {config_uid} ({first.video_hash}, ...)"
            )
            code = e.errno if e.errno in ENVIRONMENT_ERRNOS else errno.EIO
            raise StoreError(
                code,
                f"store: {os.strerror(code).lower()} under {store} while writing {what} "
                f"({sum(p.data.nbytes for p in entries)} bytes); {'it was' if len(entries) == 1 else 'they were'} "
                f"not written and stored entries are intact: free space ({sys.executable} -m pipeline.gc "
                f"store={store}) or fix the store's permissions, then relaunch",
            ) from e
        raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return segment, version


class SegmentWriter:
    """The entries one worker computes, packed: ``add`` keeps them, ``flush`` writes what waits as
    segments (one per feature shape) and publishes them. ``due()`` says when a flush is owed."""

    def __init__(
        self,
        store: Path,
        config_uid: str,
        catalog: Catalog,
        *,
        flush_bytes: int = SEGMENT_BYTES,
        flush_s: float | None = None,
    ) -> None:
        self.store, self.config_uid, self.catalog = store, config_uid, catalog
        self.flush_bytes, self.flush_s = flush_bytes, flush_s
        self.waiting: list[Pending] = []
        self.record = WriterRecord(store, config_uid)
        self._since = 0.0
        self._bytes = 0

    def add(self, video_hash: str, data: np.ndarray, attrs: dict[str, tp.Any]) -> None:
        if not self.waiting:
            self._since, self._bytes = time.monotonic(), 0
        self.waiting.append(Pending(video_hash, np.asarray(data), attrs))
        self._bytes += self.waiting[-1].data.nbytes

    def due(self) -> bool:
        if not self.waiting:
            return False
        if self._bytes >= self.flush_bytes:
            return True
        return self.flush_s is not None and time.monotonic() - self._since >= self.flush_s

    def flush(self) -> dict[str, bool]:
        """Write what waits; returns video hash -> written (False: another writer's commit holds it).
        ``WriterRevoked`` when this writer was revoked: none of what it committed since counts."""
        waiting, self.waiting = self.waiting, []
        written: dict[str, bool] = {}
        groups: dict[tuple[tp.Any, ...], list[Pending]] = {}
        self.catalog.refresh()
        for p in waiting:
            if p.video_hash in written or self.catalog.contains(p.video_hash):
                written.setdefault(p.video_hash, False)
                continue
            written[p.video_hash] = True
            groups.setdefault((p.data.shape[:-1], p.data.dtype.str), []).append(p)
        if not groups:
            return written
        segments: dict[str, str] = {}
        versions: dict[str, int] = {}
        for entries in groups.values():
            segment, version = self._publish(entries, commit_log.ADD, [p.video_hash for p in waiting])
            segments.update({p.video_hash: segment for p in entries})
            versions.update({p.video_hash: version for p in entries})
        # the log read up to (and past) these commits: which of them hold their entries
        self.catalog.refresh(until=max(versions.values()))
        for video_hash, segment in segments.items():
            written[video_hash] = self.catalog.winner_segment(video_hash) == segment
        self._check_fenced(versions)
        self._compact_if_due()
        return written

    def save_progress(self, video_hash: str, data: np.ndarray, attrs: dict[str, tp.Any]) -> bool:
        """Publish the steps computed so far for a video (``data`` ``(*features, steps)``, ``attrs`` with
        their ``times``) as its progress, never an entry: a task that takes the video next continues from
        there (``Store.progress``). True when the log holds it as the video's furthest progress; False when
        the video's entry is there already or another task got as far. ``WriterRevoked`` as ``flush``."""
        pending = Pending(video_hash, np.asarray(data), attrs)
        if pending.data.ndim < 1 or pending.data.shape[-1] == 0:
            raise ValueError(f"store: progress of {video_hash} holds no step (shape {pending.data.shape})")
        self.catalog.refresh()
        if self.catalog.contains(video_hash):
            return False
        segment, version = self._publish([pending], commit_log.PROGRESS, [video_hash])
        self.catalog.refresh(until=version)
        row = self.catalog.progress_row(video_hash)
        self._check_fenced({video_hash: version})
        self._compact_if_due()
        return row is not None and row["segment"] == segment

    def _publish(self, entries: list[Pending], kind: str, videos: list[str]) -> tuple[str, int]:
        """One segment written and committed as ``kind`` under this writer's record (``WriterRevoked``
        rather than a missing file when gc fenced this writer meanwhile)."""
        self._check_revoked(videos)
        self.record.start()
        try:
            return write_segment(self.store, self.config_uid, entries, self.catalog, self.record.id, kind)
        except Exception as e:
            self.record.check()  # its staging removed under it by gc: say so, not a missing file
            if self.record.revoked:
                self._check_revoked(videos)
            raise e

    def _check_fenced(self, versions: dict[str, int]) -> None:
        """After reading the log past these commits (video -> commit): what this writer committed before its
        revocation stands; what came after is void (``WriterRevoked``)."""
        revoked_at = self.catalog.fold().revoked_at.get(self.record.id)
        if revoked_at is not None:
            self.record.revoked = True
            self._check_revoked([h for h, v in versions.items() if v > revoked_at])

    def _compact_if_due(self) -> None:
        if self.catalog.pending_commits() > COMPACT_AFTER:
            try:
                self.catalog.compact()
            except (OSError, commit_log.TornFile) as e:  # the commits stand; a compaction only makes reading faster
                if isinstance(e, OSError) and not environmental(e):
                    raise
                logger.warning(
                    "store: compaction of %s skipped (%s); the next one folds these commits", self.config_uid, e
                )

    def _check_revoked(self, videos: list[str]) -> None:
        if not videos:
            return
        if self.record.revoked or self.record.id in self.catalog.revoked:
            self.record.revoked = True
            raise WriterRevoked(
                errno.ESTALE,
                f"store: writer {self.record.id} of {self.config_uid} was presumed dead (its heartbeat stalled "
                f"past the lapse) and revoked by gc; {len(videos)} video(s) not written ({', '.join(videos[:3])}"
                f"{', ...' if len(videos) > 3 else ''}): they will be computed again",
            )

    def close(self) -> None:
        """This writer publishes nothing more: its liveness record goes."""
        self.record.close()
