"""The end of a launch recorded without a launcher waiting for it (``wait=false``): the last of its jobs to
finish writes its summary into the store, from the store alone; where that job was killed, ``pipeline.status``
writes it once every job of the launch has ended. ``_jobs/<config>/summary-<launch>.txt``."""

from __future__ import annotations

import typing as tp
from pathlib import Path

from pipeline.common.files import make_shared_dirs, write_atomic
from pipeline.launch.pace import epoch
from pipeline.launch.summary import Summary
from pipeline.store import Store, layout
from pipeline.store.records import failure_text


def summary_path(store: Path, config_uid: str, launch_id: str) -> Path:
    return layout.jobs(store, config_uid) / f"summary-{launch_id}.txt"


def _ended_dir(store: Path, config_uid: str, launch_id: str) -> Path:
    return layout.jobs(store, config_uid) / f"{launch_id}.ended"


def stored_summary(store: Store, config_uid: str, record: dict[str, tp.Any]) -> Summary:
    """The launch's summary as the store tells it: each video of its queue stored (computed since the
    launch, else cached), failed, or not done."""
    began = epoch(str(record.get("time", ""))) or 0.0
    entries = {e.video_hash: e for e in store.entries(config_uid)}
    failures = store.failures(config_uid)
    summary = Summary(config_uid, str(store.path), job_ids=[str(j) for j in record.get("job_ids", [])])
    for vhash, path in record.get("videos", {}).items():
        entry = entries.get(vhash)
        if entry is not None:
            created = epoch(entry.created) or 0.0
            (summary.computed if created >= began else summary.cached).append(path)
        elif vhash in failures:
            summary.failed[path] = failure_text(failures[vhash])
        else:
            summary.not_done[path] = "its jobs ended without storing it: relaunch the same command"
    return summary


def write_summary(store: Store, config_uid: str, launch_id: str, record: dict[str, tp.Any], by: str) -> Path:
    """Write the launch's summary (every line) into the store; ``by``: who saw it end."""
    path = summary_path(store.path, config_uid, launch_id)
    make_shared_dirs(path.parent, store.path)
    text = stored_summary(store, config_uid, record).render(examples=None)
    write_atomic(path, f"launch {launch_id} ended (written by {by})\n{text}\n")
    return path


def job_ended(store: Store, config_uid: str, launch_id: str, job_id: str) -> Path | None:
    """Mark this job of a ``wait=false`` launch ended; the one that finds every job of the launch marked
    writes its summary (two at once write the same one). Returns its path when written."""
    if not job_id:
        return None
    marks = _ended_dir(store.path, config_uid, launch_id)
    make_shared_dirs(marks, store.path)
    write_atomic(marks / job_id, "")  # before the record is read: a job that ends first is still counted
    record = store.launches(config_uid).get(launch_id)
    if not record or record.get("wait", True):
        return None
    if {p.name for p in marks.iterdir() if not p.name.startswith(".")} >= {str(j) for j in record["job_ids"]}:
        return write_summary(store, config_uid, launch_id, record, f"job {job_id}, the last to end")
    return None


def summarise_ended(store: Store, config_uid: str, running: tp.Callable[[dict[str, tp.Any]], bool]) -> list[Path]:
    """Write the summary of each ``wait=false`` launch whose jobs have all ended (``running`` says of a
    record) and that has none yet (its last job was killed); returns every such launch's summary, oldest
    first."""
    out = []
    for launch_id, record in store.launches(config_uid).items():
        if record.get("wait", True):
            continue
        path = summary_path(store.path, config_uid, launch_id)
        if not path.exists() and not running(record):
            write_summary(store, config_uid, launch_id, record, "pipeline.status, once its jobs had ended")
        if path.exists():
            out.append(path)
    return out
