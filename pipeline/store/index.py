"""Which entries a config has: its newest whole checkpoint and the commits after it (``pipeline.store.log``),
read as one consistent snapshot and cached (checkpoints and commits never change once published).

Compaction (after a launch, by ``pipeline.gc``, and by writers when commits pile up) publishes a checkpoint
at the log's tip, then cleans up behind it. Nothing here takes a lock: two compactions write the same file.
"""

from __future__ import annotations

import collections
import collections.abc
import dataclasses
import json
import logging
import time
import typing as tp
from pathlib import Path

from pipeline.common.retry import backoff
from pipeline.store import log as commit_log
from pipeline.store import manifest

if tp.TYPE_CHECKING:
    import pyarrow as pa

INDEX_ROW_GROUP = 4096
"""Rows per Parquet row group of the index, sorted by hash: finding one entry reads one row group, found
by bisecting the groups' first hashes (a million entries: 245 groups)."""
COMPACT_AFTER = 256
"""Commits a writer lets pile up after the newest checkpoint before it compacts them (a launch's end and
``gc`` compact anyway)."""
FEW = 32
"""Hashes named by the commits after a checkpoint up to which each is looked up in its row group, rather
than reading the checkpoint's every hash."""
ATTEMPTS = 20
"""Looks a reader takes while cleanups remove the commits it listed, before it gives up."""

logger = logging.getLogger(__name__)

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
    """The row of ``video_hash`` in a checkpoint sorted by hash, reading only the row group that can hold it."""
    import pyarrow.parquet as pq

    with commit_log.whole(path):
        return _find_row(pq.ParquetFile(path, page_checksum_verification=True), video_hash)


def _find_row(index: tp.Any, video_hash: str) -> dict[str, tp.Any] | None:
    import bisect

    import pyarrow.compute as pc

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


