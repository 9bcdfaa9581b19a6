"""Whether the holder of a record (a lease, a writer's record) is gone: by its pid, without any clock, only
where this process can see it, that is on the same machine (boot) and in the same PID namespace (a
hostname alone is not enough: containers share their host's name, and two nodes can share one); else by
its heartbeat counter standing still on the judge's own monotonic clock (``Watch``)."""

from __future__ import annotations

import functools
import os
import socket
import time
import typing as tp


@functools.lru_cache(maxsize=1)
def pid_space() -> str:
    """Where this process's pids mean something: host name, kernel boot and PID namespace."""
    try:
        boot = open("/proc/sys/kernel/random/boot_id").read().strip()  # noqa: SIM115 - a one-line read
    except OSError:
        boot = ""
    try:
        namespace = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        namespace = ""
    return f"{socket.gethostname()}/{boot}/{namespace}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def gone_here(owner: dict[str, object]) -> bool:
    """The owner's process ran where this one can see its pid, and it is gone: dead, whatever any clock
    says. Records without ``pid_space`` (pipeline 0.3) are judged by host name, as then."""
    pid = owner.get("pid")
    if not isinstance(pid, int):
        return False
    space = owner.get("pid_space")
    here = space == pid_space() if space is not None else owner.get("host") == socket.gethostname()
    return here and not pid_alive(pid)


class Watch:
    """A judge's memory of the counters it saw: a holder is lapsed once the same counter has been seen for
    ``ttl`` seconds of the judge's monotonic clock, whatever the holder's or the file server's clocks say.
    A first sight is never lapsed."""

    def __init__(self, clock: tp.Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.seen: dict[str, tuple[tp.Any, float]] = {}

    def lapsed(self, key: str, counter: tp.Any, ttl: float) -> bool:
        now_s = self.clock()
        previous = self.seen.get(key)
        if previous is None or previous[0] != counter:
            self.seen[key] = (counter, now_s)
            return False
        return now_s - previous[1] >= ttl
