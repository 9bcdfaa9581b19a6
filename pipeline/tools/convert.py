"""``python -m pipeline.convert store=PATH``: rewrite a store of an older layout into the current one
(``layout.LAYOUT_VERSION``), losing nothing. Run it with no launch writing to the store.

- Layout 4 (pipeline 0.3: segments listed by ``_manifests/`` and an ``_index.parquet`` rewritten in place):
  the entries they list (the index's, then the first manifest naming each other video) become the log's
  first commit and a checkpoint; every entry is read back before the old lists go. No segment is rewritten.
- Layout 3 (0.2 and before: one zarr array per entry): every entry is written into segments with its
  attributes, read back and compared (numbers, times and attributes) before its old folder goes; launch
  records get their queue file, the JSON caches become Parquet.

The root's layout attribute changes last: an interrupted conversion is finished by running it again.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import typing as tp
from pathlib import Path

import numpy as np

from pipeline.common.files import write_atomic
from pipeline.store import Store, layout, manifest, records, tables
from pipeline.store import log as commit_log
from pipeline.store.manifest import jsonable
from pipeline.tools.args import UsageError, open_store, parse_args

USAGE = "usage: python -m pipeline.convert store=PATH"
OLD_INDEX = "_index.json"
OLD_CACHES = "_index"


def legacy_entries(config_dir: Path) -> list[Path]:
    """The folders of a layout-3 config that are entries (an array's ``zarr.json``)."""
    found = []
    for folder in sorted(config_dir.iterdir()):
        if layout.is_reserved(folder.name) or not (folder / "zarr.json").is_file():
            continue
        if json.loads((folder / "zarr.json").read_text()).get("node_type") == "array":
            found.append(folder)
    return found


def convert_config(store: Store, config_uid: str) -> int:
    """Pack a config's layout-3 entries into segments, check each, then remove the old folders."""
    import zarr

    folders = legacy_entries(store.path / config_uid)
    out = store.writer(config_uid)
    originals: dict[str, tuple[np.ndarray, dict[str, tp.Any]]] = {}
    for folder in folders:
        array = zarr.open_array(str(folder), mode="r", zarr_format=3)
        data, attrs = np.asarray(array[...]), dict(array.attrs)
        originals[folder.name] = (data, attrs)
        if not store.has(config_uid, folder.name):
            out.add(folder.name, data, attrs)
            if out.due():
                store.flush(out)
    store.flush(out)
    store.compact(config_uid)
    for vhash, (data, attrs) in originals.items():
        got, got_attrs = Store(store.path).load_numpy(f"{config_uid}/{vhash}")
        if (
            got.dtype != data.dtype
            or not np.array_equal(got, data)
            or jsonable(got_attrs) != jsonable({**attrs, "video_hash": vhash})
        ):
            raise RuntimeError(f"convert: entry {config_uid}/{vhash} does not read back as it was; nothing removed")
    for folder in folders:
        shutil.rmtree(folder)
    (store.path / config_uid / OLD_INDEX).unlink(missing_ok=True)
    return len(folders)


def legacy_listing(config_dir: Path) -> tp.Any:
    """The entries layout 4 listed: its index, then, for each video not in it, the first published
    manifest naming it (manifest names sort in publishing order). None when it listed none."""
    import pyarrow as pa
    import pyarrow.compute as pc

    parts = []
    index = config_dir / layout.INDEX
    if index.is_file():
        parts.append(manifest.read(index))
    folder = config_dir / layout.MANIFESTS
    names = sorted(n for n in os.listdir(folder) if n.endswith(".parquet")) if folder.is_dir() else []
    for name in names:
        table = manifest.read(folder / name)
        seen = pa.concat_tables(parts).column("video_hash") if parts else pa.array([], pa.string())
        _, first = np.unique(np.asarray(table.column("video_hash").to_pylist(), dtype=object), return_index=True)
        table = table.take(pa.array(sorted(first.tolist()), pa.int64()))
        parts.append(table.filter(pc.invert(pc.is_in(table.column("video_hash"), value_set=seen))))
    if not parts:
        return None
    return pa.concat_tables([t.cast(parts[0].schema) for t in parts]).sort_by("video_hash")


def convert_log(store: Store, config_uid: str) -> int:
    """Layout 4's index and manifests into the log's first commit and a checkpoint; each entry read back
    (its segment and rows as listed) before the old lists go. Returns the entries listed."""
    config_dir = store.path / config_uid
    table = legacy_listing(config_dir)
    if table is None:
        return 0
    catalog = store.catalog(config_uid)
    catalog.refresh()
    if catalog.tip == 0:  # not committed by an earlier, interrupted run
        catalog.commit(commit_log.ADD, table)
    catalog.compact()
    listed = catalog.state(["video_hash", "segment", "first_row", "rows"]).to_pylist()
    expected = table.select(["video_hash", "segment", "first_row", "rows"]).to_pylist()
    if listed != expected:
        raise RuntimeError(f"convert: the log of {config_uid} does not list what its index did; nothing removed")
    for row in expected:
        Store(store.path).load_numpy(f"{config_uid}/{row['video_hash']}")
    for name in (layout.MANIFESTS, layout.COMPACTION):
        shutil.rmtree(config_dir / name, ignore_errors=True)
    (config_dir / layout.INDEX).unlink(missing_ok=True)
    return table.num_rows


def convert_launches(store: Store, config_uid: str) -> None:
    """A layout-3 launch record holds its videos; layout 4 keeps them in a queue file beside it."""
    config_dir = store.path / config_uid
    for launch_id, record in store.launches(config_uid).items():
        if "queue" in record:
            continue
        videos = dict(record.pop("videos", {}))
        records.write_queue(config_dir, launch_id, [(p, h) for h, p in videos.items()])
        record.update({"n_videos": len(videos), "queue": records.queue_path(config_dir, launch_id).name})
        write_atomic(config_dir / layout.LAUNCHES / f"{launch_id}.json", json.dumps(record), sync=True)


def convert_caches(store: Store) -> None:
    old = store.path / OLD_CACHES
    for name in ("hashes", "durations"):
        path = old / f"{name}.json"
        if path.is_file():
            mapping = {
                **json.loads(path.read_text()),
                **tables.read_mapping(layout.caches(store.path) / f"{name}.parquet"),
            }
            tables.write_mapping(layout.caches(store.path) / f"{name}.parquet", mapping, store.path)
            path.unlink()
    if old.is_dir() and not any(old.iterdir()):
        old.rmdir()


def convert(store: Store, out: tp.TextIO | None = None) -> int:
    """Convert ``store`` in place; returns the number of entries rewritten."""
    import zarr

    out = sys.stdout if out is None else out  # the stream of the call, not of the import

    if store.layout_version() >= layout.LAYOUT_VERSION:
        print(f"store {store.path}: already layout {layout.LAYOUT_VERSION}, nothing to convert", file=out)
        return 0
    total = 0
    for config_uid in store.config_uids():
        listed = convert_log(store, config_uid)
        if listed:
            print(f"  {config_uid}: {listed} entries of its index and manifests now in its log", file=out)
        n = convert_config(store, config_uid)
        convert_launches(store, config_uid)
        if n:
            print(f"  {config_uid}: {n} entries packed into segments", file=out)
        total += n + listed
    convert_caches(store)
    zarr.open_group(str(store.path), mode="a", zarr_format=3).attrs["pipeline_store"] = layout.LAYOUT_VERSION
    print(
        f"store {store.path}: {total} entries converted to layout {layout.LAYOUT_VERSION}, each read back",
        file=out,
    )
    return total


def main(argv: list[str] | None = None) -> int:
    values, _, words = parse_args(argv, {"store"}, set(), USAGE)
    if words:
        raise UsageError(f"unexpected argument {words[0]!r}\n{USAGE}")
    convert(open_store(values, any_layout=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
