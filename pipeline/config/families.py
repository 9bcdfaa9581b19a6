"""What each model family is, as the configuration needs to know it: no torch, no weights.

The adapters (``pipeline.embedding.adapters``) implement the families; the traits that decide which
config fields a family uses, and so which fields enter its config UID, live here alone.
"""

from __future__ import annotations

import dataclasses
import typing as tp


def _no_layer_type(family: str, layer_type: str) -> None:
    if layer_type:
        raise ValueError(f"layer_type: the {family} family has no layer type (got {layer_type!r})")


def _xclip_layer_type(family: str, layer_type: str) -> None:
    if layer_type not in ("", "mit"):
        raise ValueError(f"layer_type: X-CLIP accepts '' or 'mit' (got {layer_type!r})")


def _llava_prompt(family: str, layer_type: str) -> None:
    if "<video>" not in layer_type:
        raise ValueError(
            "layer_type: LLaVA-NeXT-Video needs a prompt containing the <video> token, "
            f"e.g. 'USER: <video> ASSISTANT:' (got {layer_type!r})"
        )


@dataclasses.dataclass(frozen=True)
class Family:
    name: str
    is_video: bool = True
    """Clips of frames per output step (False: image models, one frame per step)."""
    uses_audio: bool = False
    """The model can take each clip's audio (``use_audio``)."""
    framewise: bool = True
    """The processor treats frames independently: each decoded frame can be preprocessed once and the
    clips assembled from the results (``tests/embedding/test_families.py`` checks equality per family)."""
    layer_type_rule: tp.Callable[[str, str], None] = _no_layer_type
    reference_max_frames: int | None = None
    """The reference's fixed frame limit for families whose config states none (V-JEPA 2, LLaVA, Phi-4)."""
    any_frame_count: str = ""
    """Set (to why) for families that take any count up to the most; the others take exactly it."""
    tubelets: bool = False
    """Fixed position embeddings over tubelets of ``tubelet_size`` frames (VideoMAE, ViViT): a clip must make
    exactly the configured number of tubelets."""

    def check_layer_type(self, layer_type: str) -> None:
        """Raise ``ValueError`` naming ``layer_type`` when this family cannot take it."""
        self.layer_type_rule(self.name, layer_type)

    def max_frames(self, hf_config: tp.Any) -> int:
        """Most frames per clip the model accepts (its configured ``num_frames``), the default count."""
        if self.reference_max_frames is not None:
            return self.reference_max_frames
        config = getattr(hf_config, "vision_config", None) or hf_config
        return int(config.num_frames)

    def frame_range(self, hf_config: tp.Any) -> tuple[int, int, str]:
        """Fewest and most frames per clip the model takes, and why: by default exactly its configured
        count (TimeSformer regroups its tokens by the configured count, X-CLIP's frame position
        embeddings are fixed: another count fails or silently mixes tokens)."""
        most = self.max_frames(hf_config)
        if self.tubelets:
            tubelet = getattr(hf_config, "tubelet_size", 1)
            tubelet = int(tubelet[0] if isinstance(tubelet, (list, tuple)) else tubelet)
            return most // tubelet * tubelet, most, f"its position embeddings are fixed ({tubelet}-frame tubelets)"
        if self.any_frame_count:
            return 1, most, f"{self.any_frame_count}; the reference allows at most {most}"
        return most, most, "it groups its tokens by its configured frame count"


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("videomae", tubelets=True),
        Family("timesformer"),
        Family("vivit", tubelets=True),
        Family("vjepa2", reference_max_frames=64, any_frame_count="its rotary position embeddings take any count"),
        Family("xclip", layer_type_rule=_xclip_layer_type),
        Family(
            "llava_next_video",
            framewise=False,
            layer_type_rule=_llava_prompt,
            reference_max_frames=16,
            any_frame_count="its language model takes any count of frame tokens",
        ),
        Family(
            "phi4_multimodal",
            uses_audio=True,
            framewise=False,
            reference_max_frames=4,
            any_frame_count="each frame is one image of the prompt",
        ),
        Family("image", is_video=False),
        Family("clip", is_video=False),
    )
}


def family(name: str) -> Family:
    """The family called ``name``; an unknown one is an error that lists the known ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        known = ", ".join(sorted(FAMILIES))
        raise ValueError(f"model.family: unknown family {name!r} (known: {known})") from None
