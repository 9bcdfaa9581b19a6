"""The plan of a launch: which videos are cached, failed before, duplicates, and the queue to compute."""

from __future__ import annotations

import dataclasses
import math

from pipeline.config import RunConfig
from pipeline.launch.discovery import find_videos, hash_files, video_durations
from pipeline.store import Store
from pipeline.store.records import failure_text


@dataclasses.dataclass
class Plan:
    config_uid: str
    paths: list[str]
    hashes: dict[str, str]
    cached: list[str]
    to_compute: list[tuple[str, str]]
    """``(path, hash)`` in the order jobs claim them: longest first."""
    duplicates: dict[str, str]
    """path -> the path whose identical bytes are computed (or cached) instead."""
    failed_before: dict[str, str]
    """path -> the failure recorded by an earlier launch (not retried unless ``retry_failed``)."""
    unreadable: dict[str, str] = dataclasses.field(default_factory=dict)
    """path -> why its bytes cannot be read (no content hash, so it is reported and recorded by path)."""
    bytes_hashed: int = 0
    """Bytes read to hash the files the store's hash cache did not know."""

    def n_jobs(self, videos_per_job: int, max_jobs: int) -> int:
        """Jobs to start: one per ``videos_per_job`` videos, at most ``max_jobs``. Each job claims the next
        unclaimed video of the launch until none is left, so no job idles while another has a queue."""
        return min(max_jobs, math.ceil(len(self.to_compute) / videos_per_job)) if self.to_compute else 0


def make_plan(run: RunConfig, store: Store, paths: list[str] | None = None) -> Plan:
    paths = find_videos(run.videos) if paths is None else paths
    hashes, unreadable, bytes_hashed = hash_files(paths, store)
    cuid = run.embed.uid()
    done = store.done_hashes(cuid)
    failures = {} if run.retry_failed else store.failures(cuid)
    first: dict[str, str] = {}
    duplicates: dict[str, str] = {}
    failed_before: dict[str, str] = {}
    cached, to_compute = [], []
    for p in paths:
        if p in unreadable:
            continue
        h = hashes[p]
        if h in first:
            duplicates[p] = first[h]
            continue
        first[h] = p
        if h in done:
            cached.append(p)
        elif h in failures:
            f = failures[h]
            failed_before[p] = f"{failure_text(f)} (recorded {f.get('time')}, not retried)"
        else:
            to_compute.append((p, h))
    if to_compute:
        durations = video_durations(to_compute, store)
        to_compute.sort(key=lambda item: -durations[item[1]])  # longest first; ties keep name order
    return Plan(cuid, paths, hashes, cached, to_compute, duplicates, failed_before, unreadable, bytes_hashed)
