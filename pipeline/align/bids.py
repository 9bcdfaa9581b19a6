"""BIDS: a run's events (``*_events.tsv``), stimulus paths, a dataset's runs with their TR and scan count,
and the derivatives written for them.

Stimulus paths follow BIDS: ``stim_file`` is relative to ``<dataset root>/stimuli/`` (an absolute path, or a
``bids::`` URI relative to the root, is taken as it is). An optional ``stim_start`` column says from which
second of the file the presentation began (default 0): labs that cut a film into runs often play each run
from an offset in one long file rather than from cut files, and without it the first seconds of the file
would be aligned to every run. BIDS defines no such column, so it is documented in the events' JSON.

Scan counts: the ``_bold.nii[.gz]`` header when the image is there; otherwise ``NumberOfVolumes`` from the
bold JSON sidecar (not a BIDS field: this tool's convention for datasets shared without images, such as
test data); otherwise the ``n_scans`` the caller gives; otherwise an error naming the run.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import os
import re
import typing as tp
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.align.errors import StimulusFilesNotFoundError
from pipeline.align.timeline import check_tr

EVENT_COLUMNS = ("onset", "duration", "stim_file")
STIM_START = "stim_start"
_URI = "bids::"


def find_root(path: str | os.PathLike[str]) -> Path | None:
    """The dataset root above a file: the nearest folder holding ``dataset_description.json``, else the
    folder above the outermost ``sub-*`` folder of the path."""
    path = Path(path).resolve()
    for parent in path.parents:
        if (parent / "dataset_description.json").is_file():
            return parent
    subjects = [p for p in path.parents if p.name.startswith("sub-")]
    return subjects[-1].parent if subjects else None


def read_events(source: str | os.PathLike[str] | pd.DataFrame) -> pd.DataFrame:
    """A run's events as a DataFrame: a BIDS ``events.tsv`` (``n/a`` read as missing) or a DataFrame."""
    if isinstance(source, pd.DataFrame):
        return source.copy()
    return pd.read_csv(source, sep="\t", na_values=["n/a", "N/A"], keep_default_na=True, dtype={"stim_file": str})


@dataclasses.dataclass(frozen=True)
class Event:
    """One presentation of a stimulus file, checked: ``duration`` is NaN when the events leave it open
    (``n/a``: shown to the end of the video)."""

    row: int
    """The row in the events table (0-based, header not counted), to name the event in messages."""
    stim_file: str
    path: Path
    onset: float
    duration: float
    stim_start: float

    @property
    def label(self) -> str:
        return f"row {self.row} ({self.stim_file} at {self.onset:g} s)"


def resolve_stimulus(stim_file: str, stimuli: Path | None, root: Path | None) -> Path:
    """Where ``stim_file`` lies: absolute paths as they are, ``bids::path`` under the dataset root, anything
    else under the stimuli folder (``<root>/stimuli`` unless given)."""
    if stim_file.startswith(_URI):
        if root is None:
            raise ValueError(f"events: {stim_file!r} is a BIDS URI, but the dataset root is unknown (give stimuli=)")
        return root / stim_file[len(_URI) :]
    path = Path(stim_file)
    if path.is_absolute():
        return path
    folder = stimuli if stimuli is not None else (root / "stimuli" if root is not None else None)
    if folder is None:
        raise ValueError(
            f"events: stim_file {stim_file!r} is relative to the stimuli folder, which is unknown: give stimuli= "
            "(the events are not a file inside a BIDS dataset)"
        )
    return folder / path


