"""Where a tiny launch's seconds go (``make bench``): ``make run``'s launch (three tiny videos, the local
executor, a fresh store) timed from outside, ``--runs`` times. Prints, per run, when the launcher printed
its plan and submitted (its stdout lines timestamped on arrival), when the job started and finished (its
own log's ``submitit INFO`` timestamps) and when the launcher exited. Asserts nothing.

``--pythonpath DIR`` times another checkout's package (an older version, to compare).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_STAMP = re.compile(r"\((\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+)\) - (Starting|Job completed)")


def timeline(work: Path, pythonpath: str) -> dict[str, float]:
    """Seconds from the launcher's start to each mark of one launch into a fresh store."""
    env = {**os.environ, "PYTHONPATH": pythonpath, "HF_HUB_OFFLINE": "1"}
    store = work / f"store-{time.time_ns()}.zarr"
    cmd = [sys.executable, "-u", "-m", "pipeline.launch", f"store={store}", f"models_dir={work / 'models'}"]
    t0 = time.time()
    launcher = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    marks: dict[str, float] = {}
    assert launcher.stdout is not None
    for line in launcher.stdout:
        if line.startswith("submitted"):
            marks["submitted"] = time.time() - t0
    launcher.wait()
    marks["launcher exits"] = time.time() - t0
    logs = "".join(p.read_text() for p in store.glob("_jobs/*/*/*_log.*"))  # _jobs/<config>/<user>/
    for stamp, what in _STAMP.findall(logs):
        when = dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
        marks["job starts" if what == "Starting" else "job done"] = when - t0
    return marks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pythonpath", default=str(ROOT), help="the checkout whose package is timed")
    parser.add_argument("--smoke", action="store_true", help="one run, no warm-up: checks that it runs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.runs = 1
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        subprocess.run(
            [sys.executable, "-m", "pipeline.testing.sample", "sample_videos"], cwd=work, env=env, check=True
        )
        if not args.smoke:
            timeline(work, args.pythonpath)  # builds the tiny model and warms the file cache: not counted
        order = ("submitted", "job starts", "job done", "launcher exits")
        print(f"startup ({args.pythonpath}): seconds from the launcher's start, {args.runs} runs")
        for _ in range(args.runs):
            marks = timeline(work, args.pythonpath)
            print("  " + "  ".join(f"{k} {marks[k]:5.1f}" for k in order if k in marks))
            if "job done" not in marks:
                print("the launch's job never finished", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
