"""A slow, literal re-implementation of the reference extractor's loop, used as the oracle.

Written independently of ``pipeline``. The video is read as the reference's video event reads it:
``VideoFileClip(path)`` gives the event its duration and frame rate, ``.subclipped(0, duration)`` is the
clip, and every frame comes from moviepy's ``get_frame`` in the reference's order (clip by clip, earliest
frame first): moviepy's own frame rate, duration and end-of-stream behaviour, with no override. One clip
(or frame) per forward pass; token aggregation in torch, then layer aggregation in numpy.

Adjustments to run on transformers 5, none of which changes a number:
- image processors no longer accept ``text=""``, so it is passed to X-CLIP only;
- ``output_hidden_states=True`` is passed to the forward call (X-CLIP's vision tower otherwise
  returns ``None``), and X-CLIP's ``mit`` states are recorded by hooks (transformers 5 drops them).
"""

from __future__ import annotations

import typing as tp
import warnings

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
    for key in ("pixel_values", "pixel_values_videos"):
        if key in inputs:
            nans = inputs[key].isnan()
            if nans.any():
                inputs[key][nans] = 0
                inputs[key] = inputs[key].float()


def open_like_the_reference(video_path: str) -> tp.Any:
    """The reference's video event: its duration and rate from moviepy, then the subclip it reads."""
    from moviepy import VideoFileClip

    duration = VideoFileClip(video_path).duration
    return VideoFileClip(video_path).subclipped(0, duration)


def _read(video: tp.Any, t: float) -> PIL.Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # moviepy warns when it reads past the end and reuses a frame
        img = video.get_frame(t)
    return PIL.Image.fromarray(img.astype("uint8"))


def _load(family: str, model_dir: str) -> tuple[tp.Any, tp.Any, int]:
    import transformers as tr

    model_cls: tp.Any = tr.AutoModel
    proc_cls: tp.Any = tr.AutoProcessor
    if family == "vivit":
        model_cls, proc_cls = tr.VivitModel, tr.VivitImageProcessor
    elif family == "vjepa2":
        proc_cls = tr.AutoVideoProcessor
    elif family == "llava_next_video":
        model_cls, proc_cls = tr.LlavaNextVideoForConditionalGeneration, tr.LlavaNextVideoProcessor
    elif family == "phi4_multimodal":
        model_cls = tr.AutoModelForCausalLM
    model = model_cls.from_pretrained(model_dir, output_hidden_states=True).eval()
    processor = proc_cls.from_pretrained(model_dir, do_rescale=True)
    most = {"llava_next_video": 16, "vjepa2": 64, "phi4_multimodal": 4}.get(family)
    if most is None:
        config = getattr(model.config, "vision_config", model.config)
        most = config.num_frames
    return model, processor, most


def _inputs(family: str, processor: tp.Any, data: np.ndarray, layer_type: str, audio: tp.Any) -> tp.Any:
    if family == "xclip":
        return processor(videos=list(data), text="", return_tensors="pt")
    if family == "vjepa2":
        return processor(videos=list(data), return_tensors="pt")
    if family == "llava_next_video":
        return processor(videos=list(data), text=layer_type, return_tensors="pt")
    if family == "phi4_multimodal":
        images = [PIL.Image.fromarray(img) for img in data]
        token = getattr(processor, "image_token", None)
        prompt = "<|user|>" + "".join(token or f"<|image_{i}|>" for i in range(1, len(images) + 1))
        kwargs: dict[str, tp.Any] = {"images": images, "return_tensors": "pt"}
        if audio is not None:
            kwargs["audio"] = [audio]
            prompt += getattr(processor, "audio_token", None) or "<|audio_1|>"
        return processor(text=prompt + "<|end|><|assistant|>", **kwargs)
    return processor(images=list(data), return_tensors="pt")


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
    audio_of: tp.Callable[[float, float], tp.Any] | None = None,
) -> np.ndarray:
    """The reference ``_get_data`` video branch; returns ``(features..., time)``.

    ``audio_of(start, stop)``, for Phi-4 with audio, gives the clip's audio as the processor takes it."""
    model, processor, most = _load(family, model_dir)
    nf = most if num_frames is None else num_frames
    T = 1 / frequency if clip_duration is None else clip_duration
    subtimes = list(k / nf * T for k in reversed(range(nf)))
    video = open_like_the_reference(video_path)
    expect = int(round(video.duration * frequency))
    times = np.linspace(0, video.duration, expect + 1)[1:]
    output = np.array([])
    for k, t in enumerate(times):
        pil = [_read(video, max(0, t - t2)) for t2 in subtimes]
        if max_imsize is not None:
            factor = max(pil[0].size) / max_imsize
            if factor > 1:
                size = tuple(int(s / factor) for s in pil[0].size)
                pil = [p.resize(size) for p in pil]
        data = np.array([np.array(p) for p in pil])
        audio = audio_of(max(0, t - T), t) if audio_of is not None else None
        inputs = _inputs(family, processor, data, layer_type, audio)
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


