"""A config's commit log: how entries come to exist and stop existing, with no clock and no lock deciding
what is stored (the protocol page is docs/store.md).

- A **commit** is a Parquet file written whole and fsync'd under a temporary name, then published by
  ``link()`` to ``_log/<N>.parquet``. ``link`` fails when N is taken, so each number holds one commit for
  good; a writer that lost N reads it and tries the next number.
- A commit **adds** entries (video hash, segment, rows, attributes), **removes** them (a tombstone),
  **revokes** writers presumed dead (their commits numbered after the revocation are void), or records a
  video's **progress**: the steps computed so far, never an entry, dropped once the entry is added or
  removed (a long video resumed by another task builds on it).
- The state at N is the fold of commits 1..N (``Fold``): an entry is the lowest add naming it since it was
  last removed, so a committed value never changes, and a listed entry goes only by a commit saying so.
- A **checkpoint** ``_checkpoints/<N>.parquet`` is the state at N, published like a commit and never
  rewritten (two compactions that race write the same file); the videos' progress at N, if any, is beside
  it in ``<N>.progress.parquet``, published first (read only by who asks for progress). Readers take the
  newest whole checkpoint and the commits after it; a torn one is skipped with a warning for the one
  before it.
- **Cleanup** removes commits and checkpoints only behind the second newest whole checkpoint, and only
  files older than ``GRACE_S``, longer than any reader's look: clocks decide when, never what.

Every file is written with Parquet page checksums and read with them verified: a torn file is detected
(its footer's length, its pages' CRC) rather than read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import time
import typing as tp
import uuid
from pathlib import Path

from pipeline.common.files import fsync_dir, link_new, make_shared_dirs, write_synced
from pipeline.common.retry import retry_io
from pipeline.store import layout, manifest
from pipeline.testing import faults

if tp.TYPE_CHECKING:
    import pyarrow as pa

GRACE_S = 3600.0
"""Age before a file that cleanup may remove is removed: longer than any reader's look at the log."""
KEY = b"pipeline"
"""The Parquet key-value metadata of commits and checkpoints (JSON: kind, writer, revoked, version)."""
ADD, REMOVE, REVOKE, PROGRESS, TORN = "add", "remove", "revoke", "progress", "torn"
_NAME = re.compile(r"^(\d{20})\.parquet$")
_PROGRESS_NAME = re.compile(r"^(\d{20})\.progress\.parquet$")

log = logging.getLogger(__name__)


def file_name(version: int) -> str:
    return f"{version:020d}.parquet"


def version_of(name: str) -> int | None:
    """The number of a commit or checkpoint file name, None for anything else (temporary files...)."""
    found = _NAME.match(name)
    return int(found.group(1)) if found else None


class TornFile(ValueError):
    """A commit or checkpoint that cannot be read whole (truncated, empty, a page's checksum wrong)."""


@contextlib.contextmanager
def whole(path: Path) -> tp.Iterator[None]:
    """Reading ``path``: what says it is not whole (a footer Arrow cannot parse, a page whose checksum is
    wrong) raised as ``TornFile``; a missing file and the system's I/O errors raised as they are (cleaned up
    since; retried by ``retry_io``)."""
    import pyarrow as pa

    try:
        yield
    except TornFile:
        raise
    except (pa.ArrowInvalid, ValueError) as e:
        raise TornFile(f"store: {path} is torn or empty ({e})") from e
    except OSError as e:
        if isinstance(e, FileNotFoundError) or e.errno is not None:
            raise
        raise TornFile(f"store: {path} cannot be read whole ({e})") from e  # Arrow's checksum error


@dataclasses.dataclass(frozen=True)
class Commit:
    """What commit ``version`` says (its rows' attributes are read from the file when asked for)."""

    version: int
    kind: str
    writer: str = ""
    hashes: tuple[str, ...] = ()
    segments: tuple[str, ...] = ()
    revoked: tuple[str, ...] = ()
    rows: tuple[int, ...] = ()
    """Each row's time steps (a progress commit's rows: how far each video got)."""


@dataclasses.dataclass(frozen=True)
class Footer:
    """What a checkpoint's footer says besides its entries: the writers revoked as of its version (writer ->
    the commit that revoked it), and how many videos had progress then (in its ``.progress.parquet``)."""

    revoked: dict[str, int]
    progress: int


