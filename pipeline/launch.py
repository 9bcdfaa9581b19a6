"""``python -m pipeline.launch``: find videos, plan against the store, shard, submit, follow, summarise."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import glob
import json
import math
import os
import sys
import time
import typing as tp
from pathlib import Path

from .config import ConfigError, RunConfig, build_run_config
from .store import Store, content_hash
from .worker import VideoResult, run_shard

VIDEO_SUFFIXES = {".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts"}
LIST_SUFFIXES = {".txt", ".lst", ".list"}


def find_videos(spec: str) -> list[str]:
    """Video paths from a folder (recursive), a glob pattern, or a text file of paths (one per line)."""
    path = Path(spec)
    if path.is_dir():
        found = sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
        if not found:
            raise ConfigError(f"videos: no video files ({', '.join(sorted(VIDEO_SUFFIXES))}) in folder {spec}")
        return found
    if path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
        base = path.parent
        lines = [ln.strip() for ln in path.read_text().splitlines()]
        found = [str(base / ln) for ln in lines if ln and not ln.startswith("#")]
        missing = [p for p in found if not Path(p).is_file()]
        if missing:
            raise ConfigError(f"videos: {len(missing)} listed file(s) missing in {spec}, first: {missing[0]}")
        if not found:
            raise ConfigError(f"videos: the list {spec} names no file")
        return found
    if path.is_file():
        return [str(path)]
    if glob.has_magic(spec):
        found = sorted(p for p in glob.glob(spec, recursive=True) if Path(p).is_file())
        if not found:
            raise ConfigError(f"videos: the pattern {spec!r} matches no file")
        return found
    raise ConfigError(f"videos: no such folder, file or pattern: {spec}")


def hash_videos(paths: list[str], store: Store) -> dict[str, str]:
    """Content hash of each path, reusing a cache keyed by (path, size, mtime) kept in the store."""
    from tqdm import tqdm

    cache_file = store.path / "_index" / "hashes.json"
    try:
        cache: dict[str, str] = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}

    def key(p: str) -> str:
        st = os.stat(p)
        return f"{os.path.realpath(p)}|{st.st_size}|{st.st_mtime_ns}"

    keys = {p: key(p) for p in paths}
    todo = [p for p in paths if keys[p] not in cache]
    if todo:
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            for p, digest in tqdm(
                zip(todo, pool.map(content_hash, todo)),
                total=len(todo),
                desc="hashing videos",
                unit="video",
                disable=len(todo) < 20,
            ):
                cache[keys[p]] = digest
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache))
        os.replace(tmp, cache_file)
    return {p: cache[keys[p]] for p in paths}


@dataclasses.dataclass
class Plan:
    config_uid: str
    paths: list[str]
    hashes: dict[str, str]
    cached: list[str]
    to_compute: list[tuple[str, str]]
    duplicates: dict[str, str]
    """path -> the path whose identical bytes are computed (or cached) instead."""

    def shards(self, videos_per_job: int, max_jobs: int) -> list[list[tuple[str, str]]]:
        if not self.to_compute:
            return []
        n_jobs = min(max_jobs, math.ceil(len(self.to_compute) / videos_per_job))
        size = math.ceil(len(self.to_compute) / n_jobs)
        return [self.to_compute[i : i + size] for i in range(0, len(self.to_compute), size)]


def make_plan(run: RunConfig, store: Store) -> Plan:
    paths = find_videos(run.videos)
    hashes = hash_videos(paths, store)
    cuid = run.embed.uid()
    done = store.done_hashes(cuid)
    first: dict[str, str] = {}
    duplicates: dict[str, str] = {}
    cached, to_compute = [], []
    for p in paths:
        h = hashes[p]
        if h in first:
            duplicates[p] = first[h]
            continue
        first[h] = p
        (cached.append(p) if h in done else to_compute.append((p, h)))
    return Plan(cuid, paths, hashes, cached, to_compute, duplicates)


def prepare_model(run: RunConfig) -> None:
    """Build a tiny model if asked, and check ``num_frames`` against the model's config before any job."""
    from transformers import AutoConfig

    from .engine import resolve_num_frames
    from .tiny import TINY_FAMILIES, ensure_tiny_model

    spec = run.embed.model
    if spec.tiny:
        kind = spec.name.removeprefix("tiny-")
        if kind not in TINY_FAMILIES:
            raise ConfigError(f"model.name: no tiny model {spec.name!r} (known: tiny-{', tiny-'.join(TINY_FAMILIES)})")
        ensure_tiny_model(kind, run.models_dir)
    try:
        hf_config = AutoConfig.from_pretrained(run.model_source(), trust_remote_code=spec.trust_remote_code)
    except (OSError, ValueError) as e:
        raise ConfigError(f"model.name: cannot load the config of {spec.name!r} ({e})") from e
    resolve_num_frames(run.embed, hf_config)


