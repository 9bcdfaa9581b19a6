"""Progress of long work: a bar in a terminal, a short plain line now and then in a log file.

A tqdm bar redraws itself with carriage returns; written to a file (a SLURM job's ``.out``, a launcher
under ``nohup``, a batch script's log) its updates pile up on one endless line. Where the stream is not a
terminal, ``Progress`` prints instead one line of at most ``MAX_LINE`` characters, without a carriage
return, at most every ``interval_s`` seconds (``progress_s`` in the run config, else ``PIPELINE_PROGRESS_S``,
else 30): what is done of the total, the rate (in video-seconds per second where the items' durations are
known) and the time left.
"""

from __future__ import annotations

import os
import sys
import time
import typing as tp

INTERVAL_ENV = "PIPELINE_PROGRESS_S"
"""Seconds between two progress lines in a log file, for this process and the jobs it starts."""
DEFAULT_INTERVAL_S = 30.0
MAX_LINE = 200


def interval_s() -> float:
    """Seconds between two progress lines in a log file: ``PIPELINE_PROGRESS_S``, else 30."""
    value = os.environ.get(INTERVAL_ENV, "")
    try:
        return max(0.0, float(value)) if value else DEFAULT_INTERVAL_S
    except ValueError:
        return DEFAULT_INTERVAL_S


def set_interval(seconds: float) -> None:
    """Set the interval for this process and the processes and jobs it starts (they inherit it)."""
    os.environ[INTERVAL_ENV] = f"{seconds:g}"


def duration_text(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h04m``, ``3d02h``: a time span in at most two units."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def progress_line(
    desc: str,
    done: int,
    total: int,
    unit: str,
    elapsed: float,
    seconds: float = 0.0,
    total_seconds: float | None = None,
) -> str:
    """One progress line: ``desc: done/total unit (pct), rate, ETA``. ``seconds``: the video-seconds of the
    items done, when known (the rate is then in video-s/s, and the time left follows the video-seconds left
    where ``total_seconds`` is known); cut to ``MAX_LINE`` characters, the description first."""
    parts = [f"{done}/{total} {unit}" + (f" ({done / total:.0%})" if total else "")]
    if elapsed > 0 and done:
        if seconds > 0:
            rate = seconds / elapsed
            parts.append(f"{rate:.3g} video-s/s")
            left = (total_seconds - seconds) / rate if total_seconds is not None else (total - done) * elapsed / done
        else:
            parts.append(f"{done / elapsed:.3g} {unit}/s")
            left = (total - done) * elapsed / done
        parts.append(f"ETA {duration_text(max(left, 0.0))}" if done < total else f"in {duration_text(elapsed)}")
    tail = ", ".join(parts)
    room = MAX_LINE - len(tail) - 2
    head = desc if len(desc) <= room else desc[: max(room - 3, 0)] + "..."
    return f"{head}: {tail}"[:MAX_LINE]


class Progress:
    """``update`` as items finish; a tqdm bar where ``file`` (default stderr) is a terminal, else a plain
    line at most every ``interval`` seconds and one when it closes (if it printed any, or took longer than
    the interval). ``disable``: print nothing."""

    def __init__(
        self,
        total: int,
        desc: str,
        *,
        unit: str = "video",
        file: tp.TextIO | None = None,
        interval: float | None = None,
        total_seconds: float | None = None,
        disable: bool = False,
        position: int = 0,
        clock: tp.Callable[[], float] = time.monotonic,
    ) -> None:
        self.total, self.desc, self.unit, self.total_seconds = total, desc, unit, total_seconds
        self.file = sys.stderr if file is None else file
        self.interval = interval_s() if interval is None else interval
        self.clock, self.disable = clock, disable
        self.done, self.seconds, self.printed, self.shown = 0, 0.0, 0, -1
        self.started = self.last = clock()
        self.bar: tp.Any = None
        if not disable and _is_terminal(self.file):
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, file=self.file, position=position, mininterval=1)

    def update(self, n: int = 1, seconds: float = 0.0) -> None:
        """``n`` more items done, of ``seconds`` video-seconds in all (0: not known)."""
        self.done += n
        self.seconds += seconds
        if self.bar is not None:
            self.bar.update(n)
        elif not self.disable and n and self.clock() - self.last >= self.interval:
            self._print()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif not self.disable and self.total and self.shown != self.done:
            if self.printed or self.clock() - self.started >= self.interval:
                self._print()

    def _print(self) -> None:
        now = self.clock()
        line = progress_line(
            self.desc, self.done, self.total, self.unit, now - self.started, self.seconds, self.total_seconds
        )
        print(line, file=self.file, flush=True)
        self.last, self.printed, self.shown = now, self.printed + 1, self.done

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_terminal(stream: tp.TextIO) -> bool:
    """A terminal, or a notebook's output (Jupyter renders tqdm's bar; its stream says it is no tty)."""
    if "ipykernel" in sys.modules and stream in (sys.stdout, sys.stderr):
        return True
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or file-like stream without isatty
        return False
