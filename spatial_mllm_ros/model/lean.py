"""A decoder forward that computes, in its last layer, only what anything reads.

A question batch reads the logits of a few positions (each question's last token) and the keys and values
of every position (the KV cache the open answers continue from). The last decoder layer's query, attention
output and MLP of every other position feed nothing, and they are most of that layer's work: about a fifth
of the tokens' cost in a 4-layer model. The frames' prefix reads no logits at all, so its last layer only
writes the cache. The earlier layers run as the model's own modules; the last one is taken apart here.

Applies to Qwen2 and Llama decoder layers (InternVL's language models) with full attention under an
attention kernel that takes an additive mask; anything else runs the model's own forward (`lean_stack`
returns None and says why).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

MASKED_ATTENTION = frozenset({"sdpa", "eager"})  # attention kernels that take an arbitrary additive mask
# Decoder layers whose forward is exactly: RMSNorm, q/k/v projections with 1-D rotary positions, attention,
# o_proj, residual, RMSNorm, MLP, residual (what LeanStack._last re-composes from their modules).
LEAN_LAYERS = frozenset({"Qwen2DecoderLayer", "LlamaDecoderLayer"})


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary positions on (batch, heads, seq, dim) with (batch, seq, dim) tables (the half-split form)."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos[:, None] + rotated * sin[:, None]


def _why_not(model: Any) -> str | None:
    """Return why the lean forward does not apply to `model`, or None where it does."""
    text = getattr(getattr(model, "model", None), "language_model", None)
    if text is None or getattr(model, "lm_head", None) is None:
        return "no model.language_model / lm_head"
    kinds = {type(layer).__name__ for layer in getattr(text, "layers", ())}
    if not kinds or not kinds <= LEAN_LAYERS:
        return f"decoder layers {', '.join(sorted(kinds)) or 'none'} (lean: {', '.join(sorted(LEAN_LAYERS))})"
    config = text.config
    if any(t != "full_attention" for t in getattr(config, "layer_types", None) or ()):
        return "sliding-window layers"
    if config._attn_implementation not in MASKED_ATTENTION:
        return f"attention kernel {config._attn_implementation} takes no custom mask"
    return None


@dataclass(frozen=True)
class LeanStack:
    """The text decoder of an InternVL-style model, run with a last layer that skips unread work."""

    text: Any  # the decoder: embed_tokens, rotary_emb, layers, norm
    head: Any  # lm_head

    @property
    def _layers(self) -> Any:
        return self.text.layers[: self.text.config.num_hidden_layers]  # as the model's own forward

    def prefill(self, embeds: torch.Tensor, cache: Any) -> None:
        """Run a prompt with no past into `cache`; nothing is read, so the last layer writes K/V only."""
        mask = None  # sdpa: the kernel's own causal path
        if self.text.config._attn_implementation != "sdpa":
            n = embeds.shape[1]
            lowest = torch.finfo(embeds.dtype).min
            mask = torch.full((n, n), lowest, dtype=embeds.dtype, device=embeds.device).triu(1)[None, None]
        self._run(embeds, mask, None, cache, reads=None)

    def read(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        cache: Any,
        reads: Sequence[int],
    ) -> torch.Tensor:
        """Return the logits (len(reads), vocab) at `reads` of a (1, n) token run.

        `mask` is additive, (1, 1, n, past + n); every position's keys and values go into `cache`, as the
        model's own forward puts them.
        """
        hidden = self._run(self.text.embed_tokens(ids), mask, positions, cache, reads=list(reads))
        assert hidden is not None
        return self.head(self.text.norm(hidden))[0]

    def _run(
        self,
        embeds: torch.Tensor,
        mask: torch.Tensor | None,
        positions: torch.Tensor | None,
        cache: Any,
        reads: list[int] | None,
    ) -> torch.Tensor | None:
        if positions is None:  # a prompt from position 0
            positions = torch.arange(embeds.shape[1], device=embeds.device)[None]
        tables = self.text.rotary_emb(embeds, positions)
        hidden = embeds
        for layer in self._layers[:-1]:
            hidden = layer(
                hidden, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True,
                position_embeddings=tables,
            )
        return self._last(hidden, mask, tables, cache, reads)

    def _last(
        self,
        hidden: torch.Tensor,
        mask: torch.Tensor | None,
        tables: tuple[torch.Tensor, torch.Tensor],
        cache: Any,
        reads: list[int] | None,
    ) -> torch.Tensor | None:
        """Run the last layer: keys and values everywhere, the rest at `reads` (nowhere for None)."""
        layer = self._layers[-1]
        attn = layer.self_attn
        x = layer.input_layernorm(hidden)
        cos, sin = tables
        heads = (x.shape[0], x.shape[1], -1, attn.head_dim)
        keys = _rope(attn.k_proj(x).view(heads).transpose(1, 2), cos, sin)
        values = attn.v_proj(x).view(heads).transpose(1, 2)
        keys, values = cache.update(keys, values, attn.layer_idx)
        if reads is None:
            return None
        at = torch.tensor(reads, device=x.device)
        q = attn.q_proj(x[:, at]).view(x.shape[0], len(reads), -1, attn.head_dim).transpose(1, 2)
        q = _rope(q, cos[:, at], sin[:, at])
        if mask is None:
            raise ValueError("reading positions needs the run's attention mask")
        groups = q.shape[1] // keys.shape[1]
        if groups > 1:  # grouped-query attention, as HF's repeat_kv
            keys, values = keys.repeat_interleave(groups, dim=1), values.repeat_interleave(groups, dim=1)
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask[:, :, at], scale=attn.scaling)
        out = attn.o_proj(out.transpose(1, 2).reshape(x.shape[0], len(reads), -1))
        hidden = hidden[:, at] + out
        return hidden + layer.mlp(layer.post_attention_layernorm(hidden))


def lean_stack(model: Any) -> LeanStack | None:
    """Return the model's decoder as a LeanStack, or None (the reason logged) where its layers differ."""
    reason = _why_not(model)
    if reason is not None:
        log.info("question batches run the model's own forward: %s", reason)
        return None
    return LeanStack(model.model.language_model, model.lm_head)
