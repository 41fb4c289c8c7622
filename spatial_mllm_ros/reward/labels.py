"""The records the annotator produces: one Label per question asked, one EpisodeResult per episode."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from spatial_mllm_ros.model.ood import FAMILIAR_LIMIT

# Column order of labels.parquet / labels.jsonl.
LABEL_COLUMNS = (
    "bag", "bag_path", "episode", "topic", "check", "check_type", "span", "step", "stamps_ns",
    "t_start_ns", "t_end_ns", "question", "answer", "value", "unit", "confidence", "reward", "expected",
    "error", "ood_score",
)
EPISODE_COLUMNS = (
    "bag", "bag_path", "episode", "name", "topic", "start_ns", "end_ns", "n_frames", "n_labels",
    "reward", "voc", "success", "ood_score", "out_of_distribution", "error",
)


@dataclass
class Label:
    """One question asked of frames: raw answer, parsed value (JSON text), confidence and reward."""

    bag: str
    bag_path: str
    episode: int
    topic: str
    check: str
    check_type: str
    span: str
    step: int
    stamps_ns: list[int]
    question: str
    answer: str
    value: str
    unit: str | None
    confidence: float | None
    reward: float
    expected: str = ""
    error: str | None = None
    ood_score: float | None = None  # the answer's out-of-distribution score (model/ood.py)

    @property
    def t_start_ns(self) -> int:
        """Stamp of the first frame the question saw."""
        return min(self.stamps_ns)

    @property
    def t_end_ns(self) -> int:
        """Stamp of the last frame the question saw."""
        return max(self.stamps_ns)

    def row(self) -> dict[str, Any]:
        """Flat dict in LABEL_COLUMNS order."""
        d = asdict(self)
        d["t_start_ns"], d["t_end_ns"] = self.t_start_ns, self.t_end_ns
        return {k: d[k] for k in LABEL_COLUMNS}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Label:
        """Inverse of row()."""
        return cls(**{k: v for k, v in row.items() if k not in ("t_start_ns", "t_end_ns")})


def value_text(value: Any) -> str:
    """Encode a parsed answer value as JSON text (one column type for every kind)."""
    return json.dumps(list(value) if isinstance(value, tuple) else value)


@dataclass
class EpisodeResult:
    """Everything annotated for one episode; thumbnails only travel to the plot, never to the tables."""

    bag: str
    bag_path: str
    episode: int
    key: str
    topic: str
    start_ns: int
    end_ns: int
    name: str = ""
    n_frames: int = 0
    stamps_ns: list[int] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    step_rewards: dict[int, float] = field(default_factory=dict)
    progress: list[float] = field(default_factory=list)
    reward: float = 0.0
    voc: float | None = None
    truth: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    thumbnails: list[tuple[int, np.ndarray]] = field(default_factory=list, repr=False)

    @property
    def success(self) -> bool | None:
        """The scripted success label of a sim episode, when its markers carried one."""
        value = self.truth.get("success")
        return bool(value) if isinstance(value, bool) else None

    @property
    def ood_score(self) -> float | None:
        """Median OOD score of the episode's answers (None: the checkpoint has no OOD statistics)."""
        scores = [lab.ood_score for lab in self.labels if lab.ood_score is not None]
        return float(np.median(scores)) if scores else None

    @property
    def out_of_distribution(self) -> bool | None:
        """Whether the episode's frames look unlike the model's training frames: its rewards are suspect."""
        score = self.ood_score
        return None if score is None else score > FAMILIAR_LIMIT

    def summary(self) -> dict[str, Any]:
        """Flat dict in EPISODE_COLUMNS order (episodes.csv)."""
        score = self.ood_score
        return {
            "bag": self.bag, "bag_path": self.bag_path, "episode": self.episode, "name": self.name,
            "topic": self.topic, "start_ns": self.start_ns, "end_ns": self.end_ns, "n_frames": self.n_frames,
            "n_labels": len(self.labels), "reward": round(self.reward, 6),
            "voc": None if self.voc is None else round(self.voc, 6), "success": self.success,
            "ood_score": None if score is None else round(score, 4),
            "out_of_distribution": self.out_of_distribution, "error": self.error,
        }

    def to_json(self) -> dict[str, Any]:
        """JSON form for the resume parts (labels as rows, no thumbnails)."""
        d = {k: v for k, v in asdict(self).items() if k not in ("thumbnails", "labels")}
        d["labels"] = [lab.row() for lab in self.labels]
        d["step_rewards"] = {str(k): v for k, v in self.step_rewards.items()}
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> EpisodeResult:
        """Inverse of to_json()."""
        d = dict(d)
        d["labels"] = [Label.from_row(r) for r in d.get("labels", [])]
        d["step_rewards"] = {int(k): v for k, v in d.get("step_rewards", {}).items()}
        return cls(**d)


@dataclass
class BagResult:
    """One bag's outcome: finished episodes, and the error that stopped it, if any."""

    bag: str
    bag_path: str
    episodes: list[EpisodeResult] = field(default_factory=list)
    error: str = ""
    skipped: int = 0
