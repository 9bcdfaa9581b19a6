"""A BIDS dataset's stimulus features, run by run, as BIDS derivatives (continuous recordings).

For every ``sub-*/[ses-*/]func/*_events.tsv`` it writes
``derivatives/<name>/sub-*/[ses-*/]func/<run>_desc-<label>_stim.tsv.gz`` (no header line: one row per
scan, one column per feature) and its JSON sidecar (``SamplingFrequency``, ``StartTime``, ``Columns``, and
the provenance: config UID, model and its identity, the pipeline versions, the alignment's settings, the
events file and each stimulus's content hash). Everything is checked before anything is written: every
run's TR and scan count, every event, every video in the store (one error lists all that are missing,
with the launcher command that computes them), the overlap rule, and files of an earlier export under the
same label with other settings (refused: pick another ``desc``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import sys
import typing as tp
import warnings
from pathlib import Path

from pipeline.align import bids
from pipeline.align.core import align_features, check_within_run, combine_spaces, plan
from pipeline.align.errors import StimulusFilesNotFoundError
from pipeline.align.timeline import Grid

if tp.TYPE_CHECKING:
    from pipeline.align.store_access import ConfigLike


@dataclasses.dataclass(frozen=True)
class Settings:
    """How every run is aligned (recorded in each sidecar's ``Alignment``)."""

    hrf: str = "none"
    delays: tuple[float, ...] | None = None
    binning: str = "mean"
    oversampling: int = 50
    zscore: bool = False
    overlap: tp.Literal["refuse", "sum"] = "refuse"
    tolerance: float = 0.02
    slice_time_ref: float = 0.0
    trial_type: tuple[str, ...] | None = None

    def record(self) -> dict[str, tp.Any]:
        return {
            "HRF": self.hrf,
            "Delays": list(self.delays) if self.delays is not None else None,
            "Binning": self.binning if self.hrf == "none" else None,
            "Oversampling": self.oversampling,
            "ZScore": self.zscore,
            "Overlap": self.overlap,
            "OverlapTolerance": self.tolerance,
            "SliceTimeRef": self.slice_time_ref,
            "TrialType": list(self.trial_type) if self.trial_type is not None else None,
        }


READ_CHOICES = ("config_uid", "model", "model_identity", "frequency", "layers", "layer_indices",
                "layer_aggregation", "token_aggregation")  # fmt: skip
"""What a feature space is, as the export records and compares it (not where the store lies)."""


def features_record(provenances: tp.Sequence[dict[str, tp.Any]]) -> dict[str, dict[str, tp.Any]]:
    """Each feature space's read-time choices, by space: what an export's label stands for."""
    return {str(p["space"]): {k: p.get(k) for k in READ_CHOICES} for p in provenances}


def default_desc(provenances: tp.Sequence[dict[str, tp.Any]], settings: Settings) -> str:
    """A label from the models' names, the response model and a digest of everything that sets the numbers
    (each space's config UID, model identity, frequency, layers and aggregations, and the alignment's
    settings): ``tinyvideomaespm3f9a01c2``. Other settings never share a label."""
    record = {"features": features_record(provenances), "alignment": settings.record()}
    digest = hashlib.blake2b(json.dumps(record, sort_keys=True).encode(), digest_size=4).hexdigest()
    models = "".join(str(p.get("model", "")).rstrip("/").rsplit("/", 1)[-1] for p in provenances) or "features"
    label = models + ("" if settings.hrf == "none" else settings.hrf) + ("fir" if settings.delays else "") + digest
    return re.sub(r"[^a-zA-Z0-9]", "", label)


def export_bids(
    root: str | os.PathLike[str],
    store: tp.Any,
    config: ConfigLike | tp.Sequence[ConfigLike],
    *,
    settings: Settings = Settings(),
    desc: str | None = None,
    name: str = "pipeline",
    n_scans: int | None = None,
    stimuli: str | os.PathLike[str] | None = None,
    out: tp.TextIO | None = None,
) -> list[Path]:
    """Write the derivatives of every run of the dataset at ``root``; returns the ``.tsv.gz`` files written.
    Several configs (a list) are several feature spaces, written side by side in one file: each column
    named ``<space>/<layer>/f<j>``, each space's provenance in the sidecar's ``FeatureSpaces``."""
    out = sys.stdout if out is None else out  # the stream of the call, not of the import
    from pipeline.align.store_access import StoreSource, config_list
    from pipeline.config import PIPELINE_VERSION as __version__

    root = Path(root)
    runs = bids.find_runs(root, n_scans=n_scans)
    sources = [StoreSource(store, c) for c in config_list(config)]
    source = sources[0]
    events: dict[Path, list[bids.Event]] = {}
    problems: list[str] = []
    not_found: dict[str, Path] = {}
    for run in runs:
        try:
            events[run.events] = bids.stimulus_events(run.events, stimuli=stimuli, trial_type=settings.trial_type)
        except StimulusFilesNotFoundError as e:
            not_found.update(e.missing)
        except ValueError as e:
            problems.append(f"{run.events.relative_to(root)}: {e}")
    if not_found:
        raise StimulusFilesNotFoundError(not_found)
    if problems:
        raise ValueError("\n".join(problems))
    videos = list(dict.fromkeys(e.path for run_events in events.values() for e in run_events))
    for each in sources:
        each.require(videos)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # said once, when each run is aligned below
        for run in runs:
            for each in sources:
                try:
                    presentations = plan(
                        events[run.events], each, overlap=settings.overlap, tolerance=settings.tolerance
                    )
                    check_within_run(presentations, Grid.fmri(run.tr, run.n_scans, settings.slice_time_ref * run.tr))
                except ValueError as e:
                    problems.append(f"{run.events.relative_to(root)}: {e}")
                    break
    if problems:
        raise ValueError("\n".join(problems))
    provenances = [each.provenance() for each in sources]
    label = desc or default_desc(provenances, settings)
    if not re.fullmatch(r"[a-zA-Z0-9]+", label):
        raise ValueError(f"desc: a BIDS label is letters and digits only, got {label!r}")
    target = root / "derivatives" / name
    uids = [each.config_uid for each in sources]
    provenance = {
        "ConfigUID": uids[0] if len(uids) == 1 else uids,
        "FeatureSpaces": features_record(provenances),
        "Alignment": settings.record(),
    }
    for run in runs:
        _, sidecar = bids.derivative_paths(target, run, label)
        if sidecar.is_file():
            old = json.loads(sidecar.read_text())
            kept = [k for k in provenance if k in old]  # a sidecar of an earlier version records fewer
            if {k: old[k] for k in kept} != {k: provenance[k] for k in kept}:
                was = json.dumps({k: old[k] for k in kept}, sort_keys=True)
                now = json.dumps(provenance, sort_keys=True)
                raise ValueError(
                    f"desc: {sidecar} exists from an export with other settings; choose another desc= or remove "
                    f"it.\n  there: {was}\n  now:   {now}"
                )
    bids.write_json(target / "dataset_description.json", bids.dataset_description(name, __version__))
    written = []
    for run in runs:
        grid = Grid.fmri(run.tr, run.n_scans, start=settings.slice_time_ref * run.tr)
        parts = [
            align_features(
                each,
                events[run.events],
                grid,
                hrf=settings.hrf,
                delays=settings.delays,
                binning=settings.binning,
                oversampling=settings.oversampling,
                zscore=settings.zscore,
                overlap=settings.overlap,
                tolerance=settings.tolerance,
            )
            for each in sources
        ]
        result = parts[0] if len(parts) == 1 else combine_spaces(parts)
        data_path, sidecar = bids.derivative_paths(target, run, label)
        bids.write_continuous(data_path, result.values)
        attrs = result.attrs
        bids.write_json(
            sidecar,
            {
                "SamplingFrequency": 1.0 / run.tr,
                "StartTime": grid.start,
                "Columns": [str(c) for c in result["feature"].values],
                "Description": (
                    f"Features of {', '.join(str(p['model']) for p in provenances) or 'the model'} (config "
                    f"{', '.join(str(u) for u in uids)}) of the stimuli shown in {run.events.name}, one row per "
                    f"volume (TR {run.tr:g} s); columns <space>/<layer>/f<j>"
                ),
                "Sources": [f"bids:raw:{run.events.relative_to(root).as_posix()}"],
                **provenance,
                "Model": attrs.get("model", ""),
                "ModelIdentity": attrs.get("model_identity", ""),
                "PipelineVersion": attrs.get("pipeline_version", ""),
                "AlignVersion": __version__,
                "Store": os.path.abspath(source.store.path),
                "RepetitionTime": run.tr,
                "NumberOfVolumes": run.n_scans,
                "NumberOfVolumesFrom": run.n_scans_from,
                "StimulusHashes": {
                    e.stim_file: source.hashes[str(e.path)] for e in events[run.events] if str(e.path) in source.hashes
                },
            },
        )
        written.append(data_path)
        print(
            f"{data_path.relative_to(root)}: {result.sizes['time']} volumes x {result.sizes['feature']} features "
            f"(TR {run.tr:g} s, {len(events[run.events])} stimulus events, scans from {run.n_scans_from})",
            file=out,
        )
    print(f"wrote {len(written)} run(s) to {target} with desc-{label}", file=out)
    return written