class Catalog:
    """One config's entries: the newest whole checkpoint and the commits after it, folded (``log.Fold``).
    Asking again reads only what is new; a writer that sees a million entries go by holds their hashes
    (when it asks whether it has one), never their attributes."""

    def __init__(self, config_dir: Path) -> None:
        self.config_dir = config_dir
        self.base = 0
        """The checkpoint's version (0: none, the empty state before commit 1)."""
        self.tip = 0
        """The last commit read."""
        self._base_hashes: pa.ChunkedArray | None = None
        self._base_revoked: dict[str, int] = {}
        self._base_progress_count = 0
        self._base_progress: dict[str, dict[str, tp.Any]] | None = None
        """The checkpoint's progress rows by video hash, read when first needed."""
        self._base_set: set[str] | None = None
        self._base_listing: pa.Table | None = None
        self._bad: set[int] = set()
        """Checkpoints found torn (skipped for the one before)."""
        self.commits: dict[int, commit_log.Commit] = {}
        """The commits after the checkpoint, by number."""
        self._fold: commit_log.Fold | None = None
        self._folded = 0
        self._in_base: set[str] = set()
        self._committed = 0
        """The number of this catalog's last commit (the next is past it)."""

    # --- reading ----------------------------------------------------------------------------
    def refresh(self, until: int = 0) -> None:
        """See what was committed or checkpointed since the last look: the newest whole checkpoint, then
        commits by number until one is missing. A look ends at least as new as the newest checkpoint seen at
        its end, so a commit removed behind a newer checkpoint meanwhile never truncates it; and at least at
        commit ``until``, one known to exist (this catalog's own): a lookup that NFS answers from its cache
        of names that were missing is asked again, with backoff, until it sees it."""
        for attempt in range(ATTEMPTS):
            if attempt and self.tip < until:
                time.sleep(backoff(attempt - 1, 0.05, 2.0))
            self._rebase_newest()
            while True:
                try:
                    commit = commit_log.read_commit(self.config_dir, self.tip + 1)
                except FileNotFoundError:
                    break
                self.commits[commit.version] = commit
                self.tip = commit.version
            newest = next((v for v in commit_log.checkpoint_versions(self.config_dir) if v not in self._bad), 0)
            if newest <= self.tip and self.tip >= until:
                return
        raise RuntimeError(f"store: {self.config_dir} keeps changing under this reader; try again")

    def _rebase_newest(self) -> None:
        """Take the newest whole checkpoint newer than the one read (a torn one: the one before it)."""
        for version in commit_log.checkpoint_versions(self.config_dir):
            if version <= self.base:
                return
            if version in self._bad:
                continue
            try:
                footer = commit_log.open_checkpoint(self.config_dir, version)
            except commit_log.TornFile as e:
                self._bad.add(version)
                logger.warning("%s; reading the checkpoint before it and the commits after that", e)
                continue
            except FileNotFoundError:
                continue  # cleaned up since the listing: a newer one is there
            self._rebase(version, footer)
            return

    def _rebase(self, version: int, footer: commit_log.Footer) -> None:
        self.base, self._base_hashes, self._base_revoked = version, None, footer.revoked
        self._base_progress_count, self._base_progress = footer.progress, None
        self._base_set, self._base_listing, self._fold = None, None, None
        self.commits = {v: c for v, c in self.commits.items() if v > version}
        self.tip = max(self.tip, version)

    def _forget_torn_base(self, error: commit_log.TornFile) -> None:
        """The checkpoint read turned out torn (a page's checksum): read again from the one before it."""
        logger.warning("%s; reading the checkpoint before it and the commits after that", error)
        self._bad.add(self.base)
        self.base = self.tip = 0
        self.commits, self._base_hashes, self._base_revoked = {}, None, {}
        self._base_set, self._base_listing, self._fold = None, None, None
        self._base_progress_count, self._base_progress = 0, None

    def _hashes(self) -> pa.ChunkedArray | None:
        """The checkpoint's video hashes, read when first needed (a reader of one entry never needs them)."""
        if self.base and self._base_hashes is None:
            self._base_hashes = commit_log.checkpoint_rows(self.config_dir, self.base, ["video_hash"]).column(0)
        return self._base_hashes

    def _base_set_now(self) -> set[str]:
        if self._base_set is None:
            hashes = self._hashes()
            self._base_set = set() if hashes is None else set(hashes.to_pylist())
        return self._base_set

    def _fold_now(self) -> commit_log.Fold:
        """The state at ``tip`` (commits applied in order since the checkpoint, incrementally); raises
        FileNotFoundError / TornFile when the checkpoint it reads went or is torn (``_retrying``)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if self._fold is None:
            self._in_base = set()
            self._fold = commit_log.Fold(self._in_base.__contains__, self._base_revoked, self.base, self._base_steps)
            self._folded = self.base
        new = [self.commits[v] for v in range(self._folded + 1, self.tip + 1) if v in self.commits]
        if new:
            # the fold asks about the checkpoint only for hashes its commits name: learn those first
            named = sorted({h for c in new for h in c.hashes})
            if self._base_set is not None:
                self._in_base.update(self._base_set.intersection(named))
            elif self.base and len(named) <= FEW and self._base_hashes is None:
                path = commit_log.checkpoint_path(self.config_dir, self.base)
                self._in_base.update(h for h in named if _index_row(path, h) is not None)
            elif self.base and named:
                hashes = self._hashes()
                mask = pc.is_in(hashes, value_set=pa.array(named, pa.string()))
                self._in_base.update(pc.filter(hashes, mask).to_pylist())
            for commit in new:
                self._fold.apply(commit)
            self._folded = self.tip
        return self._fold

    def _retrying(self, read: tp.Callable[[], T]) -> T:
        """``read()``, again after a refresh while cleanups remove what it reads (a checkpoint or commits
        behind two newer checkpoints) or the checkpoint turns out torn (then from the one before it)."""
        for attempt in range(ATTEMPTS):
            try:
                return read()
            except FileNotFoundError:
                pass  # checkpointed and cleaned up meanwhile: look in the newer checkpoint
            except commit_log.TornFile as e:
                self._forget_torn_base(e)
            if attempt:
                time.sleep(backoff(attempt - 1, 0.05, 2.0))  # a listing NFS serves from its cache catches up
            self.refresh()
        raise RuntimeError(f"store: {self.config_dir} keeps changing under this reader; try again")

    def _settled(self, read: tp.Callable[[], T]) -> T:
        """``read()`` after a ``refresh`` (``_retrying``)."""
        self.refresh()
        return self._retrying(read)

    def fold(self) -> commit_log.Fold:
        """The state at the last ``refresh``."""
        return self._retrying(self._fold_now)

    def base_hashes(self) -> set[str]:
        """The checkpoint's video hashes (some may have been removed since: ``fold().removed``)."""
        return self._retrying(self._base_set_now)

    def contains(self, video_hash: str) -> bool:
        """Whether the entry was there at the last ``refresh`` (or a newer look, if what it read went)."""

        def check() -> bool:
            fold = self._fold_now()
            if video_hash in fold.pending:
                return True
            return video_hash not in fold.removed and video_hash in self._base_set_now()

        return self._retrying(check)

    def has(self, video_hash: str) -> bool:
        self.refresh()
        return self.contains(video_hash)

    def hashes(self) -> set[str]:
        self.refresh()

        def read() -> set[str]:
            fold = self._fold_now()
            return (self._base_set_now() - fold.removed) | set(fold.pending)

        return self._retrying(read)

    @property
    def revoked(self) -> set[str]:
        """The writers revoked as of the last ``refresh``."""
        return self.fold().revoked

    def row(self, video_hash: str) -> dict[str, tp.Any] | None:
        """The entry's row (where its rows are, its attributes), or None."""

        def read() -> dict[str, tp.Any] | None:
            fold = self._fold_now()
            where = fold.pending.get(video_hash)
            if where is not None:
                rows = commit_log.commit_rows(self.config_dir, where[0])
                return dict(rows.slice(where[1], 1).to_pylist()[0])
            if self.base and video_hash not in fold.removed:
                return _index_row(commit_log.checkpoint_path(self.config_dir, self.base), video_hash)
            return None

        return self._settled(read)

    def _fresh(self, columns: list[str] | None = None) -> pa.Table | None:
        """The winning rows committed after the checkpoint (None when there are none)."""
        import pyarrow as pa

        take: dict[int, list[int]] = {}
        for version, row in self._fold_now().pending.values():
            take.setdefault(version, []).append(row)
        if not take:
            return None
        return pa.concat_tables(
            [
                commit_log.commit_rows(self.config_dir, v, columns).take(pa.array(rows))
                for v, rows in sorted(take.items())
            ]
        )

    def _checkpoint_rows(self, columns: list[str] | None) -> pa.Table:
        """The checkpoint's rows as published (an empty table where there is none yet)."""
        if not self.base:
            table = manifest.to_table([])
            return table if columns is None else table.select(columns)
        return commit_log.checkpoint_rows(self.config_dir, self.base, columns)

    def _state(self, columns: list[str] | None = None, base: pa.Table | None = None) -> pa.Table:
        """Every entry at ``tip`` as last refreshed, sorted by video hash: the checkpoint's rows (``base``,
        when the caller holds them) not removed since, and the winners committed after it
        (FileNotFoundError: a commit it reads was cleaned up meanwhile)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        base = self._checkpoint_rows(columns) if base is None else base
        removed = self._fold_now().removed
        if removed:
            gone = pc.is_in(base.column("video_hash"), value_set=pa.array(sorted(removed), pa.string()))
            base = base.filter(pc.invert(gone))
        fresh = self._fresh(columns)
        if fresh is None:
            return base
        return (fresh if not self.base else pa.concat_tables([base, fresh])).sort_by("video_hash")

    def state(self, columns: list[str] | None = None) -> pa.Table:
        """Every entry now: the checkpoint's rows not removed since and the winners committed after it."""
        return self._settled(lambda: self._state(columns))

    def listing(self) -> pa.Table:
        """The listing columns of every entry, sorted by video hash (the checkpoint's read once)."""

        def read() -> pa.Table:
            if self._base_listing is None:
                self._base_listing = self._checkpoint_rows(manifest.LISTING)
            return self._state(manifest.LISTING, self._base_listing)

        return self._settled(read)

    def rows_by_segment(self) -> dict[str, int]:
        """Segment -> how many entries' rows and videos' progress it holds (for ``gc``: a segment that
        neither names is garbage)."""
        named = collections.Counter(self.state(["video_hash", "segment"]).column("segment").to_pylist())
        named.update(str(row["segment"]) for row in self._retrying(self._progress_rows))
        return dict(named)

    # --- progress ---------------------------------------------------------------------------
    def _base_progress_now(self) -> dict[str, dict[str, tp.Any]]:
        """The checkpoint's progress rows (its ``.progress.parquet``, read once; most checkpoints have none)."""
        if self._base_progress is None:
            rows = []
            if self.base and self._base_progress_count:
                table = commit_log.checkpoint_progress(self.config_dir, self.base, self._base_progress_count)
                rows = table.to_pylist()
            self._base_progress = {str(row["video_hash"]): row for row in rows}
        return self._base_progress

    def _base_steps(self, video_hash: str) -> int | None:
        row = self._base_progress_now().get(video_hash)
        return None if row is None else int(row["rows"])

    def _progress_row(self, video_hash: str) -> dict[str, tp.Any] | None:
        fold = self._fold_now()
        where = fold.progress.get(video_hash)
        if where is not None:
            return dict(commit_log.commit_rows(self.config_dir, where[0]).slice(where[1], 1).to_pylist()[0])
        if video_hash in fold.dropped:
            return None
        row = self._base_progress_now().get(video_hash)
        return None if row is None else dict(row)

    def _progress_rows(self) -> list[dict[str, tp.Any]]:
        fold = self._fold_now()
        named = set(fold.progress) | (set(self._base_progress_now()) - fold.dropped)
        rows = []
        for video_hash in sorted(named):
            row = self._progress_row(video_hash)
            if row is not None:
                rows.append(row)
        return rows

    def progress_row(self, video_hash: str) -> dict[str, tp.Any] | None:
        """The row of the video's furthest progress (its steps so far, not an entry), None when it has none
        or its entry was added since."""
        return self._settled(lambda: self._progress_row(video_hash))

    def progress_rows(self) -> list[dict[str, tp.Any]]:
        """Every video's progress row now, by video hash."""
        return self._settled(self._progress_rows)

    def winner_segment(self, video_hash: str) -> str | None:
        """The segment that holds ``video_hash`` now (a writer checks that its commit won)."""
        fold = self.fold()
        where = fold.pending.get(video_hash)
        if where is not None:
            return self.commits[where[0]].segments[where[1]]
        row = self.row(video_hash)
        return None if row is None else str(row["segment"])

    # --- writing ----------------------------------------------------------------------------
    def commit(self, kind: str, rows: pa.Table, *, writer: str = "", revoked: tp.Sequence[str] = ()) -> int:
        """Publish a commit at the lowest free number past what this catalog read and past the newest
        checkpoint (a number behind a checkpoint would be void); returns its number. A commit's content
        never depends on the commits before it, so a number taken is passed by, not read: ``refresh``
        reads them all afterwards, this one included."""
        newest = next(iter(commit_log.checkpoint_versions(self.config_dir)), 0)
        self._committed = commit_log.publish_commit(
            self.config_dir, kind, rows, writer=writer, revoked=revoked,
            first=max(self.tip, newest, self._committed) + 1, taken=lambda number: number + 1,
        )  # fmt: skip
        return self._committed

    def remove(self, video_hashes: tp.Collection[str]) -> int:
        """Commit a tombstone for these entries (their rows stay in their segments until ``gc``)."""
        rows = manifest.to_table([{"video_hash": h} for h in sorted(video_hashes)])
        return self.commit(commit_log.REMOVE, rows)

    def revoke(self, writers: tp.Sequence[str]) -> int:
        """Commit that these writers are presumed dead: their later commits are void."""
        return self.commit(commit_log.REVOKE, manifest.to_table([]), revoked=sorted(writers))

    def pending_commits(self) -> int:
        """Commits since the checkpoint (a writer compacts when they pile up)."""
        return self.tip - self.base

    # --- compaction -------------------------------------------------------------------------
    def compact(self, grace_s: float = commit_log.GRACE_S) -> int:
        """Publish a checkpoint at the log's tip, then clean up behind the second newest checkpoint;
        returns how many commits the new checkpoint folded in (0: nothing new)."""
        for _ in range(ATTEMPTS):
            self.refresh()
            version, folded = self.tip, self.tip - self.base
            if not folded:
                break
            try:
                table = self._state()  # the state at ``version`` exactly: no refresh in between
                revoked = dict(self._fold_now().revoked_at)
                progress = manifest.to_table(self._progress_rows())
            except FileNotFoundError:
                continue  # another compaction cleaned up what this one read: look again
            except commit_log.TornFile as e:
                self._forget_torn_base(e)
                continue
            commit_log.write_checkpoint(self.config_dir, version, table, revoked, INDEX_ROW_GROUP, progress)
            self.refresh()
            break
        else:
            raise RuntimeError(f"store: {self.config_dir} keeps changing under this compaction; try again")
        commit_log.cleanup(self.config_dir, grace_s)
        return folded
