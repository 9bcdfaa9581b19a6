"""A config group's ``zarr.json``: created whole, its ``config`` in it from the first byte, and rewritten
only to mirror the config's facts (``pipeline.store.facts``) for readers without this package.

zarr's ``open_group(mode="a")`` creates a group by writing an empty ``zarr.json``, then its attributes: two
launchers creating one config at once could leave a file without ``config`` (one's empty write landing
after the other's attributes, or a rewrite from an empty read), a config that readers no longer find.
Here the first creator's whole file is linked into place (``link()`` never replaces one); the others find
it there. A mirror write reads the file, which has ``config`` since its creation, and replaces it whole.
"""

from __future__ import annotations

import json
import logging
import typing as tp
from pathlib import Path

from pipeline.common.files import make_shared_dirs, share, write_atomic
from pipeline.common.retry import retry_io
from pipeline.store import facts
from pipeline.store.log import publish_once
from pipeline.testing import faults

GROUP_FILE = "zarr.json"

log = logging.getLogger(__name__)


def _document(attrs: tp.Mapping[str, tp.Any]) -> bytes:
    return json.dumps({"attributes": dict(attrs), "zarr_format": 3, "node_type": "group"}, indent=2).encode()


def read_attrs(config_dir: Path) -> dict[str, tp.Any]:
    """The group's own attributes (without its facts)."""
    path = config_dir / GROUP_FILE
    meta = json.loads(retry_io(path.read_bytes, str(path)))
    return dict(meta.get("attributes", {}))


def create(config_dir: Path, attrs: tp.Mapping[str, tp.Any], top: Path) -> bool:
    """Create the group with ``attrs`` unless it exists (True when this call created it); shared with the
    store's group either way (a creator killed before it shared the file leaves it to the next)."""
    path = config_dir / GROUP_FILE
    created = False
    if not path.exists():
        make_shared_dirs(config_dir, top)
        linked = publish_once(config_dir, path, _document(attrs), "group-written")
        if linked is None and not path.exists():  # a cleanup took the file of a creator stalled past the grace
            raise FileNotFoundError(f"store: {path} was not created (its writer stood still past the grace)")
        created = bool(linked)
    share(config_dir)
    share(path)
    return created


def mirror(config_dir: Path, required: tp.Mapping[str, tp.Any] | None = None) -> None:
    """Rewrite the group's attributes to hold its facts (a conflicting single-valued one removed) and the
    ``required`` ones it lacks (a group damaged by the race this module avoids gets its ``config`` back).
    Best effort: the facts are what this package reads, so a failed mirror write is a warning."""
    path = config_dir / GROUP_FILE
    try:
        attrs = read_attrs(config_dir)
        learned = facts.read(config_dir)
        for key in facts.conflicts(attrs, learned):
            if key in attrs:  # kept as a fact before the mirror drops it: the conflict stays one
                facts.record(config_dir, key, attrs[key])
        wanted = facts.merged(attrs, learned)  # a conflicting single-valued fact dropped
        wanted.update({k: v for k, v in (required or {}).items() if k not in attrs})
        if wanted == attrs:
            return
        faults.point("facts-mirror")
        write_atomic(path, _document(wanted), sync=True)  # readers see the old file or this one
    except OSError as e:
        log.warning("store: could not mirror the facts of %s in its %s (%s); they are kept", config_dir, GROUP_FILE, e)
