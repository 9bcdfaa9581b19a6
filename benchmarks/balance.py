"""Work balance across jobs (``make bench``): 40 videos, 4 of them fifteen times longer than the rest and
named so that they sort together, through the real launcher with 2 local jobs. Prints the makespan divided
by (total worker time / 2): 1.0 is a perfect balance. Asserts nothing.

Per job, its working time runs from its first video's start to its last video's end (entry attributes
``created`` and ``seconds``); the makespan from the first start to the last end over both jobs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.store import Store  # noqa: E402
from pipeline.testing.sample import write_video  # noqa: E402


def make_corpus(folder: Path, short_s: float, long_s: float, n_long: int = 4, n_short: int = 36) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    specs = [(f"a_long_{i}.mp4", long_s, i) for i in range(n_long)]
    specs += [(f"b_short_{i:02d}.mp4", short_s, 10 + i) for i in range(n_short)]
    for name, seconds, seed in specs:
        path = folder / name
        if not path.exists():
            write_video(path, fps=12, seconds=seconds, width=64, height=48, frame=_frame(seed))


def _frame(seed: int) -> object:
    import numpy as np

    def frame(k: int, t: float, width: int, height: int) -> np.ndarray:
        base = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
        return np.roll(base, k, axis=1)

    return frame


def measure(store: Path) -> tuple[float, float, dict[str, int]]:
    s = Store(store)
    spans: dict[str, list[float]] = {}
    counts: dict[str, int] = {}
    for entry in s.entries():
        _, attrs = s.load_numpy(entry.uid)
        end = dt.datetime.fromisoformat(attrs["created"]).timestamp()
        start = end - float(attrs["seconds"])
        job = str(attrs["job_id"])
        lo, hi = spans.get(job, [start, end])
        spans[job] = [min(lo, start), max(hi, end)]
        counts[job] = counts.get(job, 0) + 1
    makespan = max(hi for _, hi in spans.values()) - min(lo for lo, _ in spans.values())
    worker = sum(hi - lo for lo, hi in spans.values())
    return makespan, worker, counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", default=str(ROOT / ".bench" / "balance"))
    parser.add_argument("--short", type=float, default=4.0)
    parser.add_argument("--long", type=float, default=60.0)
    parser.add_argument("--smoke", action="store_true", help="2 long and 4 short videos of 1 s and 2 s")
    args = parser.parse_args(argv)
    n_long, n_short = (2, 4) if args.smoke else (4, 36)
    if args.smoke:
        args.short, args.long = 1.0, 2.0
    work = Path(args.workdir)
    videos, store = work / "videos", work / "store.zarr"
    shutil.rmtree(videos, ignore_errors=True)  # the corpus of another size
    make_corpus(videos, args.short, args.long, n_long, n_short)
    shutil.rmtree(store, ignore_errors=True)
    cmd = [
        sys.executable, "-m", "pipeline.launch", "model=tiny_videomae", f"videos={videos}", f"store={store}",
        f"models_dir={work / 'models'}", "executor=local", f"videos_per_job={(n_long + n_short) // 2}",
        "max_jobs=2", "frequency=8",
        "device=cpu", f"hydra.run.dir={work / 'hydra'}",
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PIPELINE_THREADS": "1"})
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(done.stdout + done.stderr)
    makespan, worker, counts = measure(store)
    print(
        f"{n_long + n_short} videos ({n_long} x {args.long:g} s, {n_short} x {args.short:g} s), 2 local jobs, "
        f"launcher wall {wall:.1f} s"
    )
    print(f"videos per job: {sorted(counts.values())}; makespan {makespan:.1f} s, worker time {worker:.1f} s")
    print(f"makespan / (worker time / 2) = {makespan / (worker / 2):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
