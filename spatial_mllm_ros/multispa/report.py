"""The evaluation report: every set x sub-task against chance and its baseline, with calibration error.

An accuracy alone hides the two failures that matter on a robot: a sub-task that does no better than a
constant answer (see `baselines`), and confidence that stays high when the answers go wrong (ECE, see
`calibration`). One set writes scores.json / scores.md / heatmap.png as before; several sets write
report.json / report.md / heatmap.png, and each set's own scores under NAME/.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from spatial_mllm_ros.answers import closed_options
from spatial_mllm_ros.conventions import is_correct
from spatial_mllm_ros.model.calibration import Calibration, save_calibration
from spatial_mllm_ros.multispa.baselines import Baseline, beats_baseline, chance_level, constant_baseline
from spatial_mllm_ros.multispa.calibration import ECE_BINS, expected_calibration_error, fit_calibration
from spatial_mllm_ros.multispa.evaluate import (
    ANSWERS_FILE,
    Benchmark,
    BenchmarkError,
    Graded,
    Reply,
    grade,
    score_graded,
    write_answers,
)
from spatial_mllm_ros.multispa.metrics import Scores, SubtaskScore

__all__ = [
    "EvaluationReport",
    "SetReport",
    "SubtaskReport",
    "closed_set_examples",
    "evaluate_sets",
    "plot_heatmap",
    "set_report",
    "write_report",
]

BELOW_MARK = "✗"  # a sub-task that does not beat its baseline, in tables and on the heat map


@dataclass
class SubtaskReport:
    """One sub-task of one set: its score, the bars it has to clear and how well its confidence tracks it."""

    score: SubtaskScore
    chance: float | None  # percent; None for open answers
    baseline: Baseline
    mean_confidence: float | None  # over the answers that carry a confidence
    ece: float | None  # 0-1, over the same answers
    ece_calibrated: float | None = None  # after the fitted temperature (closed-set answers rescaled)

    @property
    def margin(self) -> float:
        """Accuracy minus the baseline, in points."""
        return self.score.accuracy - self.baseline.accuracy

    @property
    def beats_baseline(self) -> bool:
        """Whether the accuracy's 95 % Wilson lower bound is above the baseline."""
        return beats_baseline(self.score.correct, self.score.total, self.baseline.accuracy)

    def to_json(self) -> dict[str, Any]:
        """Return the fields this adds to the sub-task's entry in scores.json."""
        return {
            "chance": self.chance,
            "baseline": self.baseline.accuracy,
            "baseline_answer": self.baseline.answer,
            "margin": self.margin,
            "beats_baseline": self.beats_baseline,
            "mean_confidence": self.mean_confidence,
            "ece": self.ece,
            **({"ece_calibrated": self.ece_calibrated} if self.ece_calibrated is not None else {}),
        }


@dataclass
class SetReport:
    """One benchmark set: the paper's scores plus each sub-task's bars and calibration."""

    name: str
    scores: Scores
    subtasks: dict[str, SubtaskReport]
    ece: float | None  # all answers of the set that carry a confidence
    ece_calibrated: float | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the paper's scores.json with the bars and ECE added (nothing of it changed)."""
        report = self.scores.to_json()
        entries: dict[str, dict[str, Any]] = report["subtasks"]  # type: ignore[assignment]
        report["subtasks"] = {k: {**v, **self.subtasks[k].to_json()} for k, v in entries.items()}
        report["ece"] = self.ece
        if self.ece_calibrated is not None:
            report["ece_calibrated"] = self.ece_calibrated
        return {"set": self.name, **report}

    def to_markdown(self, title: str, calibration: Calibration | None = None) -> str:
        """Write the paper's tables, then every sub-task against chance and its baseline, with ECE."""
        cal = f" | ECE at T={calibration.temperature:.2f}" if calibration else ""
        lines = [
            "",
            f"Against chance and the constant-answer baseline ({BELOW_MARK}: the 95 % lower bound is not "
            f"above the baseline); ECE over {ECE_BINS} confidence bins, of the answers that carry one:",
            "",
            f"| sub-task | accuracy % | chance % | baseline % | constant answer | margin | beats baseline "
            f"| mean confidence | ECE{cal} |",
            "|---|---|---|---|---|---|---|---|---|" + ("---|" if calibration else ""),
        ]
        for task, sub in sorted(self.subtasks.items()):
            verdict = "yes" if sub.beats_baseline else f"**{BELOW_MARK} no**"
            after = f" | {_num(sub.ece_calibrated, 3)}" if calibration else ""
            lines.append(
                f"| {task} | {sub.score.accuracy:.2f} | {_num(sub.chance, 1)} | {sub.baseline.accuracy:.1f} "
                f"| `{sub.baseline.answer}` | {sub.margin:+.1f} | {verdict} | {_num(sub.mean_confidence, 2)} "
                f"| {_num(sub.ece, 3)}{after} |"
            )
        overall = f" | {_num(self.ece_calibrated, 3)}" if calibration else ""
        lines.append(f"| **all** | {self.scores.overall:.2f} | | | | | | | {_num(self.ece, 3)}{overall} |")
        return self.scores.to_markdown(title) + "\n".join(lines) + "\n"


