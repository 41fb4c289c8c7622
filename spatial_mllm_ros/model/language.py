"""The language half of a question batch: closed-set scoring and greedy generation.

InternVL (1-D rope): the shared prompt part (chat head + every frame's image tokens) is run once into a
KV cache, which is repeated for the batch; each question's own tokens then run as one left-padded batch
whose last-position logits score the closed answer sets; open questions continue greedily from there.
Qwen-VL (3-D rope, deepstack): full rows through the model's own forward/generate with the cached
vision embeddings passed as `mm_encoder_outputs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from spatial_mllm_ros.model.vision import FrameFeatures


@dataclass
class RowRequest:
    """One question of a batch: its own token ids and, for closed sets, each option's token id."""

    question_ids: list[int]
    option_ids: dict[str, int] | None  # option -> first token id after the answer prefix


@dataclass
class RowResult:
    """Generated text (open questions) or option probabilities (closed sets)."""

    text: str = ""
    probabilities: dict[str, float] | None = None
    new_tokens: int = 0


def _left_pad(rows: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
        mask[i, width - len(r) :] = 1
    return ids, mask


def _option_probs(logits: torch.Tensor, options: dict[str, int]) -> dict[str, float]:
    """Softmax over the options' token logits only: probabilities over the closed set sum to 1."""
    names = list(options)
    picked = logits[torch.tensor([options[n] for n in names], device=logits.device)].float()
    probs = torch.softmax(picked, dim=-1).tolist()
    return dict(zip(names, probs))


class LanguageDecoder:
    """Interface: run a batch of questions over the same frames."""

    def __init__(self, model: Any, tokenizer: Any, image_token_id: int) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.image_token_id = image_token_id
        self.pad_id = int(
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )
        eos = model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])
        if tokenizer.eos_token_id is not None:
            eos_ids.add(int(tokenizer.eos_token_id))
        self.eos_ids = eos_ids

    def run(
        self,
        shared_ids: list[int],
        features: Sequence[FrameFeatures],
        rows: Sequence[RowRequest],
        max_new_tokens: int,
    ) -> list[RowResult]:
        """Score or generate every row; vision features are the frames' in prompt order."""
        raise NotImplementedError

    def _decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True).strip()


