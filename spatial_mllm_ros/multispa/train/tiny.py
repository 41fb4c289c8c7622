"""`spatial-mllm train --recipe tiny`: SpatialMLLM-tiny trained from scratch on simulated episodes on a CPU.

SpatialMLLM-tiny is an InternVL-architecture model (native transformers class).

Answer-token loss alone gives a from-scratch vision tower almost no gradient, and a from-scratch language
model learns to compare two frames' tokens only very slowly, so the recipe gives both dense targets:
  stage 1  the vision tower (sin-cos position init, layer scale 1.0) with small heads regresses per-patch
           segmentation classes and depth, and from every patch the camera-frame position of the
           gripper, of each object (one slot per colour) and of the table centre; batches are frame pairs
           of one episode, and the change of each position between the two frames is a loss of its own
           (questions need relative precision; scene-level biases cancel in a difference);
  stage 2  tower frozen, so every frame is encoded once up front: projector + LLM learn the questions,
           several per frame pair, every sub-task drawn equally often, with a curriculum from large to
           small motions; two training-only linear probes inside the LLM add dense targets: on the image
           tokens every entity's position (and, on the second frame's tokens, its change since the
           first), and at the position that predicts the answer, the asked entity's motion vector (its
           component along the asked direction for "did X move <direction>?", or the depth difference).
           The probes are dropped after training: the shipped model is the plain InternVL class.
The tokenizer is a byte-level BPE (digits split one by one) trained on the question templates.
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from spatial_mllm_ros.model.factory import (
    SPECIAL_TOKENS,
    TinyShape,
    _internvl_config,
    _preprocessor_config,
    wrap_tokenizer,
)
from spatial_mllm_ros.model.loading import resolve_device
from spatial_mllm_ros.model.preprocess import ImageSpec, prepare_image
from spatial_mllm_ros.model.prompts import PromptEncoder
from spatial_mllm_ros.multispa.format import (
    DID_NOT_MOVE,
    DIRECTIONS,
    QuestionKind,
    build_prompt,
    make_sample,
    sample_to_json,
    task_description,
)
from spatial_mllm_ros.multispa.train.questions import Question, camera_xyz, frame_questions, pair_questions
from spatial_mllm_ros.multispa.train.simdata import EpisodeSpec, colour_classes, generate_range
from spatial_mllm_ros.sim.truth import DIRECTION_VECTORS

log = logging.getLogger(__name__)
BENCH_FIRST_SEED = 100_000  # held-out scenes: never used for training


@dataclass
class TinyRecipe:
    """Everything `--recipe tiny` does; defaults fit about an hour on two CPU cores."""

    output_dir: str = "runs/tiny"
    episodes_dir: str = ""  # "" = <output_dir>/episodes
    ship_to: str = ""  # copy the final model here (the assets folder when shipping)
    train_scenes: int = 300
    bench_scenes: int = 16
    # 100 questions put a sub-task's 95 % interval about +-7 points wide, wider than most gaps between
    # runs; 400 narrow it to about +-3.5 (fewer where the held-out scenes hold fewer questions)
    bench_per_task: int = 400
    episode: EpisodeSpec = field(default_factory=EpisodeSpec)
    workers: int = 2
    # image_size / patch_size must be the episodes' target grid (8). 168 / 21 (2.25x the pixels on an
    # object at the same tokens and nearly the same compute) did no better on any object question
    image_size: int = 112
    patch_size: int = 14
    vocab_size: int = 1024
    shape: TinyShape = field(
        default_factory=lambda: TinyShape(
            hidden=256,
            layers=4,
            heads=4,
            kv_heads=4,
            intermediate=1024,
            vision_hidden=192,
            vision_layers=4,
            vision_heads=4,
        )
    )
    seed: int = 0
    # the held-out benchmark's question draws, apart from `seed` so runs of any seed are scored on the
    # same questions (its question bank draws with bench_seed + 1, the benchmark's selection with bench_seed:
    # the seeds both had before, so the default benchmark is unchanged)
    bench_seed: int = 0
    stage1_steps: int = 4500
    stage1_batch: int = 32  # frames: half as many pairs
    stage1_lr: float = 1e-3
    stage1_delta_weight: float = 3.0
    stage2_steps: int = 8000  # the wall-clock budget (minutes) usually ends stage 2 first
    # linear warmup in steps, fixed rather than a share of stage2_steps, so a `--max-steps` run warms up
    # as the default command does (8000 // 30)
    stage2_warmup: int = 266
    batch_questions: int = 32
    questions_per_pair: int = 4  # at most this many questions share a frame group in a batch
    lr: float = 1e-3
    aux_weight: float = 1.0  # the training-only probes inside the LLM (0: answer loss alone)
    aux_token_layer: int = 2  # LLM hidden state (0 = embeddings) the image-token probe reads
    aux_answer_layer: int = 3  # LLM hidden state the answer-position probe reads
    minutes: float = 55.0  # > 0: stage 2's schedule ends when the wall clock runs out (0: never)
    eval_every: int = 1000  # > 0: teacher-forced benchmark accuracy every this many steps (~20 s each)
    threads: int = 2  # 1 on a shared, oversubscribed CPU (it then beats two threads by 3-6x)
    bf16: bool = True  # bfloat16 matmuls (autocast) where the device has them natively; fp32 elsewhere
    # "cpu" (the budgets above are a 2-core CPU's), "cuda[:N]" or "auto" (cuda when there); rendering
    # and the question bank stay on the CPU either way
    device: str = "cpu"

    @classmethod
    def quick(cls) -> TinyRecipe:
        """Return a few-minute smoke run (same code path, tiny budgets)."""
        return cls(
            output_dir="runs/tiny-quick",
            train_scenes=4,
            bench_scenes=1,
            stage1_steps=20,
            stage2_steps=20,
            stage2_warmup=2,
            eval_every=10,
            workers=1,
        )


# ------------------------------------------------------------------ data


@dataclass
class EpisodeData:
    """One episode in memory: its frames as model tiles, stage-1 targets and truth."""

    name: str
    pixels: torch.Tensor  # (T, 3, S, S) float16, normalised as the runtime does
    seg: torch.Tensor  # (T, grid*grid, classes)
    depth: torch.Tensor  # (T, grid*grid)
    globals_: torch.Tensor  # (T, entities, 5): x, y, z, x/z, y/z in camera axes
    present: torch.Tensor  # (T, entities)
    truth: dict
    frame_paths: list[Path]


def entity_slots() -> tuple[str, ...]:
    """Stage-1 regression slots: the gripper, the table centre, then one per object colour."""
    return ("gripper", "table", *colour_classes()[3:])


def _globals(truth: dict, t: int) -> tuple[np.ndarray, np.ndarray]:
    slots = entity_slots()
    out = np.zeros((len(slots), 5), np.float32)
    present = np.zeros(len(slots), np.float32)
    points = {"gripper": truth["gripper"][t], "table": [0.0, 0.0, 0.0]}
    colours = [o.split()[0] for o in truth["objects"]]
    for name, pos in truth["objects"].items():
        colour = name.split()[0]
        if colours.count(colour) == 1:
            points[colour] = pos[t]
    for name, p in points.items():
        xyz = camera_xyz(truth, t, p)
        if xyz[2] > 0.05:
            i = slots.index(name)
            out[i] = [xyz[0], xyz[1], xyz[2], xyz[0] / xyz[2], xyz[1] / xyz[2]]
            present[i] = 1.0
    return out, present


def load_episode(ep_dir: Path, spec: ImageSpec) -> EpisodeData:
    """Read one generated episode and preprocess its frames exactly like the runtime."""
    from spatial_mllm_ros.multispa.train.data import load_rgb

    truth = json.loads((ep_dir / "truth.json").read_text())
    targets = np.load(ep_dir / "targets.npz")
    paths = sorted(ep_dir.glob("f*.png"), key=lambda p: int(p.stem[1:]))
    pixels = torch.stack([prepare_image(load_rgb(p), spec).pixel_values[0] for p in paths]).half()
    g = [_globals(truth, t) for t in range(len(paths))]
    seg = torch.from_numpy(targets["seg"])
    seg = F.pad(seg, (0, len(colour_classes()) - seg.shape[-1]))
    return EpisodeData(
        ep_dir.name,
        pixels,
        seg,
        torch.from_numpy(targets["depth"]),
        torch.from_numpy(np.stack([x[0] for x in g])),
        torch.from_numpy(np.stack([x[1] for x in g])),
        truth,
        paths,
    )


def _generate(recipe: TinyRecipe, episodes_dir: Path) -> None:
    """Render train scenes (seeds 0..) and benchmark scenes (BENCH_FIRST_SEED..) with `workers` processes."""
    n = recipe.workers
    jobs = [(w, len(range(w, recipe.train_scenes, n))) for w in range(n)]
    jobs += [(BENCH_FIRST_SEED + w, len(range(w, recipe.bench_scenes, n))) for w in range(n)]
    args = [(first, count, episodes_dir, recipe.episode, n) for first, count in jobs if count]
    if recipe.workers > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(recipe.workers) as pool:  # no GL context exists yet
            pool.starmap(generate_range, args)
    else:
        for a in args:
            generate_range(*a)


# ------------------------------------------------------------------ tokenizer and model


def question_corpus(questions: list[Question]) -> list[str]:
    """Return the tokenizer's training texts: prompts and answers as the runtime writes them, vocabulary."""
    lines = [build_prompt(2, task_description(q.kind), q.question) + "\n" + q.answer for q in questions]
    lines += [build_prompt(1, task_description(k), "") for k in QuestionKind]
    for word in (*DIRECTIONS, "yes", "no"):
        lines += [f"`{word}`"] * 20
    lines += [DID_NOT_MOVE, "0 1 2 3 4 5 6 7 8 9 [ ] , - . `", "user assistant system"]
    return lines


