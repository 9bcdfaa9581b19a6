"""``python -m pipeline.status store=PATH [config=UID] [--videos] [--json]``: what a store holds.

One row per config UID: model and key fields, videos done / failed / pending / running, bytes on disk.
Pending videos are those an earlier launch asked for (``wait=false`` included) that are neither stored
nor failed; running ones have a live lease. ``--videos`` adds one line per video.
"""

from __future__ import annotations

import collections
import json
import os
import sys
import time
import typing as tp
from pathlib import Path

from pipeline.common.text import folder_bytes, human_size, short, table
from pipeline.config import format_version
from pipeline.launch import pace
from pipeline.launch.ending import summarise_ended
from pipeline.launch.liveness import launch_running
from pipeline.store import Store, caches, manifest
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


STATES = ("done", "failed", "running", "pending", "stopped")
"""Each video a config's launches asked for (or that is stored) is in exactly one: stored; recorded as
failed; claimed by a live worker; waiting for a job that still runs; or left by jobs that are over
(cancelled, or ended without it): a relaunch computes it."""


def config_status(store: Store, cuid: str, *, videos: bool = False, lease_ttl_s: float = 120.0) -> dict[str, tp.Any]:
    config = store.config(cuid)
    stored = {e.video_hash: e.video_path for e in store.entries(cuid)}
    failures = {h: f for h, f in store.failures(cuid).items() if h not in stored}
    launches = store.launches(cuid)
    asked: dict[str, list[str]] = {}  # video hash -> the launches that asked for it
    paths: dict[str, str] = {**{h: str(f.get("video_path", "")) for h, f in failures.items()}}
    for launch_id, record in launches.items():
        for h, p in record.get("videos", {}).items():
            asked.setdefault(h, []).append(launch_id)
            paths.setdefault(h, p)
    paths.update(stored)
    live = {h: s for h, s in live_leases(store.leases(cuid), lease_ttl_s).items() if h not in stored}
    running_launches = {lid for lid, record in launches.items() if launch_running(record)}
    state: dict[str, str] = {}
    for h in sorted(set(stored) | set(failures) | set(asked)):
        if h in stored:
            state[h] = "done"
        elif h in failures:
            state[h] = "failed"
        elif h in live:
            state[h] = "running"
        elif any(lid in running_launches for lid in asked.get(h, [])):
            state[h] = "pending"
        else:
            state[h] = "stopped"
    counts = {k: sum(v == k for v in state.values()) for k in STATES}
    durations = caches.read(store.path, "durations")
    launch_times = [t for lid in running_launches if (t := pace.epoch(str(launches[lid].get("time", "")))) is not None]
    speed = pace.pace(
        [(t, e.duration) for e in store.entries(cuid) if (t := pace.epoch(e.created)) is not None],
        min(launch_times) if launch_times else None,
        time.time(),
        sum(float(durations.get(h, 0.0)) for h, what in state.items() if what in ("pending", "running")),
    )
    kinds = collections.Counter(failure_text(f).split(":")[0] for f in failures.values())
    gone = sorted(h for h in failures if not _exists(str(failures[h].get("video_path", ""))))
    commands = [r["command"] for r in launches.values() if r.get("command")]
    row: dict[str, tp.Any] = {
        "config_uid": cuid,
        "model": ", ".join(store.model_names(cuid)) or config.get("model") or "?",
        "format_version": config.get("format_version"),
        "current_format_version": format_version(str(config.get("family", ""))),
        "stale": config.get("format_version") != format_version(str(config.get("family", ""))),
        **{k: config.get(k) for k in KEY_FIELDS if k in config},
        "total": len(state),
        **counts,
        "bytes": folder_bytes(store.path / cuid),
        "relaunch": commands[-1] if commands else "",
        "rate_recent": speed.recent,
        "rate_launch": speed.overall,
        "left_seconds": speed.left_s,
        "eta_seconds": speed.eta_s,
        "pace": pace.render(speed),
        "failures_by_kind": dict(kinds.most_common()),
        "summaries": [str(p) for p in summarise_ended(store, cuid, launch_running)],
        "failed_gone": len(gone),
    }
    if videos:
        cancelled = {h for h in state if any(launches[lid].get("cancelled") for lid in asked.get(h, []))}
        detail = []
        for h, what in state.items():
            item: dict[str, tp.Any] = {"video_hash": h, "state": what, "video_path": paths.get(h, "")}
            if what == "done":
                note = manifest.entry_attrs(store.locate(f"{cuid}/{h}")).get("timing_note")
                if note:
                    item["flag"] = str(note)
            elif what == "failed":
                item["error"] = _error(failures[h]) + (" (the file no longer exists)" if h in gone else "")
            elif what == "running":
                item["job_id"] = live[h].owner.get("job_id", "")
            elif what == "stopped":
                item["why"] = "cancelled" if h in cancelled else "its jobs ended without it"
            detail.append(item)
        row["videos"] = detail
    return row


