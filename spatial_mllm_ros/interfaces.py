"""The one mapping between the node's JSON and its typed interfaces (package spatial_mllm_interfaces).

The JSON answer and its typed twin SpatialAnswer, a typed Ask request and the JSON question. Messages are
built from the classes given, so the node (rclpy's generated classes) and the annotator's bags (a rosbags
typestore's classes) share the mapping, and this module imports nothing of ROS.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spatial_mllm_ros.nodecore import stamp_seconds

__all__ = [
    "ANSWER_TYPE", "AnswerTypes", "answer_definition", "answer_dict", "answer_message", "question_json",
]

PACKAGE = "spatial_mllm_interfaces"
ANSWER_TYPE = f"{PACKAGE}/msg/SpatialAnswer"
NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class AnswerTypes:
    """The classes a SpatialAnswer is built from: rclpy's generated ones, or those of a rosbags typestore."""

    answer: Callable[..., Any]  # spatial_mllm_interfaces/msg/SpatialAnswer
    header: Callable[..., Any]  # std_msgs/msg/Header
    time: Callable[..., Any]  # builtin_interfaces/msg/Time


def _nan_if_none(x: float | None) -> float:
    return math.nan if x is None else float(x)


def _none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def answer_message(answer: dict[str, Any], frame_stamps_ns: Sequence[int], types: AnswerTypes) -> Any:
    """Build the SpatialAnswer of an answer dict; missing fields stay unknown (NaN, empty).

    The frames' stamps come as exact nanoseconds: the dict's float seconds cannot hold them to the
    nanosecond, and a typed client matches frames by stamp.
    """

    def time(ns: int) -> Any:
        return types.time(sec=int(ns // NS_PER_S), nanosec=int(ns % NS_PER_S))

    value = answer.get("value")
    numbers = [] if value is None or isinstance(value, str) else np.atleast_1d(value)
    probabilities = answer.get("probabilities") or {}
    latency = answer.get("latency") or {}
    return types.answer(
        header=types.header(stamp=time(round(answer.get("stamp", 0.0) * NS_PER_S)),
                            frame_id=answer.get("frame_id") or ""),
        id=str(answer.get("id") or ""),
        question=answer.get("question") or "",
        answer=answer.get("answer") or "",
        kind=answer.get("kind") or "",
        value_text=value if isinstance(value, str) else "",
        value_numbers=np.asarray(numbers, dtype=np.float64),
        unit=answer.get("unit") or "",
        confidence=_nan_if_none(answer.get("confidence")),
        option_names=[str(k) for k in probabilities],
        option_probabilities=np.asarray(list(probabilities.values()), dtype=np.float64),
        ood_score=_nan_if_none(answer.get("ood_score")),
        frame_stamps=[time(ns) for ns in frame_stamps_ns],
        camera=answer.get("camera") or "",
        latency_ms=_nan_if_none(answer.get("latency_ms")),
        wait_ms=_nan_if_none(latency.get("wait_ms")),
        vision_ms=_nan_if_none(latency.get("vision_ms")),
        language_ms=_nan_if_none(latency.get("language_ms")),
        model=answer.get("model") or "",
        error=answer.get("error") or "",
    )


def answer_dict(msg: Any) -> dict[str, Any]:
    """Return the JSON answer a SpatialAnswer stands for (rclpy or rosbags message): what ~/answer carries."""
    numbers = [float(x) for x in msg.value_numbers]
    value: Any = msg.value_text or (numbers[0] if len(numbers) == 1 else numbers or None)
    probabilities = dict(zip(msg.option_names, (float(p) for p in msg.option_probabilities)))
    stamp = msg.header.stamp
    return {
        "id": msg.id,
        "question": msg.question,
        "answer": msg.answer,
        "value": value,
        "kind": msg.kind or None,
        "unit": msg.unit or None,
        "confidence": _none_if_nan(msg.confidence),
        "probabilities": probabilities or None,
        "ood_score": _none_if_nan(msg.ood_score),
        "frame_stamps": [stamp_seconds(t.sec * NS_PER_S + t.nanosec) for t in msg.frame_stamps],
        "frame_id": msg.header.frame_id,
        "camera": msg.camera or None,
        "stamp": stamp.sec + stamp.nanosec * 1e-9,
        "latency_ms": _none_if_nan(msg.latency_ms),
        "latency": {"wait_ms": _none_if_nan(msg.wait_ms), "vision_ms": _none_if_nan(msg.vision_ms),
                    "language_ms": _none_if_nan(msg.language_ms)},
        "model": msg.model,
        "error": msg.error or None,
    }


def question_json(request: Any) -> str:
    """Write a typed Ask request or goal as the JSON question message it stands for (defaults left out).

    The node reads it like any message on ~/question, so a typed question obeys, and fails, exactly as a
    JSON one does.
    """
    fields: dict[str, Any] = {"question": request.question}
    if request.id:
        fields["id"] = request.id
    if request.frames != 0:
        fields["frames"] = request.frames
    if not request.span_s < 0:  # NaN is kept, and refused as in JSON
        fields["span_s"] = request.span_s
    for name in ("camera", "kind"):
        if getattr(request, name):
            fields[name] = getattr(request, name)
    if len(request.options):
        fields["options"] = list(request.options)
    return json.dumps(fields)


@functools.cache
def answer_definition() -> str:
    """Read SpatialAnswer.msg as installed beside the generated Python package (rosbags registers from it).

    Read once per process: the annotator registers it for every bag it copies.

    Wheel, colcon and system installs all lay out <prefix>/lib/pythonX.Y/site-packages/<package> and
    <prefix>/share/<package>/msg.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"{PACKAGE} is not installed: run scripts/setup-env.sh (or colcon build)")
    path = Path(spec.origin).parents[4] / "share" / PACKAGE / "msg" / "SpatialAnswer.msg"
    return path.read_text()