def stimulus_events(
    events: str | os.PathLike[str] | pd.DataFrame,
    *,
    stimuli: str | os.PathLike[str] | None = None,
    trial_type: str | tp.Sequence[str] | None = None,
) -> list[Event]:
    """The rows of a run's events that show a stimulus file, checked and with their files resolved.

    Rows without a ``stim_file`` (``n/a``: responses, fixation) are not stimuli and are skipped; with
    ``trial_type`` only rows of those types are kept. Every problem is reported at once: missing columns,
    non-numeric or negative values, files that do not exist (``StimulusFilesNotFoundError``).
    """
    table = read_events(events).reset_index(drop=True)
    missing = [c for c in EVENT_COLUMNS if c not in table.columns]
    if missing:
        where = "" if isinstance(events, pd.DataFrame) else f" {events}"
        raise ValueError(
            f"events{where}: missing column(s) {', '.join(missing)} (has {', '.join(map(str, table.columns))})"
        )
    root = None if isinstance(events, pd.DataFrame) else find_root(events)
    folder = Path(stimuli) if stimuli is not None else None
    if trial_type is not None:
        if "trial_type" not in table.columns:
            raise ValueError("events: trial_type given, but the events have no trial_type column")
        kinds = [trial_type] if isinstance(trial_type, str) else list(trial_type)
        table = table[table["trial_type"].isin(kinds)]
    problems: list[str] = []
    out: list[Event] = []
    not_found: dict[str, Path] = {}
    for row, record in zip(table.index, table.to_dict("records")):  # rows numbered before any filter
        name = record["stim_file"]
        if not isinstance(name, str) or not name.strip() or name.strip() in ("n/a", "N/A"):
            continue
        name = name.strip()
        onset = _number(record["onset"])
        duration = _number(record["duration"])
        start = _number(record.get(STIM_START, 0.0)) if STIM_START in table.columns else 0.0
        if STIM_START in table.columns and isinstance(start, float) and math.isnan(start):
            start = 0.0
        label = f"row {row} ({name})"
        if onset is None or not math.isfinite(onset):
            problems.append(f"{label}: onset {record['onset']!r} is not a number")
            continue
        if duration is None or duration < 0 or math.isinf(duration):
            problems.append(f"{label}: duration {record['duration']!r} is not a non-negative number or n/a")
            continue
        if start is None or not math.isfinite(start) or start < 0:
            problems.append(f"{label}: {STIM_START} {record.get(STIM_START)!r} is not a non-negative number")
            continue
        path = resolve_stimulus(name, folder, root)
        if not path.is_file():
            not_found[name] = path
            continue
        out.append(Event(row=int(row), stim_file=name, path=path, onset=onset, duration=duration, stim_start=start))
    if problems:
        raise ValueError("events: " + "; ".join(problems))
    if not_found:
        raise StimulusFilesNotFoundError(not_found)
    return out


