"""The GPU path made right where a CPU can check it: every batched family's forward and reduction run on
PyTorch's ``meta`` device (shapes without data) under a dispatch mode that records what would stall a GPU
in the steady state of a batch: an op whose result the host reads (``.item()``, ``bool()``, ``.any()`` in a
branch, ``nonzero``), and a tensor that crosses from the host (an index built from a Python list, an
attribute the model left on the CPU, inputs copied again each batch)."""

from __future__ import annotations

import typing as tp

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from pipeline.embedding import aggregation
from pipeline.embedding.adapters import fix_pixel_values
from pipeline.embedding.engine import Embedder

from ..conftest import FRAMEWISE

aten = torch.ops.aten
READ_BY_HOST = {
    aten._local_scalar_dense.default,
    aten.is_nonzero.default,
    aten.nonzero.default,
    aten.masked_select.default,
    aten.equal.default,
}


class HostSyncs(TorchDispatchMode):
    """Records each op that would make the host wait for the device."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.produced: set[int] = set()
        """Tensors some op made under this mode (an index computed on the device is one of them)."""

    def __torch_dispatch__(self, func: tp.Any, types: tp.Any, args: tp.Any = (), kwargs: tp.Any = None) -> tp.Any:
        kwargs = kwargs or {}
        if func is aten.index.Tensor and any(
            isinstance(i, torch.Tensor) and id(i) not in self.produced for i in args[1]
        ):  # a Python list becomes an index in C++, below the dispatcher: on a GPU, a blocking copy
            self.found.append(f"{func}: an index no op computed (a Python list)")
        if func in READ_BY_HOST:
            self.found.append(f"{func}: its result is read by the host")
            raise RuntimeError(f"host sync: {func}")  # a meta tensor has no value to read: stop here
        tensors = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        on_host = [t for t in tensors if t.device.type == "cpu" and t.dim() > 0]  # 0-dim ones travel as scalars
        if on_host and (any(t.device.type == "meta" for t in tensors) or kwargs.get("device") == torch.device("meta")):
            shapes = ", ".join(str(tuple(t.shape)) for t in on_host)
            self.found.append(f"{func}: a host tensor {shapes} in a device op (a copy to the device)")
        out = func(*args, **kwargs)
        self.produced.update(id(t) for t in tree_leaves(out) if isinstance(t, torch.Tensor))
        return out


def _batch(embedder: Embedder, clips: int) -> torch.Tensor:
    """A batch of preprocessed pixels of the shape the batcher builds, on the meta device."""
    import numpy as np

    frame = np.zeros((64, 80, 3), np.uint8)
    per_frame = embedder.adapter.preprocess_frames([frame])[0]
    frames = embedder.num_frames if embedder.adapter.is_video else 1
    shape = (clips, frames, *per_frame.shape) if embedder.adapter.is_video else (clips, *per_frame.shape)
    return torch.empty(shape, dtype=per_frame.dtype, device="meta")


@pytest.mark.parametrize(
    ("model", "fields"),
    [
        ("tiny-videomae", {"layers": [0.0, 0.5, 1.0], "layer_aggregation": "mean"}),
        ("tiny-vjepa2", {"num_frames": 4, "layers": [0.0, 0.3, 1.0], "layer_aggregation": "none"}),
        ("tiny-xclip", {"max_imsize": 64}),
        ("tiny-xclip", {"max_imsize": 64, "layer_type": "mit"}),
        ("tiny-timesformer", {"cache_n_layers": 3}),
        ("tiny-vit", {"frequency": 3.0, "layers": "all", "layer_aggregation": "group_mean"}),
        ("tiny-vivit", {}),
        ("tiny-clip", {"frequency": 3.0}),
        ("tiny-dinov2", {"frequency": 3.0, "token_aggregation": "first"}),
    ],
)
def test_a_batch_reads_nothing_back_and_copies_nothing_to_the_device(
    make_run: tp.Any, model: str, fields: dict[str, tp.Any]
) -> None:
    run = make_run(model, batch_size=4, **fields)
    embedder = Embedder(run.embed, run.model_source(), batch_size=4)
    embedder.adapter.model.to("meta")
    embedder.adapter.device = torch.device("meta")
    pixels = _batch(embedder, 4)
    embedder.reduce(embedder.adapter.hidden_states_from_pixels(pixels))  # the first batch sets up (indices)
    trap = HostSyncs()
    with trap:
        out, _ = embedder.reduce(embedder.adapter.hidden_states_from_pixels(_batch(embedder, 4)))
    assert out.device.type == "meta" and out.shape[0] == 4
    assert not trap.found, f"{model}: " + "; ".join(dict.fromkeys(trap.found))


def test_the_trap_catches_what_used_to_stall_a_batch() -> None:
    """The positive control: a branch on ``.any()``, an index from a Python list, a host table added in;
    and what replaced them passes."""
    states = torch.empty((2, 5, 3, 4), device="meta")
    stalls: dict[str, tp.Callable[[], object]] = {
        "a branch on any()": lambda: bool(states.isnan().any()),
        "an index from a list": lambda: states[:, [0, 2, 3]],
        "a table left on the host": lambda: states + torch.zeros((1, 1, 3, 4)),
    }
    for name, stall in stalls.items():
        trap = HostSyncs()
        try:
            with trap:
                stall()
        except Exception:  # noqa: BLE001, S110 - meta tensors refuse some of these after the trap saw them
            pass
        assert trap.found, name
    aggregation.take_layers(states, [0, 1, 4])  # not evenly spaced: an index built on the device, once
    trap = HostSyncs()
    with trap:
        fix_pixel_values({"pixel_values": torch.empty((2, 3, 8, 8), device="meta")})
        aggregation.take_layers(states, [0, 2, 4])
        aggregation.take_layers(states, [0, 1, 4])
        aggregation.take_layers(states, [3])
    assert not trap.found, trap.found


class ToDevice(TorchDispatchMode):
    """Records each op that takes host tensors and gives device (``meta``) ones: a copy to the device."""

    def __init__(self) -> None:
        super().__init__()
        self.copies: list[tuple[int, ...]] = []

    def __torch_dispatch__(self, func: tp.Any, types: tp.Any, args: tp.Any = (), kwargs: tp.Any = None) -> tp.Any:
        out = func(*args, **(kwargs or {}))
        host = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor) and t.device.type == "cpu"]
        made = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        if any(t.dim() > 0 for t in host) and any(t.device.type == "meta" for t in made):
            self.copies += [tuple(t.shape) for t in host if t.dim() > 0]
        return out


@pytest.mark.parametrize("model", FRAMEWISE)
def test_preprocessing_on_the_device_moves_a_message_in_one_copy(make_run: tp.Any, model: str) -> None:
    """``preprocess_device``: the frames of one decoding process's message reach the device in one copy
    (stacked once into pinned memory on a GPU), not one blocking copy per frame, and the processor runs
    there: it gives the default path's pixels on the CPU (ViViT's device processor, transformers'
    torchvision one, within float rounding of the reference's numpy one). ViViT's numpy processor and
    V-JEPA 2's video processor fed frame lists pulled the frames back to numpy: on a GPU, an error."""
    import numpy as np

    from pipeline.embedding.adapters import to_device_at_once

    run = make_run(model)
    embedder = Embedder(run.embed, run.model_source(), batch_size=2)
    frames = [np.random.default_rng(i).integers(0, 255, (64, 80, 3), dtype=np.uint8) for i in range(5)]
    moved = ToDevice()
    with moved:
        pixels = embedder.adapter.preprocess_frames(frames, device="meta")
    assert pixels.device.type == "meta" and pixels.shape == embedder.adapter.preprocess_frames(frames).shape
    assert len(moved.copies) == 1 and moved.copies[0][0] == 5, moved.copies
    here, there = embedder.adapter.preprocess_frames(frames), embedder.adapter.preprocess_frames(frames, device="cpu")
    if model == "tiny-vivit":
        torch.testing.assert_close(there, here, rtol=0, atol=1e-6)
    else:
        assert torch.equal(there, here), model
    embedder.preprocess_device = "meta"  # what the entries record as their processor
    assert ("(VivitVideoProcessor on meta)" in embedder.processor_name) == (model == "tiny-vivit"), model
    if model == "tiny-vivit":  # a checkpoint whose processor does not offset: the GPU's would, so refused
        from pipeline.config import ConfigError

        embedder.adapter.processor.offset = False
        embedder.adapter._device_processor = None
        with pytest.raises(ConfigError, match="offset=false.*use preprocess_device=cpu"):
            embedder.adapter.device_processor()
    if torch.cuda.is_available():  # the GPU's resize rounds differently: within one intensity level
        on_gpu = embedder.adapter.preprocess_frames(frames, device="cuda").cpu()
        assert float((on_gpu - here).abs().max()) < 0.05, model
    back = to_device_at_once([torch.from_numpy(f) for f in frames], "cpu")
    assert all(torch.equal(b, torch.from_numpy(f)) for b, f in zip(back, frames))