class Fold:
    """The state after a checkpoint, commit by commit; pure (no files): which add wins each entry.

    ``in_base(h)``: whether the checkpoint holds ``h``; ``base_steps(h)``: the steps of ``h``'s progress in
    the checkpoint (None: none). ``pending``: video hash -> (commit, row) of the add that holds it now, for
    those added after the checkpoint; ``removed``: the checkpoint's entries removed since; ``progress``:
    video hash -> (commit, row, steps) of its furthest progress committed since, and ``dropped`` the videos
    whose checkpoint progress is gone (overtaken, or replaced by the entry). A commit of a revoked writer,
    numbered after the revocation, changes nothing (``void``)."""

    def __init__(
        self,
        in_base: tp.Callable[[str], bool],
        revoked: tp.Mapping[str, int] | tp.Iterable[str] = (),
        base: int = 0,
        base_steps: tp.Callable[[str], int | None] = lambda video_hash: None,
    ) -> None:
        self.in_base, self.base_steps = in_base, base_steps
        self.revoked_at = dict(revoked) if isinstance(revoked, tp.Mapping) else dict.fromkeys(revoked, base)
        """Writer -> the commit that revoked it."""
        self.revoked = set(self.revoked_at)
        self.pending: dict[str, tuple[int, int]] = {}
        self.removed: set[str] = set()
        self.progress: dict[str, tuple[int, int, int]] = {}
        self.dropped: set[str] = set()
        self.void: set[int] = set()

    def present(self, video_hash: str) -> bool:
        if video_hash in self.pending:
            return True
        return video_hash not in self.removed and self.in_base(video_hash)

    def steps(self, video_hash: str) -> int | None:
        """How far the video's progress got, as of the commits applied (None: it has none)."""
        if video_hash in self.progress:
            return self.progress[video_hash][2]
        return None if video_hash in self.dropped else self.base_steps(video_hash)

    def _drop_progress(self, video_hash: str) -> None:
        self.progress.pop(video_hash, None)
        self.dropped.add(video_hash)

    def apply(self, commit: Commit) -> None:
        if commit.kind == TORN or (commit.writer and commit.writer in self.revoked):
            self.void.add(commit.version)
            return
        if commit.kind == REVOKE:
            for writer in commit.revoked:
                if writer not in self.revoked:
                    self.revoked.add(writer)
                    self.revoked_at[writer] = commit.version
        elif commit.kind == ADD:
            for row, video_hash in enumerate(commit.hashes):
                self._drop_progress(video_hash)
                if not self.present(video_hash):
                    self.pending[video_hash] = (commit.version, row)
        elif commit.kind == PROGRESS:
            # the furthest progress holds (every task computes the same steps); the first to get that far on ties
            for row, (video_hash, steps) in enumerate(zip(commit.hashes, commit.rows)):
                held = self.steps(video_hash)
                if not self.present(video_hash) and (held is None or steps > held):
                    self.progress[video_hash] = (commit.version, row, steps)
                    self.dropped.add(video_hash)  # the checkpoint's, if any, is overtaken
        elif commit.kind == REMOVE:
            for video_hash in commit.hashes:
                self.pending.pop(video_hash, None)
                self._drop_progress(video_hash)
                if self.in_base(video_hash):
                    self.removed.add(video_hash)

    def won(self, commit: Commit, row: int) -> bool:
        """Whether row ``row`` of add ``commit`` holds its entry now."""
        return self.pending.get(commit.hashes[row]) == (commit.version, row)


# --- files ------------------------------------------------------------------------------------------
def _bytes(table: pa.Table, meta: dict[str, tp.Any], row_group_size: int | None = None) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = table.replace_schema_metadata({KEY: json.dumps(meta).encode()})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", row_group_size=row_group_size, write_page_checksum=True)
    return bytes(sink.getvalue())


def _read(path: Path, columns: list[str] | None) -> tuple[pa.Table, dict[str, tp.Any]]:
    """A commit or checkpoint's columns (all when None) and its metadata; ``TornFile`` when it cannot be
    read whole; ``FileNotFoundError`` when it is gone (cleaned up)."""
    import pyarrow.parquet as pq

    def read() -> tuple[pa.Table, dict[str, tp.Any]]:
        faults.point("read")
        wanted = manifest.schema().names if columns is None else columns
        with whole(path):
            table = pq.read_table(
                path,
                columns=wanted,
                read_dictionary=["attrs"] if "attrs" in wanted else None,
                page_checksum_verification=True,
            )
            meta = json.loads((table.schema.metadata or {}).get(KEY, b"null"))
        if not isinstance(meta, dict):
            raise TornFile(f"store: {path} is not a commit or checkpoint of this store (no {KEY.decode()} metadata)")
        return table.replace_schema_metadata(None), meta

    return retry_io(read, str(path))


def log_dir(config_dir: Path) -> Path:
    return config_dir / layout.LOG


def checkpoint_dir(config_dir: Path) -> Path:
    return config_dir / layout.CHECKPOINTS


