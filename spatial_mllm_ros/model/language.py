"""The language half of a question batch: closed-set scoring, greedy generation, integer digit trees.

InternVL (1-D rope): the shared prompt part (chat head + every frame's image tokens) is run once into a
KV cache; the questions' own tokens then run in one forward as a token tree (the tokens questions start
with run once; question_tree.py), or as a left-padded batch over copies of that cache where the attention
kernel takes no custom mask. The last-position logits score the closed answer sets; open questions
continue greedily from there, and integer answers (distances, depths) through a pruned digit tree that
gives their value distribution.
Qwen-VL (3-D rope, deepstack): full rows through the model's own forward/generate with the cached
vision embeddings passed as `mm_encoder_outputs`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import torch

from spatial_mllm_ros.model.lean import MASKED_ATTENTION, LeanStack, lean_stack
from spatial_mllm_ros.model.question_tree import QuestionTree
from spatial_mllm_ros.model.vision import FrameFeatures

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NumberSpec:
    """How integer answers are spelt after the answer prefix (a token per digit, then `end`) and searched."""

    digits: tuple[int, ...]  # ids of "0".."9"
    end: int  # the closing token (the backtick)
    beam: int = 16  # digit prefixes followed per question and level


@dataclass
class RowRequest:
    """One question of a batch: its own token ids and, for closed sets, each option's token id."""

    question_ids: list[int]
    option_ids: dict[str, int] | None  # option -> first token id after the answer prefix
    number: NumberSpec | None = None  # set: score the integer answer's whole value distribution


@dataclass
class RowResult:
    """Generated text (open questions), option probabilities (closed sets) or a value distribution."""

    text: str = ""
    probabilities: dict[str, float] | None = None
    new_tokens: int = 0
    values: dict[int, float] | None = None  # integer answers: value -> probability (the likely ones)
    number_mass: float | None = None  # integer answers: probability that the answer starts with a digit


MAX_DIGITS = 5  # integers up to 99999 (mm: 100 m)
MIN_PREFIX_LOGP = math.log(1e-4)  # digit prefixes less likely than this are not followed


@dataclass
class _Tally:
    """One integer row's value distribution as its digit tree grows."""

    values: dict[int, float] = field(default_factory=dict)
    mass: float = 0.0  # probability that the answer is a number at all (its first digit)
    # (probability, value) of the last level's unfollowed prefixes
    pruned: list[tuple[float, int]] = field(default_factory=list)
    ended: float = 0.0  # this level: probability of the followed prefixes that end here
    reached: float = 0.0  # this level: probability of all followed prefixes

    def settle(self) -> None:
        """Give the level's unfollowed prefixes the ending rate of their followed siblings.

        A prefix the beam drops is still a likely value of its own (a distance of 3 digits rarely
        goes on to a fourth); counting it keeps the distribution whole with a narrow beam.
        """
        if self.pruned and self.reached > 0:
            rate = self.ended / self.reached
            for p, v in self.pruned:
                self.values[v] = p * rate
        self.pruned, self.ended, self.reached = [], 0.0, 0.0


