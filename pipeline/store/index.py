"""Which entries a config has: one compacted Parquet index plus the manifests published since.

Readers list the manifests, then read them and the index; a manifest that vanished in between was merged
into a newer index by a compaction, so they look again. Among manifests naming one video, the first
published wins (names sort in publishing order); the index already holds only winners. Compaction (after a
launch, by ``pipeline.gc``, and by writers when manifests pile up) merges manifests into a new index by one
rename, under a claim so that two compactions never race.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import json
import os
import typing as tp
import uuid
from pathlib import Path

from pipeline.common.files import share
from pipeline.store import layout, manifest
from pipeline.store.leases import Lease, acquire

if tp.TYPE_CHECKING:
    import pyarrow as pa

INDEX_ROW_GROUP = 4096
"""Rows per Parquet row group of the index, sorted by hash: finding one entry reads one row group, found
by bisecting the groups' first hashes (a million entries: 245 groups)."""
COMPACT_AFTER = 256
"""Manifests a writer lets pile up before it compacts them (a launch's end and ``gc`` compact anyway)."""
COMPACTION_TTL_S = 600.0


@dataclasses.dataclass(frozen=True)
class EntryInfo:
    uid: str
    """``<config_uid>/<video_hash>``."""
    config_uid: str
    video_hash: str
    video_path: str
    model: str
    shape: tuple[int, ...]
    frequency: float
    duration: float
    created: str
    seconds: float = 0.0
    """Wall time the worker spent on this video."""
    job_id: str = ""


class Entries(collections.abc.Sequence[EntryInfo]):
    """Entries as a sequence of ``EntryInfo``, built on demand from Parquet columns (a million entries list
    in well under a second); ``table`` has the columns themselves, ``hashes()`` the video hashes."""

    def __init__(self, parts: list[tuple[str, pa.Table]] | None = None) -> None:
        self.parts = [(cuid, table) for cuid, table in parts or [] if table.num_rows]
        self._starts = []
        total = 0
        for _, table in self.parts:
            self._starts.append(total)
            total += table.num_rows
        self._len = total
        self._columns: dict[int, dict[str, list[tp.Any]]] = {}

    def __len__(self) -> int:
        return self._len

    @tp.overload
    def __getitem__(self, i: int) -> EntryInfo: ...
    @tp.overload
    def __getitem__(self, i: slice) -> list[EntryInfo]: ...
    def __getitem__(self, i: int | slice) -> EntryInfo | list[EntryInfo]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        part = max(p for p, start in enumerate(self._starts) if start <= i)
        return self._info(part, i - self._starts[part])

    def __iter__(self) -> tp.Iterator[EntryInfo]:
        for part, (_, table) in enumerate(self.parts):
            for k in range(table.num_rows):
                yield self._info(part, k)

    def _info(self, part: int, k: int) -> EntryInfo:
        cuid, table = self.parts[part]
        if part not in self._columns:
            self._columns[part] = {name: table.column(name).to_pylist() for name in manifest.LISTING}
        c = self._columns[part]
        vhash = c["video_hash"][k]
        return EntryInfo(
            uid=f"{cuid}/{vhash}",
            config_uid=cuid,
            video_hash=vhash,
            video_path=c["video_path"][k] or "",
            model=c["model"][k] or "",
            shape=(*json.loads(c["features"][k]), c["rows"][k]),
            frequency=c["frequency"][k] or 0.0,
            duration=c["duration"][k] or 0.0,
            created=c["created"][k] or "",
            seconds=c["seconds"][k] or 0.0,
            job_id=c["job_id"][k] or "",
        )

    def hashes(self) -> list[str]:
        return [h for _, table in self.parts for h in table.column("video_hash").to_pylist()]

    def __repr__(self) -> str:
        return f"Entries({len(self)} entries)"


def _index_row(path: Path, video_hash: str) -> dict[str, tp.Any] | None:
    """The row of ``video_hash`` in an index sorted by hash, reading only the row group that can hold it."""
    import bisect

    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    index = pq.ParquetFile(path)
    meta = index.metadata
    column = index.schema_arrow.get_field_index("video_hash")
    firsts = []
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(column).statistics
        firsts.append(stats.min if stats is not None and stats.has_min_max else "")
    group = bisect.bisect_right(firsts, video_hash) - 1
    if group < 0:
        return None
    table = index.read_row_group(group)
    position = pc.index(table.column("video_hash"), video_hash).as_py()
    return None if position < 0 else table.slice(position, 1).to_pylist()[0]


