"""Store benchmark (``make bench-store``): a store at 1,000 / 100,000 / 1,000,000 entries, and a dry run.

Entries are 20 steps x 64 float32 features with the attributes a worker writes, written by ``--writers``
concurrent processes through the workers' write path (``Store.writer``: packed segments, manifests; then
the launch's compaction). Printed per size: files and folders of the config, bytes on disk, bytes of index
(index plus manifests), write time per entry (all writers together), ``entries()`` on a fresh ``Store``,
loading one entry and a 10-step window on a fresh ``Store`` (median of 20), and entries lost (listed
less than written, plus loaded numbers that differ from what was written): must be 0.

Then the commit log alone: ``--committers`` processes (16) commit one-entry commits for ``--commit-s``
seconds; printed: commits per second together, and each commit's latency (median and 99th percentile).

Then a dry run over ``--corpus`` tiny real videos (distinct bytes), timed by stage: listing, hashing,
probing durations, planning; and the bytes of one task's submission at two corpus sizes.

Run with ``PYTHONPATH`` at a checkout of 0.2 to measure its one-array-per-entry layout (``Store.write``
per entry; the script uses what the checkout has). It exits 1 when an entry is lost, else 0; ``--smoke``:
the smallest sizes, to check that it runs (the suite does).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import pickle
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.environ.get("PYTHONPATH") or str(Path(__file__).resolve().parent.parent))

from pipeline.config import EmbedConfig  # noqa: E402
from pipeline.store import Store  # noqa: E402

STEPS, FEATURES = 20, 64
CONFIG = {"model": {"name": "tiny-videomae", "family": "videomae", "tiny": True, "identity": "store-benchmark"}}


def data_for(i: int) -> np.ndarray:
    return np.random.default_rng(i).standard_normal((FEATURES, STEPS), dtype=np.float32)


def attrs_for(i: int, embed: dict[str, object], job: int) -> dict[str, object]:
    """What ``pipeline.launch.worker`` writes with an entry (the run config included)."""
    return {
        "frequency": 2.0,
        "start": 0.0,
        "duration": STEPS / 2.0,
        "times": [k / 2.0 for k in range(STEPS)],
        "model": "tiny-videomae",
        "family": "videomae",
        "layer_indices": [2],
        "num_frames": 16,
        "clip_duration": 0.5,
        "timing": "reference",
        "timing_note": "",
        "processor": "VideoMAEImageProcessor",
        "versions": {"torch": "2.14.1", "torchvision": "0.29.1", "transformers": "5.24.0", "av": "16.0.1"},
        "config_uid": "bench",
        "config": embed,
        "run_config": {"store": "/scratch/lab/embeddings.zarr", "videos": "/data/corpus", "batch_size": 8, "job": job},
        "video_path": f"/data/corpus/part{i // 10000:03d}/clip_{i:07d}.mp4",
        "video_hash": f"{i:032x}",
        "pipeline_version": "0.3.0",
        "job_id": f"12345_{job}",
        "created": "2026-11-26T00:00:00.000+00:00",
        "seconds": 0.8,
    }


def writer(path: str, cuid: str, embed: dict[str, object], job: int, start: int, stop: int) -> None:
    store = Store(path)
    if hasattr(store, "writer"):
        out = store.writer(cuid)
        for i in range(start, stop):
            out.add(f"{i:032x}", data_for(i), attrs_for(i, embed, job))
            if out.due():
                store.flush(out)
        store.flush(out)
        if hasattr(out, "close"):
            out.close()
    else:  # 0.2: one array per entry
        for i in range(start, stop):
            store.write(cuid, f"{i:032x}", data_for(i), attrs_for(i, embed, job))


def inodes(folder: Path) -> int:
    return sum(len(dirs) + len(files) for _, dirs, files in os.walk(folder)) + 1


def disk_bytes(folder: Path) -> int:
    return sum(os.lstat(Path(d) / f).st_blocks * 512 for d, _, files in os.walk(folder) for f in files)


def median_ms(fn: object, picks: list[int]) -> float:
    times = []
    for i in picks:
        began = time.perf_counter()
        fn(i)  # type: ignore[operator]
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


def bench_size(size: int, folder: Path, writers: int) -> dict[str, object]:
    path = folder / f"store_{size}.zarr"
    store = Store(path)
    store.ensure()
    embed = EmbedConfig.model_validate(CONFIG)
    cuid = store.ensure_config(embed)
    bounds = np.linspace(0, size, writers + 1).astype(int)
    began = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=writer, args=(str(path), cuid, embed.canonical(), k, bounds[k], bounds[k + 1]))
        for k in range(writers)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    write_s = time.perf_counter() - began
    died = [p.exitcode for p in procs if p.exitcode]
    if died:  # a writer killed (out of memory, say): what it had not published is counted as lost
        print(f"  {len(died)} writer(s) died: exit codes {died}", flush=True)
    compact_s = 0.0
    if hasattr(store, "compact"):
        began = time.perf_counter()
        store.compact(cuid)
        compact_s = time.perf_counter() - began
    config_dir = path / cuid
    index_files = [*config_dir.glob("_checkpoints/*"), *config_dir.glob("_log/*")]
    listing = []
    for _ in range(2):
        fresh = Store(path)
        began = time.perf_counter()
        n_listed = len(fresh.entries(cuid))
        listing.append(time.perf_counter() - began)
    picks = [int(i) for i in np.random.default_rng(1).choice(size, 20, replace=False)]
    differ = sum(not np.array_equal(Store(path).load_numpy(f"{cuid}/{i:032x}")[0], data_for(i)) for i in picks)
    one_ms = median_ms(lambda i: Store(path).load_numpy(f"{cuid}/{i:032x}"), picks)
    window_ms = median_ms(lambda i: Store(path).load_numpy(f"{cuid}/{i:032x}", start=2.0, stop=7.0), picks)
    window = Store(path).load_numpy(f"{cuid}/{picks[0]:032x}", start=2.0, stop=7.0)[0]
    assert window.shape == (FEATURES, 10), window.shape
    return {
        "entries": size,
        "files": inodes(config_dir),
        "disk": disk_bytes(config_dir),
        "index": sum(p.stat().st_size for p in index_files if p.exists()),
        "write_us": write_s / size * 1e6,
        "compact_s": compact_s,
        "entries_s": listing,
        "load_ms": one_ms,
        "window_ms": window_ms,
        "lost": size - n_listed + differ,
    }


def committer(path: str, seconds: float, out: object) -> None:
    """Commit one-entry commits (a row naming a segment of its own, as a writer's) until ``seconds`` pass;
    put each commit's latency in ``out``."""
    from pipeline.store import manifest

    catalog = Store(path).catalog("commits")
    latencies = []
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        row = manifest.manifest_row(os.urandom(16).hex(), "s-bench", 0, (FEATURES, STEPS), "float32", {"times": []})
        began = time.perf_counter()
        catalog.commit("add", manifest.to_table([row]), writer="bench")
        latencies.append(time.perf_counter() - began)
    out.put(latencies)  # type: ignore[attr-defined]


def bench_commits(folder: Path, committers: int, seconds: float) -> dict[str, float]:
    """Commits per second of ``committers`` concurrent processes, and the latency of one."""
    path = folder / "commits.zarr"
    Store(path).ensure()
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=committer, args=(str(path), seconds, out)) for _ in range(committers)]
    for p in procs:
        p.start()
    latencies = [t for _ in procs for t in out.get()]
    for p in procs:
        p.join()
    catalog = Store(path).catalog("commits")
    catalog.refresh()
    assert catalog.tip == len(latencies) == len(catalog.hashes()), (catalog.tip, len(latencies))
    latencies.sort()
    return {
        "commits": len(latencies),
        "per_s": len(latencies) / seconds,
        "median_ms": statistics.median(latencies) * 1e3,
        "p99_ms": latencies[int(0.99 * (len(latencies) - 1))] * 1e3,
    }


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


