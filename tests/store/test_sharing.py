"""A lab shares one store: two Unix users of one group, each with a private umask (077), write entries,
take leases, record launches and failures and compact the index in a store the first one created."""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import traceback
import typing as tp
from pathlib import Path

import numpy as np
import pytest

GROUP = "pipeline-lab"
USERS = ("pipeline-ana", "pipeline-ben")

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("useradd") is None, reason="creating two Unix users needs root and useradd"
)


def _step(path: Path, who: str, embed: dict[str, tp.Any]) -> dict[str, tp.Any]:
    """What one member does: claim videos, write them, record a launch and a failure, compact."""
    from pipeline.config import EmbedConfig
    from pipeline.store import Store
    from pipeline.store.leases import Lease, acquire

    store = Store(path)
    store.ensure()
    cuid = store.ensure_config(EmbedConfig.model_validate(embed))
    mine = [f"{who}-{k}".ljust(32, "0") for k in range(3)]
    for h in mine:
        lease = acquire(store.leases(cuid), h, 60.0, f"launch-{who}")
        assert isinstance(lease, Lease), lease
        lease.renew()
        lease.release()
    out = store.writer(cuid)
    for k, h in enumerate(mine):
        out.add(h, np.full((4, 2), k, np.float32), {"times": [0.0, 0.5], "video_path": f"/v/{h}.mp4"})
    assert all(store.flush(out).values())
    store.write_queue(cuid, f"launch-{who}", [(f"/v/{h}.mp4", h) for h in mine])
    store.record_launch(cuid, f"launch-{who}", 3, ["1_0"], "slurm", "python -m pipeline.launch")
    store.record_failure(cuid, f"{who}-broken".ljust(32, "0"), "/v/broken.mp4", ValueError("bad"))
    merged = store.compact(cuid)
    fresh = Store(path)
    return {
        "merged": merged,
        "entries": sorted(e.video_hash for e in fresh.entries(cuid)),
        "launches": sorted(fresh.launches(cuid)),
        "failures": len(fresh.failures(cuid)),
    }


def _ensure_users() -> dict[str, tuple[int, int]]:
    try:
        gid = grp.getgrnam(GROUP).gr_gid
    except KeyError:
        subprocess.run(["groupadd", GROUP], check=True)
        gid = grp.getgrnam(GROUP).gr_gid
    ids = {}
    for user in USERS:
        try:
            pwd.getpwnam(user)
        except KeyError:
            subprocess.run(["useradd", "--no-create-home", "-g", GROUP, "-s", "/usr/sbin/nologin", user], check=True)
        ids[user] = (pwd.getpwnam(user).pw_uid, gid)
    return ids


def _as(user: tuple[int, int], home: Path, path: Path, who: str, embed: dict[str, tp.Any]) -> dict[str, tp.Any]:
    """``_step`` in a child process that became ``user`` (umask 077). Forked, not executed: the
    interpreter may live where the other user cannot read (root's home); the parent imported everything."""
    uid, gid = user
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(read)
            os.setgroups([gid])
            os.setgid(gid)
            os.setuid(uid)
            os.umask(0o077)
            os.environ["HOME"] = str(home)
            os.chdir(home)
            result: dict[str, tp.Any] = {"ok": _step(path, who, embed)}
            code = 0
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            result = {"error": f"{type(e).__name__}: {e}\n{traceback.format_exc()}"}
        finally:
            os.write(write, json.dumps(result).encode())
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        result = json.loads(pipe.read())
    os.waitpid(pid, 0)
    assert "ok" in result, result.get("error")
    return tp.cast(dict[str, tp.Any], result["ok"])


@needs_root
def test_two_users_of_one_group_share_a_store(make_run: tp.Any) -> None:
    ids = _ensure_users()
    base = Path(tempfile.mkdtemp(prefix="shared-store-"))
    try:
        os.chmod(base, 0o777)
        path = base / "lab.zarr"
        embed = make_run().embed.model_dump(mode="json")
        _step(base / "warm.zarr", "root", embed)  # every module the members need, imported before forking
        shutil.rmtree(base / "warm.zarr")
        ana = _as(ids[USERS[0]], base, path, "ana", embed)
        assert len(ana["entries"]) == 3 and ana["merged"] == 1
        ben = _as(ids[USERS[1]], base, path, "ben", embed)
        assert len(ben["entries"]) == 6 and ben["merged"] == 1  # ben rewrote the index ana created
        assert ben["launches"] == ["launch-ana", "launch-ben"] and ben["failures"] == 2
        again = _as(ids[USERS[0]], base, path, "ana2", embed)
        assert len(again["entries"]) == 9
        for folder, dirs, files in os.walk(path):
            for name in dirs:
                mode = os.stat(Path(folder) / name).st_mode
                assert mode & 0o2070 == 0o2070, f"{folder}/{name}: {stat.filemode(mode)}"
            for name in files:
                mode = os.stat(Path(folder) / name).st_mode
                assert mode & 0o060 == 0o060, f"{folder}/{name}: {stat.filemode(mode)}"
        owners = {pwd.getpwuid(os.stat(p).st_uid).pw_name for p in path.rglob("*")}
        assert owners == set(USERS)
        assert {grp.getgrgid(os.stat(p).st_gid).gr_name for p in path.rglob("*")} == {GROUP}
    finally:
        shutil.rmtree(base, ignore_errors=True)
