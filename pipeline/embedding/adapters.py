"""One small adapter per model family: how to load it, feed it and read its hidden states.

Every adapter returns hidden states batched as ``(batch, layers, tokens, *features)``: the
reference's per-clip ``(layers, tokens, ...)`` with a batch axis in front.
"""

from __future__ import annotations

import typing as tp

import numpy as np
import torch

from pipeline.config import ConfigError
from pipeline.config.families import family

Clip = list[np.ndarray]


def fix_pixel_values(inputs: tp.MutableMapping[str, tp.Any]) -> None:
    """Zero the NaNs that some processors produce on uniform images (normalising by a zero std), without
    asking whether there are any: that question waits for the device (the values are the same)."""
    for key in ("pixel_values", "pixel_values_videos"):
        values = inputs.get(key)
        if isinstance(values, torch.Tensor) and values.is_floating_point():
            values.masked_fill_(values.isnan(), 0)  # in place: the batch is this call's own


_PIXEL_PARTS = ("image_processor", "video_processor")

PRESIZED = frozenset(
    {"VideoMAEImageProcessor", "VJEPA2VideoProcessor", "ViTImageProcessor", "CLIPImageProcessor", "BitImageProcessor"}
)
"""Processors that resize each image first, on its own, with their ``resize`` (``size``, ``resample``),
then crop and normalise: frames may be resized before the rest runs (``Adapter.preprocess_frames``).
Each is checked against its own per-frame call, bit for bit (``tests/embedding/test_presize.py``)."""


def presizing_part(processor: tp.Any) -> tp.Any | None:
    """The processor's one pixel part when it is in ``PRESIZED`` and resizes, else None (X-CLIP's names
    its one part twice)."""
    parts = list({id(part): part for part in _pixel_processors(processor)}.values())
    if len(parts) != 1 or type(parts[0]).__name__ not in PRESIZED or not getattr(parts[0], "do_resize", False):
        return None
    return parts[0]


def frame_tensor(frame: np.ndarray) -> torch.Tensor:
    """An ``(H, W, C)`` uint8 frame as a ``(C, H, W)`` tensor viewing it (a read-only frame, a view of a
    decoder's buffer, is copied: torch warns about sharing one)."""
    return torch.from_numpy(np.require(frame, requirements="W")).permute(2, 0, 1)


def one_frame_videos(frames: list[torch.Tensor]) -> dict[str, tp.Any]:
    """Frames as one-frame video tensors ``(1, C, H, W)`` for a video processor: given a list of frames per
    video, transformers' video processors convert each frame to numpy, which a device tensor cannot be."""
    return {"videos": [f[None] for f in frames], "return_tensors": "pt"}


def to_device_at_once(frames: list[torch.Tensor], device: str | torch.device) -> list[torch.Tensor]:
    """Frames of one shape moved to ``device`` in one copy: stacked once into host memory (pinned for a
    GPU, so that the copy does not block), moved together, handed back as views; one frame at a time from
    pageable memory would be as many blocking copies (``preprocess_device=cuda``). The pinned block is
    not reused before the copy ends (PyTorch's host allocator records the copy)."""
    if not frames:
        return []
    target = torch.device(device)
    pin = target.type == "cuda"
    host = torch.empty((len(frames), *frames[0].shape), dtype=frames[0].dtype, pin_memory=pin)
    torch.stack(frames, out=host)
    return list(host.to(target, non_blocking=pin).unbind(0))


def _pixel_processors(processor: tp.Any) -> list[tp.Any]:
    """The parts of a processor that turn pixels into tensors (itself, for a bare image processor)."""
    parts = [getattr(processor, name) for name in _PIXEL_PARTS if getattr(processor, name, None) is not None]
    return parts or [processor]


def require_torchvision_backend(processor: tp.Any, source: str) -> None:
    """Refuse a PIL-backed image or video processor (what transformers falls back to without
    torchvision): its numbers differ from the torchvision backend's by up to one intensity level, and the
    reference's environment has torchvision. Processors with one implementation (ViViT's) pass."""
    from transformers.image_processing_backends import PilBackend

    for part in _pixel_processors(processor):
        if isinstance(part, PilBackend):
            raise RuntimeError(
                f"{source}: the processor {type(part).__name__} is not torchvision-backed; install torchvision "
                "(pinned with torch in constraints.txt) so that the numbers are the reference's"
            )