def make_executor(run: RunConfig, folder: Path) -> tp.Any:
    import submitit

    params = run.executor.model_dump()
    name = params.pop("name")
    if name == "debug":
        return submitit.DebugExecutor(folder=str(folder))
    if name == "local":
        executor = submitit.LocalExecutor(folder=str(folder))
        executor.update_parameters(timeout_min=params["timeout_min"])
        return executor
    raise ConfigError(f"executor.name: {name!r} is not available yet")


@dataclasses.dataclass
class Summary:
    config_uid: str
    store: str
    computed: list[str] = dataclasses.field(default_factory=list)
    cached: list[str] = dataclasses.field(default_factory=list)
    failed: dict[str, str] = dataclasses.field(default_factory=dict)
    duplicates: dict[str, str] = dataclasses.field(default_factory=dict)

    def render(self) -> str:
        lines = [
            f"config {self.config_uid}  store {self.store}",
            f"  computed {len(self.computed)}  cached {len(self.cached)}  failed {len(self.failed)}"
            + (f"  duplicates {len(self.duplicates)}" if self.duplicates else ""),
        ]
        lines += [f"  same bytes as {src}: {p}" for p, src in self.duplicates.items()]
        lines += [f"  FAILED {p}: {why}" for p, why in self.failed.items()]
        return "\n".join(lines)


def _follow(jobs: list[tp.Any], plan: Plan, store: Store) -> None:
    from tqdm import tqdm

    remaining = {h for _, h in plan.to_compute}
    with tqdm(total=len(remaining), desc="videos", unit="video") as bar:
        while True:
            finished = all(job.done() for job in jobs)
            landed = {h for h in remaining if store.has(plan.config_uid, h)}
            remaining -= landed
            bar.update(len(landed))
            if finished:
                return
            time.sleep(1.0)


def launch(run: RunConfig, *, out: tp.TextIO = sys.stdout) -> Summary:
    """Plan, submit and follow one config; returns the summary (printed as well)."""
    prepare_model(run)
    store = Store(run.store)
    store.ensure()
    plan = make_plan(run, store)
    n_unique = len(plan.paths) - len(plan.duplicates)
    shards = plan.shards(run.videos_per_job, run.max_jobs)
    print(
        f"plan: {len(plan.paths)} videos found ({n_unique} distinct), {len(plan.cached)} cached, "
        f"{len(plan.to_compute)} to compute in {len(shards)} job(s); config {plan.config_uid}",
        file=out,
    )
    summary = Summary(plan.config_uid, str(store.path), cached=list(plan.cached), duplicates=plan.duplicates)
    if run.dry_run:
        for i, shard in enumerate(shards):
            print(f"  job {i}: {len(shard)} videos: {', '.join(Path(p).name for p, _ in shard)}", file=out)
        print("dry run: nothing submitted", file=out)
        return summary
    if not shards:
        print(summary.render(), file=out)
        return summary
    store.ensure_config(run.embed)
    executor = make_executor(run, store.path / "_jobs" / plan.config_uid)
    run_dict = run.model_dump(mode="json")
    with executor.batch():
        jobs = [executor.submit(run_shard, run_dict, shard) for shard in shards]
    print(f"submitted {len(jobs)} job(s): {' '.join(str(j.job_id) for j in jobs)}", file=out)
    if run.executor.name != "debug":
        _follow(jobs, plan, store)
    for job, shard in zip(jobs, shards):
        try:
            results: list[VideoResult] = job.result()
        except Exception as e:  # noqa: BLE001 - a crashed job fails its videos, with the reason
            reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            for path, _ in shard:
                summary.failed[path] = f"job {job.job_id} failed: {reason}"
            continue
        for r in results:
            if r.status == "computed":
                summary.computed.append(r.video_path)
            elif r.status == "cached":
                summary.cached.append(r.video_path)
            else:
                summary.failed[r.video_path] = r.error
    print(summary.render(), file=out)
    return summary


def main() -> None:
    import hydra
    from omegaconf import DictConfig, OmegaConf

    conf_dir = str(Path(__file__).resolve().parent.parent / "conf")

    @hydra.main(config_path=conf_dir, config_name="config", version_base=None)
    def _run(cfg: DictConfig) -> None:
        flat = tp.cast(dict[str, tp.Any], OmegaConf.to_container(cfg, resolve=True))
        try:
            run = build_run_config(flat)
            summary = launch(run)
        except ConfigError as e:
            print(f"config error: {e}", file=sys.stderr)
            sys.exit(2)
        except OSError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        if summary.failed:
            sys.exit(1)

    _run()


if __name__ == "__main__":
    main()
