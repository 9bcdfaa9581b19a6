"""What launches learn about a config after its group exists: the names its model has had, the commits its
jobs loaded, the content identity of the model a 0.3 config was computed from, its model's own frame count.

Each fact is a file of its own, ``<config>/_facts/<key>-<digest of the value>.json``, written whole and
synced aside, then linked to its name (``link()`` never replaces a file), and never rewritten. Two launchers
that learn different facts at once both keep theirs. Before, the facts lived in the group's ``zarr.json``
alone, read, added to and written back: the later of two writers dropped what the earlier one added, and a
writer that stalled between its read and its write dropped whatever others had added meanwhile (a name
dropped is a config its readers no longer find by that name).

The group's attributes still mirror the facts for readers without this package (rewritten after each new
fact, best effort: a mirror write that loses a race is mended by the next launch). This package reads the
union of both (``merged``): a store written before this module holds its facts in the attributes alone.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import logging
import os
import typing as tp
from pathlib import Path

from pipeline.common.files import make_shared_dirs, now, share
from pipeline.common.retry import retry_io
from pipeline.store import layout
from pipeline.store.log import publish_once
from pipeline.testing import faults

LISTED = ("model_names", "model_commits")
"""Facts of which every value recorded counts, in the order first recorded."""
SINGLE = ("model_content", "default_num_frames")
"""Facts with one value. Two different values recorded make no value at all: a reader then resolves the
model again (a recompute at worst) instead of trusting either (``model_content`` picks whose entries a
launch reuses)."""

TRIES = 3
"""Times a fact is written again after a cleanup took its temporary file (older than the grace by the
file server's clock) before recording it fails."""

log = logging.getLogger(__name__)


def facts_dir(config_dir: Path) -> Path:
    return config_dir / layout.FACTS


def file_name(key: str, value: tp.Any) -> str:
    """One name per (key, value): recording a fact twice finds its file there."""
    digest = hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]
    return f"{key}-{digest}.json"


def record(config_dir: Path, key: str, value: tp.Any) -> bool:
    """Record that the config's ``key`` has ``value`` (for good); True when this call created the file.
    An error names the folder and the fact."""
    if key not in (*LISTED, *SINGLE):
        raise ValueError(f"store: {key!r} is not a config fact (known: {', '.join((*LISTED, *SINGLE))})")
    folder = facts_dir(config_dir)
    target = folder / file_name(key, value)
    if target.exists():
        share(folder)  # a recorder killed between creating the folder and sharing it leaves it to the next
        return False
    data = json.dumps({"key": key, "value": value, "recorded": now()}).encode()
    try:
        make_shared_dirs(folder, config_dir)
        share(folder)
        for _ in range(TRIES):
            linked = publish_once(folder, target, data, "fact-written")
            if linked is not None:
                return linked
            # a cleanup took the temporary file while this process stood still past the grace: again
        raise OSError(errno.EAGAIN, f"a cleanup removed the temporary file {TRIES} times (a clock far ahead?)")
    except OSError as e:
        raise OSError(e.errno, f"store: cannot record {key}={value!r} in {folder} ({e.strerror or e})") from e


def read(config_dir: Path) -> dict[str, list[tp.Any]]:
    """Every fact recorded: key -> its values, each once, in the order recorded (by the recorders' clocks:
    the order is for display; which values there are is what counts)."""
    folder = facts_dir(config_dir)
    try:
        names = retry_io(lambda: os.listdir(folder), str(folder))
    except FileNotFoundError:
        return {}
    found: list[tuple[str, str, str, tp.Any]] = []
    for name in names:
        if name.startswith(".") or not name.endswith(".json"):
            continue  # a temporary file, not yet linked
        path = folder / name
        with contextlib.suppress(FileNotFoundError):
            try:
                fact = json.loads(retry_io(functools.partial(_read_bytes, path), str(path)))
                found.append((str(fact["recorded"]), name, str(fact["key"]), fact["value"]))
            except (ValueError, KeyError, TypeError) as e:  # linked whole: only a damaged disk gets here
                log.warning("store: %s is not a fact this store wrote (%s); its value is unknown", path, e)
                found.append(("", name, name.rpartition("-")[0], None))  # a single fact: no value trusted
    facts: dict[str, list[tp.Any]] = {}
    for _, _, key, value in sorted(found, key=lambda f: f[:2]):
        if value is None and key in LISTED:
            continue
        values = facts.setdefault(key, [])
        if value not in values:
            values.append(value)
    return facts


def _read_bytes(path: Path) -> bytes:
    faults.point("read")
    return path.read_bytes()


def _values(attrs: tp.Mapping[str, tp.Any], facts: tp.Mapping[str, list[tp.Any]], key: str) -> list[tp.Any]:
    """The distinct values of ``key`` in the attributes, then in the facts."""
    seen = ([attrs[key]] if key in attrs else []) + list(facts.get(key, []))
    return [v for i, v in enumerate(seen) if v not in seen[:i]]


def merged(attrs: tp.Mapping[str, tp.Any], facts: tp.Mapping[str, list[tp.Any]]) -> dict[str, tp.Any]:
    """The group's attributes with its facts folded in: for ``LISTED`` keys the values of both (the
    attributes' first), for ``SINGLE`` keys the one value both agree on, none where they disagree or a
    fact could not be read (``None``)."""
    out = dict(attrs)
    for key in LISTED:
        values = list(attrs.get(key, []))
        values += [v for v in facts.get(key, []) if v not in values]
        if values:
            out[key] = values
    for key in SINGLE:
        values = _values(attrs, facts, key)
        if len(values) == 1 and values[0] is not None:
            out[key] = values[0]
        else:
            out.pop(key, None)
    return out


def conflicts(attrs: tp.Mapping[str, tp.Any], facts: tp.Mapping[str, list[tp.Any]]) -> dict[str, list[tp.Any]]:
    """The ``SINGLE`` keys with more than one value recorded, and their values (what ``merged`` drops)."""
    return {key: values for key in SINGLE if len(values := _values(attrs, facts, key)) > 1}
