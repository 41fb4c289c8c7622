"""Token-level prompts in the MultiSPA conversation format for each model family.

The text comes from spatial_mllm_ros.conventions (image lines, task description, question); this module
wraps it in the checkpoint's chat template and expands each `<image>` into the family's image tokens. A
prompt is split into a part shared by every question over the same frames (chat head + image lines) and
a per-question part, so the runtime can encode the frames' tokens once for a batch of questions.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from spatial_mllm_ros.conventions import IMAGE_TOKEN, build_prompt, image_prefix

_SENTINEL = "\x00CONTENT\x00"
FALLBACK_TEMPLATE_HEAD = "<|im_start|>user\n"
FALLBACK_TEMPLATE_TAIL = "<|im_end|>\n<|im_start|>assistant\n"
IMAGE_WRAPPERS: dict[str, tuple[str, str, str]] = {  # family -> (start, context, end) token strings
    "internvl": ("<img>", "<IMG_CONTEXT>", "</img>"),
    "qwen2_5_vl": ("<|vision_start|>", "<|image_pad|>", "<|vision_end|>"),
    "qwen3_vl": ("<|vision_start|>", "<|image_pad|>", "<|vision_end|>"),
}


@dataclass
class EncodedPrompt:
    """Token ids of one question: `shared` (chat head + image lines) then `question` (the rest)."""

    shared: list[int]
    question: list[int]

    @property
    def ids(self) -> list[int]:
        """The whole prompt."""
        return self.shared + self.question


class PromptEncoder:
    """Turns (frames' token counts, task description, question) into token ids for one checkpoint."""

    def __init__(self, tokenizer: Any, family: str) -> None:
        self.tokenizer = tokenizer
        self.family = family
        start, context, end = IMAGE_WRAPPERS[family]
        self.start_id, self.context_id, self.end_id = (self._token_id(t) for t in (start, context, end))
        self.chat_head, self.chat_tail = self._chat_parts()
        # A batch asks several questions over the same frames, a node or annotator the same questions
        # over new frames: tokenizing each part once saves a tokenizer call per part and question.
        self._shared = functools.lru_cache(maxsize=64)(self._shared_ids)
        self._question = functools.lru_cache(maxsize=1024)(self._question_ids)
        self._special = [t for t in getattr(tokenizer, "all_special_tokens", []) if t] + [
            start,
            context,
            end,
            IMAGE_TOKEN,
            "<|im_start|>",
            "<|im_end|>",
        ]

    def _token_id(self, token: str) -> int:
        tid = self.tokenizer.convert_tokens_to_ids(token)
        if tid is None or tid == getattr(self.tokenizer, "unk_token_id", None):
            raise ValueError(f"tokenizer has no {token!r} token needed by the {self.family} family")
        return int(tid)

    def _chat_parts(self) -> tuple[str, str]:
        """Split the chat template around a user message (the assistant turn left open)."""
        if getattr(self.tokenizer, "chat_template", None):
            try:
                text = self.tokenizer.apply_chat_template(
                    [{"role": "user", "content": _SENTINEL}],
                    tokenize=False,
                    add_generation_prompt=True,
                )
                head, tail = text.split(_SENTINEL)
                return head, tail
            except Exception:  # a template that cannot take plain-string content: use the ChatML layout
                pass
        return FALLBACK_TEMPLATE_HEAD, FALLBACK_TEMPLATE_TAIL

    def clean(self, text: str) -> str:
        """Remove special-token strings from user text so a question cannot forge image tokens."""
        for token in self._special:
            text = text.replace(token, "")
        return text.strip()

    def _text(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    def image_ids(self, n_tokens: int) -> list[int]:
        """Return the token ids one image occupies: start, n_tokens context tokens, end."""
        return [self.start_id] + [self.context_id] * n_tokens + [self.end_id]

    def encode(
        self, image_tokens: list[int], description: str, question: str, answer_prefix: str = ""
    ) -> EncodedPrompt:
        """Encode one question over frames whose images take image_tokens[k] context tokens each."""
        shared = self._shared(tuple(image_tokens))
        rest = self._question(len(image_tokens), description, question, answer_prefix)
        return EncodedPrompt(list(shared), list(rest))

    def _shared_ids(self, image_tokens: tuple[int, ...]) -> tuple[int, ...]:
        shared = self._text(self.chat_head)
        lines = image_prefix(len(image_tokens)).split(IMAGE_TOKEN)
        for k, n in enumerate(image_tokens):
            shared += self._text(lines[k]) + self.image_ids(n)
        return tuple(shared)

    def _question_ids(
        self, n_images: int, description: str, question: str, answer_prefix: str
    ) -> tuple[int, ...]:
        tail_text = image_prefix(n_images).split(IMAGE_TOKEN)[-1] if n_images else ""
        body = build_prompt(0, self.clean(description), self.clean(question))
        return tuple(self._text(tail_text + body + self.chat_tail + answer_prefix))

    def encode_training(
        self, image_tokens: list[int], prompt: str, answer: str
    ) -> tuple[list[int], list[int]]:
        """Encode (input_ids, labels) of a full MultiSPA exchange for training.

        `prompt` carries <image> marks; labels are -100 except on the answer and its end-of-turn token.
        """
        parts = prompt.split(IMAGE_TOKEN)
        if len(parts) - 1 != len(image_tokens):
            raise ValueError(
                f"prompt has {len(parts) - 1} {IMAGE_TOKEN} marks for {len(image_tokens)} images"
            )
        ids = self._text(self.chat_head)
        for k, n in enumerate(image_tokens):
            ids += self._text(parts[k]) + self.image_ids(n)
        ids += self._text(parts[-1] + self.chat_tail)
        answer_ids = self._text(answer) + [int(self.tokenizer.eos_token_id)]
        return ids + answer_ids, [-100] * len(ids) + answer_ids
