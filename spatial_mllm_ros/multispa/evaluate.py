"""Score answers on a MultiSPA-format benchmark with the paper's metrics, as JSON and Markdown.

Answers come from a checkpoint (our runtime answers every question) or from any model's answer file.

Answer file (`--answers`): JSONL, one {"id": <sample id>, "answer": <raw model text>} per line; the text
is parsed the way our runtime's answers are (answers.parse_answer), so external models compare fairly.
Optional per line: "confidence" (0-1, for the calibration error) and "probabilities" ({option: p}, for
temperature scaling of closed-set answers); our runtime writes both.

Several benchmark sets (a suite) are a folder of NAME/benchmark.jsonl; their answers NAME/answers.jsonl.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spatial_mllm_ros.answers import parse_answer
from spatial_mllm_ros.conventions import is_correct
from spatial_mllm_ros.multispa.format import Sample, sample_from_json
from spatial_mllm_ros.multispa.metrics import Scores, score_all
from spatial_mllm_ros.multispa.train.errors import TrainError

log = logging.getLogger(__name__)
BENCHMARK_FILE = "benchmark.jsonl"
ANSWERS_FILE = "answers.jsonl"


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


def benchmark_sets(path: str | Path) -> dict[str, Path]:
    """Name the sets at a path: one benchmark (named after its folder or file) or a folder of NAME/ sets."""
    p = Path(path)
    if p.is_file():
        return {p.parent.name if p.name == BENCHMARK_FILE else p.stem: p}
    if (p / BENCHMARK_FILE).is_file() or any(p.glob("samples*.jsonl")):
        return {p.name: p}
    sets = {d.name: d for d in sorted(p.iterdir()) if (d / BENCHMARK_FILE).is_file()} if p.is_dir() else {}
    if not sets:
        raise BenchmarkError(f"no benchmark found at {p} (expected {BENCHMARK_FILE}, samples*.jsonl "
                             f"or NAME/{BENCHMARK_FILE} sets)")
    return sets


def _size(sample: Sample) -> tuple[int, int] | None:
    if sample.width_list and sample.height_list:
        return int(sample.width_list[-1]), int(sample.height_list[-1])
    return None


@dataclass(frozen=True)
class Reply:
    """A model's reply to one question: raw text and, where the model gives them, how sure it was.

    probabilities: per option for closed answer sets (what a temperature rescales); for numbers, the
    likeliest values.
    """

    text: str
    confidence: float | None = None
    probabilities: dict[str, float] | None = None
    ood_score: float | None = None  # how unfamiliar the frames were (model/ood.py)

    def to_json(self, id: str) -> dict[str, Any]:
        """One answer-file line (without the fields the model did not give)."""
        line: dict[str, Any] = {"id": id, "answer": self.text}
        if self.confidence is not None:
            line["confidence"] = self.confidence
        if self.probabilities is not None:
            line["probabilities"] = self.probabilities
        if self.ood_score is not None:
            line["ood_score"] = self.ood_score
        return line


@dataclass(frozen=True)
class Graded:
    """One benchmark question with its parsed truth and prediction, and the reply (None: unanswered)."""

    sample: Sample
    truth: Any
    prediction: Any
    reply: Reply | None

    @property
    def task(self) -> str:
        """The sub-task name ("unknown" when the sample has none)."""
        return self.sample.task or "unknown"

    @property
    def size(self) -> tuple[int, int] | None:
        """(width, height) of the last frame, which pixel answers refer to."""
        return _size(self.sample)

    @property
    def correct(self) -> bool:
        """Whether the prediction is right by the paper's rule for the question's kind."""
        return is_correct(self.sample.kind, self.prediction, self.truth, *(self.size or (None, None)))


def grade(bench: Benchmark, answers: Mapping[str, Reply]) -> list[Graded]:
    """Parse every question's truth and its reply (by sample id) the same way."""
    graded = []
    for s in bench.samples:
        reply = answers.get(s.id)
        pred = parse_answer(reply.text, s.kind).value if reply is not None else None
        graded.append(Graded(s, parse_answer(s.answer, s.kind).value, pred, reply))
    return graded