def pixel_values(inputs: tp.Mapping[str, tp.Any]) -> torch.Tensor:
    """The pixel tensor of a processor's output (image processors and video processors name it apart)."""
    for key in ("pixel_values", "pixel_values_videos"):
        if key in inputs:
            return inputs[key]
    raise KeyError(f"no pixel values among the processor outputs {sorted(inputs)}")


def _stack_layers(states: tp.Sequence[torch.Tensor] | None, what: str) -> torch.Tensor:
    if states is None:
        raise RuntimeError(f"{what} returned no hidden states")
    return torch.stack(list(states), dim=1)


class Adapter:
    """Base adapter: a video model fed a batch of clips through its processor."""

    family: tp.ClassVar[str] = ""
    is_video: tp.ClassVar[bool] = True
    uses_audio: tp.ClassVar[bool] = False
    framewise: tp.ClassVar[bool] = True
    """``is_video``, ``uses_audio`` and ``framewise`` are the family's traits (``pipeline.config.families``),
    copied onto each adapter class when it is defined."""
    input_field: tp.ClassVar[str] = "images"
    do_rescale: tp.ClassVar[bool] = True
    max_batch: tp.ClassVar[int | None] = None

    def __init__(
        self,
        source: str,
        *,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        layer_type: str = "",
        trust_remote_code: bool = False,
        revision: str | None = None,
        with_model: bool = True,
    ) -> None:
        """``with_model=False`` loads the processor alone (decoding processes preprocess, never run the model)."""
        self.source = source
        self.revision = revision
        self.device = torch.device(device)
        self.dtype = dtype
        self.layer_type = layer_type
        self.trust_remote_code = trust_remote_code
        self.processor = self.load_processor()
        self.model: tp.Any = self.load_model() if with_model else None

    def __init_subclass__(cls, **kwargs: tp.Any) -> None:
        super().__init_subclass__(**kwargs)
        if "family" not in cls.__dict__:  # a shared base (tubelet models), not a family
            return
        traits = family(cls.family)
        cls.is_video, cls.uses_audio, cls.framewise = traits.is_video, traits.uses_audio, traits.framewise

    # --- checks that need no weights -------------------------------------------------------
    # --- loading ------------------------------------------------------------------------------
    def model_class(self) -> tp.Any:
        from transformers import AutoModel

        return AutoModel

    def processor_class(self) -> tp.Any:
        from transformers import AutoProcessor

        return AutoProcessor

    def model_kwargs(self) -> dict[str, tp.Any]:
        kwargs: dict[str, tp.Any] = {"dtype": self.dtype}
        if self.revision is not None:
            kwargs["revision"] = self.revision
        if self.trust_remote_code:
            kwargs["trust_remote_code"] = True
        return kwargs

    def load_model(self) -> tp.Any:
        model = self.model_class().from_pretrained(self.source, output_hidden_states=True, **self.model_kwargs())
        if model.device.type == "cpu" and self.device.type != "cpu":
            model = model.to(self.device)
        return model.eval()

    def load_processor(self, processor_class: tp.Any = None) -> tp.Any:
        """The family's processor (or ``processor_class``) from the model's files, at its revision."""
        extra: dict[str, tp.Any] = {"do_rescale": self.do_rescale}
        if self.revision is not None:
            extra["revision"] = self.revision
        if self.trust_remote_code:
            extra["trust_remote_code"] = True
        processor = (processor_class or self.processor_class()).from_pretrained(self.source, **extra)
        require_torchvision_backend(processor, self.source)
        return processor

    @property
    def processor_name(self) -> str:
        """The processor's class and those of its image and video parts, recorded with every entry."""
        parts = [type(self.processor).__name__]
        parts += [type(p).__name__ for p in _pixel_processors(self.processor) if p is not self.processor]
        return "/".join(parts)

    # --- running --------------------------------------------------------------------------------
    def processor_inputs(self, clips: list[Clip], audio: list[np.ndarray] | None) -> dict[str, tp.Any]:
        return {self.input_field: [list(c) for c in clips], "return_tensors": "pt"}

    feeds_tensors: tp.ClassVar[bool] = True
    """``preprocess_frames`` hands the processor uint8 ``(C, H, W)`` tensors rather than the reference's numpy
    frames: the torchvision processors give the same pixels, bit for bit (``tests/embedding/test_families.py``), in a
    fraction of the time (no numpy conversion inside)."""

    def preprocess_frames(self, frames: list[np.ndarray], device: str | None = None) -> torch.Tensor:
        """Pixel values of single frames, ``(n, channels, height, width)``, exactly as within a clip;
        ``device`` runs the processor there (``preprocess_device``)."""
        part = presizing_part(self.processor) if device is None else None
        if part is not None:
            return self._presized(part, frames)
        items: list[tp.Any] = list(frames)
        if self.feeds_tensors:
            items = [frame_tensor(f) for f in frames]
        if device is None:
            pixels = pixel_values(self.processor(**self.processor_inputs([[f] for f in items], None)))
        else:
            items = to_device_at_once([torch.as_tensor(f) for f in items], device)
            pixels = pixel_values(self.device_processor()(**self.device_inputs(items), device=device))
        return pixels[:, 0] if pixels.ndim == 5 else pixels

    def device_processor(self) -> tp.Any:
        """The processor ``preprocess_device`` runs: one that takes ``device`` (the family's own, by default)."""
        return self.processor

    def device_inputs(self, frames: list[torch.Tensor]) -> dict[str, tp.Any]:
        """The processor's inputs for single frames already on the device (as the processor takes frames)."""
        clips: list[tp.Any] = [[f] for f in frames]
        return self.processor_inputs(clips, None)

    def _presized(self, part: tp.Any, frames: list[np.ndarray]) -> torch.Tensor:
        """Each frame resized by the processor's own ``resize`` straight from the decoder's buffer (a
        channels-last view: no copy, no per-frame layout change), then the rest of the processor on the
        small frames at once (``do_resize=False``; image processors told to group them into one batch, as
        video processors do)."""
        small = [part.resize(self.frame_input(f)[None], size=part.size, resample=part.resample)[0] for f in frames]
        batch: list[tp.Any] = [[f] for f in small] if self.is_video else small
        grouped = {"disable_grouping": False} if "disable_grouping" in part._valid_kwargs_names else {}
        pixels = pixel_values(part(batch, do_resize=False, return_tensors="pt", **grouped))
        return pixels[:, 0] if pixels.ndim == 5 else pixels

    def frame_input(self, frame: np.ndarray) -> torch.Tensor:
        """A decoded frame as the processor takes it, ``(C, H, W)``: uint8, a view of the frame."""
        return frame_tensor(frame)

    def static_inputs(self) -> dict[str, tp.Any]:
        """Inputs that are the same for every batch (X-CLIP's empty text)."""
        return {}

    def hidden_states_from_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Hidden states from preprocessed pixels, ``(batch, frames, C, H, W)`` or ``(batch, C, H, W)``."""
        inputs = self.prepare({"pixel_values": pixels, **self.static_inputs()})
        with torch.inference_mode():
            return self.read_states(self.run(inputs), pixels.shape[0])

    def prepare(self, raw: tp.Mapping[str, tp.Any]) -> dict[str, tp.Any]:
        """Processor outputs NaN-fixed, on the model's device and dtype."""
        inputs = dict(raw)
        fix_pixel_values(inputs)
        moved: dict[str, tp.Any] = {}
        for key, value in inputs.items():
            if isinstance(value, torch.Tensor):
                value = value.to(self.model.device)
                if value.is_floating_point():
                    value = value.to(self.dtype)
            moved[key] = value
        return moved

    def run(self, inputs: dict[str, tp.Any]) -> tp.Any:
        return self.model(**inputs, output_hidden_states=True)

    def read_states(self, output: tp.Any, batch: int) -> torch.Tensor:
        return _stack_layers(output.hidden_states, self.family)

    def hidden_states(self, clips: list[Clip], audio: list[np.ndarray] | None = None) -> torch.Tensor:
        """``(batch, layers, tokens, *features)`` for a batch of clips (or of single frames)."""
        inputs = self.prepare(self.processor(**self.processor_inputs(clips, audio)))
        with torch.inference_mode():
            return self.read_states(self.run(inputs), len(clips))