@dataclass
class EvaluationReport:
    """Every set of one evaluation, and the temperature fitted on one of them (if any)."""

    title: str
    sets: dict[str, SetReport]
    calibration: Calibration | None = None
    tasks: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.tasks = sorted({t for s in self.sets.values() for t in s.subtasks})

    def to_json(self) -> dict[str, Any]:
        """report.json: every set's scores, and the calibration."""
        return {
            "title": self.title,
            "sets": {name: s.to_json() for name, s in self.sets.items()},
            "calibration": asdict(self.calibration) if self.calibration else None,
        }

    def to_markdown(self) -> str:
        """report.md: sets x sub-tasks accuracy (marked where a baseline is not beaten), then each set."""
        names = list(self.sets)
        lines = [
            f"## {self.title}",
            "",
            f"Accuracy % per set ({BELOW_MARK}: does not beat its constant-answer baseline, i.e. the 95 % "
            "Wilson lower bound is not above it; -: not in the set).",
            "",
            "| sub-task | " + " | ".join(names) + " |",
            "|---|" + "---|" * len(names),
        ]
        for task in self.tasks:
            cells = (_cell(self.sets[n].subtasks.get(task)) for n in names)
            lines.append(f"| {task} | " + " | ".join(cells) + " |")
        lines.append("| **all** | " + " | ".join(f"{self.sets[n].scores.overall:.1f}" for n in names) + " |")
        lines.append("| **ECE** | " + " | ".join(_num(self.sets[n].ece, 3) for n in names) + " |")
        if self.calibration:
            lines.append(
                f"| **ECE at T={self.calibration.temperature:.2f}** | "
                + " | ".join(_num(self.sets[n].ece_calibrated, 3) for n in names)
                + " |"
            )
            lines += ["", _calibration_line(self.calibration)]
        for name, s in self.sets.items():
            lines += ["", s.to_markdown(name, self.calibration)]
        return "\n".join(lines) + "\n"


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _cell(sub: SubtaskReport | None) -> str:
    if sub is None:
        return "-"
    return f"{sub.score.accuracy:.1f}" + ("" if sub.beats_baseline else f" {BELOW_MARK}")


def _calibration_line(calibration: Calibration) -> str:
    return (
        f"Temperature T = {calibration.temperature:.3f} fitted on set `{calibration.fitted_on}` "
        f"({calibration.questions} closed-set answers; NLL {calibration.nll_before:.3f} -> "
        f"{calibration.nll_after:.3f}); closed-set probabilities become p^(1/T), renormalised."
    )


def _option_index(graded: Graded, value: Any) -> int | None:
    """Which of the reply's options the value is, by the metric's exact match (None: none of them)."""
    options = list(graded.reply.probabilities or {}) if graded.reply else []
    return next((i for i, o in enumerate(options) if is_correct(graded.sample.kind, o, value)), None)


