"""``python -m pipeline.inspect store=PATH <what> [--json]``: the metadata and array shape of entries.

``<what>`` is an entry UID (``<config_uid>/<video_hash>``), a config UID (its entries, one line each),
a video hash, or a video file (hashed, then found under every config that has it).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import typing as tp
from pathlib import Path

import numpy as np

from pipeline.common.text import folder_bytes
from pipeline.store import Store, content_hash, layout, manifest
from pipeline.store.dims import output_dims
from pipeline.store.records import failure_text
from pipeline.tools.args import UsageError, open_store, parse_args

USAGE = "usage: python -m pipeline.inspect store=PATH <entry uid | config uid | video hash | video file> [--json]"


def entry_detail(store: Store, uid: str) -> dict[str, tp.Any]:
    import zarr

    row = store.locate(uid)
    segment = store.path / uid.split("/")[0] / row["segment"]
    array = zarr.open_array(str(segment / layout.EMBEDDING), mode="r", zarr_format=3)
    attrs = manifest.entry_attrs(row)
    times = np.asarray(
        zarr.open_array(str(segment / "time"), mode="r")[row["first_row"] : row["first_row"] + row["rows"]]
    )
    attrs.pop("times", None)
    attrs.pop("run_config", None)
    config = attrs.get("config", {})
    shape = [row["rows"], *json.loads(row["features"])]  # as load() gives it: time first
    dims, _ = output_dims(
        len(shape),
        list(attrs.get("layer_indices") or []),
        "none" if config.get("cache_n_layers") is not None else str(config.get("layer_aggregation", "")),
        str(config.get("token_aggregation", "")),
    )
    share = row["rows"] / max(array.shape[0], 1)
    return {
        "uid": uid,
        "shape": shape,
        "dims": dims,
        "dtype": str(array.dtype),
        "segment": row["segment"],
        "rows": [row["first_row"], row["first_row"] + row["rows"]],
        "chunks": list(array.chunks),
        "shards": list(array.shards) if array.shards else None,
        "n_times": len(times),
        "time_range_s": [float(times[0]), float(times[-1])] if len(times) else None,
        "bytes": round(folder_bytes(segment / layout.EMBEDDING) * share),
        **attrs,
    }


def find(store: Store, what: str) -> list[str]:
    """Entry UIDs that ``what`` names."""
    uids = store.config_uids()
    if "/" in what and what.split("/")[0] in uids:
        if not store.has(*what.split("/", 1)):
            raise UsageError(f"no entry {what!r} in {store.path}")
        return [what]
    if what in uids:
        return [e.uid for e in store.entries(what)]
    looks_like_a_file = Path(what).suffix or "/" in what
    if looks_like_a_file and not Path(what).is_file():
        raise UsageError(f"{what}: no such file (give an entry UID, a config UID, a video hash or a video file)")
    vhash = content_hash(what) if Path(what).is_file() else what
    found = [f"{c}/{vhash}" for c in uids if store.has(c, vhash)]
    if not found:
        kind = f"video {what} (hash {vhash})" if vhash != what else repr(what)
        recorded = {c: store.failures(c).get(vhash) for c in uids}
        failed = [f"\n  failed under {c}: {failure_text(r)}" for c, r in recorded.items() if r is not None]
        configs = ", ".join(uids) or "none"
        raise UsageError(f"{kind}: no entry in {store.path} (configs: {configs})" + "".join(failed))
    return found


def render(detail: dict[str, tp.Any]) -> str:
    lines = [f"entry {detail['uid']}"]
    for key, value in detail.items():
        if key != "uid":
            lines.append(f"  {key:<16} {json.dumps(value) if isinstance(value, (dict, list)) else value}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    values, flags, words = parse_args(argv, {"store"}, {"--json"}, USAGE)
    if len(words) != 1:
        raise UsageError(USAGE)
    store = open_store(values)
    uids = find(store, words[0])
    if len(uids) > 1 and words[0] in store.config_uids():
        entries = [dataclasses.asdict(e) for e in store.entries(words[0])]
        if "--json" in flags:
            print(json.dumps(entries, indent=1))
        else:
            print(f"config {words[0]}: {len(entries)} entries\n  " + json.dumps(store.config(words[0])))
            for e in entries:
                print(f"  {e['uid']}  shape {tuple(e['shape'])}  {e['duration']:.2f} s  {e['video_path']}")
        return 0
    details = [entry_detail(store, u) for u in uids]
    print(json.dumps(details, indent=1) if "--json" in flags else "\n".join(render(d) for d in details))
    return 0


if __name__ == "__main__":
    sys.exit(main())
