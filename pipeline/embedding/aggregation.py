"""Layer selection, token and layer aggregation, and time resampling: pure array functions.

Hidden states arrive batched as ``(batch, layers, tokens, *features)``.
"""

from __future__ import annotations

import functools
import typing as tp

import numpy as np
import torch

from pipeline.config.embed import LayerAggregation, Layers, TokenAggregation


def layer_indices(layers: Layers, n_layers: int) -> list[int]:
    """Model layer indices for relative depths in [0, 1] (``int(f * (n - 1))``, unique, sorted)."""
    if layers == "all":
        return list(range(n_layers))
    fractions = layers if isinstance(layers, list) else [layers]
    return sorted({int(f * (n_layers - 1)) for f in fractions})


def take_layers(states: torch.Tensor, positions: tp.Sequence[int]) -> torch.Tensor:
    """``states[:, positions]``, the same contiguous copy, without indexing by a Python list: that copies
    the index to the device and blocks the host until the forward queued before it has run. Evenly spaced
    positions are a slice; others an index tensor kept on the device."""
    if len(positions) == 1:
        return states[:, positions[0] : positions[0] + 1].contiguous()
    step = positions[1] - positions[0]
    if step > 0 and all(b - a == step for a, b in zip(positions, positions[1:])):
        return states[:, positions[0] : positions[-1] + 1 : step].contiguous()
    return states.index_select(1, _device_index(tuple(positions), states.device))


@functools.lru_cache(maxsize=64)
def _device_index(positions: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """An index tensor on ``device``, built (and copied there) once per selection."""
    return torch.tensor(positions, dtype=torch.long, device=device)


def cached_layer_indices(n: int | tp.Literal["all"], n_layers: int) -> list[int]:
    """The layers ``cache_n_layers`` keeps: ``n`` evenly spaced, ``int(round(x))`` over
    ``linspace(0, n_layers - 1, n)`` (unique, sorted), or every layer for ``all``."""
    if n == "all":
        return list(range(n_layers))
    return sorted({int(round(x)) for x in np.linspace(0, n_layers - 1, n)})


def aggregate_tokens(states: torch.Tensor, how: TokenAggregation) -> torch.Tensor:
    """Reduce the token axis (2) of ``(batch, layers, tokens, *features)``; output is float32."""
    if how == "mean":
        out = states.mean(dim=2)
    elif how == "sum":
        out = states.sum(dim=2)
    elif how == "max":
        out = states.max(dim=2).values
    elif how == "first":
        out = states[:, :, 0]
    elif how == "last":
        out = states[:, :, -1]
    elif how == "cat":
        out = states.flatten(2)
    elif how == "none":
        out = states
    else:
        raise ValueError(f"token_aggregation: unknown value {how!r}")
    return out.float()


def aggregate_layers(states: torch.Tensor, indices: list[int], how: LayerAggregation) -> torch.Tensor:
    """Select and combine layers (axis 1) of a batch.

    One selected layer drops the layer axis unless ``how == "none"``; ``group_mean`` averages the
    layers between consecutive selected indices (the last group includes its end).
    """
    if len(indices) == 1:
        picked = states[:, indices[0]]
        return picked[:, None] if how == "none" else picked
    if how == "mean":
        return take_layers(states, indices).mean(dim=1)
    if how == "sum":
        return take_layers(states, indices).sum(dim=1)
    if how == "none":
        return take_layers(states, indices)
    if how == "group_mean":
        bounds = list(indices)
        bounds[-1] += 1
        groups = [states[:, a:b].mean(dim=1) for a, b in zip(bounds[:-1], bounds[1:])]
        return torch.stack(groups, dim=1)
    raise ValueError(f"layer_aggregation: unknown value {how!r}")


def reduce_layers(
    states: torch.Tensor, layers: Layers, how: LayerAggregation, token_aggregation: TokenAggregation
) -> tuple[torch.Tensor, list[int]]:
    """Select and aggregate the layers (axis 1) of ``(batch, layers, tokens, *features)`` and aggregate the
    tokens: ``layers`` are relative depths over the layers present. Returns the result and the positions
    of the selected layers (for ``group_mean``, every layer between the first and last selected counts)."""
    positions = layer_indices(layers, states.shape[1])
    if how == "group_mean" and len(positions) > 1:
        return aggregate_layers(aggregate_tokens(states, token_aggregation), positions, how), positions
    tokens = aggregate_tokens(take_layers(states, positions), token_aggregation)
    return aggregate_layers(tokens, list(range(len(positions))), how), positions


def layer_view(data: np.ndarray, layers: Layers, how: LayerAggregation) -> tuple[np.ndarray, list[int]]:
    """Read-time layer selection of a ``cache_n_layers`` entry ``(cached layers, *features, time)``, whose
    tokens are already aggregated: the same operations, in the same order and layout, as computing the
    selection directly (bit for bit with ``cache_n_layers=all``). Returns ``(*out, time)`` and the
    positions of the selected layers among the cached ones."""
    steps = torch.from_numpy(np.ascontiguousarray(np.moveaxis(data, -1, 0)))  # (time, layers, *features)
    out, positions = reduce_layers(steps[:, :, None], layers, how, "first")
    return np.ascontiguousarray(np.moveaxis(out.numpy(), 0, -1)), positions


def resample_time(data: np.ndarray, n_out: int) -> np.ndarray:
    """Band-limited resampling of axis 0 (time) to ``n_out`` samples with julius."""
    if data.shape[0] == n_out:
        return data
    import julius

    resample = julius.resample.ResampleFrac(old_sr=data.shape[0], new_sr=n_out)
    flat = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32)).reshape(data.shape[0], -1).T
    out = resample(flat)
    return out.T.reshape(-1, *data.shape[1:]).numpy()