def _read_or_last(video: tp.Any, t: float) -> PIL.Image.Image:
    """The frame at ``t``; where moviepy says the stream has none there ("Using the last valid frame
    instead"), the last frame its pipe delivers."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        img = video.get_frame(t)
    if not any("last valid frame" in str(w.message) for w in caught):
        return PIL.Image.fromarray(img.astype("uint8"))
    return _read(video, (frames_in_pipe(video.reader) - 1) / video.fps)


def frames_in_pipe(reader: tp.Any) -> int:
    """How many frames moviepy's FFmpeg pipe delivers from the start (a failed read keeps the last one)."""
    reader.initialize(0)
    count = 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        while True:
            before = reader.last_read
            if reader.read_frame() is before:
                return count
            count += 1


def reference_image_model(
    video_path: str,
    model_dir: str,
    *,
    frequency: float,
    layers: tp.Any = 2 / 3,
    layer_aggregation: str = "mean",
    token_aggregation: str = "mean",
    past_end: str = "reference",
) -> np.ndarray:
    """The reference image-model branch: one frame per step, ToTensor, processor with do_rescale=False.

    Frames are read in time order. The reference reads them in a random order (exca's ``MapInfra``
    shuffles the frames it computes), so a step past the end of the stream gets whichever frame moviepy
    read before it: ``past_end="reference"`` reads in order (the previous step's frame), ``"last_frame"``
    gives such a step the video's last frame instead, the pipeline's rule for it."""
    from transformers import AutoModel, AutoProcessor

    model = AutoModel.from_pretrained(model_dir, output_hidden_states=True).eval()
    processor = AutoProcessor.from_pretrained(model_dir, do_rescale=False)
    video = open_like_the_reference(video_path)
    expect = int(round(video.duration * frequency))
    times = np.linspace(0, video.duration, expect)
    rows = []
    for t in times:
        img = _read(video, t) if past_end == "reference" else _read_or_last(video, t)
        tensor = torch.from_numpy(np.array(img)).permute(2, 0, 1).contiguous().float().div(255)
        inputs = processor(images=[tensor], return_tensors="pt")
        _fix_nans(inputs)
        with torch.inference_mode():
            if hasattr(model, "vision_model"):
                pred = model.vision_model(**inputs, output_hidden_states=True)
            else:
                pred = model(**inputs, output_hidden_states=True)
        out = torch.cat([x.unsqueeze(1) for x in pred.hidden_states], axis=1)[0]
        latent = _token_agg(out, token_aggregation).cpu().numpy()
        rows.append(_layer_select(latent, layers, layer_aggregation))
    video.close()
    output = np.stack(rows)
    return output.transpose(list(range(1, output.ndim)) + [0]).astype(np.float32)


def reference_image_model_bin_end(
    video_path: str,
    model_dir: str,
    *,
    frequency: float,
    layers: tp.Any = 2 / 3,
    layer_aggregation: str = "mean",
    token_aggregation: str = "mean",
    batch_size: int = 32,
) -> np.ndarray:
    """neuralset 0.4.0's image models on a video (``HuggingFaceImage._get_video_data`` and
    ``_iter_image_latents``): ``max(1, round(duration * frequency))`` steps, one frame at the end of each
    step's bin, ``linspace(0, duration, n + 1)[1:]``, read in time order (a torch ``DataLoader`` without
    shuffling) through moviepy's ``get_frame``; torchvision's ``ToTensor``, batches of ``batch_size``
    through the processor (``do_rescale=False``) and the model, then tokens and layers aggregated per frame.

    One departure, which changes no number of the frame-time rule under test: CLIP runs its vision tower
    (as the seed does), where 0.4.0 calls ``CLIPModel`` with pixels alone, which transformers refuses."""
    from torchvision import transforms
    from transformers import AutoModel, AutoProcessor

    model = AutoModel.from_pretrained(model_dir).eval()
    processor = AutoProcessor.from_pretrained(model_dir, do_rescale=False)
    video = open_like_the_reference(video_path)
    expect = max(1, int(round(video.duration * frequency)))
    times = np.linspace(0, video.duration, expect + 1)[1:]
    to_tensor = transforms.ToTensor()
    frames = [to_tensor(_read(video, float(t))) for t in times]
    video.close()
    rows = []
    for lo in range(0, len(frames), batch_size):
        batch = torch.stack(frames[lo : lo + batch_size])
        inputs = processor(images=[i.float() for i in batch], return_tensors="pt")
        _fix_nans(inputs)
        with torch.inference_mode():
            forward = model.vision_model if hasattr(model, "vision_model") else model
            out = forward(**inputs, output_hidden_states=True)
        states = torch.cat([x.unsqueeze(1) for x in out.hidden_states], axis=1)
        for latent in states:
            rows.append(_layer_select(_token_agg(latent, token_aggregation).cpu().numpy(), layers, layer_aggregation))
    output = np.stack(rows)
    return output.transpose(list(range(1, output.ndim)) + [0]).astype(np.float32)
