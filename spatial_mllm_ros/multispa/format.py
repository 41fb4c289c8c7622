"""MultiSPA conversation format and answer conventions.

The one place where training data, the runtime and the annotator agree on how a prompt looks and how an
answer value is written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

IMAGE_TOKEN = "<image>"
COORD_SCALE = 1000  # pixel coordinates are written on a 0..COORD_SCALE scale per axis
STATIC_THRESHOLD_M = 0.01  # a point that moved less than this (metres) "did not move"
DID_NOT_MOVE = "The point did not move."
LENGTH_UNIT = "mm"
ANGLE_UNIT = "degrees"
PIXEL_UNIT = "px"
NORM_COORD_UNIT = "norm1000"  # coordinates on the 0..COORD_SCALE scale

# Camera optical frame: left = -x, right = +x, up = -y, down = +y, forward = +z, backward = -z.
DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down", "forward", "backward")
OPPOSITE_DIRECTION: dict[str, str] = {
    "left": "right", "right": "left", "up": "down", "down": "up",
    "forward": "backward", "backward": "forward",
}
YES_NO: tuple[str, ...] = ("yes", "no")
CHOICE_LETTERS: tuple[str, ...] = ("A", "B", "C", "D")


class QuestionKind(str, Enum):
    """What type of value answers a question; decides task description, parsing and scoring."""

    DIRECTION = "direction"
    YES_NO = "yes_no"
    DISTANCE = "distance"
    ANGLE = "angle"
    DEPTH = "depth"
    COORDINATE = "coordinate"
    VECTOR = "vector"
    CHOICE = "choice"
    COUNT = "count"
    FREE = "free"


# The unit each kind's value is written in (None: unitless).
KIND_UNIT: dict[QuestionKind, str | None] = {
    QuestionKind.DIRECTION: None,
    QuestionKind.YES_NO: None,
    QuestionKind.DISTANCE: LENGTH_UNIT,
    QuestionKind.ANGLE: ANGLE_UNIT,
    QuestionKind.DEPTH: LENGTH_UNIT,
    QuestionKind.COORDINATE: None,  # 0..COORD_SCALE normalised
    QuestionKind.VECTOR: LENGTH_UNIT,
    QuestionKind.CHOICE: None,
    QuestionKind.COUNT: None,
    QuestionKind.FREE: None,
}

_TASK_DESCRIPTIONS: dict[QuestionKind, str] = {
    QuestionKind.DIRECTION: (
        "The images are frames from a camera observing a scene. Answer with one direction "
        "(left, right, up, down, forward or backward) between backticks."
    ),
    QuestionKind.YES_NO: "The images show a scene over time. Answer `yes` or `no` between backticks.",
    QuestionKind.DISTANCE: (
        "The images are frames from a camera observing a scene. Give the distance in millimetres "
        "as an integer between backticks."
    ),
    QuestionKind.ANGLE: (
        "The images are frames from a rotating camera. Give the rotation angle in degrees as an "
        "integer between backticks."
    ),
    QuestionKind.DEPTH: (
        "Depth is the distance from the camera along its viewing axis. Give it in millimetres as an "
        "integer between backticks."
    ),
    QuestionKind.COORDINATE: (
        f"Pixel coordinates are written as [ x , y ] on a 0 to {COORD_SCALE} scale of the image width "
        "and height. Answer with coordinates between backticks."
    ),
    QuestionKind.VECTOR: (
        "Vectors are written as [ x , y , z ] in millimetres in the first camera's frame (x right, "
        "y down, z forward). Answer with a vector between backticks."
    ),
    QuestionKind.CHOICE: "Choose one of the labelled options and answer with its letter between backticks.",
    QuestionKind.COUNT: "Answer with a whole number between backticks.",
    QuestionKind.FREE: "Answer the question about the images briefly.",
}


def task_description(kind: QuestionKind | str) -> str:
    """Default task description line for a question kind (templates may supply paraphrases)."""
    return _TASK_DESCRIPTIONS[QuestionKind(kind)]


def image_prefix(n_images: int) -> str:
    """Return the image placeholder lines that open a prompt: "Image-k: <image>" each, bare for one image."""
    if n_images < 0:
        raise ValueError(f"n_images must be >= 0, got {n_images}")
    if n_images == 1:
        return f"{IMAGE_TOKEN}\n"
    return "".join(f"Image-{i}: {IMAGE_TOKEN}\n" for i in range(1, n_images + 1))


def build_prompt(n_images: int, task_description: str, question: str) -> str:
    """Assemble the human turn: image placeholders, then the task description, then the question."""
    parts = [image_prefix(n_images)]
    if task_description:
        parts.append(task_description.strip() + "\n")
    parts.append(question.strip())
    return "".join(parts)


def _int(x: float) -> int:
    return int(round(float(x)))


def format_value(kind: QuestionKind | str, value: Any) -> str:
    """Write an answer value between backticks: "`left`", "`2249`", "`[ 512 , 300 ]`", "`[ 1 , -2 , 3 ]`"."""
    kind = QuestionKind(kind)
    if kind in (QuestionKind.COORDINATE, QuestionKind.VECTOR):
        return "`[ " + " , ".join(str(_int(v)) for v in value) + " ]`"
    if kind in (QuestionKind.DISTANCE, QuestionKind.ANGLE, QuestionKind.DEPTH, QuestionKind.COUNT):
        return f"`{_int(value)}`"
    if kind is QuestionKind.YES_NO:
        text = ("yes" if value else "no") if isinstance(value, bool) else str(value).strip().lower()
        return f"`{text}`"
    if kind is QuestionKind.CHOICE:
        return f"`{str(value).strip().upper()}`"
    if kind is QuestionKind.DIRECTION:
        return f"`{str(value).strip().lower()}`"
    return f"`{value}`"


def to_norm_coords(u: float, v: float, width: int, height: int) -> tuple[int, int]:
    """Pixel (u, v) -> [x, y] on the 0..COORD_SCALE scale: x = round(1000*u/W), y = round(1000*v/H)."""
    return _int(COORD_SCALE * u / width), _int(COORD_SCALE * v / height)


def from_norm_coords(x: float, y: float, width: int, height: int) -> tuple[float, float]:
    """Normalised [x, y] (0..COORD_SCALE) -> pixel (u, v) for a frame of width x height."""
    return x * width / COORD_SCALE, y * height / COORD_SCALE


@dataclass
class Sample:
    """One JSONL line of MultiSPA-style data: images, a human/gpt exchange, sizes and our labels."""

    id: str
    image: list[str]
    conversations: list[dict[str, str]]
    height_list: list[int] = field(default_factory=list)
    width_list: list[int] = field(default_factory=list)
    task: str = ""
    kind: QuestionKind = QuestionKind.FREE
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def prompt(self) -> str:
        """The first human turn."""
        return next(t["value"] for t in self.conversations if t["from"] == "human")

    @property
    def answer(self) -> str:
        """The first gpt turn."""
        return next(t["value"] for t in self.conversations if t["from"] == "gpt")


def make_sample(
    id: str,
    images: list[str],
    question: str,
    answer: str,
    *,
    kind: QuestionKind | str,
    task: str = "",
    sizes: list[tuple[int, int]] | None = None,
    description: str | None = None,
    meta: dict[str, Any] | None = None,
) -> Sample:
    """Build a Sample with the prompt assembled by build_prompt; sizes are (width, height) per image."""
    kind = QuestionKind(kind)
    desc = task_description(kind) if description is None else description
    sizes = sizes or []
    return Sample(
        id=id,
        image=list(images),
        conversations=[
            {"from": "human", "value": build_prompt(len(images), desc, question)},
            {"from": "gpt", "value": answer},
        ],
        width_list=[int(w) for w, _ in sizes],
        height_list=[int(h) for _, h in sizes],
        task=task,
        kind=kind,
        meta=dict(meta or {}),
    )


def sample_to_json(sample: Sample) -> str:
    """One JSONL line (no trailing newline) in the MultiSPA field layout plus task/kind/meta."""
    return json.dumps(
        {
            "id": sample.id,
            "image": sample.image,
            "conversations": sample.conversations,
            "height_list": sample.height_list,
            "width_list": sample.width_list,
            "task": sample.task,
            "kind": QuestionKind(sample.kind).value,
            "meta": sample.meta,
        },
        ensure_ascii=False,
    )


def sample_from_json(line: str | dict[str, Any]) -> Sample:
    """Parse one JSONL line (or its dict); a missing kind/task/meta (upstream data) gets defaults."""
    d = json.loads(line) if isinstance(line, str) else line
    image = d.get("image", [])
    return Sample(
        id=str(d["id"]),
        image=[image] if isinstance(image, str) else list(image),
        conversations=list(d["conversations"]),
        height_list=list(d.get("height_list", [])),
        width_list=list(d.get("width_list", [])),
        task=str(d.get("task", "")),
        kind=QuestionKind(d.get("kind", QuestionKind.FREE.value)),
        meta=dict(d.get("meta", {})),
    )
