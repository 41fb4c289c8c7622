"""Random-initialised models for tests and benchmarks.

Tiny checkpoints of every supported family (with an offline BPE tokenizer trained in-process) and
real-shape models for speed measurements.

Both are built from config objects, never downloaded: the tiny ones save as ordinary offline-loadable
Hugging Face checkpoint directories (safetensors), the real-shape ones stay in memory.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spatial_mllm_ros.conventions import (
    CHOICE_LETTERS,
    DID_NOT_MOVE,
    DIRECTIONS,
    YES_NO,
    QuestionKind,
    build_prompt,
    format_value,
    task_description,
)
from spatial_mllm_ros.model.preprocess import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD

FAMILIES: tuple[str, ...] = ("internvl", "qwen2_5_vl", "qwen3_vl")
ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"

# Special tokens: chat turns, InternVL's image wrappers and context token, Qwen's vision tokens.
CHAT_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
INTERNVL_TOKENS = ("<img>", "</img>", "<IMG_CONTEXT>")
QWEN_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
SPECIAL_TOKENS = CHAT_TOKENS + INTERNVL_TOKENS + QWEN_TOKENS
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def default_checkpoint() -> Path:
    """Return the shipped tiny model's directory (may be missing until the training engineer ships it)."""
    return ASSETS_DIR / "spatialmllm-tiny"


