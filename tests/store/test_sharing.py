"""A lab shares one store: two Unix users of one group, each with a private umask (077), write entries,
take leases, record launches and failures and compact the index in a store the first one created."""

from __future__ import annotations

import contextlib
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


def _attempts(other: Path, forged: Path, top: Path) -> dict[str, tp.Callable[[], tp.Any]]:
    """What a member might try on another's job folder ``other``."""
    from pipeline.common.files import make_private_dir

    forged.write_bytes(b"forged")
    target = other / "1_submitted.pkl"
    return {
        "replace": lambda: os.replace(forged, target),
        "delete": lambda: target.unlink(),
        "add": lambda: (other / "2_submitted.pkl").write_bytes(b"forged"),
        "rename its folder": lambda: other.rename(other.with_name(f"{other.name}-moved")),
        "take its folder": lambda: make_private_dir(other, top),
    }


def _jobs_step(path: Path, who: str, embed: dict[str, tp.Any]) -> dict[str, tp.Any]:
    """A member's jobs: their own job folder with a pickled submission, then what they can do to another
    member's (replace, delete or add a file there, rename the folder): each must be refused. Then the
    store's work as ``_step``."""
    from pipeline.common.files import make_private_dir
    from pipeline.config import EmbedConfig
    from pipeline.store import Store, layout

    store = Store(path)
    store.ensure()
    cuid = store.ensure_config(EmbedConfig.model_validate(embed))
    me = pwd.getpwuid(os.getuid()).pw_name
    mine = make_private_dir(layout.user_jobs(path, cuid, me), path)
    (mine / "1_submitted.pkl").write_bytes(who.encode())
    done: dict[str, bool] = {}
    for other in sorted(p for p in layout.jobs(path, cuid).iterdir() if p.is_dir() and p.name != me):
        for what, attempt in _attempts(other, mine / "forged.pkl", path).items():
            try:
                attempt()
                done[f"{other.name}: {what}"] = True
            except OSError:  # PermissionError, or NotPrivate for the folder another owns
                done[f"{other.name}: {what}"] = False
    return {**_step(path, who, embed), "done": done}


def _gc_step(path: Path, who: str, embed: dict[str, tp.Any]) -> dict[str, tp.Any]:
    """A member's gc removing every config (a keep list naming none): what is another's stays, noted."""
    from pipeline.store import Store
    from pipeline.tools.collect import apply, find_removals

    store = Store(path)
    notes: list[str] = []
    apply(store, find_removals(store, {"none"}, notes=notes))
    return {"notes": notes, "left": sorted(str(p.relative_to(path)) for p in path.rglob("*"))}


def _as(
    user: tuple[int, int],
    home: Path,
    path: Path,
    who: str,
    embed: dict[str, tp.Any],
    step: tp.Callable[..., dict[str, tp.Any]] = _step,
) -> dict[str, tp.Any]:
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
            os.environ["USER"] = os.environ["LOGNAME"] = pwd.getpwuid(uid).pw_name
            os.chdir(home)
            result: dict[str, tp.Any] = {"ok": step(path, who, embed)}
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


@contextlib.contextmanager
def _shared(
    make_run: tp.Any, prefix: str
) -> tp.Iterator[tuple[dict[str, tuple[int, int]], Path, Path, dict[str, tp.Any]]]:
    """The two members' ids, a folder everyone may write (removed afterwards), the store's path in it, and
    the config they launch, every module they need imported before forking."""
    ids = _ensure_users()
    base = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        os.chmod(base, 0o777)
        embed = make_run().embed.model_dump(mode="json")
        _step(base / "warm.zarr", "root", embed)
        shutil.rmtree(base / "warm.zarr")
        yield ids, base, base / "lab.zarr", embed
    finally:
        shutil.rmtree(base, ignore_errors=True)


@needs_root
def test_two_users_of_one_group_share_a_store(make_run: tp.Any) -> None:
    with _shared(make_run, "shared-store-") as (ids, base, path, embed):
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


@needs_root
def test_a_member_can_neither_replace_nor_remove_anothers_job_submissions(make_run: tp.Any) -> None:
    """Jobs unpickle and run what their job folder holds: each member's is theirs alone (inside the shared
    ``_jobs/<config>/``, sticky), while both still write, read and compact the same store."""
    from pipeline.store import layout

    with _shared(make_run, "shared-jobs-") as (ids, base, path, embed):
        ana = _as(ids[USERS[0]], base, path, "ana", embed, _jobs_step)
        assert ana["done"] == {} and len(ana["entries"]) == 3
        ben = _as(ids[USERS[1]], base, path, "ben", embed, _jobs_step)
        assert ben["done"] and not any(ben["done"].values()), ben["done"]  # every attempt refused
        assert len(ben["entries"]) == 6 and ben["merged"] == 1
        cuid = next(p.name for p in path.iterdir() if not p.name.startswith("_") and p.is_dir())
        ana_jobs = layout.user_jobs(path, cuid, USERS[0])
        assert (ana_jobs / "1_submitted.pkl").read_bytes() == b"ana" and not (ana_jobs / "2_submitted.pkl").exists()
        assert stat.S_IMODE(os.stat(ana_jobs).st_mode) == 0o755 and os.stat(ana_jobs).st_uid == ids[USERS[0]][0]
        assert os.stat(layout.jobs(path, cuid)).st_mode & stat.S_ISVTX
        gc = _as(ids[USERS[1]], base, path, "ben", embed, _gc_step)  # ben's gc: ana's job folder is hers
        assert any(f"{USERS[0]}'s (only they can remove it" in n for n in gc["notes"]), gc["notes"]
        assert f"_jobs/{cuid}/{USERS[0]}/1_submitted.pkl" in gc["left"] and cuid not in gc["left"], gc["left"]
        assert not any(USERS[1] in p for p in gc["left"]), gc["left"]  # ben's own went
