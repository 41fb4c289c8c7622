"""What the demo does and how it is judged (ROS-free).

Scripted moves, the questions asked about each, their truth from the simulation's /episode markers, the
agreement rules and the printed table.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from spatial_mllm_ros.conventions import DIRECTIONS
from spatial_mllm_ros.demo.errors import DemoError, ModelMissingError, NoDemoSceneError
from spatial_mllm_ros.sim.errors import SimError
from spatial_mllm_ros.sim.motions import Push, parse_motion
from spatial_mllm_ros.sim.node_config import SimNodeConfig
from spatial_mllm_ros.sim.scene import build_scene
from spatial_mllm_ros.sim.world import SimWorld

DEMO_CAMERA = "front"  # every direction is in this camera's optical frame (x right, y down, z forward)
PUSHED_OBJECT = "red cube"
PUSH_DISTANCE_M = 0.08
TRANSLATE_M = 0.10
LIFT_M = 0.08
CAMERA_DOLLY_M = 0.10
DISTANCE_TOLERANCE_MM = 20  # a distance answer agrees within max(this, DISTANCE_TOLERANCE_REL * truth)
DISTANCE_TOLERANCE_REL = 0.5
CAMERA_TURN_DEG = 3.0  # a camera that turned at least this much "moved" even without translating
ASKS = ("direction", "moved", "distance", *(f"moved_{d}" for d in DIRECTIONS))
GRIPPER_DIRECTION_Q = "In which direction did the gripper move, as seen by the camera?"


@dataclass(frozen=True)
class Probe:
    """One question about a move and what it asks of the truth (`asks`, one of ASKS) about `subject`."""

    question: str
    subject: str  # "gripper", "camera" or an object name ("red cube")
    asks: str

    def __post_init__(self) -> None:
        if self.asks not in ASKS:
            raise DemoError(f"probe {self.question!r}: asks={self.asks!r} is not one of {ASKS}")

    @property
    def is_direction(self) -> bool:
        """Whether this is a direction question (which way, or did it move <direction>)."""
        return self.asks == "direction" or (self.asks.startswith("moved_"))


@dataclass(frozen=True)
class Move:
    """One scripted move of the simulation (a motion spec of sim.motions.parse_motion) and its probes."""

    label: str
    script: str
    probes: tuple[Probe, ...]


def check_moves(moves: tuple[Move, ...]) -> None:
    """Parse every move's motion spec now, so a bad one fails before the nodes start (DemoError)."""
    for move in moves:
        try:
            parse_motion(move.script)
        except SimError as exc:
            raise DemoError(f"move {move.label!r}: {exc}") from exc


def _moved(subject: str, direction: str) -> Probe:
    return Probe(f"Did the {subject} move {direction}?", subject, f"moved_{direction}")


def _translate(direction: str, distance_m: float, also: tuple[str, ...]) -> Move:
    probes = (_moved("gripper", direction), *(_moved("gripper", d) for d in also),
              Probe(GRIPPER_DIRECTION_Q, "gripper", "direction"))
    spec = f"translate:direction={direction},distance={distance_m:g},camera={DEMO_CAMERA}"
    return Move(f"gripper {direction} {distance_m * 100:g} cm", spec, probes)


def demo_moves(push_direction: str, pushed: str = PUSHED_OBJECT) -> tuple[Move, ...]:
    """Build the demo's script: a push, four gripper translations, an idle spell and a camera dolly."""
    camera_moved = Probe("Did the camera move?", "camera", "moved")
    left = _translate("left", TRANSLATE_M, ("right",))
    push = (f"push:object={pushed},direction={push_direction},distance_m={PUSH_DISTANCE_M:g},"
            f"camera={DEMO_CAMERA}")
    return (
        Move(f"push {pushed} {push_direction}", push,
             (Probe(f"How far did the {pushed} move?", pushed, "distance"),
              Probe(f"In which direction did the {pushed} move, as seen by the camera?", pushed,
                    "direction"))),
        Move(left.label, left.script, (*left.probes, camera_moved)),
        _translate("right", TRANSLATE_M, ("left",)),
        _translate("up", LIFT_M, ("down",)),
        _translate("down", LIFT_M, ("up",)),
        Move("idle", "idle", (_moved("gripper", "left"), camera_moved,
                              Probe("How far did the gripper move?", "gripper", "distance"))),
        Move(f"camera forward {CAMERA_DOLLY_M * 100:g} cm",
             f"camera_dolly:camera={DEMO_CAMERA},distance_m={CAMERA_DOLLY_M:g}", (camera_moved,)),
    )


