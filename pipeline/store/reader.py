"""Reading entries: by UID or by (config, video file), a time window reading only its chunks, and
``cache_n_layers`` entries viewed through another layer selection. No torch unless layers are re-selected."""

from __future__ import annotations

import json
import typing as tp
from pathlib import Path

import numpy as np

from pipeline.config import EmbedConfig, LayerAggregation, Layers
from pipeline.store import layout, manifest
from pipeline.store.dims import output_dims


def read_window(
    store: Path, config_uid: str, row: tp.Mapping[str, tp.Any], start: float | None, stop: float | None
) -> tuple[np.ndarray, dict[str, tp.Any]]:
    """The entry of manifest ``row`` as ``(*features, time)``, keeping the samples whose time lies in
    ``[start, stop)``, and its attributes with ``times`` cut to match: only the chunks of the segment's
    shard that hold those rows are read."""
    import zarr

    segment = store / config_uid / row["segment"]
    first, rows = int(row["first_row"]), int(row["rows"])
    times = np.asarray(zarr.open_array(str(segment / "time"), mode="r", zarr_format=3)[first : first + rows])
    lo = 0 if start is None else int(np.searchsorted(times, start, side="left"))
    hi = rows if stop is None else int(np.searchsorted(times, stop, side="left"))
    hi = max(lo, hi)
    array = zarr.open_array(str(segment / layout.EMBEDDING), mode="r", zarr_format=3)
    data = np.moveaxis(np.asarray(array[first + lo : first + hi]), 0, -1)
    attrs = {**manifest.entry_attrs(row), "times": times[lo:hi].tolist()}
    return np.ascontiguousarray(data), attrs


def select_layers(
    entry: str,
    data: np.ndarray,
    attrs: dict[str, tp.Any],
    config: EmbedConfig | None,
    layers: Layers | None,
    layer_aggregation: LayerAggregation | None,
) -> tuple[np.ndarray, dict[str, tp.Any]]:
    """An entry computed with ``cache_n_layers`` holds the token-aggregated states of its cached layers;
    ``layers`` / ``layer_aggregation`` select and combine them (relative depth over the cached layers),
    defaulting to those of ``config`` when given, else every cached layer kept apart. The attributes'
    ``layer_indices``, ``layers`` and ``layer_aggregation`` then describe the selection."""
    if attrs.get("config", {}).get("cache_n_layers") is None:
        if layers is not None or layer_aggregation is not None:
            raise ValueError(
                f"load: entry {entry} was computed with its layers already selected and aggregated; "
                "to choose layers when reading, compute with cache_n_layers"
            )
        return data, attrs
    if config is not None:
        layers = config.layers if layers is None else layers
        layer_aggregation = config.layer_aggregation if layer_aggregation is None else layer_aggregation
    if layers is None and layer_aggregation is None:
        return data, {**attrs, "layer_aggregation": "none"}
    # torch, because the view must be the same operations as computing the selection directly
    from pipeline.embedding.aggregation import layer_view

    view_layers: Layers = EmbedConfig.model_fields["layers"].default if layers is None else layers
    view_how: LayerAggregation = layer_aggregation or "mean"
    data, positions = layer_view(data, view_layers, view_how)
    attrs["layer_indices"] = [attrs["layer_indices"][i] for i in positions]
    return data, {**attrs, "layers": view_layers, "layer_aggregation": view_how}


def to_dataarray(data: np.ndarray, attrs: dict[str, tp.Any]) -> tp.Any:
    """An ``xarray.DataArray`` ``(time, ...)`` of an entry read ``(*features, time)``, its axes named for
    what they hold (``time`` in seconds, ``layer`` with the model's layer indices, ``layer_group``,
    ``token``, ``feature``), as every reader orders them; attributes carry the metadata."""
    import xarray as xr

    config = attrs.get("config", {})
    dims, coords = output_dims(
        data.ndim,
        list(attrs.get("layer_indices") or []),
        str(attrs.get("layer_aggregation") or config.get("layer_aggregation", "")),
        str(config.get("token_aggregation", "")),
    )
    times = np.asarray(attrs["times"], dtype=np.float64)
    flat = {k: v for k, v in attrs.items() if k != "times"}
    flat["config"] = json.dumps(config, sort_keys=True)
    return xr.DataArray(np.moveaxis(data, -1, 0), dims=dims, coords={**coords, "time": times}, attrs=flat)