def _options(graded: Graded) -> tuple[str, ...] | None:
    """Return the question's closed answer set, as the runtime names it (None: an open answer)."""
    return closed_options(graded.sample.kind, graded.sample.question)


def _is_closed(graded: Graded) -> bool:
    """Whether the reply carries per-option probabilities (a closed set), not a value distribution."""
    return graded.reply is not None and bool(graded.reply.probabilities) and _options(graded) is not None


def closed_set_examples(
    graded: Iterable[Graded],
) -> tuple[list[list[float]], list[int], list[float] | None]:
    """Return the fitting data of every closed-set reply that lists the truth.

    Option probabilities, the true option's index, and the OOD scores when every reply has one.
    """
    probabilities, labels, ood = [], [], []
    for g in graded:
        label = _option_index(g, g.truth) if _is_closed(g) else None
        if label is not None:
            probabilities.append(list(g.reply.probabilities.values()))  # type: ignore[union-attr]
            labels.append(label)
            ood.append(g.reply.ood_score)  # type: ignore[union-attr]
    return probabilities, labels, (ood if ood and None not in ood else None)


def _confidence(graded: Graded, calibration: Calibration | None) -> float | None:
    """Return the reply's confidence; with a calibration, a closed-set reply's rescaled one for its answer."""
    if graded.reply is None:
        return None
    if calibration is not None and _is_closed(graded):
        answered = _option_index(graded, graded.prediction)
        if answered is not None:
            probabilities = graded.reply.probabilities or {}
            return calibration.apply(probabilities, graded.reply.ood_score)[list(probabilities)[answered]]
    return graded.reply.confidence


def _ece(graded: list[Graded], calibration: Calibration | None = None) -> float | None:
    pairs = [(c, g.correct) for g in graded if (c := _confidence(g, calibration)) is not None]
    return expected_calibration_error([c for c, _ in pairs], [ok for _, ok in pairs])


def _subtask_report(
    score: SubtaskScore, graded: list[Graded], calibration: Calibration | None
) -> SubtaskReport:
    confidences = [c for g in graded if (c := _confidence(g, None)) is not None]
    return SubtaskReport(
        score=score,
        chance=chance_level([_options(g) for g in graded]),
        baseline=constant_baseline(score.kind, [g.truth for g in graded], [g.size for g in graded]),
        mean_confidence=sum(confidences) / len(confidences) if confidences else None,
        ece=_ece(graded),
        ece_calibrated=_ece(graded, calibration) if calibration else None,
    )


def set_report(name: str, graded: list[Graded], calibration: Calibration | None = None) -> SetReport:
    """Score one set and measure each sub-task against its bars (and after the temperature, if given)."""
    scores = score_graded(graded)
    by_task: dict[str, list[Graded]] = defaultdict(list)
    for g in graded:
        by_task[g.task].append(g)
    return SetReport(
        name=name,
        scores=scores,
        subtasks={t: _subtask_report(scores.subtasks[t], rows, calibration) for t, rows in by_task.items()},
        ece=_ece(graded),
        ece_calibrated=_ece(graded, calibration) if calibration else None,
    )


def evaluate_sets(
    sets: Mapping[str, Benchmark],
    answers: Mapping[str, Mapping[str, Reply]],
    title: str,
    fit_on: str | None = None,
) -> EvaluationReport:
    """Report every set; with fit_on, fit a temperature on that set's closed-set replies, apply it to all."""
    graded = {name: grade(bench, answers[name]) for name, bench in sets.items()}
    calibration = None
    if fit_on is not None:
        if fit_on not in graded:
            known = ", ".join(graded)
            raise BenchmarkError(f"no set named {fit_on!r} to fit a temperature on; sets: {known}")
        probabilities, labels, ood = closed_set_examples(graded[fit_on])
        if not labels:
            raise BenchmarkError(
                f"set {fit_on!r} has no closed-set answers with per-option probabilities: nothing to fit"
            )
        calibration = fit_calibration(probabilities, labels, fit_on, ood)
    return EvaluationReport(title, {n: set_report(n, g, calibration) for n, g in graded.items()}, calibration)


