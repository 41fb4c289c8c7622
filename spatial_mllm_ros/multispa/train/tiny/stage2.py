"""Stage 2: projector and LLM learn the questions over frames encoded once (the tower stays frozen).

The loss is the answer's plus the probes' dense one; a teacher-forced check scores held-out questions.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import defaultdict
from typing import Any

import torch

from spatial_mllm_ros.multispa.train.tiny.bank import Item, QuestionBank
from spatial_mllm_ros.multispa.train.tiny.config import TinyRecipe
from spatial_mllm_ros.multispa.train.tiny.episodes import EpisodeData
from spatial_mllm_ros.multispa.train.tiny.network import bf16_autocast
from spatial_mllm_ros.multispa.train.tiny.probes import AuxProbes

log = logging.getLogger(__name__)


@torch.no_grad()
def encode_frames(model: Any, episodes: list[EpisodeData], batch: int = 64) -> list[torch.Tensor]:
    """Vision features of every frame before the projector (pixel-shuffled, float16), one tensor per episode.

    Stage 2 keeps the tower frozen, so each frame is encoded once instead of once per step.
    """
    inner = model.model
    inner.vision_tower.eval()
    sizes = [len(e.pixels) for e in episodes]
    pixels = torch.cat([e.pixels for e in episodes])
    out = []
    for k in range(0, len(pixels), batch):
        tile = pixels[k : k + batch].to(model.device).float()
        h = inner.vision_tower(pixel_values=tile).last_hidden_state[:, 1:]
        n, t, c = h.shape
        side = int(t**0.5)
        h = inner.pixel_shuffle(h.reshape(n, side, side, c), scale_factor=model.config.downsample_ratio)
        out.append(h.reshape(n, -1, h.shape[-1]).half())
    return list(torch.cat(out).split(sizes))


@torch.no_grad()
def center_projector(model: Any, feats: list[torch.Tensor], sample: int = 4096) -> None:
    """Shift and scale the projector's output to zero mean and unit spread per channel on these frames.

    A fresh projector maps every frame to nearly the same large vector; after the LLM's RMSNorm the
    differences between frames, which all questions are about, would be a rounding error.
    """
    proj = model.model.multi_modal_projector
    x = torch.cat(feats).flatten(0, 1)
    x = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:sample]].float()
    y = proj(x)
    mean, spread = y.mean(0), y.std(0).mean()
    proj.linear_2.bias.sub_(mean).div_(spread)
    proj.linear_2.weight.div_(spread)


def forward_items(
    model: Any,
    feats: list[torch.Tensor],
    items: list[Item],
    pad_id: int,
    image_token_id: int,
    hidden_states: bool = False,
) -> tuple[Any, torch.Tensor, torch.Tensor]:
    """Project the questions' precomputed frame features into their image tokens and run the LM.

    Returns the model output, the image-token mask and each row's value-predicting position.
    """
    width = max(len(i.ids) for i in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), -100, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for r, it in enumerate(items):
        ids[r, : len(it.ids)] = torch.tensor(it.ids)
        labels[r, : len(it.labels)] = torch.tensor(it.labels)
        mask[r, : len(it.ids)] = 1
    ids, labels, mask = ids.to(model.device), labels.to(model.device), mask.to(model.device)
    raw = torch.cat([feats[it.episode][list(it.frames)].flatten(0, 1).float() for it in items])
    img = model.model.multi_modal_projector(raw)
    embeds = model.get_input_embeddings()(ids)
    image_mask = ids == image_token_id
    embeds = embeds.masked_scatter(image_mask[..., None].expand_as(embeds), img.to(embeds.dtype))
    out = model(inputs_embeds=embeds, attention_mask=mask, labels=labels, output_hidden_states=hidden_states)
    # the answer's opening backtick is its first label; the position holding it predicts the value
    answer_at = (labels != -100).int().argmax(1)
    return out, image_mask, answer_at


@torch.no_grad()
def answer_accuracy(
    model: Any,
    feats: list[torch.Tensor],
    items: list[Item],
    pad_id: int,
    image_token_id: int,
    batch: int = 64,
) -> dict[str, float]:
    """Score teacher-forced exact answers per sub-task (all answer tokens argmax-right = greedy right)."""
    model.eval()
    hits: dict[str, list[bool]] = defaultdict(list)
    for k in range(0, len(items), batch):
        chunk = items[k : k + batch]
        out, _, _ = forward_items(model, feats, chunk, pad_id, image_token_id)
        pred = out.logits[:, :-1].argmax(-1).cpu()
        for r, it in enumerate(chunk):
            lab = torch.tensor(it.labels[1:])
            sel = lab != -100
            hits[it.task].append(bool((pred[r, : len(lab)][sel] == lab[sel]).all()))
    model.train()
    return {t: round(100.0 * sum(v) / len(v), 1) for t, v in sorted(hits.items())}


def freeze_vision_tower(model: Any) -> list[torch.nn.Parameter]:
    """Freeze the vision tower (its features are precomputed); return the parameters left to train."""
    for name, p in model.named_parameters():
        p.requires_grad = "vision_tower" not in name
    return [p for p in model.parameters() if p.requires_grad]


def stage2_lr(recipe: TinyRecipe, step: int, progress: float) -> float:
    """Question-stage learning rate: linear warmup over `stage2_warmup` steps, then a cosine over progress.

    progress (0-1) is the larger of steps done and wall clock spent, so the cosine ends with either.
    """
    warmup = min(1.0, (step + 1) / max(1, recipe.stage2_warmup))
    return recipe.lr * warmup * 0.5 * (1 + math.cos(math.pi * progress))


def train_questions(
    model: Any,
    episodes: list[EpisodeData],
    feats: list[torch.Tensor],
    bank: QuestionBank,
    eval_sets: tuple[list[torch.Tensor], list[Item]] | None,
    recipe: TinyRecipe,
    deadline: float,
    log_rows: list,
    pad_id: int,
    image_token_id: int,
) -> dict:
    """Stage 2: answer loss plus the probes' dense loss, tower frozen (its features precomputed)."""
    from tqdm import tqdm

    torch.manual_seed(recipe.seed + 2)  # the same probes whether stage 1 ran or was reused
    probes = AuxProbes(model.config.text_config.hidden_size, episodes[0].globals_.shape[1]).to(model.device)
    params = freeze_vision_tower(model) + list(probes.parameters())
    opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=0.01)
    steps = recipe.stage2_steps
    rng = random.Random(recipe.seed + 2)
    model.train()
    t0, start = time.perf_counter(), time.monotonic()
    budget = deadline - start
    evals = {}
    done = 0
    answer_loss = aux_loss = torch.zeros(())
    with_aux = recipe.aux_weight > 0
    bar = tqdm(range(steps), desc="stage 2 questions", unit="step")
    for step in bar:
        # steps or wall clock, whichever runs out first: a slow machine still ends with a decayed rate
        progress = max(step / steps, (time.monotonic() - start) / budget)
        if progress >= 1.0:
            log.warning("stage 2: wall-clock budget reached after %d of %d steps", step, steps)
            break
        for group in opt.param_groups:
            group["lr"] = stage2_lr(recipe, step, progress)
        large_first = max(0.0, 1.0 - progress / 0.6)
        items = bank.sample(rng, recipe.batch_questions, recipe.questions_per_pair, large_first)
        with bf16_autocast(recipe, model.device):
            out, image_mask, answer_at = forward_items(model, feats, items, pad_id, image_token_id, with_aux)
            answer_loss = out.loss
            loss = answer_loss
            if with_aux:
                aux_loss = probes.loss(out.hidden_states, image_mask, answer_at, episodes, items, recipe)
                loss = loss + recipe.aux_weight * aux_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        done = step + 1
        log_rows.append(("stage2", step, float(answer_loss.detach()), time.perf_counter() - t0))
        if step % 20 == 0:
            bar.set_postfix(
                answer=f"{float(answer_loss.detach()):.3f}", probes=f"{float(aux_loss.detach()):.3f}"
            )
        if eval_sets and recipe.eval_every and done % recipe.eval_every == 0:
            evals[done] = answer_accuracy(model, *eval_sets, pad_id, image_token_id)
            log.info("stage 2 step %d: %s", done, evals[done])
    return {
        "steps": done,
        "seconds": time.perf_counter() - t0,
        "final_answer_loss": float(answer_loss.detach()),
        "final_probe_loss": float(aux_loss.detach()),
        "evals": evals,
    }
