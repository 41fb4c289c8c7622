"""Score answers on a MultiSPA-format benchmark with the paper's metrics, as JSON and Markdown.

Answers come from a checkpoint (our runtime answers every question) or from any model's answer file.

Answer file (`--answers`): JSONL, one {"id": <sample id>, "answer": <raw model text>} per line; the text
is parsed the way our runtime's answers are (answers.parse_answer), so external models compare fairly.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spatial_mllm_ros.answers import parse_answer
from spatial_mllm_ros.multispa.format import Sample, sample_from_json
from spatial_mllm_ros.multispa.metrics import Scores, score_all
from spatial_mllm_ros.multispa.train.errors import TrainError

log = logging.getLogger(__name__)
BENCHMARK_FILE = "benchmark.jsonl"


class BenchmarkError(TrainError, ValueError):
    """A benchmark or answer file that cannot be read; names the file and line."""


@dataclass
class Benchmark:
    """Samples of a benchmark and the folder their image paths are relative to."""

    samples: list[Sample]
    root: Path


def load_benchmark(path: str | Path) -> Benchmark:
    """Read DIR/benchmark.jsonl, else the data engine's DIR/samples*.jsonl, or one .jsonl file."""
    p = Path(path)
    if p.is_file():
        files = [p]
    elif (p / BENCHMARK_FILE).is_file():
        files = [p / BENCHMARK_FILE]
    else:
        files = sorted(p.glob("samples*.jsonl")) if p.is_dir() else []
    if not files:
        raise BenchmarkError(f"no benchmark found at {p} (expected {BENCHMARK_FILE} or samples*.jsonl)")
    samples = []
    for f in files:
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    samples.append(sample_from_json(line))
                except (ValueError, KeyError, TypeError) as exc:
                    raise BenchmarkError(f"{f}:{n}: not a MultiSPA sample ({exc})") from exc
    return Benchmark(samples, files[0].parent)


def question_text(sample: Sample) -> str:
    """Return the question line of a prompt (its last line: image lines and description come first)."""
    return sample.prompt.strip().splitlines()[-1]


def _size(sample: Sample) -> tuple[int, int] | None:
    if sample.width_list and sample.height_list:
        return int(sample.width_list[-1]), int(sample.height_list[-1])
    return None


def score_answers(bench: Benchmark, answers: dict[str, str]) -> Scores:
    """Score raw answer texts by sample id; a missing answer counts as wrong (and unparsed)."""
    rows = []
    for s in bench.samples:
        gt = parse_answer(s.answer, s.kind).value
        raw = answers.get(s.id)
        pred = parse_answer(raw, s.kind).value if raw is not None else None
        rows.append((s.task or "unknown", s.kind, pred, gt, _size(s)))
    return score_all(rows)


def read_answers(path: str | Path) -> dict[str, str]:
    """Answer JSONL -> {id: raw text}."""
    out: dict[str, str] = {}
    p = Path(path)
    if not p.is_file():
        raise BenchmarkError(f"answer file not found: {p}")
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            out[str(d["id"])] = str(d["answer"])
        except (ValueError, KeyError, TypeError) as exc:
            raise BenchmarkError(f'{p}:{n}: expected {{"id": ..., "answer": ...}} ({exc})') from exc
    return out


def checkpoint_tiles(checkpoint: Path) -> int:
    """Tiles per frame the checkpoint was trained with (preprocessor_config max_patches), default 6."""
    pre = checkpoint / "preprocessor_config.json"
    if pre.is_file():
        return int(json.loads(pre.read_text()).get("max_patches", 6))
    return 6


def answer_with_model(
    bench: Benchmark,
    checkpoint: str | Path,
    device: str = "auto",
    progress: bool = True,
    max_tiles: int | None = None,
    number_beam: int | None = None,
) -> dict[str, str]:
    """Ask our runtime every question (questions over the same frames go as one batch); {id: raw text}.

    number_beam: digit prefixes the runtime follows for integer answers (None: its default; 0: greedy).
    """
    from tqdm import tqdm

    from spatial_mllm_ros.answers import Question
    from spatial_mllm_ros.model.config import ModelConfig
    from spatial_mllm_ros.model.runtime import SpatialModel
    from spatial_mllm_ros.multispa.train.data import load_rgb

    ckpt = Path(checkpoint)
    model = SpatialModel.load(
        ModelConfig(
            checkpoint=str(ckpt),
            device=device,
            max_tiles=max_tiles or checkpoint_tiles(ckpt),
            vision_backends=("torch",),
            **({} if number_beam is None else {"number_beam": number_beam}),
        )
    )
    groups: dict[tuple[str, ...], list[Sample]] = defaultdict(list)
    for s in bench.samples:
        groups[tuple(s.image)].append(s)
    out: dict[str, str] = {}
    try:
        for images, samples in tqdm(groups.items(), desc="answering", unit="frames", disable=not progress):
            frames = [load_rgb(bench.root / p) for p in images]
            answers = model.ask_many(
                frames, [Question(question_text(s), kind=s.kind, id=s.id) for s in samples]
            )
            for s, a in zip(samples, answers):
                out[s.id] = a.raw if a.probabilities is None else f"`{a.value}`"
    finally:
        model.close()
    return out


def write_report(
    scores: Scores, out_dir: Path, title: str, answers: dict[str, str] | None = None
) -> dict[str, Any]:
    """Write scores.json, scores.md (and answers.jsonl when given) under out_dir; returns the JSON."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"title": title, **scores.to_json()}
    (out_dir / "scores.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "scores.md").write_text(scores.to_markdown(title))
    if answers is not None:
        (out_dir / "answers.jsonl").write_text(
            "".join(json.dumps({"id": k, "answer": v}) + "\n" for k, v in answers.items())
        )
    return report
