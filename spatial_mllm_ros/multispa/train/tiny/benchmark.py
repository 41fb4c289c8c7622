"""The held-out benchmark: the held-out scenes' questions in MultiSPA JSONL, for `spatial-mllm evaluate`.

At most a fixed number per sub-task, drawn with the recipe's bench_seed; frames are copied beside it.
"""

from __future__ import annotations

import random
import shutil
from collections import defaultdict
from pathlib import Path

from spatial_mllm_ros.conventions import task_description
from spatial_mllm_ros.multispa.format import make_sample, sample_to_json
from spatial_mllm_ros.multispa.train.tiny.bank import Item, QuestionBank
from spatial_mllm_ros.multispa.train.tiny.episodes import EpisodeData


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
