"""A config's facts (``pipeline.store.facts``): the model names it has had, the commits its jobs loaded, its
model's content identity. The promises, checked after each fault: no fact recorded is ever lost (a
launcher that stalls between reading the group's attributes and writing them back, or two launchers at
once, used to drop each other's names); the group stays readable; a fact half-written is no fact; two
different values of a single-valued fact are no value (never the wrong one)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import typing as tp
from pathlib import Path

import pytest

from pipeline.config import EmbedConfig
from pipeline.store import Store, facts
from pipeline.testing import faults
from pipeline.tools import collect

from ..conftest import REPO, TALLY
from .test_log import _stopped

CONTENT = "content-" + "ab" * 16


def _embed(name: str, commit: str | None = None) -> EmbedConfig:
    """A config whose model is ``name``: the same UID whatever the name (the identity is the content)."""
    spec = {"name": name, "family": "videomae", "identity": CONTENT, "default_num_frames": 16, "commit": commit}
    return EmbedConfig(model=spec)


_CHILD = r"""
import sys
from pipeline.config import EmbedConfig
from pipeline.store import Store
path, name, identity = sys.argv[1:4]
embed = EmbedConfig(model={"name": name, "family": "videomae", "identity": identity, "default_num_frames": 16})
print(Store(path).ensure_config(embed), flush=True)
"""


def _launcher(store: Path, name: str, fault: str = "", markers: Path | None = None) -> tp.Any:
    """A process that does what a launch does to the config's group: ``ensure_config`` under ``name``."""
    env = {**os.environ, faults.AT: fault}
    if markers is not None:
        env[faults.MARKERS] = str(markers)
    args = [sys.executable, "-c", _CHILD, str(store), name, CONTENT]
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _mirrored(store: Store, cuid: str) -> dict[str, tp.Any]:
    """The group's own attributes, as a reader without this package reads them."""
    return dict(json.loads((store.path / cuid / "zarr.json").read_text())["attributes"])


def _check(store: Store, cuid: str, names: list[str]) -> None:
    """Each name recorded is a name of the config, by which a reader finds it; the group reads whole."""
    assert set(names) <= set(Store(store.path).model_names(cuid)), Store(store.path).model_names(cuid)
    for name in names:
        reader = _embed(name).model_copy(update={"model": _embed(name).model.model_copy(update={"identity": None})})
        assert Store(store.path).find_config(reader) == cuid, name
    assert _mirrored(store, cuid)["config"] == _embed("x").canonical()


def test_lists_are_unions_and_a_single_fact_recorded_twice_differently_is_none() -> None:
    attrs = {"config": {"a": 1}, "model_names": ["a"], "model_content": "content-1"}
    learned = {"model_names": ["b", "a"], "model_commits": ["c1"], "default_num_frames": [16]}
    assert facts.merged(attrs, learned) == {
        "config": {"a": 1},
        "model_names": ["a", "b"],
        "model_commits": ["c1"],
        "model_content": "content-1",
        "default_num_frames": 16,
    }
    assert facts.conflicts(attrs, learned) == {}
    both = {"model_content": ["content-2"]}
    assert "model_content" not in facts.merged(attrs, both)
    assert facts.conflicts(attrs, both) == {"model_content": ["content-1", "content-2"]}
    assert facts.merged(attrs, {"model_content": ["content-1"]})["model_content"] == "content-1"


def test_a_fact_is_one_file_written_once_and_read_back(tmp_path: Path) -> None:
    config_dir = tmp_path / "cfg"
    config_dir.mkdir()
    assert facts.record(config_dir, "model_names", "a") is True
    assert facts.record(config_dir, "model_names", "a") is False  # already there: nothing written
    assert facts.record(config_dir, "model_names", "b") is True
    assert facts.record(config_dir, "default_num_frames", 16) is True
    (config_dir / "_facts" / ".half-written.tmp").write_text('{"key": "model_names", "val')
    assert facts.read(config_dir) == {"model_names": ["a", "b"], "default_num_frames": [16]}
    assert sorted(p.name for p in (config_dir / "_facts").iterdir() if not p.name.startswith(".")) == sorted(
        [
            facts.file_name("model_names", "a"),
            facts.file_name("model_names", "b"),
            facts.file_name("default_num_frames", 16),
        ]
    )
    with pytest.raises(ValueError, match="not a config fact"):
        facts.record(config_dir, "config", {})


