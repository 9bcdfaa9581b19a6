"""Whether a process that wrote a record is gone, judged without any clock: only where this process can
see it, that is on the same machine (boot) and in the same PID namespace. A hostname alone is not enough:
containers share their host's name, and two nodes can share one."""

from __future__ import annotations

import functools
import os
import socket


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
