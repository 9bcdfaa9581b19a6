"""``python -m pipeline.status store=PATH [config=UID] [--videos] [--json]``: what a store holds.

One row per config UID: model and key fields, videos done / failed / pending / running, bytes on disk.
Pending videos are those an earlier launch asked for (``wait=false`` included) that are neither stored
nor failed; running ones have a live lease. ``--videos`` adds one line per video.
"""

from __future__ import annotations

import json
import sys
import typing as tp

from pipeline.common.text import folder_bytes, human_size, short, table
from pipeline.config import FORMAT_VERSION
from pipeline.store import Store
from pipeline.store.leases import live_leases
from pipeline.store.records import failure_text
from pipeline.tools.args import UsageError, chosen_configs, open_store, parse_args

KEY_FIELDS = (
    "frequency",
    "clip_duration",
    "num_frames",
    "layers",
    "layer_aggregation",
    "cache_n_layers",
    "token_aggregation",
)


def config_status(store: Store, cuid: str, *, videos: bool = False, lease_ttl_s: float = 120.0) -> dict[str, tp.Any]:
    config = store.config(cuid)
    done = store.done_hashes(cuid)
    failures = {h: f for h, f in store.failures(cuid).items() if h not in done}
    planned: dict[str, str] = {}
    for record in store.launches(cuid).values():
        planned.update(record.get("videos", {}))
    running = {h: s for h, s in live_leases(store.leases(cuid), lease_ttl_s).items() if h not in done}
    pending = {h: p for h, p in planned.items() if h not in done and h not in failures}
    row: dict[str, tp.Any] = {
        "config_uid": cuid,
        "model": ", ".join(store.model_names(cuid)) or config.get("model") or "?",
        "format_version": config.get("format_version"),
        "stale": config.get("format_version") != FORMAT_VERSION,
        **{k: config.get(k) for k in KEY_FIELDS if k in config},
        "done": len(done),
        "failed": len(failures),
        "pending": len(pending),
        "running": len(running),
        "bytes": folder_bytes(store.path / cuid),
    }
    if videos:
        detail = [{"video_hash": h, "state": "done"} for h in sorted(done)]
        detail += [
            {"video_hash": h, "state": "failed", "video_path": f.get("video_path", ""), "error": _error(f)}
            for h, f in sorted(failures.items())
        ]
        detail += [
            {
                "video_hash": h,
                "state": "running" if h in running else "pending",
                "video_path": p,
                **({"job_id": running[h].owner.get("job_id", "")} if h in running else {}),
            }
            for h, p in sorted(pending.items())
        ]
        row["videos"] = detail
    return row


def _error(record: dict[str, tp.Any]) -> str:
    job = f" (job {record['job_id']})" if record.get("job_id") else ""
    return failure_text(record) + job


def render(rows: list[dict[str, tp.Any]], store: Store) -> str:
    if not rows:
        return f"store {store.path}: no config yet"
    header = ["config uid", "model", "fields", "done", "failed", "pending", "running", "size"]
    body = []
    for r in rows:
        fields = " ".join(f"{k}={short(r[k])}" for k in KEY_FIELDS if r.get(k) is not None)
        body.append(
            [r["config_uid"], r["model"], fields, *(str(r[k]) for k in ("done", "failed", "pending", "running"))]
            + [human_size(r["bytes"])]
        )
    lines = [f"store {store.path}", *table(header, body)]
    for r in rows:
        if r["stale"]:
            lines.append(
                f"stale: {r['config_uid']} has output format {r['format_version']} (current {FORMAT_VERSION}); "
                f"a launch computes it anew, python -m pipeline.gc store={store.path} removes it"
            )
    for r in rows:
        for v in r.get("videos", []):
            extra = v.get("error") or v.get("job_id") or v.get("video_path", "")
            lines.append(f"  {r['config_uid']}/{v['video_hash']}  {v['state']:<8} {extra}".rstrip())
    return "\n".join(lines)


USAGE = "usage: python -m pipeline.status store=PATH [config=UID] [--videos] [--json]"


def main(argv: list[str] | None = None) -> int:
    values, flags, words = parse_args(argv, {"store", "config"}, {"--json", "--videos"}, USAGE)
    if words:
        raise UsageError(f"unexpected argument {words[0]!r}\n{USAGE}")
    store = open_store(values)
    uids = chosen_configs(store, values)
    rows = [config_status(store, u, videos="--videos" in flags) for u in uids]
    if "--json" in flags:
        print(json.dumps({"store": str(store.path), "configs": rows}, indent=1))
    else:
        print(render(rows, store))
    return 0


if __name__ == "__main__":
    sys.exit(main())