def score_graded(graded: Iterable[Graded]) -> Scores:
    """Score graded questions by sub-task with the paper's rules; unanswered ones are wrong (and unparsed)."""
    return score_all((g.task, g.sample.kind, g.prediction, g.truth, g.size) for g in graded)


def score_answers(bench: Benchmark, answers: Mapping[str, Reply]) -> Scores:
    """Score replies by sample id; a missing answer counts as wrong (and unparsed)."""
    return score_graded(grade(bench, answers))


def _reply(d: dict[str, Any]) -> Reply:
    confidence, probabilities, ood = d.get("confidence"), d.get("probabilities"), d.get("ood_score")
    return Reply(
        str(d["answer"]),
        None if confidence is None else float(confidence),
        None if probabilities is None else {str(k): float(v) for k, v in probabilities.items()},
        None if ood is None else float(ood),
    )


def read_answers(path: str | Path) -> dict[str, Reply]:
    """Answer JSONL -> {id: reply}."""
    out: dict[str, Reply] = {}
    p = Path(path)
    if not p.is_file():
        raise BenchmarkError(f"answer file not found: {p}")
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            out[str(d["id"])] = _reply(d)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BenchmarkError(f'{p}:{n}: expected {{"id": ..., "answer": ...}} ({exc})') from exc
    return out


def read_answer_sets(path: str | Path, names: Iterable[str]) -> dict[str, dict[str, Reply]]:
    """Answers of each named set: PATH itself for a lone set given a file, else PATH/NAME/answers.jsonl."""
    p, names = Path(path), list(names)
    if p.is_file() and len(names) == 1:
        return {names[0]: read_answers(p)}
    return {name: read_answers(p / name / ANSWERS_FILE) for name in names}


def write_answers(answers: Mapping[str, Reply], path: Path) -> Path:
    """Write an answer file that read_answers reads back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r.to_json(i)) + "\n" for i, r in answers.items()))
    return path


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
    shift_expert: str = "auto",
) -> dict[str, Reply]:
    """Ask our runtime every question of one benchmark; {id: reply} (see answer_sets)."""
    return answer_sets({"": bench}, checkpoint, device, progress, max_tiles, number_beam,
                       shift_expert=shift_expert)[""]


def answer_sets(
    sets: Mapping[str, Benchmark],
    checkpoint: str | Path,
    device: str = "auto",
    progress: bool = True,
    max_tiles: int | None = None,
    number_beam: int | None = None,
    vision_backend: str = "torch",
    shift_expert: str = "auto",
) -> dict[str, dict[str, Reply]]:
    """Ask our runtime every question of every set, the model loaded once; {set: {id: reply}}.

    Questions over the same frames go as one batch. number_beam: digit prefixes the runtime follows for
    integer answers (None: its default; 0: greedy). vision_backend: the one that encodes the frames,
    whatever its speed here (an exported one must exist: spatial-mllm export-vision). shift_expert: as
    ModelConfig.shift_expert ("none": the checkpoint alone, even where it ships one).
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
            vision_backends=(vision_backend,),
            measure_backends=False,
            shift_expert=shift_expert,
            **({} if number_beam is None else {"number_beam": number_beam}),
        )
    )
    out: dict[str, dict[str, Reply]] = {}
    try:
        for name, bench in sets.items():
            groups: dict[tuple[str, ...], list[Sample]] = defaultdict(list)
            for s in bench.samples:
                groups[tuple(s.image)].append(s)
            replies = out[name] = {}
            desc = f"answering {name}".strip()
            for images, samples in tqdm(groups.items(), desc=desc, unit="frames", disable=not progress):
                frames = [load_rgb(bench.root / p) for p in images]
                answers = model.ask_many(
                    frames, [Question(s.question, kind=s.kind, id=s.id) for s in samples]
                )
                for s, a in zip(samples, answers):
                    text = a.raw if a.probabilities is None else f"`{a.value}`"
                    replies[s.id] = Reply(text, a.confidence, a.probabilities, a.ood_score)
        if model.expert is not None:
            log.info("the shift expert answered %d of the questions", model.expert_answers)
    finally:
        model.close()
    return out