def test_a_launcher_stalled_before_its_mirror_write_drops_no_name(tmp_path: Path) -> None:
    """Launcher A stops (SIGSTOP) having read the group's attributes, before writing them back; launcher B
    records another name meanwhile; A resumes and rewrites the attributes from what it read. B's name
    stays a name of the config (the attributes alone lost it: they were read, added to, written back),
    and the next launch mends the mirror."""
    store = Store(tmp_path / "s.zarr")
    store.ensure()
    cuid = store.ensure_config(_embed("first"))
    markers = tmp_path / "markers"
    markers.mkdir()
    stalled = _launcher(store.path, "a", "facts-mirror=stall", markers)
    pid = _stopped(markers, "facts-mirror", stalled)
    other = _launcher(store.path, "b")
    assert other.communicate(timeout=120)[0].strip() == cuid
    os.kill(pid, signal.SIGCONT)
    stdout, stderr = stalled.communicate(timeout=120)
    assert stalled.returncode == 0, stderr[-2000:]
    TALLY["faults injected"] += 1
    _check(store, cuid, ["first", "a", "b"])
    Store(store.path).ensure_config(_embed("first"))
    assert {"first", "a", "b"} <= set(_mirrored(store, cuid)["model_names"])


FAULTS = [("fact-written", "kill"), ("fact-written", "enospc"), ("facts-mirror", "kill"), ("facts-mirror", "enospc")]


@pytest.mark.parametrize(("point", "action"), FAULTS)
def test_a_launcher_faulted_while_recording_a_fact_breaks_nothing(tmp_path: Path, point: str, action: str) -> None:
    """Killed with its fact written aside (not linked) or recorded but not mirrored, or out of space: the
    group reads whole with every earlier name; the error names the folder and the fact; the launch run again
    records it; a compaction's cleanup removes the temporary file left behind."""
    store = Store(tmp_path / "s.zarr")
    store.ensure()
    cuid = store.ensure_config(_embed("first"))
    child = _launcher(store.path, "a", f"{point}={action}")
    _, stderr = child.communicate(timeout=120)
    TALLY["faults injected"] += 1
    if action == "kill":
        assert child.returncode == -signal.SIGKILL, stderr[-2000:]
    elif point == "fact-written":
        assert child.returncode == 1, stderr[-2000:]
        assert "cannot record model_names='a' in" in stderr and "_facts (No space left on device" in stderr, stderr
    else:  # the facts are recorded: the mirror is best effort
        assert child.returncode == 0 and "could not mirror the facts" in stderr, stderr[-2000:]
    _check(store, cuid, ["first"])
    assert ("a" in Store(store.path).model_names(cuid)) == (point == "facts-mirror")
    if action == "enospc":
        assert ("a" in _mirrored(store, cuid)["model_names"]) is False
    assert _launcher(store.path, "a").communicate(timeout=120)[0].strip() == cuid
    _check(store, cuid, ["first", "a"])
    assert "a" in _mirrored(store, cuid)["model_names"]
    left = [*(store.path / cuid / "_facts").glob(".*.tmp"), *(store.path / cuid).glob(".*.tmp")]
    assert bool(left) == (point == "fact-written" and action == "kill"), left
    from pipeline.store.log import cleanup

    cleanup(store.path / cuid, grace_s=0)
    assert not [*(store.path / cuid / "_facts").glob(".*.tmp"), *(store.path / cuid).glob(".*.tmp")]


def test_facts_are_read_through_estale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(tmp_path / "s.zarr")
    store.ensure()
    cuid = store.ensure_config(_embed("first", commit="c" * 40))
    monkeypatch.setenv(faults.AT, "read=estale*3")
    with caplog.at_level(logging.WARNING):
        assert Store(store.path).config_attrs(cuid)["model_commits"] == ["c" * 40]
    assert "Stale file handle while reading" in caplog.text and "_facts" in caplog.text, caplog.text
    TALLY["faults injected"] += 1


