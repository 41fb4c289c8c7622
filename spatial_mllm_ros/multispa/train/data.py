"""MultiSPA JSONL as training batches: reading, mixing, skipping bad samples, collating model inputs.

A bad line never stops an epoch: malformed JSON, missing images, unreadable images, a prompt whose
<image> count differs from its images, an answer without a value (prompt style "runtime"), or a sample
longer than the context are skipped and counted under their reason (`SkipCounter`). The loss covers the
answer tokens only.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from spatial_mllm_ros.conventions import IMAGE_TOKEN
from spatial_mllm_ros.model.preprocess import ImageSpec, prepare_image
from spatial_mllm_ros.model.prompts import PromptEncoder
from spatial_mllm_ros.multispa.format import Sample, sample_from_json
from spatial_mllm_ros.multispa.train.asked import as_asked
from spatial_mllm_ros.multispa.train.config import DataSource

IGNORE_INDEX = -100
SKIP_REASONS = (
    "malformed line",
    "missing image",
    "unreadable image",
    "image count mismatch",
    "answer without a value",
    "too long",
)


class SkipCounter(Counter):
    """Skipped samples counted by reason (one of SKIP_REASONS)."""

    def summary(self) -> str:
        """One line: "too long: 3, missing image: 1" (or "none")."""
        return ", ".join(f"{k}: {v}" for k, v in sorted(self.items())) or "none"


@dataclass
class Record:
    """A parsed JSONL line with its image paths resolved and an estimated token length for grouping."""

    sample: Sample
    image_paths: list[Path]
    est_length: int


@dataclass
class Encoded:
    """One sample as model inputs: token ids, answer-only labels and the image tensors."""

    input_ids: list[int]
    labels: list[int]
    pixel_values: torch.Tensor  # (tiles, 3, H, W)
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # family-specific (e.g. image_grid_thw)


class SampleEncoder(Protocol):
    """Turns a sample and its RGB frames into model inputs."""

    def encode(self, sample: Sample, images: Sequence[np.ndarray]) -> Encoded: ...


class ChatSampleEncoder:
    """The runtime's own preprocessing and prompt layout (model.preprocess, model.prompts).

    Training and inference thus see identical inputs for every family.
    """

    def __init__(self, image_spec: ImageSpec, prompts: PromptEncoder) -> None:
        self.image_spec = image_spec
        self.prompts = prompts

    def encode(self, sample: Sample, images: Sequence[np.ndarray]) -> Encoded:
        """Tiles/patches per image, then prompt + answer ids with answer-only labels."""
        prepared = [prepare_image(img, self.image_spec) for img in images]
        ids, labels = self.prompts.encode_training(
            [p.n_tokens for p in prepared], sample.prompt, sample.answer
        )
        extra = {}
        if prepared and prepared[0].grid_thw is not None:
            extra["image_grid_thw"] = torch.tensor([p.grid_thw for p in prepared], dtype=torch.long)
        return Encoded(ids, labels, torch.cat([p.pixel_values for p in prepared]), extra)


def read_jsonl(source: DataSource, skipped: SkipCounter, prompt_style: str = "as_written") -> list[Record]:
    """Parse one JSONL file; malformed lines and lines naming missing images are counted and dropped.

    prompt_style "runtime" rewrites each sample as the runtime asks it (train.asked).
    """
    path = Path(source.path)
    root = Path(source.image_root) if source.image_root else path.parent
    records: list[Record] = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                sample = sample_from_json(line)
                chars = len(sample.prompt) + len(sample.answer)  # both turns are there
            except (ValueError, KeyError, TypeError, StopIteration, AttributeError):
                skipped["malformed line"] += 1
                continue
            if prompt_style == "runtime":
                asked = as_asked(sample)
                if asked is None:
                    skipped["answer without a value"] += 1
                    continue
                sample = asked
            paths = [p if p.is_absolute() else root / p for p in map(Path, sample.image)]
            if not all(p.is_file() for p in paths):
                skipped["missing image"] += 1
                continue
            est = chars // 3 + 256 * len(paths)
            records.append(Record(sample, paths, est))
    return records


def mix_sources(
    sources: Sequence[DataSource],
    skipped: SkipCounter,
    seed: int = 0,
    max_samples: int = 0,
    prompt_style: str = "as_written",
) -> list[Record]:
    """Read every source and mix them: `ratio` repeats a source (2.0 twice, 0.5 a random half)."""
    rng = random.Random(seed)
    mixed: list[Record] = []
    for source in sources:
        records = read_jsonl(source, skipped, prompt_style)
        whole, frac = divmod(source.ratio, 1.0)
        mixed += records * int(whole)
        mixed += rng.sample(records, int(round(frac * len(records)))) if frac else []
    rng.shuffle(mixed)
    return mixed[:max_samples] if max_samples > 0 else mixed


def load_rgb(path: Path) -> np.ndarray:
    """Read an image file as RGB uint8 HxWx3 (raises OSError/ValueError when it cannot be decoded)."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def frame_descriptors(
    model: Any, sources: Sequence[str | Path], limit: int, progress: bool = False
) -> np.ndarray:
    """Describe up to `limit` frames of `sources` (image files or folders) for OOD statistics."""
    from tqdm import tqdm

    from spatial_mllm_ros.model.ood import image_files

    files = image_files(sources, limit)
    images = [load_rgb(p) for p in tqdm(files, desc="reading frames", unit="frame", disable=not progress)]
    return model.frame_descriptors(images)