def make_tokenizer(corpus: list[str], vocab_size: int) -> Any:
    """Byte-level BPE with single-digit numbers, our special tokens and the shared chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    return wrap_tokenizer(tok)


def make_model(tokenizer: Any, recipe: TinyRecipe) -> Any:
    """Build a from-scratch InternVL (native class): layer scale 1.0, sin-cos patch positions."""
    from transformers import InternVLForConditionalGeneration

    config = _internvl_config(tokenizer, recipe.image_size, recipe.shape, patch=recipe.patch_size)
    config.vision_config.layer_scale_init_value = 1.0
    config.text_config.max_position_embeddings = 1024
    torch.manual_seed(recipe.seed)
    model = InternVLForConditionalGeneration(config)
    pos = model.model.vision_tower.embeddings.position_embeddings
    grid = recipe.image_size // recipe.patch_size
    with torch.no_grad():
        d = pos.shape[-1] // 4
        ys, xs = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
        freq = 1.0 / (100.0 ** (torch.arange(d) / d))
        x, y = xs.reshape(-1, 1) * freq, ys.reshape(-1, 1) * freq
        pos[0, 1:, : 4 * d] = torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], dim=1)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def save_model(model: Any, tokenizer: Any, recipe: TinyRecipe, out: Path, card: dict[str, Any]) -> Path:
    """Write an offline-loadable checkpoint: safetensors, tokenizer, one-tile preprocessing, record."""
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "preprocessor_config.json").write_text(
        json.dumps(_preprocessor_config("internvl", recipe.image_size, 1), indent=2) + "\n"
    )
    (out / "training.json").write_text(json.dumps(card, indent=2, default=str) + "\n")
    return out


# ------------------------------------------------------------------ stage 1: vision pretraining


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


def native_bf16(device: torch.device | None = None) -> bool:
    """Whether the device has native bfloat16 matmuls (CPU: AVX512-BF16, AMX; CUDA: Ampere and later).

    Emulated bf16 is slower than float32.
    """
    if device is not None and device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def bf16_autocast(recipe: TinyRecipe, device: torch.device) -> torch.autocast:
    """Autocast matmuls to bfloat16 when the recipe asks and the model's device has native bf16.

    Both stages run about 1.85x faster on a 2-core Zen 4; weights, optimiser state, norms and losses
    stay float32. Without native support bf16 is emulated and slower than float32, so it stays off.
    """
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=recipe.bf16 and native_bf16(device))


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


def _stage1_fingerprint(recipe: TinyRecipe) -> str:
    """Return the settings a saved stage-1 tower depends on (reruns that change only stage 2 reuse it)."""
    settings = asdict(recipe)
    keep = {"seed", "train_scenes", "episode", "image_size", "patch_size", "shape", "bf16"}
    used = {k: v for k, v in settings.items() if k in keep or k.startswith("stage1_")}
    return json.dumps(used, sort_keys=True, default=str)


def pretrain_vision_cached(
    model: Any, episodes: list[EpisodeData], recipe: TinyRecipe, log_rows: list, out: Path
) -> dict:
    """Stage 1, or its saved result when <out>/stage1 holds a tower made with the same settings.

    Stage 1 is a third of the recipe's time; reruns that change only stage 2 should not repeat it.
    """
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = out / "stage1" / "vision_tower.safetensors"
    fingerprint = _stage1_fingerprint(recipe)
    if path.is_file():
        with safe_open(str(path), "pt") as fh:
            meta = fh.metadata() or {}
            names = list(fh.keys()) if meta.get("fingerprint") == fingerprint else []
            state = {name: fh.get_tensor(name) for name in names}
        if names:
            model.model.vision_tower.load_state_dict(state)
            model.model.vision_tower.eval()
            log_rows.extend(tuple(r) for r in json.loads(meta["rows"]))
            log.info("stage 1: reusing %s (same settings)", path)
            return {**json.loads(meta["summary"]), "reused": str(path)}
        log.info("stage 1: %s was made with other settings; training again", path)
    first = len(log_rows)
    summary = pretrain_vision(model, episodes, recipe, log_rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.model.vision_tower.state_dict().items()}
    meta = {"fingerprint": fingerprint, "summary": json.dumps(summary), "rows": json.dumps(log_rows[first:])}
    save_file(state, str(path), metadata=meta)
    return summary


def _cosine(opt: torch.optim.Optimizer, steps: int, warmup: int) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(s: int) -> float:
        if s < warmup:
            return (s + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warmup) / max(1, steps - warmup))))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


# ------------------------------------------------------------------ stages 2-3: questions


@dataclass
class Item:
    """One question ready for the LLM: frames (episode index, frame indices), token ids and labels."""

    episode: int
    frames: tuple[int, ...]
    ids: list[int]
    labels: list[int]
    question: Question

    @property
    def task(self) -> str:
        """Sub-task name."""
        return self.question.task


def balance_weights(questions: list[Question]) -> np.ndarray:
    """Draw weights that give every sub-task the same share, and its answers inverse-square-root shares.

    Natural counts are skewed (a still object gives "no" to every "did it move <direction>?", and
    object-direction questions are 2 % of all): drawn as they come, the model learns the priors first.
    Distances count as one answer.
    """
    keys = [(q.task, "" if q.kind is QuestionKind.DISTANCE else q.answer) for q in questions]
    answers: dict[tuple[str, str], int] = defaultdict(int)
    for k in keys:
        answers[k] += 1
    norm: dict[str, float] = defaultdict(float)
    for (task, _), n in answers.items():
        norm[task] += math.sqrt(n)
    return np.array([1.0 / math.sqrt(answers[k]) / norm[k[0]] for k in keys])


class QuestionBank:
    """Questions of every frame pair and single frame, grouped by frames so a batch encodes them once.

    Token ids are made when a question is first drawn; draws follow balance_weights.
    """

    def __init__(self, truths: list[dict], seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.groups: dict[tuple[int, tuple[int, ...]], list[Question]] = {}
        for e, truth in enumerate(truths):
            n = len(truth["T_world_cam"])
            for t1 in range(n):
                for t2 in range(t1 + 1, n):
                    self.groups[(e, (t1, t2))] = pair_questions(truth, t1, t2, rng)
                self.groups[(e, (t1,))] = frame_questions(truth, t1, rng)
        self.groups = {k: v for k, v in self.groups.items() if v}
        self.keys = list(self.groups)
        self.gaps = np.array([k[1][-1] - k[1][0] if len(k[1]) == 2 else 0 for k in self.keys])
        flat = balance_weights(self.questions())
        bounds = np.cumsum([0] + [len(self.groups[k]) for k in self.keys])
        self.weights = [flat[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        self._group_weight: dict[int, np.ndarray] = {}
        self._cache: dict[tuple[int, tuple[int, ...], int], Item] = {}
        self.prompts: PromptEncoder | None = None
        self.tokens_per_image = 0

    def questions(self) -> list[Question]:
        """Every question (for the tokenizer corpus)."""
        return [q for g in self.groups.values() for q in g]

    def item(self, key: tuple[int, tuple[int, ...]], k: int) -> Item:
        """Return the k-th question of a frame group, tokenized (cached)."""
        ck = (key[0], key[1], k)
        if ck not in self._cache:
            assert self.prompts is not None, "call bind() first"
            q = self.groups[key][k]
            prompt = build_prompt(len(key[1]), task_description(q.kind), q.question)
            ids, labels = self.prompts.encode_training(
                [self.tokens_per_image] * len(key[1]), prompt, q.answer
            )
            self._cache[ck] = Item(key[0], key[1], ids, labels, q)
        return self._cache[ck]

    def bind(self, prompts: PromptEncoder, tokens_per_image: int) -> None:
        """Attach the tokenizer's prompt encoder (made after the corpus is known)."""
        self.prompts, self.tokens_per_image = prompts, tokens_per_image

    def items(self) -> list[Item]:
        """Every question, tokenized."""
        return [self.item(key, k) for key in self.keys for k in range(len(self.groups[key]))]

    def sample(self, rng: random.Random, n_questions: int, per_group: int, large_first: float) -> list[Item]:
        """Draw n_questions, at most per_group from each frame group (far pairs favoured by large_first).

        Questions within a group are drawn by weight, groups by their questions' total weight over how
        many a draw takes from them, so each question is drawn about as often as its weight says.
        """
        if per_group not in self._group_weight:
            self._group_weight[per_group] = np.array([q.sum() / min(per_group, len(q)) for q in self.weights])
        w = np.where(self.gaps > 0, (1.0 + self.gaps) ** (3.0 * large_first), 1.0)
        w = w * self._group_weight[per_group]
        draw = np.random.default_rng(rng.randrange(1 << 30))
        picks = iter(draw.choice(len(self.keys), size=n_questions, p=w / w.sum()))  # enough: >= 1 each
        out: list[Item] = []
        while len(out) < n_questions:
            p = int(next(picks))
            key, qw = self.keys[p], self.weights[p]
            size = min(per_group, len(qw), n_questions - len(out))
            chosen = draw.choice(len(qw), size=size, replace=False, p=qw / qw.sum())
            out += [self.item(key, int(k)) for k in chosen]
        return out


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


