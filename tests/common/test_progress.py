"""Progress in a log file: short plain lines, at most one per interval; in a terminal, tqdm's bar."""

from __future__ import annotations

import io

from pipeline.common.progress import MAX_LINE, Progress, duration_text, progress_line


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_file_gets_one_plain_line_per_interval_and_one_at_the_end() -> None:
    out, clock = io.StringIO(), Clock()
    with Progress(100, "embedding (abc)", unit="videos", file=out, interval=30, total_seconds=1000.0, clock=clock) as p:
        for _ in range(100):
            clock.now += 1.0  # one video a second, 10 video-seconds each
            p.update(1, 10.0)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    # updates at 30, 60 and 90 s print; the close prints the 100th
    assert len(lines) == 4, lines
    assert lines[0] == "embedding (abc): 30/100 videos (30%), 10 video-s/s, ETA 1m10s"
    assert lines[-1] == "embedding (abc): 100/100 videos (100%), 10 video-s/s, in 1m40s"
    assert all(len(line) <= MAX_LINE for line in lines)


def test_quick_work_prints_nothing_and_interval_zero_prints_every_update() -> None:
    out, clock = io.StringIO(), Clock()
    with Progress(5, "hashing videos", unit="files", file=out, interval=30, clock=clock) as p:
        for _ in range(5):
            clock.now += 0.1
            p.update()
    assert out.getvalue() == ""
    with Progress(5, "hashing videos", unit="files", file=out, interval=0, clock=clock) as p:
        for _ in range(5):
            clock.now += 0.5
            p.update()
    lines = out.getvalue().splitlines()
    assert len(lines) == 5
    assert lines[1] == "hashing videos: 2/5 files (40%), 2 files/s, ETA 2s"


def test_a_line_never_exceeds_the_limit_and_keeps_its_numbers() -> None:
    line = progress_line("x" * 500, 3, 10, "videos", 30.0, 90.0, 300.0)
    assert len(line) == MAX_LINE
    assert line.endswith(": 3/10 videos (30%), 3 video-s/s, ETA 1m10s")
    assert progress_line("stored (abc)", 0, 10, "videos", 0.0) == "stored (abc): 0/10 videos (0%)"


def test_durations_read_in_two_units() -> None:
    assert [duration_text(s) for s in (0.4, 42, 185, 7440, 266400)] == ["0s", "42s", "3m05s", "2h04m", "3d02h"]


def test_a_terminal_keeps_the_bar() -> None:
    out = Terminal()
    with Progress(3, "stored (abc)", file=out, interval=0) as p:
        p.update(3)
    assert "\r" in out.getvalue() and "3/3" in out.getvalue()
