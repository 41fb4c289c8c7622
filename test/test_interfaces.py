"""The typed interfaces without DDS.

The JSON <-> SpatialAnswer mapping through rclpy's generated classes and a rosbags typestore (each reads the
other's CDR), the annotator's typed answers in its bags, and the cached build of the interface package.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("spatial_mllm_interfaces")

from builtin_interfaces.msg import Time  # noqa: E402
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from rosbags.typesys import Stores, get_types_from_msg, get_typestore  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from test_reward_support import write_bag  # noqa: E402

from spatial_mllm_interfaces.action import Ask as AskAction  # noqa: E402
from spatial_mllm_interfaces.msg import SpatialAnswer  # noqa: E402
from spatial_mllm_interfaces.srv import Ask  # noqa: E402
from spatial_mllm_ros.interfaces import (  # noqa: E402
    ANSWER_TYPE,
    AnswerTypes,
    answer_definition,
    answer_dict,
    answer_message,
    question_json,
)
from spatial_mllm_ros.reward.labels import EpisodeResult, Label, value_text  # noqa: E402
from spatial_mllm_ros.reward.outputs import TYPED_ANSWERS_TOPIC, write_reward_bag  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RCLPY = AnswerTypes(answer=SpatialAnswer, header=Header, time=Time)
T0 = 1_733_300_000_123_456_789  # a ROS time whose nanoseconds a float of seconds cannot hold


def rosbags_types() -> tuple[Any, AnswerTypes]:
    store = get_typestore(Stores.ROS2_JAZZY)
    store.register(get_types_from_msg(answer_definition(), ANSWER_TYPE))
    return store, AnswerTypes(answer=store.types[ANSWER_TYPE], header=store.types["std_msgs/msg/Header"],
                              time=store.types["builtin_interfaces/msg/Time"])


def node_answer(**fields: Any) -> dict[str, Any]:
    """An answer dict as nodecore writes it (every field), a yes/no answer unless told otherwise."""
    answer = {
        "id": "q1", "question": "Did the gripper move left?", "answer": "`yes`", "value": "yes",
        "kind": "yes_no", "unit": None, "confidence": 0.75, "probabilities": {"yes": 0.75, "no": 0.25},
        "ood_score": 0.52, "frame_stamps": [round((T0 - 10**9) * 1e-9, 9), round(T0 * 1e-9, 9)],
        "frame_id": "front_optical", "camera": "/camera/front/image_raw", "stamp": 1733300001.25,
        "latency_ms": 12.5, "latency": {"wait_ms": 0.1, "vision_ms": 4.0, "language_ms": 8.0},
        "model": "spatialmllm-tiny", "error": None,
    }
    return {**answer, **fields}


ANSWERS = {
    "yes_no": node_answer(),
    "distance": node_answer(kind="distance", value=132, unit="mm", answer="`132`",
                            probabilities={"132": 0.5, "120": 0.3, "150": 0.2}, confidence=0.8),
    "angle": node_answer(kind="angle", value=12.5, unit="degrees", probabilities=None, confidence=None),
    "coordinate": node_answer(kind="coordinate", value=[412.5, 90.25], unit="px", probabilities=None),
    "vector": node_answer(kind="vector", value=[-120, 0, 35], unit="mm", probabilities=None),
    "free": node_answer(kind="free", value="a red cube", answer="a red cube", probabilities=None,
                        confidence=None, ood_score=None),
    "refused": node_answer(answer="", value=None, kind=None, confidence=None, probabilities=None,
                           ood_score=None, frame_stamps=[], frame_id="", camera=None, model="",
                           latency={"wait_ms": 0.0, "vision_ms": None, "language_ms": None},
                           error="queue full (8 waiting)"),
}


def assert_same(typed: dict[str, Any], answer: dict[str, Any]) -> None:
    assert typed.keys() == answer.keys()
    for key, value in answer.items():
        if key == "stamp":
            assert typed[key] == pytest.approx(value, abs=1e-6)
        else:
            assert typed[key] == value, key


@pytest.mark.parametrize("kind", ANSWERS)
def test_answer_dict_survives_rclpy_and_rosbags_messages_and_their_cdr(kind: str) -> None:
    answer = ANSWERS[kind]
    stamps = [T0 - 10**9, T0][: len(answer["frame_stamps"])]
    msg = answer_message(answer, stamps, RCLPY)
    assert_same(answer_dict(msg), answer)
    assert [t.sec * 10**9 + t.nanosec for t in msg.frame_stamps] == stamps  # to the nanosecond
    store, types = rosbags_types()
    cdr = store.serialize_cdr(answer_message(answer, stamps, types), ANSWER_TYPE)
    # what the annotator writes reads as what the node publishes, and the other way round
    assert_same(answer_dict(deserialize_message(bytes(cdr), SpatialAnswer)), answer)
    assert_same(answer_dict(store.deserialize_cdr(serialize_message(msg), ANSWER_TYPE)), answer)
    if answer["value"] is None:
        assert msg.value_text == "" and len(msg.value_numbers) == 0 and math.isnan(msg.confidence)


def test_typed_requests_read_as_the_json_question() -> None:
    assert question_json(Ask.Request(question="Left?")) == '{"question": "Left?"}'
    full = Ask.Request(question="How far?", id="a", frames=3, span_s=0.0, camera="wrist", kind="distance",
                       options=["1", "2"])
    assert question_json(full) == ('{"question": "How far?", "id": "a", "frames": 3, "span_s": 0.0, '
                                   '"camera": "wrist", "kind": "distance", "options": ["1", "2"]}')
    goal = AskAction.Goal(question="Up?", span_s=math.nan)  # refused by the JSON rules, not dropped
    assert question_json(goal) == '{"question": "Up?", "span_s": NaN}'


def label(step: int, stamps: list[int], value: Any, error: str | None = None) -> Label:
    return Label(bag="b", bag_path="b", episode=0, topic="/camera/front/image_raw", check="moved_left",
                 check_type="direction", span="step", step=step, stamps_ns=stamps,
                 question="Did it move left?", answer=f"`{value}`", value=value_text(value), unit=None,
                 confidence=0.7, reward=1.0, error=error, ood_score=0.4)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_reward_bag_carries_typed_answers_readable_from_the_bag_alone(tmp_path: Path, storage: str) -> None:
    from rosbags.highlevel import AnyReader

    bag = write_bag(tmp_path / "in", [{"dx": -1}], storage=storage, frames=4)
    with AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_JAZZY)) as reader:
        images = [c for c in reader.connections if c.topic.startswith("/camera")]
        stamps = [t for _, t, _ in reader.messages(images)]
    labels = [label(0, stamps[0:2], "left"), label(1, stamps[1:3], None, error="no direction value found")]
    result = EpisodeResult(bag="b", bag_path=str(bag), episode=0, key="b#0", topic=labels[0].topic,
                           start_ns=stamps[0], end_ns=stamps[-1], stamps_ns=stamps, labels=labels,
                           step_rewards={0: 1.0, 1: 0.0}, reward=0.5)
    copied = write_reward_bag(tmp_path / "out", bag, [result])
    store = get_typestore(Stores.ROS2_JAZZY)
    assert ANSWER_TYPE not in store.types  # the reader can only learn the type from the bag
    with AnyReader([copied], default_typestore=store) as reader:
        conns = [c for c in reader.connections if c.topic == TYPED_ANSWERS_TOPIC]
        assert [c.msgtype for c in conns] == [ANSWER_TYPE]
        typed = [(t, reader.deserialize(raw, c.msgtype)) for c, t, raw in reader.messages(conns)]
    assert [t for t, _ in typed] == [lab.t_end_ns for lab in labels]
    for lab, (_, msg) in zip(labels, typed):
        answer = answer_dict(msg)
        assert [t.sec * 10**9 + t.nanosec for t in msg.frame_stamps] == lab.stamps_ns
        assert (answer["id"], answer["question"], answer["answer"]) == (f"b#0/moved_left/{lab.step}",
                                                                        lab.question, lab.answer)
        assert (answer["value"], answer["error"]) == (json.loads(lab.value), lab.error)
        assert answer["camera"] == lab.topic
        assert (answer["confidence"], answer["ood_score"]) == (lab.confidence, lab.ood_score)


def load_build_script() -> Any:
    path = REPO / "scripts" / "build_interfaces.py"
    spec = importlib.util.spec_from_file_location("build_interfaces", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_build_hash_follows_the_interface_sources(tmp_path: Path) -> None:
    build = load_build_script()
    copy_dir = tmp_path / "spatial_mllm_interfaces"
    shutil.copytree(REPO / "spatial_mllm_interfaces", copy_dir)
    assert build.source_hash(copy_dir) == build.source_hash()  # contents, not where they lie
    msg = copy_dir / "msg" / "SpatialAnswer.msg"
    msg.write_text(msg.read_text() + "string extra\n")
    assert build.source_hash(copy_dir) != build.source_hash()


def test_interface_build_rerun_is_a_no_op() -> None:
    library = Path(sys.prefix) / "lib" / "libspatial_mllm_interfaces__rosidl_typesupport_fastrtps_c.so"
    run = [sys.executable, str(REPO / "scripts" / "build_interfaces.py")]
    first = subprocess.run(run, capture_output=True, text=True, timeout=900)  # builds only if out of date
    assert first.returncode == 0, first.stderr[-3000:]
    built = library.stat().st_mtime_ns
    started = time.monotonic()
    again = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "spatial_mllm_interfaces is up to date" in again.stderr, again.stderr
    assert time.monotonic() - started < 10 and library.stat().st_mtime_ns == built