def test_a_full_disk_mid_write_leaves_no_fact_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills up inside the write (some bytes written): the error names the fact and the folder,
    and nothing is left behind, neither the fact nor its temporary file."""
    import errno

    from pipeline.common import files

    config_dir = tmp_path / "cfg"
    config_dir.mkdir()
    real = os.write

    def filling(fd: int, data: tp.Any) -> int:
        if len(data) > 8:
            return real(fd, bytes(data[:8]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "write", filling)
    with pytest.raises(OSError, match=r"cannot record model_names='a' in .*_facts \(No space left on device"):
        facts.record(config_dir, "model_names", "a")
    monkeypatch.setattr(files.os, "write", real)
    assert list((config_dir / "_facts").iterdir()) == []
    TALLY["faults injected"] += 1


def test_a_group_created_by_two_launchers_at_once_keeps_its_config(tmp_path: Path) -> None:
    """Launcher A stops with its group's ``zarr.json`` written aside, before linking it; launcher B
    creates the group and records its name; A resumes, finds the group there and records its own.
    (zarr's ``open_group`` wrote an empty ``zarr.json`` first: a racing creator could leave one without
    ``config``.) A group that lost its ``config`` so gets it back from the next launch."""
    store = Store(tmp_path / "s.zarr")
    store.ensure()
    markers = tmp_path / "markers"
    markers.mkdir()
    stalled = _launcher(store.path, "a", "group-written=stall", markers)
    pid = _stopped(markers, "group-written", stalled)
    cuid = _launcher(store.path, "b").communicate(timeout=120)[0].strip()
    os.kill(pid, signal.SIGCONT)
    stdout, stderr = stalled.communicate(timeout=120)
    assert stalled.returncode == 0 and stdout.strip() == cuid, stderr[-2000:]
    TALLY["faults injected"] += 1
    _check(store, cuid, ["a", "b"])
    assert not list((store.path / cuid).glob(".*.tmp"))
    damaged = {"attributes": {"model_names": ["a"]}, "zarr_format": 3, "node_type": "group"}
    (store.path / cuid / "zarr.json").write_text(json.dumps(damaged))  # what the old race could leave
    assert Store(store.path).config(cuid) == {}
    notes: list[str] = []
    assert not collect.find_removals(Store(store.path), None, notes=notes)  # gc keeps it, saying why
    assert any("holds no config" in n for n in notes), notes
    Store(store.path).ensure_config(_embed("c"))
    _check(store, cuid, ["a", "b", "c"])


def test_a_single_value_in_an_older_group_s_attributes_still_conflicts_after_a_mirror(tmp_path: Path) -> None:
    """A group written before facts holds ``model_content`` in its attributes alone; a launch records
    another: no value, also once the mirror has dropped the attribute (the attribute's value is kept as a
    fact first, or the newer value would silently win)."""
    store = Store(tmp_path / "s.zarr")
    store.ensure()
    cuid = store.ensure_config(_embed("first"))
    group = store.path / cuid / "zarr.json"
    meta = json.loads(group.read_text())
    meta["attributes"]["model_content"] = "content-1"  # what the attributes of an older group held
    group.write_text(json.dumps(meta))
    assert Store(store.path).config_attrs(cuid)["model_content"] == "content-1"
    store.record_config_facts(cuid, [("model_content", "content-2")])
    assert "model_content" not in _mirrored(store, cuid)
    for _ in range(2):
        assert "model_content" not in Store(store.path).config_attrs(cuid)
        Store(store.path).ensure_config(_embed("first"))


def test_an_unreadable_single_fact_is_no_value(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config_dir = tmp_path / "cfg"
    config_dir.mkdir()
    facts.record(config_dir, "model_content", "content-1")
    (config_dir / "_facts" / facts.file_name("model_content", "content-2")).write_text('{"key": "model_con')
    facts.record(config_dir, "model_names", "a")
    (config_dir / "_facts" / facts.file_name("model_names", "b")).write_text("")
    with caplog.at_level(logging.WARNING):
        learned = facts.read(config_dir)
    assert learned == {"model_content": [None, "content-1"], "model_names": ["a"]}, learned  # the unknown first
    assert "model_content" not in facts.merged({}, learned) and "its value is unknown" in caplog.text
    assert "model_content" not in facts.merged({}, {"model_content": [None]})


def test_two_content_identities_recorded_for_one_config_are_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``model_content`` decides whose entries a launch reuses: recorded twice with different values
    (launches that disagree), neither is trusted, and a reader is warned once."""
    store = Store(tmp_path / "s.zarr")
    store.ensure()
    cuid = store.ensure_config(_embed("first"))
    store.record_config_facts(cuid, [("model_content", "content-1")])
    assert Store(store.path).config_attrs(cuid)["model_content"] == "content-1"
    store.record_config_facts(cuid, [("model_content", "content-2")])
    reader = Store(store.path)
    assert "model_content" not in _mirrored(store, cuid)  # the mirror drops it too
    with caplog.at_level(logging.WARNING):
        assert "model_content" not in reader.config_attrs(cuid)
        reader.config_attrs(cuid)
    assert caplog.text.count("recorded as each of") == 1, caplog.text
