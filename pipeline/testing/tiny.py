"""Tiny randomly-initialised models of each family, built offline from transformers Config classes.

They are saved with ``save_pretrained`` (model and processor) and loaded back through the same
``from_pretrained`` path as hub names, so tests and the demo run the real model code without a hub.
Weights come from a fixed seed: the same folder is rebuilt bit for bit on any machine.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import typing as tp
from pathlib import Path

SEED = 1234
TINY_VERSION = 3
"""Bump when a builder changes: folders built by another version are rebuilt."""
_IMG = 32
_PATCH = 8
_FRAMES = 4
"""Frames per clip of the tiny models; VideoMAE takes 16, as the real one, for the benchmark config."""
_MEAN = [0.45, 0.45, 0.45]
_STD = [0.225, 0.225, 0.225]


def _vit_sizes() -> dict[str, tp.Any]:
    return dict(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
    )


def _clip_tokenizer() -> tuple[tp.Any, int]:
    """CLIP's byte-level alphabet with no merges: the smallest honest stand-in for its vocabulary."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in bytes_to_unicode().values():
        vocab[char] = len(vocab)
        vocab[char + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[]), len(vocab)


def _videomae_processor() -> tp.Any:
    from transformers import VideoMAEImageProcessor

    return VideoMAEImageProcessor(
        size={"shortest_edge": _IMG},
        crop_size={"height": _IMG, "width": _IMG},
        image_mean=_MEAN,
        image_std=_STD,
    )


def _videomae() -> tuple[tp.Any, tp.Any]:
    import transformers as tr

    cfg = tr.VideoMAEConfig(
        image_size=_IMG, patch_size=_PATCH, num_frames=16, tubelet_size=2, use_mean_pooling=False, **_vit_sizes()
    )
    return tr.VideoMAEModel(cfg), _videomae_processor()


def _timesformer() -> tuple[tp.Any, tp.Any]:
    import transformers as tr

    cfg = tr.TimesformerConfig(image_size=_IMG, patch_size=_PATCH, num_frames=_FRAMES, **_vit_sizes())
    return tr.TimesformerModel(cfg), _videomae_processor()


def _vivit() -> tuple[tp.Any, tp.Any]:
    import transformers as tr

    cfg = tr.VivitConfig(image_size=_IMG, num_frames=_FRAMES, tubelet_size=[2, _PATCH, _PATCH], **_vit_sizes())
    proc = tr.VivitImageProcessor(size={"shortest_edge": _IMG}, crop_size={"height": _IMG, "width": _IMG})
    return tr.VivitModel(cfg), proc


def _vjepa2() -> tuple[tp.Any, tp.Any]:
    import transformers as tr

    cfg = tr.VJEPA2Config(
        crop_size=_IMG,
        frames_per_clip=_FRAMES,
        patch_size=_PATCH,
        tubelet_size=2,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        mlp_ratio=2.0,
        pred_hidden_size=16,
        pred_num_hidden_layers=1,
        pred_num_attention_heads=2,
        pred_num_mask_tokens=2,
    )
    proc = tr.VJEPA2VideoProcessor(size={"shortest_edge": _IMG + 4}, crop_size={"height": _IMG, "width": _IMG})
    return tr.VJEPA2Model(cfg), proc


def _text_config(vocab_size: int) -> dict[str, tp.Any]:
    return dict(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=16,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )


def _xclip() -> tuple[tp.Any, tp.Any]:
    import transformers as tr

    tokenizer, vocab_size = _clip_tokenizer()
    cfg = tr.XCLIPConfig(
        text_config=_text_config(vocab_size),
        vision_config=dict(
            image_size=_IMG,
            patch_size=_PATCH,
            num_frames=_FRAMES,
            mit_hidden_size=32,
            mit_intermediate_size=64,
            mit_num_hidden_layers=2,
            mit_num_attention_heads=2,
            **_vit_sizes(),
        ),
        projection_dim=32,
        prompt_layers=1,
        prompt_num_attention_heads=2,
        prompt_attention_dropout=0.0,
        prompt_projection_dropout=0.0,
    )
    return tr.XCLIPModel(cfg), tr.XCLIPProcessor(image_processor=_videomae_processor(), tokenizer=tokenizer)


def _vit() -> tuple[tp.Any, tp.Any]:
    import transformers as tr

    cfg = tr.ViTConfig(image_size=_IMG, patch_size=_PATCH, **_vit_sizes())
    return tr.ViTModel(cfg), tr.ViTImageProcessor(size={"height": _IMG, "width": _IMG})


def _clip() -> tuple[tp.Any, tp.Any]:
    import transformers as tr

    tokenizer, vocab_size = _clip_tokenizer()
    cfg = tr.CLIPConfig(
        text_config=_text_config(vocab_size),
        vision_config=dict(image_size=_IMG, patch_size=_PATCH, **_vit_sizes()),
        projection_dim=32,
    )
    images = tr.CLIPImageProcessor(size={"shortest_edge": _IMG}, crop_size={"height": _IMG, "width": _IMG})
    return tr.CLIPModel(cfg), tr.CLIPProcessor(image_processor=images, tokenizer=tokenizer)


def _dinov2() -> tuple[tp.Any, tp.Any]:
    import transformers as tr

    cfg = tr.Dinov2Config(image_size=_IMG, patch_size=_PATCH, **_vit_sizes())
    proc = tr.BitImageProcessor(size={"shortest_edge": _IMG}, crop_size={"height": _IMG, "width": _IMG})
    return tr.Dinov2Model(cfg), proc


