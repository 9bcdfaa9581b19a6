"""Stored embeddings on an fMRI or MEG time grid, from BIDS events.

    import pipeline.align
    features = pipeline.align.align(
        "embeddings.zarr", "model=videomae frequency=2", "/data/ds/sub-01/func/sub-01_task-movie_run-1_events.tsv",
        tr=1.49, n_scans=400, hrf="spm",
    )  # xarray.DataArray (time, feature)

    python -m pipeline.align bids=/data/ds config=<config uid or launcher words> store=embeddings.zarr hrf=spm

Modules: ``timeline`` (samples on the run's timeline, onto a grid) and ``response`` (HRF, low-pass,
z-scoring) are pure array functions; ``core`` runs them for one run on any ``FeatureSource``;
``store_access`` is the only module that touches the store and configs; ``bids`` reads events and datasets
and writes derivatives; ``export`` writes a dataset's derivatives; ``cli`` is ``python -m pipeline.align``.
Nothing here imports torch, and neither does reading the store.
"""

from __future__ import annotations

import os
import typing as tp

import pandas as pd

from pipeline.align.bids import Event, find_runs, stimulus_events
from pipeline.align.core import Features, FeatureSource, MemorySource, align_features, combine_spaces, make_grid
from pipeline.align.errors import MissingVideosError, OverlappingEventsError, StimulusFilesNotFoundError
from pipeline.align.timeline import Grid

if tp.TYPE_CHECKING:
    from pipeline.align.store_access import ConfigLike

__all__ = [
    "Event",
    "FeatureSource",
    "Features",
    "Grid",
    "MemorySource",
    "MissingVideosError",
    "OverlappingEventsError",
    "StimulusFilesNotFoundError",
    "align",
    "align_features",
    "combine_spaces",
    "find_runs",
    "make_grid",
    "stimulus_events",
]


def align(
    store: tp.Any,
    config: ConfigLike | tp.Sequence[ConfigLike],
    events: str | os.PathLike[str] | pd.DataFrame,
    *,
    tr: float | None = None,
    n_scans: int | None = None,
    frequency: float | None = None,
    duration: float | None = None,
    start: float = 0.0,
    grid: Grid | None = None,
    **options: tp.Any,
) -> tp.Any:
    """One run's stimulus features from the store on a target grid: an ``xarray.DataArray`` ``(time, feature)``
    whose ``space`` coordinate names each feature's space; its attributes say what the features are (config
    UID, model and identity, frequency, layers read, layer and token aggregation) and how they were aligned.

    - ``store``: a path or a ``pipeline.store.Store``.
    - ``config``: a config UID of the store; the launch command's words (``"model=tiny_videomae frequency=8"``)
      or their mapping (``{"model": "tiny_videomae", "frequency": 8}``); or an ``EmbedConfig``. Without a
      resolved model identity the config is found by model name and fields (``Store.find_config``). A list
      of configs gives several feature spaces side by side (for banded ridge): features named
      ``<space>/<layer>/f<j>``, each provenance attribute a list in the order of ``attrs["spaces"]``.
    - ``events``: a BIDS ``events.tsv`` or a DataFrame: ``onset``, ``duration`` (``n/a``: to the end of the
      video), ``stim_file`` (relative to ``stimuli``, by default ``<dataset root>/stimuli``; rows without one
      are skipped), optional ``stim_start`` (the second of the file the presentation started from).
      Videos are found in the store by content hash: a renamed copy is found.
    - grid: ``tr`` and ``n_scans`` (fMRI), or ``frequency`` and ``duration`` (MEG), or ``grid``; ``start`` is
      the first row's time (``slice_time_ref * tr`` for slice-timing-corrected data).
    - ``hrf``: ``"none"`` (default), ``"spm"`` or ``"glover"`` (nilearn's, oversampled as
      ``compute_regressor`` does); or ``delays`` (seconds, FIR); ``binning``: ``"mean"`` (default) or
      ``"lowpass"``; ``zscore``: per column over the run; ``overlap``: ``"refuse"`` (default) or ``"sum"``:
      ``options`` are those of ``align_features``, where their defaults live.

    Raises ``MissingVideosError`` (every video not in the store, and the launcher command that computes
    them), ``StimulusFilesNotFoundError``, ``OverlappingEventsError``, ``ValueError`` for bad arguments.
    """
    from pipeline.align.store_access import StoreSource, config_list

    target = make_grid(grid, tr=tr, n_scans=n_scans, frequency=frequency, duration=duration, start=start)
    parts = [align_features(StoreSource(store, c), events, target, **options) for c in config_list(config)]
    return parts[0] if len(parts) == 1 else combine_spaces(parts)