def tiny_corpus(folder: Path, n: int) -> list[str]:
    """``n`` distinct real MP4 files: one tiny encoded clip, each copy with its own trailing bytes (which
    demuxers ignore), so that each has its own content hash."""
    from pipeline.testing.sample import write_video

    folder.mkdir(parents=True, exist_ok=True)
    seed = write_video(folder.parent / "seed.mp4", fps=10, seconds=1.0, width=32, height=32)
    blob = seed.read_bytes()
    paths = []
    for i in range(n):
        p = folder / f"part{i // 1000:03d}" / f"clip_{i:07d}.mp4"
        if i % 1000 == 0:
            p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(blob + i.to_bytes(8, "little"))
        paths.append(str(p))
    return paths


def bench_dry_run(folder: Path, n: int) -> dict[str, float]:
    from pipeline.launch.discovery import find_videos, hash_files, video_durations

    tiny_corpus(folder / "corpus", n)
    store = Store(folder / "dry.zarr")
    store.ensure()
    cuid = store.ensure_config(EmbedConfig.model_validate(CONFIG))
    stages: dict[str, float] = {}
    began = time.perf_counter()
    paths = find_videos(str(folder / "corpus"))
    stages["listing"] = time.perf_counter() - began
    began = time.perf_counter()
    hashes, _, bytes_read = hash_files(paths, store)
    stages["hashing"] = time.perf_counter() - began
    items = [(p, hashes[p]) for p in paths]
    began = time.perf_counter()
    durations = video_durations(items, store)
    stages["probing durations"] = time.perf_counter() - began
    began = time.perf_counter()
    done = store.done_hashes(cuid)
    store.failures(cuid)
    todo = sorted((item for item in items if item[1] not in done), key=lambda item: -durations[item[1]])
    stages["planning"] = time.perf_counter() - began
    began = time.perf_counter()
    hash_files(paths, store)
    stages["hashing again (cached)"] = time.perf_counter() - began
    stages["bytes hashed"] = bytes_read
    stages["videos"] = len(todo)
    return stages


