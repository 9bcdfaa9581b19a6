"""A job's work: load the model once, embed a shard of videos, commit each one as soon as it is done."""

from __future__ import annotations

import dataclasses
import os
import time
import typing as tp

from .config import RunConfig
from .store import PIPELINE_VERSION, Store, now


@dataclasses.dataclass
class VideoResult:
    video_path: str
    video_hash: str
    status: tp.Literal["computed", "cached", "failed"]
    error: str = ""
    seconds: float = 0.0


def _set_threads() -> None:
    import torch

    cpus = os.environ.get("SLURM_CPUS_PER_TASK") or os.environ.get("PIPELINE_THREADS")
    if cpus:
        torch.set_num_threads(int(cpus))


def run_shard(run_dict: dict[str, tp.Any], items: list[tuple[str, str]]) -> list[VideoResult]:
    """Embed ``(video_path, content_hash)`` pairs not yet in the store; failures are recorded, not raised."""
    from tqdm import tqdm

    from .engine import Embedder

    run = RunConfig.model_validate(run_dict)
    store = Store(run.store)
    cuid = run.embed.uid()
    results: list[VideoResult] = []
    pending = []
    for path, vhash in items:
        if store.has(cuid, vhash):
            results.append(VideoResult(path, vhash, "cached"))
        else:
            pending.append((path, vhash))
    if not pending:
        return results
    _set_threads()
    embedder = Embedder(run.embed, run.model_source(), device=run.resolved_device(), batch_size=run.batch_size)
    canonical = run.embed.canonical()
    full = run.model_dump(mode="json")
    for path, vhash in tqdm(pending, desc=f"embedding ({cuid})", unit="video", mininterval=2):
        if store.has(cuid, vhash):
            results.append(VideoResult(path, vhash, "cached"))
            continue
        started = time.perf_counter()
        try:
            emb = embedder.embed(path)
            attrs = {
                "frequency": emb.frequency,
                "start": emb.start,
                "duration": emb.duration,
                "times": emb.times,
                "model": run.embed.model.name,
                "family": run.embed.model.family,
                "layer_indices": emb.layer_indices,
                "num_frames": emb.num_frames,
                "clip_duration": emb.clip_duration,
                "config_uid": cuid,
                "config": canonical,
                "run_config": full,
                "video_path": os.path.abspath(path),
                "video_hash": vhash,
                "pipeline_version": PIPELINE_VERSION,
                "created": now(),
                "seconds": time.perf_counter() - started,
            }
            written = store.write(cuid, vhash, emb.data, attrs)
            status: tp.Literal["computed", "cached"] = "computed" if written else "cached"
            results.append(VideoResult(path, vhash, status, seconds=time.perf_counter() - started))
        except Exception as e:  # noqa: BLE001 - one bad video must not stop the shard
            store.record_failure(cuid, vhash, path, e)
            results.append(
                VideoResult(path, vhash, "failed", f"{type(e).__name__}: {e}", time.perf_counter() - started)
            )
    return results