def read_commit(config_dir: Path, version: int) -> Commit:
    """Commit ``version``; a torn one is void (with a warning): it was synced before it was linked, so only
    a file system that lied about the sync tears one. FileNotFoundError: no such commit (yet, or any more)."""
    path = log_dir(config_dir) / file_name(version)
    try:
        table, meta = _read(path, ["video_hash", "segment", "rows"])
    except TornFile as e:
        log.warning("%s; it is ignored", e)
        return Commit(version, TORN)
    return Commit(
        version,
        str(meta.get("kind", ADD)),
        str(meta.get("writer", "")),
        tuple(table.column(0).to_pylist()),
        tuple(s or "" for s in table.column(1).to_pylist()),
        tuple(meta.get("revoked", [])),
        tuple(int(n or 0) for n in table.column(2).to_pylist()),
    )


def commit_rows(config_dir: Path, version: int, columns: list[str] | None = None) -> pa.Table:
    """The rows of commit ``version`` (FileNotFoundError: cleaned up since; look in a newer checkpoint)."""
    return _read(log_dir(config_dir) / file_name(version), columns)[0]


def publish_commit(
    config_dir: Path,
    kind: str,
    rows: pa.Table,
    *,
    writer: str = "",
    revoked: tp.Sequence[str] = (),
    first: int,
    taken: tp.Callable[[int], int],
) -> int:
    """Write a commit whole, sync it, and link it to the lowest free number from ``first``; ``taken(n)``
    is called when ``n`` was taken by another commit and returns the next number to try (the caller reads
    what took it). Returns the commit's number."""
    folder = log_dir(config_dir)
    make_shared_dirs(folder, config_dir)
    data = _bytes(rows, {"kind": kind, "writer": writer, "revoked": list(revoked)})
    tmp = folder / f".{writer or 'x'}-{uuid.uuid4().hex[:12]}.tmp"
    write_synced(tmp, data)
    faults.point("commit-written")
    version = first
    try:
        while True:
            try:
                if link_new(tmp, folder / file_name(version)):
                    break
            except FileNotFoundError:
                if tmp.exists():
                    raise
                write_synced(tmp, data)  # a cleanup took the temporary file: it is written again
                continue
            version = taken(version)
    finally:
        tmp.unlink(missing_ok=True)
    faults.point("commit-linked")
    return version


def checkpoint_versions(config_dir: Path) -> list[int]:
    """The checkpoints' versions, newest first."""

    def listing() -> list[str]:
        try:
            return os.listdir(checkpoint_dir(config_dir))
        except FileNotFoundError:
            return []

    names = retry_io(listing, str(checkpoint_dir(config_dir)))
    return sorted((v for v in map(version_of, names) if v is not None), reverse=True)


def checkpoint_path(config_dir: Path, version: int) -> Path:
    return checkpoint_dir(config_dir) / file_name(version)


def progress_path(config_dir: Path, version: int) -> Path:
    """The videos' progress as of checkpoint ``version`` (written only when some video has progress)."""
    return checkpoint_dir(config_dir) / f"{version:020d}.progress.parquet"


def open_checkpoint(config_dir: Path, version: int) -> Footer:
    """A checkpoint's footer: the writers revoked as of it and how many videos had progress (a reader of one
    entry reads no more); ``TornFile`` when the footer is not whole, does not say what the file's name does,
    or names a progress file that is not there. Its pages are checked as they are read (``checkpoint_rows``,
    ``checkpoint_progress``)."""
    import pyarrow.parquet as pq

    path = checkpoint_path(config_dir, version)

    def read() -> Footer:
        faults.point("read")
        with whole(path):
            footer = pq.read_metadata(path)
            meta = json.loads((footer.metadata or {}).get(KEY, b"null"))
        if not isinstance(meta, dict) or meta.get("version") != version or meta.get("rows") != footer.num_rows:
            raise TornFile(f"store: {path} does not hold what its name and footer say")
        progress = int(meta.get("progress") or 0)
        if progress and not progress_path(config_dir, version).exists():
            raise TornFile(f"store: {progress_path(config_dir, version)}, which {path} names, is missing")
        revoked = meta.get("revoked", {})
        return Footer(revoked if isinstance(revoked, dict) else dict.fromkeys(revoked, version), progress)

    return retry_io(read, str(path))


def checkpoint_rows(config_dir: Path, version: int, columns: list[str] | None = None) -> pa.Table:
    return _read(checkpoint_path(config_dir, version), columns)[0]


def checkpoint_progress(config_dir: Path, version: int, expected: int) -> pa.Table:
    """The progress rows of checkpoint ``version`` (``TornFile`` unless there are ``expected`` of them)."""
    path = progress_path(config_dir, version)
    table = _read(path, None)[0]
    if table.num_rows != expected:
        raise TornFile(f"store: {path} holds {table.num_rows} rows, its checkpoint says {expected}")
    return table


