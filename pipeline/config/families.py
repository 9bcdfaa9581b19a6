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

    def check_layer_type(self, layer_type: str) -> None:
        """Raise ``ValueError`` naming ``layer_type`` when this family cannot take it."""
        self.layer_type_rule(self.name, layer_type)


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("videomae"),
        Family("timesformer"),
        Family("vivit"),
        Family("vjepa2"),
        Family("xclip", layer_type_rule=_xclip_layer_type),
        Family("llava_next_video", framewise=False, layer_type_rule=_llava_prompt),
        Family("phi4_multimodal", uses_audio=True, framewise=False),
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