def _byte_tokenizer(special: list[str], named: dict[str, str] | None = None) -> tuple[tp.Any, int]:
    """A byte-level BPE tokenizer with no merges and the given special tokens (ids 0..): the smallest
    honest stand-in for a language model's vocabulary file, built offline. ``named`` gives some of them
    names the processor looks up (``image_token``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {token: i for i, token in enumerate(special)}
    for char in bytes_to_unicode().values():
        vocab.setdefault(char, len(vocab))
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=special[0]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token=special[0],
        bos_token=special[1],
        eos_token=special[2],
        pad_token=special[2],
        additional_special_tokens=special[3:],
        model_specific_special_tokens=named or {},
    )
    return tokenizer, len(vocab)


def _llava_next_video() -> tuple[tp.Any, tp.Any]:
    import transformers as tr

    tokenizer, vocab_size = _byte_tokenizer(["<unk>", "<s>", "</s>", "<video>", "<image>"])
    vision = dict(model_type="clip_vision_model", image_size=_IMG, patch_size=_PATCH, projection_dim=32, **_vit_sizes())
    text = dict(model_type="llama", num_key_value_heads=2, **_text_config(vocab_size))
    text.update(max_position_embeddings=512, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    cfg = tr.LlavaNextVideoConfig(
        vision_config=vision,
        text_config=text,
        video_token_index=3,
        image_token_index=4,
        image_grid_pinpoints=[[_IMG, _IMG]],
        spatial_pool_stride=2,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    size = {"shortest_edge": _IMG}
    crop = {"height": _IMG, "width": _IMG}
    proc = tr.LlavaNextVideoProcessor(
        video_processor=tr.LlavaNextVideoVideoProcessor(size=size, crop_size=crop),
        image_processor=tr.LlavaNextImageProcessor(size=size, crop_size=crop, image_grid_pinpoints=[[_IMG, _IMG]]),
        tokenizer=tokenizer,
        patch_size=_PATCH,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    return tr.LlavaNextVideoForConditionalGeneration(cfg), proc


def _phi4_multimodal() -> tuple[tp.Any, tp.Any]:
    """Phi-4 multimodal in transformers' own classes. Its image processor counts 273 tokens per
    448-pixel crop, so the vision tower keeps the real crop (448, 14-pixel patches), only narrow."""
    import transformers as tr

    special = ["<unk>", "<|endoftext|>", "<|end|>", "<|image|>", "<|audio|>", "<|user|>", "<|assistant|>"]
    tokenizer, vocab_size = _byte_tokenizer(special, {"image_token": "<|image|>", "audio_token": "<|audio|>"})
    small: dict[str, tp.Any] = dict(hidden_size=32, intermediate_size=64, num_attention_heads=2)
    cfg = tr.Phi4MultimodalConfig(
        vocab_size=vocab_size,
        num_hidden_layers=2,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        original_max_position_embeddings=8192,
        bos_token_id=1,
        eos_token_id=1,
        pad_token_id=1,
        vision_config=dict(
            num_hidden_layers=2, image_size=448, patch_size=14, crop_size=448, image_token_id=3, **small
        ),
        audio_config=dict(
            num_blocks=2,
            ext_pw_out_channel=32,
            depthwise_separable_out_channel=32,
            nemo_conv_channels=32,
            audio_token_id=4,
            **small,
        ),
        **small,
    )
    proc = tr.Phi4MultimodalProcessor(
        image_processor=tr.Phi4MultimodalImageProcessor(dynamic_hd=1, patch_size=14),
        audio_processor=tr.Phi4MultimodalFeatureExtractor(),
        tokenizer=tokenizer,
    )
    return tr.Phi4MultimodalForCausalLM(cfg), proc


BUILDERS: dict[str, tp.Callable[[], tuple[tp.Any, tp.Any]]] = {
    "videomae": _videomae,
    "timesformer": _timesformer,
    "vivit": _vivit,
    "vjepa2": _vjepa2,
    "xclip": _xclip,
    "llava_next_video": _llava_next_video,
    "phi4_multimodal": _phi4_multimodal,
    "vit": _vit,
    "clip": _clip,
    "dinov2": _dinov2,
}


TINY_FAMILIES = tuple(BUILDERS)


def ensure_tiny_model(family: str, models_dir: str | Path) -> Path:
    """Build ``tiny-<family>`` under ``models_dir`` once; later calls return the existing folder."""
    target = Path(models_dir) / f"tiny-{family}"
    stamp = target / "pipeline_tiny.json"
    if stamp.exists() and json.loads(stamp.read_text()).get("version") == TINY_VERSION:
        return target
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".tiny-{family}-") as tmp:
        stage = Path(tmp) / "model"
        import torch  # only when building: a launch of a model already built imports none of it

        torch.manual_seed(SEED)
        if family not in BUILDERS:
            raise ValueError(f"no tiny model for {family!r} (known: {', '.join(BUILDERS)})")
        model, processor = BUILDERS[family]()
        model.save_pretrained(stage)
        processor.save_pretrained(stage)
        (stage / "pipeline_tiny.json").write_text(json.dumps({"version": TINY_VERSION, "seed": SEED}))
        try:
            os.rename(stage, target)
        except OSError:
            if not stamp.exists():
                raise
    return target