def _stat_key(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class Catalog:
    """One config's entries as its index and manifests say, cached: the index is read again only when it
    was replaced, a manifest once (published manifests never change)."""

    def __init__(self, config_dir: Path) -> None:
        self.config_dir = config_dir
        self.index_path = config_dir / layout.INDEX
        self._index_key: tuple[int, int, int] | None = None
        self._index_hashes: set[str] | None = None
        self._index_listing: pa.Table | None = None
        self._manifests: dict[str, list[dict[str, tp.Any]]] = {}
        self._pending: dict[str, dict[str, tp.Any]] = {}

    # --- reading ----------------------------------------------------------------------------
    def manifest_names(self) -> list[str]:
        try:
            names = os.listdir(self.config_dir / layout.MANIFESTS)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if n.endswith(".parquet") and not n.startswith("."))

    def refresh(self) -> None:
        """See what was published or compacted since the last look."""
        import pyarrow.parquet as pq

        for _ in range(20):
            names = self.manifest_names()
            key = _stat_key(self.index_path)
            try:
                for name in names:
                    if name not in self._manifests:
                        table = pq.read_table(self.config_dir / layout.MANIFESTS / name)
                        self._manifests[name] = table.to_pylist()
            except FileNotFoundError:
                continue  # merged into a newer index meanwhile: look again
            break
        if key != self._index_key:
            self._index_key, self._index_hashes, self._index_listing = key, None, None
        listed = set(names)
        self._manifests = {n: rows for n, rows in self._manifests.items() if n in listed}
        pending: dict[str, dict[str, tp.Any]] = {}
        for name in names:
            for row in self._manifests[name]:
                pending.setdefault(row["video_hash"], row)  # the first published wins
        self._pending = pending

    def index_hashes(self) -> set[str]:
        import pyarrow.parquet as pq

        if self._index_hashes is None:
            if self._index_key is None:
                self._index_hashes = set()
            else:
                self._index_hashes = set(pq.read_table(self.index_path, columns=["video_hash"]).column(0).to_pylist())
        return self._index_hashes

    def has(self, video_hash: str) -> bool:
        self.refresh()
        return video_hash in self._pending or video_hash in self.index_hashes()

    def hashes(self) -> set[str]:
        self.refresh()
        return self.index_hashes() | set(self._pending)

    def row(self, video_hash: str) -> dict[str, tp.Any] | None:
        """The entry's manifest row (where its rows are, its attributes), or None."""

        self.refresh()
        if self._index_key is not None:
            found = _index_row(self.index_path, video_hash)
            if found is not None:
                return found
        return self._pending.get(video_hash)

    def listing(self) -> pa.Table:
        """The listing columns of every entry, index first, then the manifests' winners not in it."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        self.refresh()
        if self._index_listing is None:
            self._index_listing = (
                pq.read_table(self.index_path, columns=manifest.LISTING)
                if self._index_key is not None
                else manifest.to_table([]).select(manifest.LISTING)
            )
        if not self._pending:
            return self._index_listing
        fresh = manifest.to_table(list(self._pending.values())).select(manifest.LISTING)
        if self._index_listing.num_rows:
            known = pc.is_in(fresh.column("video_hash"), value_set=self._index_listing.column("video_hash"))
            fresh = fresh.filter(pc.invert(known))
        return pa.concat_tables([self._index_listing, fresh]).sort_by("video_hash")

    def rows_by_segment(self) -> dict[str, int]:
        """Segment -> how many entries' rows it holds (for ``gc``: a segment no entry names is garbage)."""
        import pyarrow.parquet as pq

        self.refresh()
        counts: dict[str, int] = {}
        if self._index_key is not None:
            for segment in pq.read_table(self.index_path, columns=["segment"]).column(0).to_pylist():
                counts[segment] = counts.get(segment, 0) + 1
        index = self.index_hashes()
        for row in self._pending.values():
            if row["video_hash"] not in index:
                counts[row["segment"]] = counts.get(row["segment"], 0) + 1
        return counts

    # --- compaction -------------------------------------------------------------------------
    def compact(self, drop: tp.Collection[str] = ()) -> int:
        """Merge the manifests into a new index (one rename), leaving out the video hashes in ``drop``;
        returns how many manifests were merged, 0 when another process is compacting."""
        claim = acquire(self.config_dir / layout.COMPACTION, "index", COMPACTION_TTL_S)
        if not isinstance(claim, Lease):
            return 0
        try:
            return self._compact(set(drop))
        finally:
            claim.release()

    def _compact(self, drop: set[str]) -> int:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        self.refresh()
        names = list(self._manifests)
        if not names and not drop:
            return 0
        parts = [pq.read_table(self.index_path)] if self._index_key is not None else []
        index = self.index_hashes()
        fresh = [row for h, row in self._pending.items() if h not in index]
        if fresh:
            parts.append(manifest.to_table(fresh))
        table = pa.concat_tables(parts) if parts else manifest.to_table([])
        if drop:
            table = table.filter(pc.invert(pc.is_in(table.column("video_hash"), value_set=pa.array(sorted(drop)))))
        table = table.sort_by("video_hash")
        tmp = self.config_dir / f".{layout.INDEX}.{uuid.uuid4().hex[:8]}"
        manifest.write_table(table, tmp, row_group_size=INDEX_ROW_GROUP)
        share(tmp)
        os.replace(tmp, self.index_path)
        for name in names:
            (self.config_dir / layout.MANIFESTS / name).unlink(missing_ok=True)
        self._manifests = {}
        self.refresh()
        return len(names)
