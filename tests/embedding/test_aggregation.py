import numpy as np
import pytest
import torch

from pipeline.embedding import aggregation


def test_layer_indices_floor_relative_depths() -> None:
    assert aggregation.layer_indices(2 / 3, 13) == [8]
    assert aggregation.layer_indices(2 / 3, 5) == [2]
    assert aggregation.layer_indices(0.29, 101) == [28]  # int() of 28.999999999999996, as the reference
    assert aggregation.layer_indices([0.0, 0.5, 1.0], 5) == [0, 2, 4]
    assert aggregation.layer_indices([0.5, 0.5, 0.0], 5) == [0, 2]
    assert aggregation.layer_indices("all", 3) == [0, 1, 2]


@pytest.mark.parametrize("how", ["first", "last", "mean", "sum", "max", "cat", "none"])
def test_token_aggregation_shapes_and_values(how: str) -> None:
    states = torch.arange(2 * 3 * 4 * 5, dtype=torch.float64).reshape(2, 3, 4, 5)
    out = aggregation.aggregate_tokens(states, how)  # type: ignore[arg-type]
    assert out.dtype == torch.float32
    expected = {
        "first": states[:, :, 0],
        "last": states[:, :, -1],
        "mean": states.mean(2),
        "sum": states.sum(2),
        "max": states.amax(2),
        "cat": states.reshape(2, 3, 20),
        "none": states,
    }[how]
    torch.testing.assert_close(out, expected.float())


def test_layer_aggregation() -> None:
    states = torch.randn(2, 5, 7)
    torch.testing.assert_close(aggregation.aggregate_layers(states, [1, 3], "mean"), states[:, [1, 3]].mean(1))
    torch.testing.assert_close(aggregation.aggregate_layers(states, [1, 3], "sum"), states[:, [1, 3]].sum(1))
    assert aggregation.aggregate_layers(states, [1, 3], "none").shape == (2, 2, 7)
    assert aggregation.aggregate_layers(states, [2], "none").shape == (2, 1, 7)
    torch.testing.assert_close(aggregation.aggregate_layers(states, [2], "mean"), states[:, 2])
    groups = aggregation.aggregate_layers(states, [0, 2, 4], "group_mean")
    torch.testing.assert_close(groups[:, 0], states[:, 0:2].mean(1))
    torch.testing.assert_close(groups[:, 1], states[:, 2:5].mean(1))


def test_resample_time_matches_julius_column_by_column() -> None:
    import julius

    rng = np.random.default_rng(0)
    data = rng.standard_normal((40, 3, 2)).astype(np.float32)
    out = aggregation.resample_time(data, 25)
    assert out.shape == (25, 3, 2)
    resample = julius.resample.ResampleFrac(40, 25)
    column = resample(torch.from_numpy(data[:, 1, 0].copy())).numpy()
    np.testing.assert_allclose(out[:, 1, 0], column, atol=1e-6)
    assert aggregation.resample_time(data, 40) is data


def test_output_dims_follow_the_aggregation() -> None:
    from pipeline.store.dims import output_dims

    assert output_dims(2, [8], "mean", "mean") == (["time", "feature"], {})
    assert output_dims(3, [8], "none", "mean") == (["time", "layer", "feature"], {"layer": [8]})
    assert output_dims(4, [0, 4, 8], "none", "none") == (["time", "layer", "token", "feature"], {"layer": [0, 4, 8]})
    groups = output_dims(3, [0, 4, 8], "group_mean", "cat")
    assert groups == (["time", "layer_group", "feature"], {"layer_group": [0, 4]})
    assert output_dims(2, [0, 4, 8], "mean", "cat") == (["time", "feature"], {})
    assert output_dims(4, [3], "mean", "mean")[0] == ["time", "feature_0", "feature_1", "feature_2"]
