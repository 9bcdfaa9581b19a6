"""Which entries a config has: one compacted Parquet index plus the manifests published since.

Readers list the manifests, then read them and the index; a manifest that vanished in between was merged
into a newer index by a compaction, so they look again. Among manifests naming one video, the first
published wins (names sort in publishing order); the index already holds only winners. Compaction (after a
launch, by ``pipeline.gc``, and by writers when manifests pile up) merges manifests into a new index by one
rename, under a claim so that two compactions never race.
"""

from __future__ import annotations

import collections
import collections.abc
import dataclasses
import json
import os
import typing as tp
from pathlib import Path

from pipeline.common.files import write_atomic
from pipeline.store import layout, manifest, tables
from pipeline.store.leases import Lease, acquire

if tp.TYPE_CHECKING:
    import pyarrow as pa

INDEX_ROW_GROUP = 4096
"""Rows per Parquet row group of the index, sorted by hash: finding one entry reads one row group, found
by bisecting the groups' first hashes (a million entries: 245 groups)."""
COMPACT_AFTER = 256
"""Manifests a writer lets pile up before it compacts them (a launch's end and ``gc`` compact anyway)."""
COMPACTION_TTL_S = 600.0
ATTEMPTS = 20
"""Looks a reader takes while compactions remove the manifests it listed, before it gives up."""

