"""Stage 1: dense supervised pretraining of the vision tower, kept for reruns with the same settings.

With small per-patch heads the tower regresses segmentation classes, depth and every entity's camera-frame
position on frame pairs of one episode; the change of each position between the frames is a loss of its
own (questions need relative precision).
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

from spatial_mllm_ros.multispa.train.tiny.config import TinyRecipe
from spatial_mllm_ros.multispa.train.tiny.episodes import EpisodeData
from spatial_mllm_ros.multispa.train.tiny.network import bf16_autocast
from spatial_mllm_ros.multispa.train.tiny.stamped import load_stamped, save_stamped

log = logging.getLogger(__name__)


class DenseHeads(torch.nn.Module):
    """Per-patch heads of stage 1: class logits, depth, and every entity's position from every patch."""

    def __init__(self, hidden: int, n_classes: int, n_entities: int) -> None:
        super().__init__()
        self.n_classes, self.n_entities = n_classes, n_entities
        self.proj = torch.nn.Linear(hidden, n_classes + 1 + n_entities * 5)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.proj(h)
        c = self.n_classes
        return out[..., :c], out[..., c], out[..., c + 1 :].unflatten(-1, (self.n_entities, 5))


def _stack(picks: list[tuple[EpisodeData, int]], attr: str) -> torch.Tensor:
    """Stack one per-frame tensor of EpisodeData over (episode, frame) picks."""
    return torch.stack([getattr(e, attr)[f] for e, f in picks])


def change_loss(pred: torch.Tensor, truth: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Smooth-L1 (decimetres) of every entity's position change between the frames of each pair.

    pred, truth: (2 * pairs, entities, 3) camera-frame positions, a pair's two frames adjacent; present:
    (2 * pairs, entities). Only entities present in both frames of a pair count.
    """
    both = (present[1::2] * present[0::2])[..., None]
    change = truth[1::2] - truth[0::2]
    err = F.smooth_l1_loss(10 * (pred[1::2] - pred[0::2]), 10 * change, reduction="none", beta=0.1)
    return (err * both).sum() / (both.sum() * 3).clamp(min=1)


def pretrain_vision(model: Any, episodes: list[EpisodeData], recipe: TinyRecipe, log_rows: list) -> dict:
    """Stage 1: dense supervised pretraining of the vision tower on frame pairs of one episode."""
    tower = model.model.vision_tower
    device = model.device
    heads = DenseHeads(tower.config.hidden_size, episodes[0].seg.shape[-1], episodes[0].globals_.shape[1])
    heads.to(device)
    params = list(tower.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=recipe.stage1_lr, weight_decay=0.01)
    sched = _cosine(opt, recipe.stage1_steps, warmup=50)
    rng = random.Random(recipe.seed)
    tower.train()
    t0 = time.perf_counter()
    from tqdm import tqdm

    bar = tqdm(range(recipe.stage1_steps), desc="stage 1 vision", unit="step")
    for step in bar:
        picks = []
        for _ in range(recipe.stage1_batch // 2):
            e = episodes[rng.randrange(len(episodes))]
            picks += [(e, f) for f in rng.sample(range(len(e.pixels)), 2)]
        seg, depth, glob, present = (
            _stack(picks, a).to(device) for a in ("seg", "depth", "globals_", "present")
        )
        pixels = _stack(picks, "pixels").to(device).float()  # outside autocast, which refuses float16
        with bf16_autocast(recipe, device):
            h = tower(pixel_values=pixels).last_hidden_state[:, 1:]
        c, d, g = heads(h.float())  # the position heads' small differences need float32
        l_seg = -(seg * F.log_softmax(c, -1)).sum(-1).mean()
        l_depth = F.smooth_l1_loss(d, depth, beta=0.1)
        mask = present[:, None, :, None]
        l_glob = (
            F.smooth_l1_loss(g, glob[:, None].expand_as(g), reduction="none", beta=0.05) * mask
        ).sum() / (mask.sum() * 5 * g.shape[1]).clamp(min=1)
        l_delta = change_loss(g.mean(1)[..., :3], glob[..., :3], present)
        loss = l_seg + l_depth + 10.0 * l_glob + recipe.stage1_delta_weight * l_delta
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        log_rows.append(("stage1", step, float(loss.detach()), time.perf_counter() - t0))
        if step % 20 == 0:
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}", delta=f"{float(l_delta.detach()):.3f}")
    tower.eval()
    return {
        "steps": recipe.stage1_steps,
        "seconds": time.perf_counter() - t0,
        "loss_seg": float(l_seg.detach()),
        "loss_depth": float(l_depth.detach()),
        "loss_position": float(l_glob.detach()),
        "loss_delta": float(l_delta.detach()),
    }


_STAGE1_USES = {"seed", "start_from", "train_scenes", "episode", "image_size", "patch_size", "shape", "bf16"}


def _stage1_fingerprint(recipe: TinyRecipe) -> str:
    """Return the settings a saved stage-1 tower depends on (reruns that change only stage 2 reuse it)."""
    return recipe.fingerprint(lambda k: k in _STAGE1_USES or k.startswith("stage1_"))


def pretrain_vision_cached(
    model: Any, episodes: list[EpisodeData], recipe: TinyRecipe, log_rows: list, out: Path
) -> dict:
    """Stage 1, or its saved result when <out>/stage1 holds a tower made with the same settings.

    Stage 1 is a third of the recipe's time; reruns that change only stage 2 should not repeat it.
    """
    path = out / "stage1" / "vision_tower.safetensors"
    fingerprint = _stage1_fingerprint(recipe)
    saved = load_stamped(path, fingerprint)
    if saved is not None:
        state, meta = saved
        model.model.vision_tower.load_state_dict(state)
        model.model.vision_tower.eval()
        log_rows.extend(tuple(r) for r in json.loads(meta["rows"]))
        log.info("stage 1: reusing %s (same settings)", path)
        return {**json.loads(meta["summary"]), "reused": str(path)}
    if path.is_file():
        log.info("stage 1: %s was made with other settings; training again", path)
    first = len(log_rows)
    summary = pretrain_vision(model, episodes, recipe, log_rows)
    state = {k: v.detach().cpu().contiguous() for k, v in model.model.vision_tower.state_dict().items()}
    meta = {"summary": json.dumps(summary), "rows": json.dumps(log_rows[first:])}
    save_stamped(path, state, fingerprint, meta)
    return summary


def _cosine(opt: torch.optim.Optimizer, steps: int, warmup: int) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(s: int) -> float:
        if s < warmup:
            return (s + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warmup) / max(1, steps - warmup))))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)
