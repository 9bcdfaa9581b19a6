"""Store benchmark (``make bench``): list and load times for 1,000 and 10,000 synthetic entries.

Each entry is an ``(8, 64, T)`` float32 array with realistic attributes, written through ``Store.write``
(sharded zarr v3, atomic rename). Listing is timed three ways: cold (no index: one metadata read per
entry, what a store without an index always costs), warm (the per-config index, one small object), and
warm after 1% new entries (index plus the new entries' metadata). Loading is timed per entry as
``store.load`` (xarray with its time axis). Prints a table; it asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.config import EmbedConfig  # noqa: E402
from pipeline.store import Store  # noqa: E402


def attrs_for(i: int, t: int) -> dict[str, object]:
    return {
        "frequency": 2.0,
        "start": 0.0,
        "duration": t / 2.0,
        "times": [k / 2.0 for k in range(t)],
        "model": "tiny-videomae",
        "video_path": f"/data/corpus/video_{i:05d}.mp4",
        "video_hash": f"{i:032x}",
        "created": "2026-11-25T00:00:00+00:00",
        "seconds": 1.0,
        "job_id": "1_0",
    }


def fill(store: Store, cuid: str, start: int, n: int, t: int) -> float:
    rng = np.random.default_rng(start)
    began = time.perf_counter()
    for i in range(start, start + n):
        store.write(cuid, f"{i:032x}", rng.standard_normal((8, 64, t), dtype=np.float32), attrs_for(i, t))
    return (time.perf_counter() - began) / n


def timed(fn: object, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - began)
    return best


def bench(size: int, folder: Path, t: int) -> dict[str, float]:
    store = Store(folder / f"store_{size}.zarr")
    store.ensure()
    cuid = store.ensure_config(
        EmbedConfig.model_validate(
            {"model": {"name": "tiny-videomae", "family": "videomae", "tiny": True, "identity": "files-benchmark"}}
        )
    )
    write_s = fill(store, cuid, 0, size, t)
    index = store.path / cuid / "_index.json"

    def cold() -> None:
        index.unlink(missing_ok=True)
        assert len(store.entries(cuid)) == size

    cold_s = timed(cold)
    warm_s = timed(lambda: store.entries(cuid), 5)
    extra = max(1, size // 100)
    fill(store, cuid, size, extra, t)
    began = time.perf_counter()
    assert len(store.entries(cuid)) == size + extra
    after_new_s = time.perf_counter() - began
    rng = np.random.default_rng(1)
    picks = rng.choice(size, 50, replace=False)
    loads = []
    for i in picks:
        began = time.perf_counter()
        store.load(f"{cuid}/{i:032x}")
        loads.append(time.perf_counter() - began)
    return {
        "write_ms": write_s * 1e3,
        "cold_s": cold_s,
        "warm_s": warm_s,
        "after_new_s": after_new_s,
        "load_ms": statistics.median(loads) * 1e3,
        "index_kb": index.stat().st_size / 1024,
        "files": sum(1 for _ in (store.path / cuid / f"{0:032x}").rglob("*") if _.is_file()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--time-steps", type=int, default=120, help="time steps per entry (120 = 60 s at 2 Hz)")
    parser.add_argument("--folder", default=None, help="where to build the stores (default: a temp folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
        rows = [(int(s), bench(int(s), Path(tmp), args.time_steps)) for s in args.sizes.split(",")]
    print(f"\nstore listing, entries of shape (8, 64, {args.time_steps}) float32\n")
    print(
        "| entries | write / entry | list, no index | list, index | list, index + 1% new | load / entry "
        "| index size | files / entry |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, r in rows:
        print(
            f"| {n:,} | {r['write_ms']:.1f} ms | {r['cold_s'] * 1e3:.0f} ms | {r['warm_s'] * 1e3:.0f} ms | "
            f"{r['after_new_s'] * 1e3:.0f} ms | {r['load_ms']:.1f} ms | {r['index_kb']:.0f} KB | {r['files']:.0f} |"
        )


if __name__ == "__main__":
    main()