@dataclass
class _Live:
    """A row still decoding: a greedy answer's tokens so far, or one digit prefix of an integer answer."""

    row: int
    tokens: list[int]
    logp: float = 0.0  # integer answers: log-probability of the digit prefix


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

    scores_numbers = False  # whether rows with a NumberSpec get a value distribution (else greedy)

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
    """InternVL: frames' tokens encoded once into a KV cache shared by the question batch.

    The questions then run as a token tree (QuestionTree: tokens they start with run once) where the
    attention kernel takes a custom mask, else as a left-padded batch over copies of the prefix cache.
    With the tree, prefix and tree run through a last layer that skips the work nothing reads (lean.py)
    where the decoder's layers allow it; the padded batch is the model's own forward throughout.
    """

    scores_numbers = True

    def __init__(self, model: Any, tokenizer: Any, image_token_id: int, tree: bool = True) -> None:
        super().__init__(model, tokenizer, image_token_id)
        self.tree = tree
        self.lean: LeanStack | None = lean_stack(model) if tree else None

    @torch.inference_mode()
    def run(
        self,
        shared_ids: list[int],
        features: Sequence[FrameFeatures],
        rows: Sequence[RowRequest],
        max_new_tokens: int,
    ) -> list[RowResult]:
        """Prefix once, questions as one tree (or padded batch), then greedy steps for the open ones."""
        cache = self._prefix(shared_ids, features)
        open_rows = [i for i, r in enumerate(rows) if not r.option_ids]
        step = self._tree_step if self.tree else self._padded_step
        last, attn, last_pos = step(cache, len(shared_ids), rows, open_rows)
        results = [RowResult() for _ in rows]
        for i, r in enumerate(rows):
            if r.option_ids:
                probs = _option_probs(last[i], r.option_ids)
                results[i] = RowResult(max(probs, key=probs.get), probs)
        if open_rows and max_new_tokens >= 1:
            live = [_Live(i, []) for i in open_rows]
            self._continue(rows, results, live, cache, attn, last_pos, last[open_rows], max_new_tokens)
        return results

    def _prefix(self, shared_ids: list[int], features: Sequence[FrameFeatures]) -> Any:
        """Run the chat head and the frames' image tokens once into a fresh KV cache (batch of one)."""
        from transformers import DynamicCache

        model, device = self.model, self.model.device
        ids = torch.tensor([shared_ids], device=device)
        embeds = model.get_input_embeddings()(ids)
        mask = ids[0] == self.image_token_id
        if features:
            image = torch.cat([f.embeds for f in features]).to(device, embeds.dtype)
            if int(mask.sum()) != image.shape[0]:
                raise ValueError(f"prompt has {int(mask.sum())} image tokens for {image.shape[0]} embeddings")
            embeds[0, mask] = image
        cache = DynamicCache(config=model.config.get_text_config())
        if self.lean is not None:
            self.lean.prefill(embeds, cache)
        else:
            model(inputs_embeds=embeds, cache=cache, use_cache=True, logits_to_keep=1)
        return cache

    def _tree_step(
        self, cache: Any, prefix_len: int, rows: Sequence[RowRequest], open_rows: list[int]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every row's last logits from one forward over the question tree.

        Returns (logits per row, then for the open rows: attention mask and last position), the cache
        re-laid as one left-padded batch row per open row for the greedy steps.
        """
        device = self.model.device
        tree = QuestionTree.build([r.question_ids for r in rows])
        ids = torch.tensor([tree.tokens], device=device)
        mask = tree.attention_mask(prefix_len, self.model.dtype).to(device)
        positions = tree.positions(prefix_len).to(device)
        if self.lean is not None:
            last = self.lean.read(ids, mask, positions, cache, tree.ends)
        else:
            last = self.model(
                input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True,
                logits_to_keep=torch.tensor(tree.ends, device=device),
            ).logits[0]
        if not open_rows:  # nothing goes on generating: no batch layout to build
            return last, torch.empty((0, 0), dtype=torch.long), torch.empty(0, dtype=torch.long)
        index, attn = tree.row_layout(open_rows, prefix_len)
        index = index.to(device)
        for layer in cache.layers:  # (1, heads, prefix + nodes, dim) -> (open rows, heads, width, dim)
            layer.keys = layer.keys[0][:, index].transpose(0, 1).contiguous()
            layer.values = layer.values[0][:, index].transpose(0, 1).contiguous()
        last_pos = torch.tensor([prefix_len + tree.depths[tree.ends[i]] for i in open_rows], device=device)
        return last, attn.to(device), last_pos

    def _padded_step(
        self, cache: Any, prefix_len: int, rows: Sequence[RowRequest], open_rows: list[int]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every row's last logits from one left-padded batch over copies of the prefix cache.

        Returns what _tree_step does, the cache kept for the open rows only.
        """
        device, n = self.model.device, len(rows)
        if n > 1:
            cache.batch_repeat_interleave(n)
        q_ids, q_mask = _left_pad([r.question_ids for r in rows], self.pad_id)
        q_ids, q_mask = q_ids.to(device), q_mask.to(device)
        attn = torch.cat([torch.ones((n, prefix_len), dtype=torch.long, device=device), q_mask], dim=1)
        pos = (prefix_len + q_mask.cumsum(-1) - 1).clamp(min=prefix_len)
        out = self.model(
            input_ids=q_ids,
            attention_mask=attn,
            position_ids=pos,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        if open_rows and len(open_rows) < n:
            idx = torch.tensor(open_rows, device=device)
            cache.reorder_cache(idx)
            attn, pos = attn[idx], pos[idx]
        return out.logits[:, -1], attn, pos[:, -1]

    def _continue(
        self,
        rows: Sequence[RowRequest],
        results: list[RowResult],
        live: list[_Live],
        cache: Any,
        attn: torch.Tensor,
        last_pos: torch.Tensor,
        logits: torch.Tensor,
        max_new_tokens: int,
    ) -> None:
        """Greedy steps for open rows and a pruned digit tree for integer rows, one batch per step.

        An integer row follows its `beam` likeliest digit prefixes per level (none under 1e-4); each
        followed prefix also ends there (the closing token), which gives that value's probability, and
        the unfollowed ones are counted at their siblings' ending rate (_Tally). Rows leave the batch
        when they finish, and the KV cache follows every row's parent. `cache`, `attn`, `last_pos` and
        `logits` hold the live rows, in their order.
        """
        device = attn.device
        tallies = {c.row: _Tally() for c in live if rows[c.row].number}
        while live:
            live, parent, tokens = self._branch(rows, results, live, logits, tallies, max_new_tokens)
            if not live:
                break
            idx = torch.tensor(parent, device=device)
            cache.reorder_cache(idx)
            attn = torch.cat([attn[idx], torch.ones((len(live), 1), dtype=attn.dtype, device=device)], 1)
            last_pos = last_pos[idx] + 1
            out = self.model(
                input_ids=torch.tensor(tokens, device=device)[:, None],
                attention_mask=attn,
                position_ids=last_pos[:, None],
                cache=cache,
                use_cache=True,
            )
            logits = out.logits[:, -1]
        for row, tally in tallies.items():
            digits = len(str(max(tally.values, default=0)))
            results[row] = RowResult(values=tally.values, number_mass=tally.mass, new_tokens=digits + 1)

    def _branch(
        self,
        rows: Sequence[RowRequest],
        results: list[RowResult],
        live: list[_Live],
        logits: torch.Tensor,
        tallies: dict[int, _Tally],
        max_new_tokens: int,
    ) -> tuple[list[_Live], list[int], list[int]]:
        """One step: finish or extend greedy rows; end every digit prefix and keep the likeliest ones.

        Returns the rows that go on, the index of each one's parent row, and the token each one is fed.
        """
        logp = torch.log_softmax(logits.float(), -1)
        best = logits.argmax(-1).tolist()
        nxt: list[_Live] = []
        parent: list[int] = []
        tokens: list[int] = []
        branches: dict[int, list[tuple[float, int, int]]] = {}
        for j, cur in enumerate(live):
            number = rows[cur.row].number
            if number is None:
                tok = best[j]
                if tok not in self.eos_ids:
                    cur.tokens.append(tok)
                if tok in self.eos_ids or len(cur.tokens) >= max_new_tokens:
                    results[cur.row] = RowResult(self._decode(cur.tokens), None, len(cur.tokens))
                else:
                    nxt.append(cur)
                    parent.append(j)
                    tokens.append(tok)
                continue
            lp = logp[j, [*number.digits, number.end]].tolist()
            if not cur.tokens:
                tallies[cur.row].mass = sum(math.exp(x) for x in lp[:-1])
            else:
                tally, ends = tallies[cur.row], math.exp(cur.logp + lp[-1])
                tally.values[_number(cur.tokens, number)] = ends
                tally.ended, tally.reached = tally.ended + ends, tally.reached + math.exp(cur.logp)
            if cur.tokens[:1] == [number.digits[0]] or len(cur.tokens) >= MAX_DIGITS:
                continue  # "0" is a whole number: no leading zeros
            for d, tid in enumerate(number.digits):
                branches.setdefault(cur.row, []).append((cur.logp + lp[d], j, tid))
        for tally in tallies.values():
            tally.settle()
        for row, options in branches.items():
            number = cast(NumberSpec, rows[row].number)  # only integer rows branch
            likely = [o for o in sorted(options, reverse=True) if o[0] >= MIN_PREFIX_LOGP]
            for score, j, tid in likely[: number.beam]:
                nxt.append(_Live(row, [*live[j].tokens, tid], score))
                parent.append(j)
                tokens.append(tid)
            tallies[row].pruned = [
                (math.exp(score), _number([*live[j].tokens, tid], number))
                for score, j, tid in likely[number.beam :]
            ]
        return nxt, parent, tokens


def _number(tokens: list[int], number: NumberSpec) -> int:
    """Read a digit prefix's token ids as the integer they spell."""
    return int("".join(str(number.digits.index(t)) for t in tokens))


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


def make_decoder(family: str, model: Any, tokenizer: Any, question_batch: str = "auto") -> LanguageDecoder:
    """Pick the decoder strategy for a family; question_batch: auto, tree or padded (PrefixSharedDecoder)."""
    image_token_id = int(model.config.image_token_id)
    if family != "internvl":
        return FullRowDecoder(model, tokenizer, image_token_id)
    kernel = model.config.get_text_config()._attn_implementation
    tree = question_batch != "padded" and kernel in MASKED_ATTENTION
    if question_batch == "tree" and not tree:
        log.warning("question_batch tree needs an attention kernel that takes a custom mask, not %s: "
                    "questions run as a padded batch", kernel)
    return PrefixSharedDecoder(model, tokenizer, image_token_id, tree=tree)