class TubeletAdapter(Adapter):
    """Models with fixed position embeddings over tubelets of ``tubelet_size`` frames (VideoMAE, ViViT):
    a clip must make exactly the configured number of tubelets, and the reference allows no more frames
    than the configured count."""


class VideoMAEAdapter(TubeletAdapter):
    """VideoMAE. Its sinusoidal position table is a plain attribute in transformers, which ``.to(device)``
    leaves on the CPU, so every forward would copy it to the device: it is made a buffer (the same values),
    moved once with the model."""

    family = "videomae"

    def load_model(self) -> tp.Any:
        model = super().load_model()
        embeddings = getattr(model, "embeddings", None)
        table = getattr(embeddings, "position_embeddings", None)
        if (
            embeddings is not None
            and isinstance(table, torch.Tensor)
            and not isinstance(table, torch.nn.Parameter)
            and "position_embeddings" not in dict(embeddings.named_buffers(recurse=False))
        ):
            del embeddings.position_embeddings
            embeddings.register_buffer("position_embeddings", table.to(self.device), persistent=False)
        return model


class TimesformerAdapter(Adapter):
    family = "timesformer"


class VivitAdapter(TubeletAdapter):
    family = "vivit"

    def model_class(self) -> tp.Any:
        from transformers import VivitModel

        return VivitModel

    def processor_class(self) -> tp.Any:
        from transformers import VivitImageProcessor

        return VivitImageProcessor

    def device_processor(self) -> tp.Any:
        """transformers' torchvision ``VivitVideoProcessor``, from the same files: the reference's image processor
        works in numpy and ignores ``device``. On the CPU it differs from it by float rounding (at most 2.4e-7
        on the tiny model), beside the GPU's own resize rounding (``preprocess_device`` is in the UID)."""
        if getattr(self, "_device_processor", None) is None:
            from transformers import VivitVideoProcessor

            if not getattr(self.processor, "offset", True):  # the video processor always offsets
                raise ConfigError(
                    f"preprocess_device: {self.source}'s ViViT processor has offset=false, which transformers' "
                    "VivitVideoProcessor (the one that runs on a GPU) does not follow; use preprocess_device=cpu"
                )
            self._device_processor = self.load_processor(VivitVideoProcessor)
        return self._device_processor

    def device_inputs(self, frames: list[torch.Tensor]) -> dict[str, tp.Any]:
        return one_frame_videos(frames)


