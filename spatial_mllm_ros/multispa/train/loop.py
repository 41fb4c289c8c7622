"""The training loop: one code path for a laptop CPU, `torchrun` DDP (gloo/nccl) and `accelerate launch`.

Exact resume: the epoch's sample order is a function of (seed, epoch); a checkpoint stores the weights
being trained, optimizer, scheduler, RNG states and the batch position, so a resumed run produces the
same losses as an uninterrupted one. A wall-clock budget (max_minutes) ends a run early and decays the
learning rate by the time spent as well as by the steps done, so such a run resumes where it stopped but
not bit for bit.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spatial_mllm_ros.multispa.train.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from spatial_mllm_ros.multispa.train.config import TrainConfig
from spatial_mllm_ros.multispa.train.data import (
    ChatSampleEncoder,
    SkipCounter,
    SupervisedDataset,
    dump_skips,
    index_order,
    mix_sources,
    pad_batch,
    records_summary,
    shard,
)
from spatial_mllm_ros.multispa.train.errors import NoTrainingDataError, ResumeError
from spatial_mllm_ros.multispa.train.modeling import TrainableModel, load_for_training

log = logging.getLogger(__name__)
LOSS_CSV = "loss.csv"
LOSS_PNG = "loss.png"


@dataclass
class TrainResult:
    """What a run did: steps, losses, throughput, skips and where the final model is."""

    steps: int
    final_loss: float
    losses: list[float] = field(default_factory=list)
    samples: int = 0
    tokens: int = 0
    seconds: float = 0.0
    skipped: dict[str, int] = field(default_factory=dict)
    output: str = ""
    out_of_time: bool = False  # max_minutes ended the run before its steps

    @property
    def samples_per_s(self) -> float:
        """Training samples per second (all ranks)."""
        return self.samples / self.seconds if self.seconds else 0.0

    @property
    def tokens_per_s(self) -> float:
        """Non-padding tokens per second (all ranks)."""
        return self.tokens / self.seconds if self.seconds else 0.0


@dataclass
class Dist:
    """Where this process sits in a distributed run (world 1 when launched plainly)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0 writes files and shows progress."""
        return self.rank == 0


def init_distributed(device: torch.device) -> Dist:
    """Join the process group torchrun / accelerate launch describe in the environment (gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def sharding_engine() -> str | None:
    """Name the sharding engine (deepspeed / fsdp) `accelerate launch` was configured with, if any."""
    for engine, var in (("deepspeed", "ACCELERATE_USE_DEEPSPEED"), ("fsdp", "ACCELERATE_USE_FSDP")):
        if os.environ.get(var, "").lower() == "true":
            return engine
    return None


def pick_device(name: str) -> torch.device:
    """auto: this rank's GPU when CUDA is there, else CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    total_steps: int,
    time_spent: Callable[[], float] = lambda: 0.0,
) -> Any:
    """Warmup then cosine/linear decay (or constant), as a LambdaLR whose state is plain numbers.

    time_spent: the share of a wall-clock budget used (0-1); the decay follows it where it is ahead of
    the steps, so a run that the clock ends still ends at a low rate.
    """
    warmup = int(math.ceil(config.warmup_ratio * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if config.scheduler == "constant":
            return 1.0
        progress = max((step - warmup) / max(1, total_steps - warmup), time_spent())
        if config.scheduler == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases, norms and embeddings of position."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "norm" in name or "position" in name else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.adam_betas)


class LossLog:
    """Loss curve as CSV (always), PNG (at checkpoints and the end) and TensorBoard (optional)."""

    def __init__(self, out: Path, tensorboard: bool, resume_step: int) -> None:
        self.csv = out / LOSS_CSV
        self.png = out / LOSS_PNG
        if resume_step == 0 or not self.csv.is_file():
            self.csv.write_text("step,loss,lr,samples,tokens,seconds\n")
        else:  # drop rows past the resume point: the resumed run rewrites them
            rows = self.csv.read_text().splitlines()
            keep = [rows[0]] + [r for r in rows[1:] if int(r.split(",")[0]) <= resume_step]
            self.csv.write_text("\n".join(keep) + "\n")
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise ImportError(
                    "tensorboard: true needs the tensorboard package (pip install tensorboard); "
                    "the CSV + PNG loss curve needs nothing"
                ) from exc
            self.writer = SummaryWriter(str(out / "tensorboard"))

    def add(self, step: int, loss: float, lr: float, samples: int, tokens: int, seconds: float) -> None:
        """Append one optimizer step."""
        with self.csv.open("a", newline="") as fh:
            csv.writer(fh).writerow([step, f"{loss:.6f}", f"{lr:.3e}", samples, tokens, f"{seconds:.2f}"])
        if self.writer is not None:
            self.writer.add_scalar("train/loss", loss, step)
            self.writer.add_scalar("train/lr", lr, step)

    def plot(self) -> None:
        """Render loss.png from loss.csv (raw and smoothed)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = list(csv.DictReader(self.csv.open()))
        if not rows:
            return
        steps = np.array([int(r["step"]) for r in rows])
        loss = np.array([float(r["loss"]) for r in rows])
        k = max(1, len(loss) // 20)
        smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(steps, loss, alpha=0.35, label="loss")
        ax.plot(steps[k - 1 :], smooth, label=f"mean of {k}")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("answer-token loss")
        ax.set_yscale("log")
        ax.legend()
        fig.tight_layout()
        fig.savefig(self.png, dpi=100)
        plt.close(fig)


class Trainer:
    """Runs one TrainConfig: data, model, optimizer, schedule, checkpoints, curves."""

    def __init__(self, config: TrainConfig, trainable: TrainableModel | None = None) -> None:
        self.config = config
        self.engine = sharding_engine()
        self.accelerator: Any = None
        if self.engine:  # DeepSpeed ZeRO / FSDP: accelerate owns the process group and the wrapping
            from accelerate import Accelerator

            if config.resume:
                raise ResumeError(
                    f"resume under {self.engine} is not supported (its checkpoints are pickles); "
                    "resume with torchrun/DDP instead"
                )
            self.accelerator = Accelerator()
            self.device = self.accelerator.device
            st = self.accelerator.state
            self.dist = Dist(st.process_index, st.num_processes, st.local_process_index)
        else:
            self.device = pick_device(config.device)
            self.dist = init_distributed(self.device)
        seed_everything(config.seed)
        self.tm = trainable or load_for_training(config)
        self.out = Path(config.output_dir)
        self.skipped = SkipCounter()
        records = mix_sources(
            config.data, self.skipped, config.seed, config.max_samples, config.prompt_style
        )
        if not records:
            raise NoTrainingDataError(self.skipped)
        self.records = records
        encoder = ChatSampleEncoder(self.tm.image_spec, self.tm.prompts)
        self.dataset = SupervisedDataset(records, encoder, config.max_length, self.skipped)
        self.model = self.tm.model.to(self.device)
        self.ddp: Any = self.model
        if self.dist.world > 1 and not self.engine:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.model, device_ids=ids, find_unused_parameters=False)
        per_step = config.batch_size * config.grad_accum * self.dist.world
        self.steps_per_epoch = max(1, len(records) // per_step)
        self.total_steps = config.max_steps or max(1, int(round(config.epochs * self.steps_per_epoch)))
        self.optimizer = make_optimizer(self.model, config)
        self.clock_start = time.perf_counter()  # moved back by the time a resumed run had already spent
        self.time_spent = 0.0  # share of max_minutes, the same on every rank (see tick)
        self.scheduler = make_scheduler(self.optimizer, config, self.total_steps, lambda: self.time_spent)
        if self.accelerator is not None:
            self.ddp, self.optimizer, self.scheduler = self.accelerator.prepare(
                self.model, self.optimizer, self.scheduler
            )

    def _batches(self, epoch: int) -> list[list[int]]:
        lengths = [r.est_length for r in self.records] if self.config.group_by_length else None
        order = index_order(len(self.records), self.config.seed, epoch, lengths, self.config.batch_size)
        return shard(order, self.dist.rank, self.dist.world, self.config.batch_size)

    def _micro_batch(self, indices: list[int]) -> dict[str, torch.Tensor] | None:
        items = [e for e in (self.dataset[i] for i in indices) if e is not None]
        if not items:
            return None
        pad = self.tm.tokenizer.pad_token_id
        batch = pad_batch(items, pad if pad is not None else 0)
        batch["pixel_values"] = batch["pixel_values"].to(self.model.dtype)
        return {k: v.to(self.device) for k, v in batch.items()}

    def tick(self) -> bool:
        """Update the share of max_minutes spent (rank 0's clock on every rank); True while some is left."""
        if not self.config.max_minutes:
            return True
        spent = (time.perf_counter() - self.clock_start) / (60.0 * self.config.max_minutes)
        if self.dist.world > 1:  # ranks that disagreed would stop apart, or step with other rates
            import torch.distributed as dist

            shared = torch.tensor([spent], dtype=torch.float64, device=self.device)
            dist.broadcast(shared, 0)
            spent = float(shared)
        self.time_spent = spent
        return spent < 1.0

    def _resume(self) -> dict[str, Any]:
        if not self.config.resume:
            return {"step": 0, "epoch": 0, "batch": 0, "samples": 0, "tokens": 0, "seconds": 0.0}
        path = latest_checkpoint(self.out) if self.config.resume == "auto" else Path(self.config.resume)
        if path is None:
            if self.config.resume == "auto":
                return self._resume_fresh()
            raise ResumeError(f"no checkpoint to resume from in {self.out}")
        progress = load_checkpoint(path, self.model, self.optimizer, self.scheduler)
        log.info("resumed from %s at step %d", path, progress["step"])
        return progress

    def _resume_fresh(self) -> dict[str, Any]:
        self.config.resume = ""
        return self._resume()

    def save(self, progress: dict[str, Any]) -> Path | None:
        """Checkpoint (rank 0) and refresh the loss plot."""
        if self.accelerator is not None:  # sharded states: every rank writes its shard
            path = self.out / f"checkpoint-{progress['step']}"
            self.accelerator.save_state(str(path), safe_serialization=True)
            return path
        if not self.dist.main:
            return None
        path = save_checkpoint(
            self.out / f"checkpoint-{progress['step']}", self.model, self.optimizer, self.scheduler, progress
        )
        prune_checkpoints(self.out, self.config.keep_checkpoints)
        return path

    def train(self) -> TrainResult:
        """Run to total_steps (resuming if asked); saves the final model under output_dir/final."""
        cfg = self.config
        self.out.mkdir(parents=True, exist_ok=True)
        progress = self._resume()
        curve = LossLog(self.out, cfg.tensorboard, progress["step"]) if self.dist.main else None
        if self.dist.main:
            (self.out / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
            (self.out / "data_summary.json").write_text(
                json.dumps(records_summary(self.records), indent=2) + "\n"
            )
        bar = None
        if self.dist.main and cfg.progress:
            from tqdm import tqdm

            bar = tqdm(total=self.total_steps, initial=progress["step"], desc="train", unit="step")
        losses: list[float] = []
        self.ddp.train()
        start = self.clock_start = time.perf_counter() - float(progress["seconds"])
        epoch, batch_pos = int(progress["epoch"]), int(progress["batch"])
        batches = self._batches(epoch)
        step = int(progress["step"])
        out_of_time = False
        while step < self.total_steps:
            if not self.tick():
                out_of_time = True
                log.warning("max_minutes=%s reached after %d of %d steps", cfg.max_minutes, step,
                            self.total_steps)
                break
            step_loss, step_tokens, step_samples = 0.0, 0, 0
            for _ in range(cfg.grad_accum):
                if batch_pos >= len(batches):
                    epoch, batch_pos = epoch + 1, 0
                    batches = self._batches(epoch)
                batch = self._micro_batch(batches[batch_pos])
                batch_pos += 1
                if batch is None:
                    continue
                loss = self.ddp(**batch).loss / cfg.grad_accum
                if self.accelerator is not None:
                    self.accelerator.backward(loss)
                else:
                    loss.backward()
                step_loss += float(loss.detach())
                step_tokens += int(batch["attention_mask"].sum())
                step_samples += int(batch["input_ids"].shape[0])
            if cfg.max_grad_norm > 0 and self.accelerator is not None:
                self.accelerator.clip_grad_norm_(self.ddp.parameters(), cfg.max_grad_norm)
            elif cfg.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(
                    [p for p in self.model.parameters() if p.requires_grad], cfg.max_grad_norm
                )
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            step += 1
            losses.append(step_loss)
            progress.update(
                step=step,
                epoch=epoch,
                batch=batch_pos,
                samples=progress["samples"] + step_samples * self.dist.world,
                tokens=progress["tokens"] + step_tokens * self.dist.world,
                seconds=time.perf_counter() - start,
            )
            if curve is not None:
                curve.add(
                    step,
                    step_loss,
                    self.scheduler.get_last_lr()[0],
                    progress["samples"],
                    progress["tokens"],
                    progress["seconds"],
                )
            if bar is not None:
                bar.update(1)
                if step % max(1, cfg.log_every) == 0:
                    left = (1 - self.time_spent) * cfg.max_minutes
                    clock = {"minutes_left": f"{left:.1f}"} if cfg.max_minutes else {}
                    bar.set_postfix(loss=f"{step_loss:.4f}", skipped=sum(self.skipped.values()), **clock)
            if cfg.save_every and step % cfg.save_every == 0 and step < self.total_steps:
                self.save(progress)
                if curve is not None:
                    curve.plot()
        if bar is not None:
            bar.close()
        final = self.out / "final"
        if self.accelerator is not None:
            self.save(progress)
            self.save_model(final)
        elif self.dist.main:
            self.save(progress)
            self.save_model(final)
            dump_skips(self.skipped, self.out / "skipped.json")
            if curve is not None:
                curve.plot()
        if self.skipped:
            log.warning("skipped samples: %s", self.skipped.summary())
        if self.dist.world > 1 and self.accelerator is None:
            import torch.distributed as dist

            dist.barrier()
            dist.destroy_process_group()
        return TrainResult(
            step,
            losses[-1] if losses else float("nan"),
            losses,
            int(progress["samples"]),
            int(progress["tokens"]),
            float(progress["seconds"]),
            dict(self.skipped),
            str(final),
            out_of_time,
        )

    def save_model(self, path: Path) -> Path:
        """Save the trained model for the runtime: a LoRA adapter dir, or a full checkpoint + tokenizer."""
        path.mkdir(parents=True, exist_ok=True)
        if self.accelerator is not None:  # gather the shards; only the main process writes
            state = self.accelerator.get_state_dict(self.ddp)
            if self.accelerator.is_main_process:
                self.accelerator.unwrap_model(self.ddp).save_pretrained(
                    path, state_dict=state, safe_serialization=True
                )
                self.tm.tokenizer.save_pretrained(path)
            return path
        self.model.save_pretrained(path, safe_serialization=True)
        self.tm.tokenizer.save_pretrained(path)
        pre = self.tm.checkpoint / "preprocessor_config.json"
        if pre.is_file() and self.config.tuning != "lora":  # a whole model, not an adapter
            (path / pre.name).write_text(pre.read_text())
        return path


def train(config: TrainConfig) -> TrainResult:
    """Run a training config end to end."""
    return Trainer(config).train()
