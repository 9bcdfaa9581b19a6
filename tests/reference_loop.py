"""A slow, literal re-implementation of the reference extractor's loop, used as the oracle.

Written independently of ``pipeline``: moviepy ``get_frame`` for every frame of every clip, PIL images,
one clip (or frame) per forward pass, token aggregation in torch then layer aggregation in numpy.

Adjustments to run on transformers 5, none of which changes a number:
- image processors no longer accept ``text=""``, so it is passed to X-CLIP only;
- ``output_hidden_states=True`` is passed to the forward call (X-CLIP's vision tower otherwise
  returns ``None``), and X-CLIP's ``mit`` states are recorded by hooks (transformers 5 drops them).
One deliberate deviation: moviepy returns a stale, history-dependent frame when asked for a time at
or past the end of the stream; here such times ask for the last frame instead, which is what the
pipeline returns.
"""

from __future__ import annotations

import typing as tp

import numpy as np
import PIL.Image
import torch


def _layer_select(latents: np.ndarray, layers: tp.Any, how: str) -> np.ndarray:
    n = latents.shape[0]
    if layers == "all":
        idx = list(range(n))
    else:
        fr = layers if isinstance(layers, list) else [layers]
        idx = np.unique([int(i * (n - 1)) for i in fr]).tolist()
    if len(idx) == 1:
        return latents[idx[0]][None, :] if how == "none" else latents[idx[0]]
    if how == "mean":
        return latents[idx].mean(0)
    if how == "sum":
        return latents[idx].sum(0)
    if how == "group_mean":
        idx[-1] += 1
        return np.stack([latents[a:b].mean(0) for a, b in zip(idx[:-1], idx[1:])])
    return latents[idx]


def _token_agg(latents: torch.Tensor, how: str) -> torch.Tensor:
    if how == "mean":
        out = latents.mean(axis=1)
    elif how == "sum":
        out = latents.sum(axis=1)
    elif how == "max":
        out = latents.max(axis=1).values
    elif how == "first":
        out = latents[:, 0, ...]
    elif how == "last":
        out = latents[:, -1, ...]
    elif how == "cat":
        out = latents.reshape(latents.shape[0], -1)
    else:
        out = latents
    return out.float()


def _fix_nans(inputs: tp.Any) -> None:
    if "pixel_values" in inputs:
        nans = inputs["pixel_values"].isnan()
        if nans.any():
            inputs["pixel_values"][nans] = 0
            inputs["pixel_values"] = inputs["pixel_values"].float()


def _get_frame(video: tp.Any, t: float) -> PIL.Image.Image:
    last = (video.reader.n_frames - 1) / video.fps
    img = video.get_frame(min(t, last))
    return PIL.Image.fromarray(img.astype("uint8"))


def reference_video_model(
    video_path: str,
    model_dir: str,
    family: str,
    *,
    frequency: float,
    clip_duration: float | None = None,
    num_frames: int | None = None,
    max_imsize: int | None = None,
    layers: tp.Any = 2 / 3,
    layer_aggregation: str = "mean",
    token_aggregation: str = "mean",
    layer_type: str = "",
) -> np.ndarray:
    """The reference ``_get_data`` video branch for VideoMAE / X-CLIP; returns ``(features..., time)``."""
    from moviepy import VideoFileClip
    from transformers import AutoModel, AutoProcessor

    model = AutoModel.from_pretrained(model_dir, output_hidden_states=True).eval()
    processor = AutoProcessor.from_pretrained(model_dir, do_rescale=True)
    config = getattr(model.config, "vision_config", model.config)
    nf = config.num_frames if num_frames is None else num_frames
    T = 1 / frequency if clip_duration is None else clip_duration
    subtimes = list(k / nf * T for k in reversed(range(nf)))
    video = VideoFileClip(video_path)
    expect = int(round(video.duration * frequency))
    times = np.linspace(0, video.duration, expect + 1)[1:]
    output = np.array([])
    for k, t in enumerate(times):
        pil = [_get_frame(video, max(0, t - t2)) for t2 in subtimes]
        if max_imsize is not None:
            factor = max(pil[0].size) / max_imsize
            if factor > 1:
                size = tuple(int(s / factor) for s in pil[0].size)
                pil = [p.resize(size) for p in pil]
        data = np.array([np.array(p) for p in pil])
        if family == "xclip":
            inputs = processor(videos=list(data), text="", return_tensors="pt")
        else:
            inputs = processor(images=list(data), return_tensors="pt")
        _fix_nans(inputs)
        captured: list[torch.Tensor] = []
        hooks = []
        if family == "xclip" and layer_type == "mit":
            enc = model.mit.encoder
            keep = captured.append
            hooks.append(
                enc.register_forward_pre_hook(lambda m, a, kw, keep=keep: keep(kw["inputs_embeds"]), with_kwargs=True)
            )
            for layer in enc.layers:
                hooks.append(
                    layer.register_forward_hook(lambda m, a, o, keep=keep: keep(o[0] if isinstance(o, tuple) else o))
                )
        with torch.inference_mode():
            pred = model(**inputs, output_hidden_states=True)
        for h in hooks:
            h.remove()
        if family == "xclip":
            states = captured if layer_type == "mit" else pred.vision_model_output.hidden_states
        else:
            states = pred.hidden_states
        out = torch.cat([x.unsqueeze(1) for x in states], axis=1)
        if family == "xclip" and not layer_type:
            out = out[[-1], ...]
        assert out.shape[0] == 1
        embd = _token_agg(out[0], token_aggregation).cpu().numpy()
        embd = _layer_select(embd, layers, layer_aggregation)
        if not output.size:
            output = np.zeros((len(times),) + embd.shape)
        output[k] = embd
    video.close()
    return output.transpose(list(range(1, output.ndim)) + [0]).astype(np.float32)


def reference_image_model(
    video_path: str,
    model_dir: str,
    *,
    frequency: float,
    layers: tp.Any = 2 / 3,
    layer_aggregation: str = "mean",
    token_aggregation: str = "mean",
) -> np.ndarray:
    """The reference image-model branch: one frame per step, ToTensor, processor with do_rescale=False."""
    from moviepy import VideoFileClip
    from transformers import AutoModel, AutoProcessor

    model = AutoModel.from_pretrained(model_dir, output_hidden_states=True).eval()
    processor = AutoProcessor.from_pretrained(model_dir, do_rescale=False)
    video = VideoFileClip(video_path)
    expect = int(round(video.duration * frequency))
    times = np.linspace(0, video.duration, expect)
    rows = []
    for t in times:
        img = _get_frame(video, t)
        tensor = torch.from_numpy(np.array(img)).permute(2, 0, 1).contiguous().float().div(255)
        inputs = processor(images=[tensor], return_tensors="pt")
        _fix_nans(inputs)
        with torch.inference_mode():
            pred = model(**inputs, output_hidden_states=True)
        out = torch.cat([x.unsqueeze(1) for x in pred.hidden_states], axis=1)[0]
        latent = _token_agg(out, token_aggregation).cpu().numpy()
        rows.append(_layer_select(latent, layers, layer_aggregation))
    video.close()
    output = np.stack(rows)
    return output.transpose(list(range(1, output.ndim)) + [0]).astype(np.float32)
