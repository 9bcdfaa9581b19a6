"""The store's caches (content hashes, durations) as appended chunks: a save costs what is new, a merge
keeps every key, and a reader racing a merge misses nothing saved before it started."""

from __future__ import annotations

import typing as tp
from pathlib import Path

from pipeline.store import caches, tables


def test_saves_append_and_merge_past_the_limit(tmp_path: Path, monkeypatch: tp.Any) -> None:
    monkeypatch.setattr(caches, "MERGE_AT", 3)
    store = tmp_path / "s.zarr"
    for i in range(3):
        caches.append(store, "hashes", {f"k{i}": f"v{i}"})
    chunks = sorted(caches.chunk_dir(store, "hashes").glob("*.parquet"))
    assert [tables.read_mapping(c) for c in chunks] == [{"k0": "v0"}, {"k1": "v1"}, {"k2": "v2"}]
    assert not caches.base_file(store, "hashes").exists()
    caches.append(store, "hashes", {"k3": "v3"})  # the fourth chunk: merged into the base
    assert not list(caches.chunk_dir(store, "hashes").glob("*.parquet"))
    assert tables.read_mapping(caches.base_file(store, "hashes")) == {f"k{i}": f"v{i}" for i in range(4)}
    caches.append(store, "hashes", {"k4": "v4"})
    caches.append(store, "hashes", {})  # nothing new: no chunk
    assert len(list(caches.chunk_dir(store, "hashes").glob("*.parquet"))) == 1
    assert caches.read(store, "hashes") == {f"k{i}": f"v{i}" for i in range(5)}
    assert caches.read(store, "durations") == {}


def test_a_reader_racing_a_merge_misses_nothing(tmp_path: Path, monkeypatch: tp.Any) -> None:
    """The reader lists the chunks, a merge removes them before the reader opens them: the base it reads
    next holds them."""
    store = tmp_path / "s.zarr"
    caches.append(store, "durations", {"a": 1.0})
    caches.append(store, "durations", {"b": 2.0})
    real_chunks = caches._chunks

    def listed_then_merged(top: Path, name: str) -> list[Path]:
        listed = real_chunks(top, name)
        monkeypatch.setattr(caches, "_chunks", real_chunks)
        caches.merge(top, name)
        return listed

    monkeypatch.setattr(caches, "_chunks", listed_then_merged)
    assert caches.read(store, "durations") == {"a": 1.0, "b": 2.0}
    assert not list(caches.chunk_dir(store, "durations").glob("*.parquet"))


def test_a_torn_or_foreign_chunk_is_a_miss(tmp_path: Path) -> None:
    """A chunk cut short by a crash reads as nothing (its keys are computed again), never as an error."""
    store = tmp_path / "s.zarr"
    caches.append(store, "hashes", {"a": "1"})
    chunk = next(caches.chunk_dir(store, "hashes").glob("*.parquet"))
    chunk.write_bytes(chunk.read_bytes()[:20])
    caches.append(store, "hashes", {"b": "2"})
    assert caches.read(store, "hashes") == {"b": "2"}