def publish_once(folder: Path, target: Path, data: bytes, point: str) -> bool | None:
    """Write ``data`` whole and synced aside, then link it to ``target``: True when linked, False when
    ``target`` was there (another writer's: a checkpoint of the same rows, the same fact, the group another
    launcher created), None when a cleanup took the temporary file meanwhile (its writer stalled past the
    grace)."""
    tmp = folder / f".{uuid.uuid4().hex[:12]}.tmp"
    write_synced(tmp, data)
    try:
        faults.point(point)
        return link_new(tmp, target)
    except FileNotFoundError:
        if tmp.exists():
            raise
        return None
    finally:
        tmp.unlink(missing_ok=True)


def write_checkpoint(
    config_dir: Path,
    version: int,
    table: pa.Table,
    revoked: tp.Mapping[str, int],
    row_group: int,
    progress: pa.Table | None = None,
) -> bool:
    """Publish ``table`` (every entry at ``version``, sorted by hash) as that version's checkpoint, the
    videos' ``progress`` rows first beside it, then read it back whole; False when another compaction had
    published it (the same rows: the log decides)."""
    folder = checkpoint_dir(config_dir)
    make_shared_dirs(folder, config_dir)
    n_progress = 0 if progress is None else progress.num_rows
    files = []
    if progress is not None and n_progress:
        meta = {"kind": PROGRESS, "version": version, "rows": n_progress}
        files.append((progress_path(config_dir, version), _bytes(progress.sort_by("video_hash"), meta)))
    meta = {
        "kind": "checkpoint",
        "version": version,
        "rows": table.num_rows,
        "revoked": dict(sorted(revoked.items())),
        "progress": n_progress,
    }
    files.append((checkpoint_path(config_dir, version), _bytes(table, meta, row_group)))
    for target, data in files:  # the progress first: a linked checkpoint finds it
        ours = publish_once(folder, target, data, "checkpoint-written")
        if ours is None:
            # stalled past the grace, its file cleaned up as a leftover: the next compaction publishes one
            log.warning("store: a compaction of %s stalled past %.0f s; its checkpoint dropped", config_dir, GRACE_S)
            return False
    faults.point("checkpoint-linked")
    back = checkpoint_rows(config_dir, version, ["video_hash"])  # TornFile if what was linked is not whole
    if back.num_rows != table.num_rows:
        raise TornFile(f"store: checkpoint {checkpoint_path(config_dir, version)} reads back {back.num_rows} rows")
    if n_progress:
        checkpoint_progress(config_dir, version, n_progress)
    return bool(ours)


def _server_now(folder: Path) -> float:
    """The time the file system stamps on a file created now (the server's clock on NFS); this node's clock
    where the folder cannot take the probe."""
    probe = folder / f".now-{uuid.uuid4().hex[:8]}.tmp"
    try:
        probe.write_bytes(b"")
        return probe.stat().st_mtime
    except OSError:
        return time.time()
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()


def cleanup(config_dir: Path, grace_s: float = GRACE_S) -> int:
    """Remove what no reader needs: commits and checkpoints behind the second newest whole checkpoint,
    torn checkpoints and temporary files (of the log, the checkpoints, the facts and the group's own
    ``zarr.json``), each only once older than ``grace_s``. Returns files removed.
    Ages are read against the file server's clock (the time it stamps on a probe file), not this node's:
    a node whose clock is hours ahead cleans up no sooner."""
    now = _server_now(log_dir(config_dir))

    def old(path: Path) -> bool:
        try:
            return now - path.stat().st_mtime >= grace_s
        except FileNotFoundError:
            return False

    def remove(path: Path) -> int:
        faults.point("cleanup")
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            return 1
        return 0

    removed = 0
    whole: list[int] = []
    for version in checkpoint_versions(config_dir):
        if len(whole) == 2:
            break
        try:
            open_checkpoint(config_dir, version)
            whole.append(version)
        except TornFile:
            if old(checkpoint_path(config_dir, version)):
                removed += remove(checkpoint_path(config_dir, version))
    for folder in (log_dir(config_dir), checkpoint_dir(config_dir), config_dir / layout.FACTS, config_dir):
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(folder):
                number = version_of(name)
                path = folder / name
                side = _PROGRESS_NAME.match(name)
                if side is not None:  # a checkpoint's progress: goes with it, or alone when it never was linked
                    number = int(side.group(1))
                    behind = (len(whole) == 2 and number < whole[1]) or not checkpoint_path(config_dir, number).exists()
                elif number is None:
                    behind = name.endswith(".tmp")  # a temporary file: its writer writes it again if alive
                elif folder.name == layout.LOG:
                    behind = len(whole) == 2 and number <= whole[1]
                else:
                    behind = len(whole) == 2 and number < whole[1]
                if behind and old(path):
                    removed += remove(path)
        if removed:
            fsync_dir(folder)
    return removed