def _exists(path: str) -> bool:
    return not path or os.path.exists(path)


def _error(record: dict[str, tp.Any]) -> str:
    job = f" (job {record['job_id']})" if record.get("job_id") else ""
    return failure_text(record) + job


def render(rows: list[dict[str, tp.Any]], store: Store) -> str:
    if not rows:
        return f"store {store.path}: no config yet"
    header = ["config uid", "model", "fields", "videos", *STATES, "size"]
    body = []
    for r in rows:
        fields = " ".join(f"{k}={short(r[k])}" for k in KEY_FIELDS if r.get(k) is not None)
        body.append(
            [r["config_uid"], r["model"], fields, str(r["total"]), *(str(r[k]) for k in STATES)]
            + [human_size(r["bytes"])]
        )
    lines = [f"store {store.path}", *table(header, body)]
    for r in rows:
        if r["running"] or r["pending"]:
            lines.append(f"pace: {r['config_uid']}: {r['pace']}")
        if r["failures_by_kind"]:
            kinds = ", ".join(f"{k} {n}" for k, n in r["failures_by_kind"].items())
            lines.append(f"failures: {r['config_uid']}: {kinds}")
    for r in rows:
        if r["summaries"] and not (r["running"] or r["pending"]):
            last = Path(r["summaries"][-1])
            counts = last.read_text().splitlines()[2].strip() if len(last.read_text().splitlines()) > 2 else ""
            lines.append(f"ended: {r['config_uid']}: {counts} (the launch's summary: {last})")
    for r in rows:
        if r["stale"]:
            lines.append(
                f"stale: {r['config_uid']} has output format {r['format_version']} "
                f"(current {r['current_format_version']}); "
                f"a launch computes it anew, {sys.executable} -m pipeline.gc store={store.path} removes it"
            )
    for r in rows:
        if r.get("failed_gone"):
            lines.append(
                f"failed, files gone: {r['config_uid']} has {r['failed_gone']} recorded failure(s) of files that no "
                f"longer exist; forget them with {sys.executable} -m pipeline.gc store={store.path} forget=gone --apply"
            )
    for r in rows:
        if r["stopped"]:
            how = r["relaunch"] or "the launch command again"
            lines.append(
                f"stopped: {r['config_uid']} has {r['stopped']} video(s) that no job will run (cancelled, or their "
                f"jobs ended); stored videos are skipped, so relaunch: {how}"
            )
    for r in rows:
        for v in r.get("videos", []):
            extra = v.get("error") or (f"job {v['job_id']}" if v.get("job_id") else "") or v.get("why", "")
            extra = extra or (f"flagged: {v['flag']}" if v.get("flag") else "")
            lines.append(f"  {r['config_uid']}/{v['video_hash']}  {v['state']:<8} {v['video_path']}  {extra}".rstrip())
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