class VJEPA2Adapter(Adapter):
    """V-JEPA 2: up to 64 frames, through its video processor (resize, centre crop, normalise: per frame).
    The encoder alone: the embedding is its hidden states, which the predictor (about 1.5x the encoder's
    compute for ViT-L) does not change (``skip_predictor``: equal, ``torch.equal``, and the oracle tests
    compare with the reference's full forward)."""

    family = "vjepa2"
    input_field = "videos"

    def processor_class(self) -> tp.Any:
        from transformers import AutoVideoProcessor

        return AutoVideoProcessor

    def device_inputs(self, frames: list[torch.Tensor]) -> dict[str, tp.Any]:
        return one_frame_videos(frames)

    def run(self, inputs: dict[str, tp.Any]) -> tp.Any:
        if "pixel_values" in inputs:
            inputs["pixel_values_videos"] = inputs.pop("pixel_values")
        return self.model(**inputs, output_hidden_states=True, skip_predictor=True)


class XCLIPAdapter(Adapter):
    """X-CLIP: vision-tower states of the clip's last frame, or the ``mit`` states over frames. Only the
    towers those states come from run (the vision tower, then the ``mit`` over its projected class
    tokens, as ``XCLIPModel.forward`` calls them): the text tower and the prompts generator, which the
    reference's full forward also runs on the empty text, change none of them, and the text tower's mask
    made the host wait for the device every batch."""

    family = "xclip"
    input_field = "videos"

    def processor_inputs(self, clips: list[Clip], audio: list[np.ndarray] | None) -> dict[str, tp.Any]:
        return {"videos": [list(c) for c in clips], "text": "", "return_tensors": "pt"}

    def run(self, inputs: dict[str, tp.Any]) -> tp.Any:
        pixels = inputs["pixel_values"]
        batch, frames, channels, height, width = pixels.shape
        vision = self.model.vision_model(
            pixel_values=pixels.reshape(-1, channels, height, width), output_hidden_states=True
        )
        if self.layer_type != "mit":
            return vision
        # transformers 5 drops the multi-frame integration transformer's hidden states: record them
        encoder = self.model.mit.encoder
        captured: list[torch.Tensor] = []

        def on_input(_m: tp.Any, _a: tp.Any, kwargs: dict[str, tp.Any]) -> None:
            captured.append(kwargs["inputs_embeds"])

        def on_layer(_m: tp.Any, _a: tp.Any, out: tp.Any) -> None:
            captured.append(out[0] if isinstance(out, tuple) else out)

        hooks = [encoder.register_forward_pre_hook(on_input, with_kwargs=True)]
        hooks += [layer.register_forward_hook(on_layer) for layer in encoder.layers]
        try:
            self.model.mit(self.model.visual_projection(vision[1]).view(batch, frames, -1))
        finally:
            for hook in hooks:
                hook.remove()
        return captured

    def read_states(self, output: tp.Any, batch: int) -> torch.Tensor:
        if self.layer_type == "mit":
            return _stack_layers(output, "X-CLIP mit")
        states = _stack_layers(output.hidden_states, "X-CLIP vision")
        frames = states.shape[0] // batch
        return states.reshape(batch, frames, *states.shape[1:])[:, -1]