def fit_ood_statistics(
    model_dir: Path, frames: Sequence[str | Path], limit: int = 2000, device: str = "cpu"
) -> Path:
    """Save the OOD statistics of the frames the model trained on beside it (read as the runtime does).

    `device` is the training's: the vision tower encodes up to `limit` frames, minutes on a CPU.
    """
    from spatial_mllm_ros.model.config import ModelConfig
    from spatial_mllm_ros.model.ood import fit_feature_stats
    from spatial_mllm_ros.model.runtime import SpatialModel

    runtime = SpatialModel.load(ModelConfig(checkpoint=str(model_dir), device=device, shift_expert="none"))
    try:
        return fit_feature_stats(frame_descriptors(runtime, frames, limit)).save(model_dir)
    finally:
        runtime.close()


class SupervisedDataset(torch.utils.data.Dataset):
    """Map-style dataset of encoded samples; a bad sample yields None and is counted, never raised."""

    def __init__(
        self,
        records: Sequence[Record],
        encoder: SampleEncoder,
        max_length: int,
        skipped: SkipCounter | None = None,
    ) -> None:
        self.records = list(records)
        self.encoder = encoder
        self.max_length = max_length
        self.skipped = skipped if skipped is not None else SkipCounter()

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Encoded | None:
        rec = self.records[index]
        if rec.sample.prompt.count(IMAGE_TOKEN) != len(rec.image_paths):
            self.skipped["image count mismatch"] += 1
            return None
        try:
            images = [load_rgb(p) for p in rec.image_paths]
        except FileNotFoundError:
            self.skipped["missing image"] += 1
            return None
        except (OSError, ValueError, SyntaxError):
            self.skipped["unreadable image"] += 1
            return None
        enc = self.encoder.encode(rec.sample, images)
        if len(enc.input_ids) > self.max_length:
            self.skipped["too long"] += 1
            return None
        return enc


class LengthGroupedSampler(torch.utils.data.Sampler[int]):
    """Shuffled indices where each mega-batch (batch_size * 50) is sorted by length: less padding."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0, epoch: int = 0) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=g).tolist()
        mega = self.batch_size * 50
        for start in range(0, len(order), mega):
            chunk = sorted(order[start : start + mega], key=lambda i: -self.lengths[i])
            yield from chunk


def index_order(n: int, seed: int, epoch: int, lengths: Sequence[int] | None, batch_size: int) -> list[int]:
    """Return one epoch's sample order: a seeded permutation, length-grouped when lengths are given."""
    if lengths is not None:
        return list(LengthGroupedSampler(lengths, batch_size, seed, epoch))
    g = torch.Generator().manual_seed(seed + epoch)
    return torch.randperm(n, generator=g).tolist()


def shard(order: Sequence[int], rank: int, world: int, batch_size: int) -> list[list[int]]:
    """Split an epoch's order into this rank's batches (equal counts on every rank; tail dropped)."""
    per_step = batch_size * world
    steps = len(order) // per_step if len(order) >= per_step else (1 if order else 0)
    batches = []
    for s in range(steps):
        block = list(order[s * per_step : (s + 1) * per_step])
        if len(block) < per_step:  # fewer samples than one global batch: wrap around
            block = (block * math.ceil(per_step / len(block)))[:per_step]
        batches.append(block[rank * batch_size : (rank + 1) * batch_size])
    return batches


def pad_batch(items: Sequence[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad token ids and labels; concatenate image tiles in sample order."""
    width = max(len(e.input_ids) for e in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for k, e in enumerate(items):
        n = len(e.input_ids)
        ids[k, :n] = torch.tensor(e.input_ids)
        labels[k, :n] = torch.tensor(e.labels)
        mask[k, :n] = 1
    batch: dict[str, Any] = {
        "input_ids": ids,
        "labels": labels,
        "attention_mask": mask,
        "pixel_values": torch.cat([e.pixel_values for e in items]),
    }
    for key in items[0].extra:
        batch[key] = torch.cat([e.extra[key] for e in items])
    return batch


def records_summary(records: Sequence[Record]) -> dict[str, int]:
    """Count samples per sub-task (for the run log and the model card)."""
    return dict(Counter(r.sample.task or "unknown" for r in records))


def dump_skips(skipped: SkipCounter, path: Path) -> None:
    """Write the skip counts as JSON next to the run's other outputs."""
    path.write_text(json.dumps(dict(skipped), indent=2, sort_keys=True) + "\n")
