"""The held-out benchmark: the held-out scenes' questions in MultiSPA JSONL, for `spatial-mllm evaluate`.

At most a fixed number per sub-task, drawn with the recipe's bench_seed; frames are copied beside it.
"""

from __future__ import annotations

import random
import shutil
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from spatial_mllm_ros.conventions import task_description
from spatial_mllm_ros.multispa.format import make_sample, sample_to_json
from spatial_mllm_ros.multispa.train.questions import Question
from spatial_mllm_ros.multispa.train.tiny.bank import QuestionBank


class EpisodeFrames(Protocol):
    """What the benchmark reads of an episode (EpisodeData has it; so do episodes never preprocessed)."""

    name: str
    truth: dict
    frame_paths: list[Path]


def write_benchmark(
    episodes: Sequence[EpisodeFrames], bank: QuestionBank, out: Path, per_task: int, seed: int
) -> Path:
    """Held-out benchmark in MultiSPA JSONL (images copied next to it), at most per_task per sub-task.

    Reads the bank's questions as drawn (no tokenizer needed), in the order of its items.
    """
    out.mkdir(parents=True, exist_ok=True)
    (out / "images").mkdir(exist_ok=True)
    rng = random.Random(seed)
    by_task: dict[str, list[tuple[int, tuple[int, ...], Question]]] = defaultdict(list)
    for (episode, frames), questions in bank.groups.items():
        for q in questions:
            by_task[q.task].append((episode, frames, q))
    lines = []
    for task in sorted(by_task):
        chosen = rng.sample(by_task[task], min(per_task, len(by_task[task])))
        for n, (episode, frames, question) in enumerate(chosen):
            ep = episodes[episode]
            names = []
            for f in frames:
                name = f"images/{ep.name}_f{f}.png"
                if not (out / name).is_file():
                    shutil.copyfile(ep.frame_paths[f], out / name)
                names.append(name)
            w, h = ep.truth["width"], ep.truth["height"]
            sample = make_sample(
                f"{task}-{n:04d}",
                names,
                question.question,
                question.answer,
                kind=question.kind,
                task=task,
                sizes=[(w, h)] * len(names),
                description=task_description(question.kind),
                meta={
                    "episode": ep.name,
                    "frames": list(frames),
                    "motion": ep.truth["motion"],
                    **question.meta,
                },
            )
            lines.append(sample_to_json(sample))
    path = out / "benchmark.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path