class PrefixSharedDecoder(LanguageDecoder):
    """InternVL: frames' tokens encoded once into a KV cache shared by the question batch."""

    @torch.inference_mode()
    def run(
        self,
        shared_ids: list[int],
        features: Sequence[FrameFeatures],
        rows: Sequence[RowRequest],
        max_new_tokens: int,
    ) -> list[RowResult]:
        """Prefix once, questions as one batch, then greedy steps for the open ones."""
        from transformers import DynamicCache

        model, device = self.model, self.model.device
        embed = model.get_input_embeddings()
        ids = torch.tensor([shared_ids], device=device)
        embeds = embed(ids)
        image = torch.cat([f.embeds for f in features]).to(device, embeds.dtype) if features else None
        mask = ids[0] == self.image_token_id
        if image is not None:
            if int(mask.sum()) != image.shape[0]:
                raise ValueError(f"prompt has {int(mask.sum())} image tokens for {image.shape[0]} embeddings")
            embeds[0, mask] = image
        cache = DynamicCache(config=model.config.get_text_config())
        prefix_len = len(shared_ids)
        model(inputs_embeds=embeds, cache=cache, use_cache=True, logits_to_keep=1)
        n = len(rows)
        if n > 1:
            cache.batch_repeat_interleave(n)
        q_ids, q_mask = _left_pad([r.question_ids for r in rows], self.pad_id)
        q_ids, q_mask = q_ids.to(device), q_mask.to(device)
        attn = torch.cat([torch.ones((n, prefix_len), dtype=torch.long, device=device), q_mask], dim=1)
        pos = (prefix_len + q_mask.cumsum(-1) - 1).clamp(min=prefix_len)
        out = model(
            input_ids=q_ids,
            attention_mask=attn,
            position_ids=pos,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        last = out.logits[:, -1]
        results = [RowResult() for _ in rows]
        open_rows = []
        for i, r in enumerate(rows):
            if r.option_ids:
                probs = _option_probs(last[i], r.option_ids)
                results[i] = RowResult(max(probs, key=probs.get), probs)
            else:
                open_rows.append(i)
        if not open_rows or max_new_tokens < 1:
            return results
        if len(open_rows) < n:
            cache.batch_select_indices(torch.tensor(open_rows, device=device))
            attn, pos, last = attn[open_rows], pos[open_rows], last[open_rows]
        tokens = self._greedy(cache, attn, pos[:, -1], last, max_new_tokens)
        for i, toks in zip(open_rows, tokens):
            results[i] = RowResult(self._decode(toks), None, len(toks))
        return results

    def _greedy(
        self,
        cache: Any,
        attn: torch.Tensor,
        last_pos: torch.Tensor,
        logits: torch.Tensor,
        max_new_tokens: int,
    ) -> list[list[int]]:
        device = attn.device
        n = attn.shape[0]
        out: list[list[int]] = [[] for _ in range(n)]
        done = torch.zeros(n, dtype=torch.bool, device=device)
        eos = torch.tensor(sorted(self.eos_ids), device=device)
        nxt = logits.argmax(-1)
        for step in range(max_new_tokens):
            is_eos = torch.isin(nxt, eos)
            for i in range(n):
                if not done[i] and not is_eos[i]:
                    out[i].append(int(nxt[i]))
            done |= is_eos
            if bool(done.all()) or step == max_new_tokens - 1:
                break
            nxt = torch.where(done, torch.full_like(nxt, self.pad_id), nxt)
            attn = torch.cat([attn, (~done).long()[:, None]], dim=1)
            last_pos = last_pos + 1
            res = self.model(
                input_ids=nxt[:, None],
                attention_mask=attn,
                position_ids=last_pos[:, None],
                cache=cache,
                use_cache=True,
            )
            nxt = res.logits[:, -1].argmax(-1)
        return out


class FullRowDecoder(LanguageDecoder):
    """Qwen-VL families: each row carries its images; vision embeddings come precomputed."""

    def _encoder_outputs(self, features: Sequence[FrameFeatures], n_rows: int) -> dict[str, Any]:
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        per_row = [f.embeds for f in features] * n_rows
        out = BaseModelOutputWithPooling(pooler_output=tuple(per_row))
        if features and features[0].deepstack is not None:
            layers = len(features[0].deepstack)
            out["deepstack_features"] = [
                tuple(f.deepstack[k] for f in features) * n_rows for k in range(layers)
            ]
        return {"image": out}

    def _inputs(
        self, shared_ids: list[int], features: Sequence[FrameFeatures], rows: Sequence[RowRequest]
    ) -> dict[str, Any]:
        device = self.model.device
        ids, mask = _left_pad([shared_ids + r.question_ids for r in rows], self.pad_id)
        ids, mask = ids.to(device), mask.to(device)
        grid = torch.tensor([f.grid_thw for f in features] * len(rows), device=device)
        return {
            "input_ids": ids,
            "attention_mask": mask,
            "image_grid_thw": grid,
            "mm_token_type_ids": (ids == self.image_token_id).int(),
            "mm_encoder_outputs": self._encoder_outputs(features, len(rows)),
        }

    @torch.inference_mode()
    def run(
        self,
        shared_ids: list[int],
        features: Sequence[FrameFeatures],
        rows: Sequence[RowRequest],
        max_new_tokens: int,
    ) -> list[RowResult]:
        """One forward for the closed-set rows, one generate call for the open rows."""
        results = [RowResult() for _ in rows]
        closed = [i for i, r in enumerate(rows) if r.option_ids]
        open_rows = [i for i, r in enumerate(rows) if not r.option_ids]
        if closed:
            self.model.model.rope_deltas = None
            out = self.model(
                **self._inputs(shared_ids, features, [rows[i] for i in closed]), logits_to_keep=1
            )
            for j, i in enumerate(closed):
                probs = _option_probs(out.logits[j, -1], rows[i].option_ids or {})
                results[i] = RowResult(max(probs, key=probs.get), probs)
        if open_rows:
            self.model.model.rope_deltas = None
            inputs = self._inputs(shared_ids, features, [rows[i] for i in open_rows])
            width = inputs["input_ids"].shape[1]
            gen = self.model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=self.pad_id,
                eos_token_id=sorted(self.eos_ids),
            )
            for j, i in enumerate(open_rows):
                toks = [t for t in gen[j, width:].tolist() if t not in self.eos_ids and t != self.pad_id]
                results[i] = RowResult(self._decode(toks), None, len(toks))
        return results


def make_decoder(family: str, model: Any, tokenizer: Any) -> LanguageDecoder:
    """Pick the decoder strategy for a family."""
    image_token_id = int(model.config.image_token_id)
    if family == "internvl":
        return PrefixSharedDecoder(model, tokenizer, image_token_id)
    return FullRowDecoder(model, tokenizer, image_token_id)