def _motion(labels: dict[str, Any], subject: str, camera: str) -> dict[str, Any]:
    """Pick the marker's MotionTruth JSON of `subject` seen from `camera`."""
    truth = labels.get("truth")
    if not isinstance(truth, dict):
        raise DemoError(f"/episode marker labels carry no 'truth': keys {sorted(labels)}")
    if subject == "gripper":
        table = truth.get("gripper", {})
    elif subject == "camera":
        table = truth.get("cameras", {})
    else:
        table = truth.get("objects", {}).get(subject, {})
    if camera not in table:
        raise DemoError(f"/episode marker has no truth for {subject!r} in camera {camera!r}")
    return table[camera]


def truth_of(probe: Probe, labels: dict[str, Any], camera: str = DEMO_CAMERA) -> str | int:
    """Read the true answer to `probe` from a move's end-marker labels: a direction, "yes"/"no" or mm."""
    m = _motion(labels, probe.subject, camera)
    if probe.asks == "distance":
        return int(m["distance_mm"])
    if probe.asks == "direction":
        return m["direction"] or "did not move"
    if probe.asks == "moved":
        turned = float(m.get("rotation_deg", 0.0)) >= CAMERA_TURN_DEG
        return "yes" if m["moved"] or turned else "no"
    return "yes" if m["direction"] == probe.asks.removeprefix("moved_") else "no"


def _word(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value).strip().lower()


def agreement(probe: Probe, truth: str | int, value: Any) -> bool:
    """Whether the model's parsed value agrees with the truth (no usable value: it does not)."""
    if value is None:
        return False
    if probe.asks == "distance":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        tolerance = max(DISTANCE_TOLERANCE_MM, DISTANCE_TOLERANCE_REL * float(truth))
        return abs(float(value) - float(truth)) <= tolerance
    return _word(value) == _word(truth)


@dataclass
class LiveRow:
    """One asked question: the node's answer beside the simulation's truth."""

    move: str
    question: str
    asks: str
    answer: str
    value: Any
    confidence: float | None
    truth: str | int
    agree: bool
    latency_ms: float
    frame_stamps: list[float]
    error: str | None = None

    @property
    def is_direction(self) -> bool:
        """Whether the row answers a direction question (the ones the >= 90 % target is about)."""
        return self.asks == "direction" or self.asks.startswith("moved_")

    def to_json(self) -> str:
        """One JSON line."""
        return json.dumps(asdict(self))


def row_from_answer(move: Move, probe: Probe, answer: dict[str, Any], labels: dict[str, Any]) -> LiveRow:
    """Combine a ~/answer message (the contract's JSON fields) with the move's truth."""
    truth = truth_of(probe, labels)
    value = answer.get("value") if not answer.get("error") else None
    return LiveRow(move.label, probe.question, probe.asks, answer.get("answer", ""), value,
                   answer.get("confidence"), truth, agreement(probe, truth, value),
                   float(answer.get("latency_ms") or 0.0), list(answer.get("frame_stamps") or []),
                   answer.get("error"))


def question_json(probe: Probe, qid: str, frames: int, span_s: float) -> str:
    """Write the ~/question message: the contract's JSON with frames and span_s."""
    return json.dumps({"id": qid, "question": probe.question, "frames": frames, "span_s": round(span_s, 3)})


