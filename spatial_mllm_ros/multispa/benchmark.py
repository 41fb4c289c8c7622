"""The evaluation split: N samples per sub-task (300 in the paper) from held-out scenes, label-balanced.

The held-out scenes are generated into <out>/pool (a normal, resumable generation run); then each
sub-task keeps N samples: categorical answers round-robin over their labels, numeric answers with an
equal quota per magnitude bin (the same carry-over sampler as the pair selection). The split is
<out>/benchmark.jsonl (image paths relative to <out>) with <out>/benchmark_summary.json.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from spatial_mllm_ros.multispa.engine import GenerateConfig, Summary, generate, label_key, stable_hash
from spatial_mllm_ros.multispa.format import sample_from_json, sample_to_json
from spatial_mllm_ros.multispa.geometry import quota_sample

DEFAULT_PER_TASK = 300
SIM_HELD_OUT_FIRST_SEED = 1_000_000  # simulation benchmark scenes never share seeds with training runs
NUMERIC_BINS = 10


@dataclass
class BenchmarkSummary:
    """What the split holds: samples per sub-task, their label balance, and sub-tasks short of N."""

    per_task: dict[str, int]
    label_balance: dict[str, dict[str, int]]
    short: dict[str, int]
    scenes: int
    pool: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """Pretty JSON."""
        return json.dumps(asdict(self), indent=2)


def _numeric(label: Any) -> float | None:
    if isinstance(label, bool | str) or label is None:
        return None
    if isinstance(label, list | tuple):
        return float(np.linalg.norm(np.asarray(label, dtype=np.float64)))
    return float(label)


def select_balanced(lines: list[str], n: int, rng: np.random.Generator) -> list[str]:
    """N lines of one sub-task: round-robin over categorical labels, quota per bin for numeric ones."""
    if len(lines) <= n:
        return list(lines)
    labels = [json.loads(line)["meta"].get("label") for line in lines]
    values = [_numeric(lab) for lab in labels]
    if all(v is not None for v in values):
        arr = np.array(values, dtype=np.float64)
        edges = np.quantile(arr, np.linspace(0, 1, NUMERIC_BINS + 1))
        edges = np.unique(edges)
        if len(edges) > 1:
            picked = quota_sample(arr, edges, n, rng)
        else:
            picked = rng.choice(len(lines), n, replace=False)
        chosen = set(int(i) for i in picked)
        if len(chosen) < n:  # bins with ties can fall short: fill at random from the rest
            rest = [i for i in rng.permutation(len(lines)) if int(i) not in chosen]
            chosen.update(int(i) for i in rest[: n - len(chosen)])
        return [lines[i] for i in sorted(chosen)]
    buckets: dict[str, list[int]] = {}
    for i, lab in enumerate(labels):
        buckets.setdefault(str(lab), []).append(i)
    order = {k: list(rng.permutation(v)) for k, v in sorted(buckets.items())}
    chosen_idx: list[int] = []
    while len(chosen_idx) < n:
        for key in order:
            if order[key] and len(chosen_idx) < n:
                chosen_idx.append(int(order[key].pop()))
    return [lines[i] for i in sorted(chosen_idx)]


def build_benchmark(config: GenerateConfig, per_task: int = DEFAULT_PER_TASK) -> BenchmarkSummary:
    """Generate the held-out pool (resumable) and write the balanced benchmark split next to it."""
    out = config.out
    pool_cfg = replace(config, out=out / "pool")
    pool: Summary = generate(pool_cfg)
    by_task: dict[str, list[str]] = {}
    with (pool_cfg.out / f"samples{pool_cfg.suffix}.jsonl").open() as f:
        for line in f:
            task = json.loads(line)["task"]
            by_task.setdefault(task, []).append(line)
    rng_seed = [config.seed, stable_hash("benchmark")]
    per: dict[str, int] = {}
    balance: dict[str, dict[str, int]] = {}
    short: dict[str, int] = {}
    with (out / "benchmark.jsonl").open("w") as f:
        for task in config.tasks:
            lines = by_task.get(task, [])
            chosen = select_balanced(lines, per_task, np.random.default_rng([*rng_seed, stable_hash(task)]))
            counts: Counter[str] = Counter()
            for line in chosen:
                sample = sample_from_json(line)
                sample.image = [f"pool/{p}" for p in sample.image]
                counts[label_key(sample.meta.get("label"))] += 1
                f.write(sample_to_json(sample) + "\n")
            per[task] = len(chosen)
            balance[task] = dict(sorted(counts.items()))
            if len(chosen) < per_task:
                short[task] = per_task - len(chosen)
    summary = BenchmarkSummary(per, balance, short, pool.scenes_done,
                               {"samples": pool.samples, "skipped": pool.scenes_skipped,
                                "skip_reasons": pool.skip_reasons})
    (out / "benchmark_summary.json").write_text(summary.to_json() + "\n")
    return summary
