"""What each axis of a stored entry holds, named from how the entry was aggregated (no torch)."""

from __future__ import annotations


def output_dims(
    ndim: int, layer_indices: list[int], layer_aggregation: str, token_aggregation: str
) -> tuple[list[str], dict[str, list[int]]]:
    """Names of an entry's axes as every reader gives them, ``time`` first, and their coordinates, from how
    it was aggregated: ``time``, then ``layer`` (the model's layer indices) when layers are kept,
    ``layer_group`` (each group's first layer) for ``group_mean``, ``token`` when tokens are kept, then
    ``feature`` (``feature_0``, ... if several). ``ndim`` counts the time axis."""
    dims: list[str] = []
    coords: dict[str, list[int]] = {}
    if layer_aggregation == "none":
        dims.append("layer")
        coords["layer"] = list(layer_indices)
    elif layer_aggregation == "group_mean" and len(layer_indices) > 1:
        dims.append("layer_group")
        coords["layer_group"] = list(layer_indices[:-1])
    if token_aggregation == "none":
        dims.append("token")
    rest = ndim - 1 - len(dims)
    if rest < 0:
        return ["time"] + [f"dim_{i}" for i in range(ndim - 1)], {}
    dims += ["feature"] if rest == 1 else [f"feature_{i}" for i in range(rest)]
    return ["time", *dims], coords