class LlavaNextVideoAdapter(Adapter):
    """LLaVA-NeXT-Video: the language model's states for a prompt holding ``<video>``."""

    family = "llava_next_video"
    input_field = "videos"

    def model_class(self) -> tp.Any:
        from transformers import LlavaNextVideoForConditionalGeneration

        return LlavaNextVideoForConditionalGeneration

    def processor_class(self) -> tp.Any:
        from transformers import LlavaNextVideoProcessor

        return LlavaNextVideoProcessor

    def processor_inputs(self, clips: list[Clip], audio: list[np.ndarray] | None) -> dict[str, tp.Any]:
        return {
            "videos": [np.stack(c) for c in clips],
            "text": [self.layer_type] * len(clips),
            "return_tensors": "pt",
        }


class Phi4MultimodalAdapter(Adapter):
    """Phi-4 multimodal: frames as images in a chat prompt, optionally with the clip's audio.

    transformers' own processor names its placeholders (``image_token``, ``audio_token``) and takes mono
    16 kHz audio; the hub's remote-code processor (the reference's) takes ``<|image_i|>`` placeholders and
    ``(samples, rate)`` pairs. Each expands a placeholder into the image's tokens."""

    family = "phi4_multimodal"
    max_batch = 1

    @property
    def audio_rate(self) -> int:
        """The rate the clip's audio is decoded at: the feature extractor's own, else the reference's."""
        extractor = getattr(self.processor, "audio_processor", None)
        return int(getattr(extractor, "sampling_rate", 44_100))

    def model_class(self) -> tp.Any:
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM

    def model_kwargs(self) -> dict[str, tp.Any]:
        return {**super().model_kwargs(), "attn_implementation": "eager"}

    def processor_inputs(self, clips: list[Clip], audio: list[np.ndarray] | None) -> dict[str, tp.Any]:
        from PIL import Image

        (clip,) = clips
        native = getattr(self.processor, "image_token", None)
        images = "".join(native or f"<|image_{i}|>" for i in range(1, len(clip) + 1))
        kwargs: dict[str, tp.Any] = {"images": [Image.fromarray(f) for f in clip], "return_tensors": "pt"}
        prompt = "<|user|>" + images
        if audio is not None:
            if native:
                kwargs.update(audio=[audio[0].mean(-1)], sampling_rate=self.audio_rate)
                prompt += self.processor.audio_token
            else:
                kwargs["audios"] = [(audio[0], self.audio_rate)]
                prompt += "<|audio_1|>"
        kwargs["text"] = prompt + "<|end|><|assistant|>"
        return kwargs


class ImageAdapter(Adapter):
    """Image models (ViT, DINOv2, ...): one frame per output step, as float tensors in [0, 1]."""

    family = "image"
    do_rescale = False
    feeds_tensors = False  # processor_inputs makes float tensors in [0, 1] itself

    def processor_inputs(self, clips: list[Clip], audio: list[np.ndarray] | None) -> dict[str, tp.Any]:
        images = [torch.as_tensor(c[0]).permute(2, 0, 1).contiguous().float().div(255) for c in clips]
        return {"images": images, "return_tensors": "pt"}

    def frame_input(self, frame: np.ndarray) -> torch.Tensor:
        """Float in [0, 1] (the reference's ``do_rescale=False`` input), channels-last as decoded."""
        return frame_tensor(frame).float().div(255)


class CLIPAdapter(ImageAdapter):
    """CLIP: its vision tower alone (the full model would ask for text)."""

    family = "clip"

    def run(self, inputs: dict[str, tp.Any]) -> tp.Any:
        return self.model.vision_model(**inputs, output_hidden_states=True)


ADAPTERS: dict[str, type[Adapter]] = {
    cls.family: cls
    for cls in (
        VideoMAEAdapter,
        TimesformerAdapter,
        VivitAdapter,
        VJEPA2Adapter,
        XCLIPAdapter,
        LlavaNextVideoAdapter,
        Phi4MultimodalAdapter,
        ImageAdapter,
        CLIPAdapter,
    )
}


def adapter_class(name: str) -> type[Adapter]:
    """The adapter of family ``name`` (an unknown family is an error that lists the known ones)."""
    family(name)
    return ADAPTERS[name]