class AuxProbes(torch.nn.Module):
    """Training-only linear probes inside the LLM (dropped after training): dense targets for stage 2.

    tokens: on every image token, each entity slot's camera-frame position and its change since the
            first frame (zero on the first frame's tokens): what a comparison needs, where it is read;
    answer: at the position that predicts the answer, the asked entity's motion vector (and, for "did X
            move <direction>?", its component along that direction), or for depth questions the depth
            difference of the two named things.
    """

    POSITION_SCALE, DELTA_SCALE, DEPTH_SCALE = 5.0, 20.0, 10.0

    def __init__(self, hidden: int, n_slots: int) -> None:
        super().__init__()
        self.tokens = torch.nn.Linear(hidden, 2 * n_slots * 3)
        self.answer = torch.nn.Linear(hidden, 5)

    def token_targets(
        self, episodes: list[EpisodeData], items: list[Item], tokens_per_image: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Targets and masks of every image token in batch order."""
        targets, masks = [], []
        for it in items:
            e = episodes[it.episode]
            first = it.frames[0]
            for j, f in enumerate(it.frames):
                pos = e.globals_[f, :, :3].reshape(-1) * self.POSITION_SCALE
                pos_mask = e.present[f].repeat_interleave(3)
                if j == 0:  # zero: a reader may average over all image tokens and still get the change
                    delta, delta_mask = torch.zeros_like(pos), pos_mask
                else:
                    delta = (e.globals_[f, :, :3] - e.globals_[first, :, :3]).reshape(-1) * self.DELTA_SCALE
                    delta_mask = (e.present[f] * e.present[first]).repeat_interleave(3)
                targets.append(torch.cat([pos, delta]).expand(tokens_per_image, -1))
                masks.append(torch.cat([pos_mask, delta_mask]).expand(tokens_per_image, -1))
        return torch.cat(targets), torch.cat(masks)

    def answer_targets(self, items: list[Item]) -> tuple[torch.Tensor, torch.Tensor]:
        """Targets and masks at each question's answer-predicting position."""
        width = self.answer.out_features
        targets, masks = torch.zeros(len(items), width), torch.zeros(len(items), width)
        for r, it in enumerate(items):
            meta = it.question.meta
            if "vector_cam_m" in meta:
                targets[r, :3] = torch.tensor(meta["vector_cam_m"]) * self.DELTA_SCALE
                masks[r, :3] = 1.0
                if "asked" in meta:  # "did X move <asked>?": the motion's component along that direction
                    along = np.dot(meta["vector_cam_m"], DIRECTION_VECTORS[meta["asked"]])
                    targets[r, 4] = float(along) * self.DELTA_SCALE
                    masks[r, 4] = 1.0
            elif "depth_a_m" in meta:
                targets[r, 3] = (meta["depth_a_m"] - meta["depth_b_m"]) * self.DEPTH_SCALE
                masks[r, 3] = 1.0
        return targets, masks

    def loss(
        self,
        hidden_states: tuple[torch.Tensor, ...],
        image_mask: torch.Tensor,
        answer_at: torch.Tensor,
        episodes: list[EpisodeData],
        items: list[Item],
        recipe: TinyRecipe,
    ) -> torch.Tensor:
        """Masked smooth-L1 of both probes."""
        tokens_per_image = int(image_mask.sum()) // sum(len(i.frames) for i in items)
        t_tok, m_tok = self.token_targets(episodes, items, tokens_per_image)
        p_tok = self.tokens(hidden_states[recipe.aux_token_layer][image_mask])
        t_ans, m_ans = self.answer_targets(items)
        p_ans = self.answer(hidden_states[recipe.aux_answer_layer][torch.arange(len(items)), answer_at])
        total = torch.zeros((), device=p_tok.device)
        for pred, target, mask in ((p_tok, t_tok, m_tok), (p_ans, t_ans, m_ans)):
            target, mask = target.to(pred.device), mask.to(pred.device)
            err = F.smooth_l1_loss(pred, target, reduction="none", beta=0.1) * mask
            total = total + err.sum() / mask.sum().clamp(min=1)
        return total


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


# ------------------------------------------------------------------ benchmark and the whole recipe


def write_benchmark(
    episodes: list[EpisodeData], bank: QuestionBank, out: Path, per_task: int, seed: int
) -> Path:
    """Held-out benchmark in MultiSPA JSONL (images copied next to it), at most per_task per sub-task."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "images").mkdir(exist_ok=True)
    rng = random.Random(seed)
    by_task: dict[str, list[Item]] = defaultdict(list)
    for it in bank.items():
        by_task[it.task].append(it)
    lines = []
    for task in sorted(by_task):
        chosen = rng.sample(by_task[task], min(per_task, len(by_task[task])))
        for n, it in enumerate(chosen):
            ep = episodes[it.episode]
            names = []
            for f in it.frames:
                name = f"images/{ep.name}_f{f}.png"
                if not (out / name).is_file():
                    shutil.copyfile(ep.frame_paths[f], out / name)
                names.append(name)
            w, h = ep.truth["width"], ep.truth["height"]
            sample = make_sample(
                f"{task}-{n:04d}",
                names,
                it.question.question,
                it.question.answer,
                kind=it.question.kind,
                task=task,
                sizes=[(w, h)] * len(names),
                description=task_description(it.question.kind),
                meta={
                    "episode": ep.name,
                    "frames": list(it.frames),
                    "motion": ep.truth["motion"],
                    **it.question.meta,
                },
            )
            lines.append(sample_to_json(sample))
    path = out / "benchmark.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _plot(log_rows: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, stage, title in zip(
        axes, ("stage1", "stage2"), ("stage 1: vision (all losses)", "stage 2: answer loss")
    ):
        ys = np.array([r[2] for r in log_rows if r[0] == stage])
        if len(ys):
            k = max(1, len(ys) // 30)
            ax.plot(ys, alpha=0.3)
            ax.plot(np.arange(k - 1, len(ys)), np.convolve(ys, np.ones(k) / k, mode="valid"))
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _hardware(device: torch.device) -> str:
    """Describe the run's hardware for the model card."""
    cpu = f"{torch.get_num_threads()} CPU threads, torch {torch.__version__}"
    return f"{torch.cuda.get_device_name(device)}, {cpu}" if device.type == "cuda" else cpu


def run_recipe(recipe: TinyRecipe) -> dict[str, Any]:
    """Generate data, train both stages, save the model (and ship it if asked); returns a summary."""
    if recipe.image_size != recipe.episode.grid * recipe.patch_size:
        raise ValueError(
            f"image_size {recipe.image_size} must be the targets' patch grid {recipe.episode.grid} x "
            f"patch_size {recipe.patch_size}"
        )
    device = resolve_device(recipe.device)  # a GPU that is not there is refused before any rendering
    torch.set_num_threads(recipe.threads)
    start = time.monotonic()
    deadline = start + recipe.minutes * 60 if recipe.minutes > 0 else float("inf")
    out = Path(recipe.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    eps_dir = Path(recipe.episodes_dir) if recipe.episodes_dir else out / "episodes"
    t = time.perf_counter()
    _generate(recipe, eps_dir)
    gen_s = time.perf_counter() - t
    train_dirs = sorted(
        p
        for p in eps_dir.glob("ep*")
        if int(p.name[2:8]) < BENCH_FIRST_SEED
        and int(p.name[2:8]) < recipe.train_scenes
        and (p / "truth.json").is_file()
    )
    bench_dirs = sorted(
        p
        for p in eps_dir.glob("ep*")
        if BENCH_FIRST_SEED <= int(p.name[2:8]) < BENCH_FIRST_SEED + recipe.bench_scenes
        and (p / "truth.json").is_file()
    )
    # the tokenizer comes first (the model's vocabulary), so questions are drawn once from truth alone
    bank = QuestionBank([json.loads((p / "truth.json").read_text()) for p in train_dirs], recipe.seed)
    bench_bank = QuestionBank(
        [json.loads((p / "truth.json").read_text()) for p in bench_dirs], recipe.bench_seed + 1
    )
    tokenizer = make_tokenizer(question_corpus(bank.questions()), recipe.vocab_size)
    model = make_model(tokenizer, recipe).to(device)
    spec = ImageSpec.from_checkpoint("internvl", model.config, None, max_tiles=1)
    prompts = PromptEncoder(tokenizer, "internvl")
    bank.bind(prompts, spec.tokens_per_tile)
    bench_bank.bind(prompts, spec.tokens_per_tile)
    t = time.perf_counter()
    train_eps = [load_episode(p, spec) for p in train_dirs]
    bench_eps = [load_episode(p, spec) for p in bench_dirs]
    load_s = time.perf_counter() - t
    log.info(
        "%d train episodes (%d question groups), %d benchmark episodes",
        len(train_eps),
        len(bank.keys),
        len(bench_eps),
    )
    eval_items = random.Random(0).sample(bench_bank.items(), min(600, len(bench_bank.items())))
    pad_id, img_id = int(tokenizer.pad_token_id), int(model.config.image_token_id)
    rows: list = []
    untrained = answer_accuracy(model, encode_frames(model, bench_eps), eval_items, pad_id, img_id)
    s1 = pretrain_vision_cached(model, train_eps, recipe, rows, out)
    t = time.perf_counter()
    train_feats, bench_feats = encode_frames(model, train_eps), encode_frames(model, bench_eps)
    encode_s = time.perf_counter() - t
    center_projector(model, train_feats)
    s2 = train_questions(
        model,
        train_eps,
        train_feats,
        bank,
        (bench_feats, eval_items),
        recipe,
        deadline,
        rows,
        pad_id,
        img_id,
    )
    final = answer_accuracy(model, bench_feats, eval_items, pad_id, img_id)
    total_s = time.monotonic() - start
    summary = {
        "recipe": asdict(recipe),
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_episodes": len(train_eps),
        "train_questions": len(bank.questions()),
        "bench_episodes": len(bench_eps),
        "bench_questions": len(bench_bank.questions()),
        "seconds": {
            "generate": gen_s,
            "load": load_s,
            "stage1": s1["seconds"],
            "encode": encode_s,
            "stage2": s2["seconds"],
            "total": total_s,
        },
        "stage1": s1,
        "stage2": s2,
        "teacher_forced_accuracy": {"untrained": untrained, "final": final},
        "hardware": _hardware(device),
    }
    model_dir = save_model(model, tokenizer, recipe, out / "model", summary)
    untrained_model = make_model(tokenizer, recipe)
    save_model(untrained_model, tokenizer, recipe, out / "untrained", {"note": "same shape, not trained"})
    write_benchmark(bench_eps, bench_bank, out / "benchmark", recipe.bench_per_task, recipe.bench_seed)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    with (out / "loss.csv").open("w") as fh:
        fh.write("stage,step,loss,seconds\n")
        fh.writelines(f"{s},{k},{v:.5f},{sec:.2f}\n" for s, k, v, sec in rows)
    _plot(rows, out / "loss.png")
    if recipe.ship_to:
        ship = Path(recipe.ship_to)
        for f in model_dir.iterdir():
            ship.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, ship / f.name)
    summary["model"] = str(model_dir)
    return summary