T = tp.TypeVar("T")


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
    in well under a second); ``parts`` holds each config UID with its listing columns as an Arrow table."""

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
    was replaced, a manifest's hashes once (published manifests never change): a writer that sees a million
    entries go by holds their hashes, not their attributes."""

    def __init__(self, config_dir: Path) -> None:
        self.config_dir = config_dir
        self.index_path = config_dir / layout.INDEX
        self._index_key: tuple[int, int, int] | None = None
        self._index_hashes: set[str] | None = None
        self._index_listing: pa.Table | None = None
        self._manifests: dict[str, list[str]] = {}
        """Manifest name -> the video hashes it names (the rest is read when asked for)."""
        self._pending: dict[str, tuple[str, int]] = {}
        """Video hash -> (manifest, row) of the first published manifest naming it."""
        self._names: list[str] = []

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

        for _ in range(ATTEMPTS):
            names = self.manifest_names()
            key = _stat_key(self.index_path)
            try:
                for name in names:
                    if name not in self._manifests:
                        table = pq.read_table(self.config_dir / layout.MANIFESTS / name, columns=["video_hash"])
                        self._manifests[name] = table.column(0).to_pylist()
            except FileNotFoundError:
                continue  # merged into a newer index meanwhile: look again
            break
        else:
            raise self._unsettled()
        if key != self._index_key:
            self._index_key, self._index_hashes, self._index_listing = key, None, None
        if names == self._names:
            return
        if names[: len(self._names)] == self._names:  # only newer manifests: add them
            pending, new = self._pending, names[len(self._names) :]
        else:  # some were compacted (or one sorted before another): start again
            listed = set(names)
            self._manifests = {n: t for n, t in self._manifests.items() if n in listed}
            pending, new = {}, names
        for name in new:
            for k, vhash in enumerate(self._manifests[name]):
                pending.setdefault(vhash, (name, k))  # the first published wins
        self._pending, self._names = pending, names

    def index_hashes(self) -> set[str]:
        import pyarrow.parquet as pq

        if self._index_hashes is None:
            if self._index_key is None:
                self._index_hashes = set()
            else:
                self._index_hashes = set(pq.read_table(self.index_path, columns=["video_hash"]).column(0).to_pylist())
        return self._index_hashes

    def contains(self, video_hash: str) -> bool:
        """Whether the entry was there at the last ``refresh``."""
        return video_hash in self._pending or video_hash in self.index_hashes()

    def has(self, video_hash: str) -> bool:
        self.refresh()
        return self.contains(video_hash)

    def hashes(self) -> set[str]:
        self.refresh()
        return self.index_hashes() | set(self._pending)

    def _manifest(self, name: str, columns: list[str] | None = None) -> pa.Table:
        """A published manifest's columns (FileNotFoundError: compacted since ``refresh``)."""
        return manifest.read(self.config_dir / layout.MANIFESTS / name, columns)

    def _unsettled(self) -> RuntimeError:
        return RuntimeError(f"store: {self.config_dir} keeps changing under this reader; try again")

    def _settled(self, read: tp.Callable[[], T]) -> T:
        """``read()`` after a ``refresh``, again while compactions remove the manifests it reads."""
        for _ in range(ATTEMPTS):
            self.refresh()
            try:
                return read()
            except FileNotFoundError:
                continue  # compacted into the index meanwhile: look there
        raise self._unsettled()

    def row(self, video_hash: str) -> dict[str, tp.Any] | None:
        """The entry's manifest row (where its rows are, its attributes), or None."""

        def read() -> dict[str, tp.Any] | None:
            if self._index_key is not None:
                found = _index_row(self.index_path, video_hash)
                if found is not None:
                    return found
            where = self._pending.get(video_hash)
            return None if where is None else dict(self._manifest(where[0]).slice(where[1], 1).to_pylist()[0])

        return self._settled(read)

    def _fresh(self, columns: list[str] | None = None, index: tp.Container[str] | None = None) -> pa.Table | None:
        """The manifests' winning rows whose video is not in the index yet (None when there are none);
        ``index``: the hashes of the index as the caller read it (by default, ``index_hashes()``)."""
        import pyarrow as pa

        index = self.index_hashes() if index is None else index
        take: dict[str, list[int]] = {}
        for vhash, (name, k) in self._pending.items():
            if vhash not in index:
                take.setdefault(name, []).append(k)
        if not take:
            return None
        return pa.concat_tables([self._manifest(name, columns).take(pa.array(rows)) for name, rows in take.items()])

    def listing(self) -> pa.Table:
        """The listing columns of every entry, sorted by video hash: the index, and the manifests' winners
        not in it."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        def read() -> pa.Table:
            if self._index_listing is None:
                self._index_listing = (
                    pq.read_table(self.index_path, columns=manifest.LISTING)
                    if self._index_key is not None
                    else manifest.to_table([]).select(manifest.LISTING)
                )
            fresh = self._fresh(manifest.LISTING, index=()) if self._pending else None
            if fresh is None:
                return self._index_listing
            # judged against this very listing: an index replaced meanwhile (a compaction) must neither hide
            # rows that the listing read before it lacks nor count them twice
            known = pc.is_in(fresh.column("video_hash"), value_set=self._index_listing.column("video_hash"))
            return pa.concat_tables([self._index_listing, fresh.filter(pc.invert(known))]).sort_by("video_hash")

        return self._settled(read)

    def rows_by_segment(self) -> dict[str, int]:
        """Segment -> how many entries' rows it holds (for ``gc``: a segment no entry names is garbage)."""
        import pyarrow.parquet as pq

        def read() -> dict[str, int]:
            fresh = self._fresh(["segment"])
            segments = fresh.column(0).to_pylist() if fresh is not None else []
            if self._index_key is not None:  # read after the manifests: it holds at least what they lacked
                segments += pq.read_table(self.index_path, columns=["segment"]).column(0).to_pylist()
            return dict(collections.Counter(segments))

        return self._settled(read)

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

        self.refresh()
        read_key = self._index_key
        names = list(self._manifests)
        if not names and not drop:
            return 0
        parts = [manifest.read(self.index_path)] if self._index_key is not None else []
        fresh = self._fresh()
        if fresh is not None:
            parts.append(fresh)
        table = pa.concat_tables(parts) if parts else manifest.to_table([])
        if drop:
            table = table.filter(pc.invert(pc.is_in(table.column("video_hash"), value_set=pa.array(sorted(drop)))))
        data = tables.parquet_bytes(table.sort_by("video_hash"), row_group_size=INDEX_ROW_GROUP)
        if _stat_key(self.index_path) != read_key:  # another compaction took over a claim this one held too long
            return 0
        write_atomic(self.index_path, data)
        for name in names:
            (self.config_dir / layout.MANIFESTS / name).unlink(missing_ok=True)
        self.refresh()
        return len(names)