def _training_corpus() -> list[str]:
    """Text the tiny tokenizer is trained on: prompts, answers and the closed-set vocabulary."""
    lines: list[str] = []
    for kind in QuestionKind:
        for n in (1, 2, 3, 4):
            lines.append(build_prompt(n, task_description(kind), "Did the camera move left or right?"))
    for word in DIRECTIONS + YES_NO + CHOICE_LETTERS:
        for _ in range(20):  # frequent enough that each becomes one token
            lines += [word, f"`{word}`", f"The camera shifted `{word}`.", f" {word}"]
    for value in range(0, 1000, 7):
        lines.append(f"The distance is {format_value(QuestionKind.DISTANCE, value)} mm.")
        lines.append(format_value(QuestionKind.COORDINATE, (value, 1000 - value)))
        lines.append(format_value(QuestionKind.VECTOR, (value, -value, value // 2)))
    lines += [DID_NOT_MOVE, "Image-1 Image-2 Image-3 Image-4 millimetres degrees point object gripper cube"]
    lines += ["user assistant system", "0 1 2 3 4 5 6 7 8 9 [ ] , - ."]
    return lines


@functools.lru_cache(maxsize=4)
def _trained_bpe_json(vocab_size: int) -> str:
    """Train the BPE once per process (about a second) and keep its serialised form."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_training_corpus(), trainer=trainer)
    return tok.to_str()


def make_tokenizer(vocab_size: int = 600) -> Any:
    """Build a small byte-level BPE tokenizer trained in-process (no download) with our special tokens."""
    from tokenizers import Tokenizer

    return wrap_tokenizer(Tokenizer.from_str(_trained_bpe_json(vocab_size)))


def wrap_tokenizer(tokenizer_object: Any) -> Any:
    """Give a trained `tokenizers` BPE the special tokens and chat template the runtime's prompts use."""
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer_object,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
        extra_special_tokens={
            "start_image_token": "<img>",
            "end_image_token": "</img>",
            "context_image_token": "<IMG_CONTEXT>",
        },
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


@dataclass(frozen=True)
class TinyShape:
    """Sizes of a tiny random model: small enough for a unit test, the same code paths as a real one."""

    hidden: int = 64
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 128
    vision_hidden: int = 64
    vision_layers: int = 2
    vision_heads: int = 4


def _internvl_config(
    tok: Any, image_size: int, shape: TinyShape, text: dict[str, Any] | None = None, patch: int = 14
) -> Any:
    from transformers import InternVLConfig

    text_config = text or {
        "model_type": "qwen2",
        "hidden_size": shape.hidden,
        "num_hidden_layers": shape.layers,
        "num_attention_heads": shape.heads,
        "num_key_value_heads": shape.kv_heads,
        "intermediate_size": shape.intermediate,
        "vocab_size": len(tok),
        "max_position_embeddings": 32768,
        "tie_word_embeddings": True,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
        "bos_token_id": None,
    }
    vision_config = {
        "hidden_size": shape.vision_hidden,
        "num_hidden_layers": shape.vision_layers,
        "num_attention_heads": shape.vision_heads,
        "intermediate_size": shape.vision_hidden * 4,
        "image_size": [image_size, image_size],
        "patch_size": [patch, patch],
    }
    patches = (image_size // patch) ** 2
    return InternVLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=tok.convert_tokens_to_ids("<IMG_CONTEXT>"),
        image_seq_length=int(patches * 0.25),
        downsample_ratio=0.5,
        tie_word_embeddings=bool(text_config.get("tie_word_embeddings", True)),
    )


def _qwen_config(tok: Any, family: str, shape: TinyShape) -> Any:
    from transformers import Qwen2_5_VLConfig, Qwen3VLConfig

    head_dim = shape.hidden // shape.heads
    half = head_dim // 2  # mrope_section must sum to head_dim / 2
    section = [half - 2 * (half // 3), half // 3, half // 3]
    ids = {
        "image_token_id": tok.convert_tokens_to_ids("<|image_pad|>"),
        "video_token_id": tok.convert_tokens_to_ids("<|video_pad|>"),
        "vision_start_token_id": tok.convert_tokens_to_ids("<|vision_start|>"),
        "vision_end_token_id": tok.convert_tokens_to_ids("<|vision_end|>"),
    }
    text = {
        "hidden_size": shape.hidden,
        "num_hidden_layers": shape.layers,
        "num_attention_heads": shape.heads,
        "num_key_value_heads": shape.kv_heads,
        "intermediate_size": shape.intermediate,
        "vocab_size": len(tok),
        "max_position_embeddings": 32768,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
        "bos_token_id": None,
    }
    if family == "qwen2_5_vl":
        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": section}
        vision = {
            "depth": shape.vision_layers,
            "hidden_size": shape.vision_hidden,
            "num_heads": shape.vision_heads,
            "intermediate_size": shape.vision_hidden * 2,
            "out_hidden_size": shape.hidden,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 56,
            "fullatt_block_indexes": [shape.vision_layers - 1],
        }
        return Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True, **ids)
    text["head_dim"] = head_dim
    text["rope_parameters"] = {
        "rope_type": "default",
        "rope_theta": 5e6,
        "mrope_section": section,
        "mrope_interleaved": True,
    }
    vision = {
        "depth": shape.vision_layers,
        "hidden_size": shape.vision_hidden,
        "num_heads": shape.vision_heads,
        "intermediate_size": shape.vision_hidden * 2,
        "out_hidden_size": shape.hidden,
        "patch_size": 16,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "num_position_embeddings": 64,
        "deepstack_visual_indexes": [0],
    }
    return Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True, **ids)


def _preprocessor_config(family: str, image_size: int, max_tiles: int) -> dict[str, Any]:
    """Describe the image preprocessing facts a checkpoint carries (read back by model.preprocess)."""
    if family == "internvl":
        return {
            "image_processor_type": "GotOcr2ImageProcessor",
            "crop_to_patches": False,
            "min_patches": 1,
            "max_patches": max_tiles,
            "size": {"height": image_size, "width": image_size},
            "image_mean": list(IMAGENET_MEAN),
            "image_std": list(IMAGENET_STD),
            "do_rescale": True,
            "rescale_factor": 1 / 255,
            "do_normalize": True,
            "resample": 3,
        }
    patch = 14 if family == "qwen2_5_vl" else 16
    return {
        "image_processor_type": "Qwen2VLImageProcessor",
        "patch_size": patch,
        "temporal_patch_size": 2,
        "merge_size": 2,
        "min_pixels": (patch * 2) ** 2 * 4,
        "max_pixels": (patch * 2) ** 2 * 64,
        "image_mean": list(CLIP_MEAN),
        "image_std": list(CLIP_STD),
    }


def make_tiny_model(
    out_dir: str | Path,
    family: str = "internvl",
    seed: int = 0,
    image_size: int = 224,
    max_tiles: int = 6,
    shape: TinyShape | None = None,
) -> Path:
    """Save a tiny random model of `family` with its tokenizer to out_dir; loadable offline."""
    import torch
    from transformers import InternVLForConditionalGeneration, Qwen2_5_VLForConditionalGeneration

    if family not in FAMILIES:
        from spatial_mllm_ros.model.errors import UnknownFamilyError

        raise UnknownFamilyError(family, FAMILIES)
    shape = shape or TinyShape()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    tok = make_tokenizer()
    if family == "internvl":
        config = _internvl_config(tok, image_size, shape)
        model: Any = InternVLForConditionalGeneration(config)
    elif family == "qwen2_5_vl":
        model = Qwen2_5_VLForConditionalGeneration(_qwen_config(tok, family, shape))
    else:
        from transformers import Qwen3VLForConditionalGeneration

        model = Qwen3VLForConditionalGeneration(_qwen_config(tok, family, shape))
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    (out / "preprocessor_config.json").write_text(
        json.dumps(_preprocessor_config(family, image_size, max_tiles), indent=2) + "\n",
    )
    return out


# InternViT-300M-448px: the vision tower of both real shapes below.
INTERNVIT_300M: dict[str, Any] = {
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "image_size": [448, 448],
    "patch_size": [14, 14],
}

# Real shapes (public configs of the checkpoints the paper and our node target), random weights.
REAL_SHAPES: dict[str, dict[str, Any]] = {
    "internvl3-1b": {
        "vision": INTERNVIT_300M,
        "text": {
            "model_type": "qwen2",
            "hidden_size": 896,
            "num_hidden_layers": 24,
            "num_attention_heads": 14,
            "num_key_value_heads": 2,
            "intermediate_size": 4864,
            "vocab_size": 151674,
            "max_position_embeddings": 32768,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6},
            "tie_word_embeddings": True,
        },
    },
    "internvl2-8b": {  # InternViT-300M + InternLM2.5-7B (a Llama-shaped decoder)
        "vision": INTERNVIT_300M,
        "text": {
            "model_type": "llama",
            "hidden_size": 4096,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "intermediate_size": 14336,
            "vocab_size": 92553,
            "max_position_embeddings": 32768,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6},
            "tie_word_embeddings": False,
        },
    },
}


def real_shape_config(shape: str, tok: Any) -> Any:
    """InternVL config with the named public model's sizes and our tokenizer's special-token ids."""
    if shape not in REAL_SHAPES:
        raise ValueError(f"unknown shape {shape!r}; choose one of {sorted(REAL_SHAPES)}")
    spec = REAL_SHAPES[shape]
    text = dict(spec["text"], eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None)
    config = _internvl_config(tok, 448, TinyShape(), text=text)
    config.vision_config = type(config.vision_config)(**spec["vision"])
    return config


def make_real_shape_model(
    shape: str = "internvl3-1b",
    device: str = "cpu",
    dtype: Any = None,
    seed: int = 0,
) -> tuple[Any, Any]:
    """Build (model, tokenizer) with random weights in the named model's shape, for timings only.

    Created on the meta device and materialised on `device` with a cheap normal fill, skipping the slow
    default init.
    """
    import torch
    from transformers import InternVLForConditionalGeneration

    dtype = dtype or torch.bfloat16
    tok = make_tokenizer()
    config = real_shape_config(shape, tok)
    with torch.device("meta"):
        model = InternVLForConditionalGeneration(config)
    model = model.to_empty(device=device).to(dtype)
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("lambda_1", "lambda_2")):
                p.fill_(0.1)  # InternViT layer scale
            elif p.ndim == 1:
                p.fill_(1.0 if "norm" in name and name.endswith("weight") else 0.0)
            else:
                p.normal_(0.0, 0.02, generator=gen)
        for module in model.modules():  # rotary tables are computed buffers: rebuild them for real
            if hasattr(module, "inv_freq") and hasattr(module, "config"):
                fresh = type(module)(config=module.config)
                for name, buf in fresh.named_buffers(recurse=False):
                    getattr(module, name).copy_(buf)
    model.tie_weights()
    model.eval()
    return model, tok