def submission_bytes(folder: Path, n: int) -> tuple[int, int]:
    """Bytes of one task's pickled submission for a launch of ``n`` videos: naming the queue file (now)
    and carrying the queue itself (0.2)."""
    from pipeline.launch.worker import QueueJob
    from pipeline.store.records import write_queue

    items = [(f"/data/corpus/clip_{i:07d}.mp4", f"{i:032x}") for i in range(n)]
    run_dict = {"store": "/scratch/lab/embeddings.zarr", "videos": "/data/corpus"}
    queue = write_queue(folder, f"launch-{n}", items)
    return len(pickle.dumps((QueueJob(), run_dict, str(queue), "launch"))), len(
        pickle.dumps((QueueJob(), run_dict, items, "launch"))
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--corpus", type=int, default=100_000, help="tiny videos of the dry run (0: skip it)")
    parser.add_argument("--committers", type=int, default=16, help="concurrent committers (0: skip the commit rate)")
    parser.add_argument("--commit-s", type=float, default=20.0, help="seconds the committers commit")
    parser.add_argument("--dir", default=None, help="where to build the stores (removed afterwards)")
    parser.add_argument("--smoke", action="store_true", help="200 entries, 2 writers, 30 videos: checks it runs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes, args.writers, args.corpus, args.committers, args.commit_s = "200", 2, 30, 2, 2.0
    folder = Path(tempfile.mkdtemp(prefix="store-bench-", dir=args.dir))
    try:
        print(f"store: entries of {STEPS} steps x {FEATURES} float32 features, {args.writers} writer processes")
        header = (
            f"{'entries':>9} {'files':>8} {'on disk':>10} {'index':>10} {'write/entry':>12} {'compact':>8} "
            f"{'entries() 1st/2nd':>18} {'load one':>9} {'10-step window':>15} {'lost':>5}"
        )
        print(header)
        lost = 0
        for size in [int(s) for s in args.sizes.split(",") if s]:
            r = bench_size(size, folder, args.writers)
            lost += int(r["lost"])  # type: ignore[call-overload]
            first, second = r["entries_s"]  # type: ignore[misc]
            print(
                f"{size:>9,} {r['files']:>8,} {human(r['disk']):>10} {human(r['index']):>10} "  # type: ignore[arg-type]
                f"{r['write_us']:>9.0f} us {r['compact_s']:>7.2f}s {first:>8.3f}s/{second:.3f}s "
                f"{r['load_ms']:>6.1f} ms {r['window_ms']:>12.1f} ms {r['lost']:>5}",
                flush=True,
            )
            shutil.rmtree(folder / f"store_{size}.zarr")
        if args.committers and hasattr(Store, "catalog") and hasattr(Store(folder).catalog("x"), "commit"):
            c = bench_commits(folder, args.committers, args.commit_s)
            print(
                f"\ncommit log: {args.committers} concurrent committers for {args.commit_s:.0f} s: {c['commits']:,} "
                f"commits, {c['per_s']:.0f} commits/s together; one commit {c['median_ms']:.1f} ms median, "
                f"{c['p99_ms']:.1f} ms 99th percentile"
            )
        if args.corpus:
            stages = bench_dry_run(folder, args.corpus)
            print(f"\ndry run over {args.corpus:,} tiny real videos ({human(stages.pop('bytes hashed'))} hashed):")
            stages.pop("videos")
            for name, seconds in stages.items():
                print(f"  {name:<24} {seconds:8.2f} s")
        if not hasattr(Store, "write_queue"):
            return lost  # 0.2 had no queue file
        print("\none task's submission (pickled):")
        for n in (1_000, 100_000):
            now, before = submission_bytes(folder, n)
            print(f"  {n:>7,} videos: {human(now):>9} naming the queue file (0.2 carried the queue: {human(before)})")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return lost


if __name__ == "__main__":
    sys.exit(1 if main() else 0)