def plot_heatmap(report: EvaluationReport, path: Path) -> Path:
    """Draw sets x sub-tasks, cell = accuracy % (baseline below it), hatched red where not beaten; a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Rectangle

    names, tasks = list(report.sets), report.tasks
    accuracy = np.full((len(names), len(tasks)), np.nan)
    for i, name in enumerate(names):
        for j, task in enumerate(tasks):
            if task in report.sets[name].subtasks:
                accuracy[i, j] = report.sets[name].subtasks[task].score.accuracy
    label_room = 0.055 * max(map(len, tasks))  # inches under the cells for the rotated sub-task names
    width = max(6.5, 2.6 + 0.8 * len(tasks))  # at least the title's width
    fig, ax = plt.subplots(figsize=(width, 1.2 + label_room + 0.62 * len(names)))
    cmap = plt.get_cmap("viridis").with_extremes(bad="#e6e6e6")
    image = ax.imshow(np.ma.masked_invalid(accuracy), cmap=cmap, vmin=0, vmax=100, aspect="auto")
    for i, name in enumerate(names):
        for j, task in enumerate(tasks):
            sub = report.sets[name].subtasks.get(task)
            if sub is None:
                ax.text(j, i, "-", ha="center", va="center", fontsize=10, color="#777777")
                continue
            r, g, b, _ = cmap(sub.score.accuracy / 100)
            ink = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
            label = {"ha": "center", "va": "center", "color": ink}
            ax.text(j, i - 0.12, f"{sub.score.accuracy:.0f}", fontsize=10, fontweight="bold", **label)
            ax.text(j, i + 0.25, f"b {sub.baseline.accuracy:.0f}", fontsize=7, **label)
            if not sub.beats_baseline:  # inset, so that neighbouring marked cells keep separate borders
                ax.add_patch(
                    Rectangle(
                        (j - 0.46, i - 0.46),
                        0.92,
                        0.92,
                        fill=False,
                        hatch="//",
                        hatchcolor=(1.0, 0.0, 0.0, 0.5),
                        edgecolor="red",
                        linewidth=2,
                    )
                )
    ax.set_xticks(range(len(tasks)), tasks, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_title(
        f"{report.title}\naccuracy % (b: constant-answer baseline; -: not in the set)\n"
        "red hatching: baseline not beaten (95 % lower bound <= baseline)",
        fontsize=9,
    )
    fig.colorbar(image, ax=ax, label="accuracy %", fraction=0.04, pad=0.02)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(
    report: EvaluationReport, out_dir: Path, answers: Mapping[str, Mapping[str, Reply]] | None = None
) -> Path:
    """Write the report files (and each set's answers when given) under out_dir; return the Markdown."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_heatmap(report, out_dir / "heatmap.png")
    if report.calibration:
        save_calibration(report.calibration, out_dir)
    if len(report.sets) == 1:
        ((name, only),) = report.sets.items()
        calibration = {"calibration": asdict(report.calibration)} if report.calibration else {}
        (out_dir / "scores.json").write_text(
            json.dumps({"title": report.title, **only.to_json(), **calibration}, indent=2) + "\n"
        )
        note = f"\n{_calibration_line(report.calibration)}\n" if report.calibration else ""
        (out_dir / "scores.md").write_text(only.to_markdown(report.title, report.calibration) + note)
        if answers is not None:
            write_answers(answers[name], out_dir / ANSWERS_FILE)
        return out_dir / "scores.md"
    for name, s in report.sets.items():
        (out_dir / name).mkdir(exist_ok=True)
        scores = {"title": name, **s.to_json()}
        (out_dir / name / "scores.json").write_text(json.dumps(scores, indent=2) + "\n")
        (out_dir / name / "scores.md").write_text(s.to_markdown(name, report.calibration))
        if answers is not None:
            write_answers(answers[name], out_dir / name / ANSWERS_FILE)
    (out_dir / "report.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
    (out_dir / "report.md").write_text(report.to_markdown())
    return out_dir / "report.md"
