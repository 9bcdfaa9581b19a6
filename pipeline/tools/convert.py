"""``python -m pipeline.convert store=PATH``: rewrite a store of layout 3 (pipeline 0.2 and before: one zarr
array per entry) into layout 4 (packed segments, Parquet index), losing nothing.

Every entry is written into segments with its attributes, read back and compared (numbers, times and
attributes) before its old folder goes; launch records get their queue file, the JSON caches become Parquet.
The root's layout attribute changes last: an interrupted conversion is finished by running it again.
"""

from __future__ import annotations

import json
import shutil
import sys
import typing as tp
from pathlib import Path

import numpy as np

from pipeline.common.files import write_atomic
from pipeline.store import Store, layout, records, tables
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


def convert_launches(store: Store, config_uid: str) -> None:
    """A layout-3 launch record holds its videos; layout 4 keeps them in a queue file beside it."""
    config_dir = store.path / config_uid
    for launch_id, record in store.launches(config_uid).items():
        if "queue" in record:
            continue
        videos = dict(record.pop("videos", {}))
        records.write_queue(config_dir, launch_id, [(p, h) for h, p in videos.items()])
        record.update({"n_videos": len(videos), "queue": records.queue_path(config_dir, launch_id).name})
        write_atomic(config_dir / layout.LAUNCHES / f"{launch_id}.json", json.dumps(record))


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
        n = convert_config(store, config_uid)
        convert_launches(store, config_uid)
        print(f"  {config_uid}: {n} entries packed into segments", file=out)
        total += n
    convert_caches(store)
    zarr.open_group(str(store.path), mode="a", zarr_format=3).attrs["pipeline_store"] = layout.LAYOUT_VERSION
    print(
        f"store {store.path}: {total} entries converted to layout {layout.LAYOUT_VERSION}, each read back equal",
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
