"""Stage 2: projector and LLM learn the questions over frames encoded once (the tower stays frozen).

The loss is the answer's plus the probes' dense one; a teacher-forced check scores held-out questions.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from spatial_mllm_ros.multispa.train.tiny.bank import Item, QuestionBank
from spatial_mllm_ros.multispa.train.tiny.config import TinyRecipe
from spatial_mllm_ros.multispa.train.tiny.episodes import EpisodeData
from spatial_mllm_ros.multispa.train.tiny.network import bf16_autocast
from spatial_mllm_ros.multispa.train.tiny.probes import AuxProbes
from spatial_mllm_ros.multispa.train.tiny.stamped import load_stamped, save_stamped

log = logging.getLogger(__name__)
RESUME_FILE = "resume.safetensors"
# settings that do not change what stage 2 computes step by step: a rerun that changes only these resumes
_NOT_IN_RESUME = {"output_dir", "episodes_dir", "ship_to", "minutes", "threads", "workers", "eval_every",
                  "save_every", "device", "bench_per_task"}


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


def stage2_progress(step: int, steps: int, elapsed_s: float, budget_s: float) -> float:
    """Share of stage 2 done: of the steps or of the wall-clock budget, whichever is further.

    A budget that rendering and stage 1 already spent is done (a negative one would never end the run).
    """
    return 1.0 if budget_s <= 0 else max(step / steps, elapsed_s / budget_s)


class Stage2Resume:
    """Stage 2's state every `save_every` steps in <out>/stage2/resume.safetensors, so a rerun goes on.

    An hour-long run on a shared machine gets stopped; a rerun with the same settings (threads, workers
    and minutes may differ) continues from the last save with the same weights, optimizer moments,
    question draws and wall-clock schedule (the budget and time spent so far). Tensors in safetensors,
    the rest as JSON in its metadata: nothing is unpickled. Delete the folder to train stage 2 anew.
    """

    def __init__(self, recipe: TinyRecipe, folder: Path | None) -> None:
        self.fingerprint = recipe.fingerprint(lambda k: k not in _NOT_IN_RESUME)
        self.path = folder / RESUME_FILE if folder else None
        self.every = recipe.save_every

    def load(self, model: Any, probes: Any, opt: Any, rng: random.Random) -> dict | None:
        """Restore a saved state made with the same settings into the objects; return its JSON part."""
        if self.path is None:
            return None
        saved = load_stamped(self.path, self.fingerprint)
        if saved is None:
            if self.path.is_file():
                log.info("stage 2: %s was made with other settings; starting stage 2 again", self.path)
            return None
        tensors, meta = saved
        state = json.loads(meta["state"])
        part = {p: {k[len(p) + 1 :]: v for k, v in tensors.items() if k.startswith(p + ".")} for p in
                ("model", "probes")}
        missing, unexpected = model.load_state_dict(part["model"], strict=False)
        if unexpected or any("vision_tower" not in k for k in missing):  # only the frozen tower is not saved
            raise ValueError(f"{self.path} does not fit this model: delete it to train stage 2 anew")
        probes.load_state_dict(part["probes"])
        moments: dict[int, dict[str, torch.Tensor]] = defaultdict(dict)
        for k, v in tensors.items():
            if k.startswith("opt."):
                _, index, name = k.split(".", 2)
                moments[int(index)][name] = v.to(model.device) if name != "step" else v
        opt.load_state_dict({"state": dict(moments), "param_groups": state.pop("param_groups")})
        version, internal, gauss = state.pop("rng")
        rng.setstate((version, tuple(internal), gauss))
        torch.set_rng_state(tensors["torch_rng"])
        log.info("stage 2: resuming at step %d from %s", state["step"], self.path)
        return state

    def save(self, model: Any, probes: Any, opt: Any, rng: random.Random, state: dict) -> None:
        """Write the state atomically (a stop while writing leaves the previous save whole)."""
        if self.path is None:
            return
        tensors = {f"model.{k}": v for k, v in model.state_dict().items() if "vision_tower" not in k}
        tensors |= {f"probes.{k}": v for k, v in probes.state_dict().items()}
        opt_state = opt.state_dict()
        for index, moments in opt_state["state"].items():
            tensors |= {f"opt.{index}.{name}": v for name, v in moments.items()}
        tensors["torch_rng"] = torch.get_rng_state()
        state = {**state, "param_groups": opt_state["param_groups"], "rng": rng.getstate()}
        # clones: tied weights share storage, which safetensors refuses to write twice
        tensors = {k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()}
        save_stamped(self.path, tensors, self.fingerprint, {"state": json.dumps(state)})


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
    resume_dir: Path | None = None,
) -> dict:
    """Stage 2: answer loss plus the probes' dense loss, tower frozen (its features precomputed).

    With `resume_dir` its state is saved every `save_every` steps and a rerun resumes from it.
    """
    from tqdm import tqdm

    torch.manual_seed(recipe.seed + 2)  # the same probes whether stage 1 ran or was reused
    probes = AuxProbes(model.config.text_config.hidden_size, episodes[0].globals_.shape[1]).to(model.device)
    params = freeze_vision_tower(model) + list(probes.parameters())
    opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=0.01)
    steps = recipe.stage2_steps
    rng = random.Random(recipe.seed + 2)
    model.train()
    t0, start = time.perf_counter(), time.monotonic()
    resume = Stage2Resume(recipe, resume_dir)
    saved = resume.load(model, probes, opt, rng)
    first = saved["step"] if saved else 0
    budget = saved["budget_s"] if saved else deadline - start  # a resumed run keeps its schedule
    if budget <= 0:
        log.warning("stage 2: the --minutes budget was spent before stage 2 began; no question training")
    spent = saved["spent_s"] if saved else 0.0
    evals = {int(k): v for k, v in saved["evals"].items()} if saved else {}
    log_rows.extend(tuple(r) for r in (saved["rows"] if saved else []))
    done = first
    answer_loss = aux_loss = torch.zeros(())
    with_aux = recipe.aux_weight > 0

    def state() -> dict:
        rows = [r for r in log_rows if r[0] == "stage2"]
        return {"step": done, "budget_s": budget, "spent_s": spent + time.monotonic() - start,
                "evals": evals, "rows": rows}

    bar = tqdm(range(first, steps), desc="stage 2 questions", unit="step", initial=first, total=steps)
    for step in bar:
        # steps or wall clock, whichever runs out first: a slow machine still ends with a decayed rate
        progress = stage2_progress(step, steps, spent + time.monotonic() - start, budget)
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
        if resume.every and done % resume.every == 0:
            resume.save(model, probes, opt, rng, state())
    if done > first:  # the end too: a rerun after a crash while saving the model goes straight on
        resume.save(model, probes, opt, rng, state())
    return {
        **({"resumed_at_step": first} if saved else {}),
        "steps": done,
        "seconds": time.perf_counter() - t0,
        "final_answer_loss": float(answer_loss.detach()),
        "final_probe_loss": float(aux_loss.detach()),
        "evals": evals,
    }