def _cell(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "~"


TABLE_COLUMNS = (("question", 64), ("model answer (conf)", 20), ("truth", 13), ("agree", 5),
                 ("latency ms", 10))


def format_header() -> str:
    """Format the table's header line and rule."""
    head = "  ".join(f"{name:<{w}}" for name, w in TABLE_COLUMNS).rstrip()
    return f"{head}\n{'-' * len(head)}"


def format_move(index: int, total: int, move: Move) -> str:
    """Format the line that opens a move's rows."""
    return f"[{index + 1}/{total}] {move.label}  ({move.script})"


def format_row(row: LiveRow) -> str:
    """One table line (an error replaces the answer; the whole text is in live_answers.jsonl)."""
    if row.error:
        shown = f"unparsed: {row.answer}" if row.answer else f"error: {row.error}"
    else:
        conf = f" ({row.confidence:.2f})" if isinstance(row.confidence, (int, float)) else ""
        shown = f"{_word(row.value) if row.value is not None else '?'}{conf}"
    cells = (row.question, shown, str(row.truth), "yes" if row.agree else "NO", f"{row.latency_ms:.0f}")
    return "  ".join(f"{_cell(c, w):<{w}}" for c, (_, w) in zip(cells, TABLE_COLUMNS)).rstrip()


def format_table(rows: list[LiveRow], moves: tuple[Move, ...]) -> str:
    """Format the whole table: header, then each move's line and its questions' rows."""
    lines = [format_header()]
    for k, move in enumerate(moves):
        lines.append(format_move(k, len(moves), move))
        lines += [format_row(r) for r in rows if r.move == move.label]
    return "\n".join(lines)


def summarize(rows: list[LiveRow]) -> dict[str, Any]:
    """Agreement overall and on direction questions, and latency percentiles."""
    direction = [r for r in rows if r.is_direction]
    lat = sorted(r.latency_ms for r in rows if not r.error)
    return {
        "questions": len(rows),
        "agree": sum(r.agree for r in rows),
        "direction_questions": len(direction),
        "direction_agree": sum(r.agree for r in direction),
        "errors": sum(bool(r.error) for r in rows),
        "latency_p50_ms": lat[len(lat) // 2] if lat else None,
        "latency_max_ms": lat[-1] if lat else None,
    }


def find_demo_seed(sim: SimNodeConfig, pushed: str = PUSHED_OBJECT, start: int = 0,
                   tries: int = 200) -> tuple[int, str]:
    """First scene seed >= start whose scene holds `pushed` and a push of it that stays on the table."""
    for seed in range(start, start + tries):
        config = dataclasses.replace(sim, seed=seed).scene_config()
        if pushed not in build_scene(config).object_names:
            continue
        with SimWorld(config) as world:
            x = float(world.object_pose(pushed).position[0])
            for direction in (("left", "right") if x > 0 else ("right", "left")):  # towards the middle first
                try:
                    Push(pushed, direction, PUSH_DISTANCE_M, DEMO_CAMERA).plan(world)
                except SimError:
                    continue
                return seed, direction
    raise NoDemoSceneError(f"no scene seed in [{start}, {start + tries}) has a {pushed!r} that can be pushed "
                           f"{PUSH_DISTANCE_M * 1000:.0f} mm")


def resolve_checkpoint(checkpoint: str | Path = "") -> Path:
    """Find the model directory to run: the given one, else the shipped SpatialMLLM-tiny; it must exist."""
    from spatial_mllm_ros.model.factory import default_checkpoint

    path = Path(checkpoint) if str(checkpoint) else default_checkpoint()
    if not path.is_dir():
        what = "checkpoint" if str(checkpoint) else "the shipped SpatialMLLM-tiny"
        raise ModelMissingError(f"{what} not found at {path}: pass --checkpoint DIR (a model directory)")
    return path