def _number(value: tp.Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# --- a dataset's runs ------------------------------------------------------------------------------------


_ENTITY = re.compile(r"([a-zA-Z0-9]+)-([a-zA-Z0-9]+)")


def entities(filename: str) -> dict[str, str]:
    """The ``key-value`` entities of a BIDS file name (its suffix and extension left out)."""
    parts = filename.split(".")[0].split("_")
    found = {}
    for part in parts:
        match = _ENTITY.fullmatch(part)
        if match:
            found[match.group(1)] = match.group(2)
    return found


@dataclasses.dataclass(frozen=True)
class Run:
    """One functional run of a BIDS dataset, with what its grid needs."""

    events: Path
    prefix: str
    """The file name before ``_events.tsv``: ``sub-01[_ses-1]_task-x[_run-1]``."""
    folder: Path
    """``sub-*/[ses-*/]func`` relative to the dataset root."""
    tr: float
    n_scans: int
    n_scans_from: str
    """Where the scan count came from: the NIfTI image, the sidecar, or the caller's ``n_scans``."""


def bold_sidecar(root: Path, events: Path) -> dict[str, tp.Any]:
    """The bold JSON metadata that applies to a run, by BIDS inheritance: every ``*_bold.json`` from the root
    down to the run's folder whose entities are all the run's, deeper files overriding."""
    wanted = entities(events.name)
    rel = events.parent.relative_to(root)
    levels = [root] + [root.joinpath(*rel.parts[: i + 1]) for i in range(len(rel.parts))]
    merged: dict[str, tp.Any] = {}
    for level in levels:
        for path in sorted(level.glob("*_bold.json")):
            have = entities(path.name)
            if all(wanted.get(k) == v for k, v in have.items()):
                merged.update(json.loads(path.read_text()))
    return merged


def nifti_volumes(path: Path) -> int:
    """The number of volumes of a 4-D NIfTI image, from its header alone."""
    import nibabel

    shape = tp.cast(tp.Any, nibabel.load(str(path))).shape
    return int(shape[3]) if len(shape) > 3 else 1


def find_runs(root: str | os.PathLike[str], *, n_scans: int | None = None) -> list[Run]:
    """Every ``sub-*/[ses-*/]func/*_events.tsv`` of a dataset with its TR (``RepetitionTime`` of the bold
    sidecar) and scan count (see the module's docstring); every run lacking one is named in one error."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"bids: no such folder {root}")
    found = sorted(root.glob("sub-*/func/*_events.tsv")) + sorted(root.glob("sub-*/ses-*/func/*_events.tsv"))
    if not found:
        raise ValueError(f"bids: no sub-*/[ses-*/]func/*_events.tsv under {root}")
    runs, problems = [], []
    for events in sorted(found):
        prefix = events.name[: -len("_events.tsv")]
        meta = bold_sidecar(root, events)
        tr = meta.get("RepetitionTime")
        if not isinstance(tr, (int, float)) or isinstance(tr, bool) or not tr > 0:
            problems.append(f"{events.relative_to(root)}: no RepetitionTime in a bold sidecar ({prefix}_bold.json)")
            continue
        try:
            check_tr(float(tr), f"RepetitionTime of {prefix}_bold.json")
        except ValueError as e:
            problems.append(f"{events.relative_to(root)}: {e}")
            continue
        images = [events.parent / f"{prefix}_bold{ext}" for ext in (".nii.gz", ".nii")]
        image = next((p for p in images if p.is_file()), None)
        stated = meta.get("NumberOfVolumes")
        if image is not None:
            count, source = nifti_volumes(image), image.name
            if isinstance(stated, int) and stated != count:
                problems.append(
                    f"{events.relative_to(root)}: {image.name} holds {count} volumes but its bold sidecar says "
                    f"NumberOfVolumes {stated}; correct the one that is wrong"
                )
                continue
        elif isinstance(stated, int):
            count, source = int(stated), "NumberOfVolumes in the bold sidecar"
        elif n_scans is not None:
            count, source = int(n_scans), "n_scans given"
        else:
            problems.append(
                f"{events.relative_to(root)}: scan count unknown (no {prefix}_bold.nii[.gz], no NumberOfVolumes in "
                "its bold sidecar; give n_scans=)"
            )
            continue
        runs.append(Run(events, prefix, events.parent.relative_to(root), float(tr), count, source))
    if problems:
        raise ValueError("bids: " + "; ".join(problems))
    return runs


# --- derivatives -----------------------------------------------------------------------------------------


def derivative_paths(out: Path, run: Run, desc: str) -> tuple[Path, Path]:
    """``<out>/sub-*/[ses-*/]func/<prefix>_desc-<desc>_stim.tsv.gz`` and its JSON sidecar."""
    base = out / run.folder / f"{run.prefix}_desc-{desc}_stim"
    return base.with_name(base.name + ".tsv.gz"), base.with_name(base.name + ".json")


def write_continuous(path: Path, data: np.ndarray) -> None:
    """A BIDS continuous recording: tab-separated values, no header line, gzip-compressed (with no time
    stamp in the gzip header, so that the same numbers give the same bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
        np.savetxt(f, np.asarray(data, dtype=np.float64), fmt="%.8g", delimiter="\t")
    os.replace(tmp, path)


def read_continuous(path: Path) -> np.ndarray:
    """A ``.tsv.gz`` written by ``write_continuous``, as ``(rows, columns)``."""
    with gzip.open(path, "rt") as f:
        return np.atleast_2d(np.loadtxt(f, delimiter="\t", ndmin=2))


def write_json(path: Path, data: dict[str, tp.Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def dataset_description(name: str, version: str) -> dict[str, tp.Any]:
    """The derivative dataset's ``dataset_description.json``: what made it, and a link to the raw dataset
    (two folders up) that the sidecars' ``Sources`` (``bids:raw:...``) refer to."""
    return {
        "Name": f"{name}: stimulus features aligned to the scans",
        "BIDSVersion": "1.10.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "pipeline.align", "Version": version}],
        "DatasetLinks": {"raw": "../../"},
    }
