"""The typed interfaces over DDS between processes: ~/ask_question, ~/ask (action), ~/answer_typed.

The node processes are test_node_ros.py's (its `system` fixture: a camera, the node with two cameras, a node
whose model cannot load, an unconfigured one fed only by this test); a second client node holds the typed
endpoints. Typed answers are compared field by field with the JSON answers of the same questions.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import Any

import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("spatial_mllm_interfaces")

import test_node_ros  # noqa: E402
from action_msgs.msg import GoalStatus  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from rclpy.action import ActionClient  # noqa: E402
from rclpy.qos import QoSProfile, QoSReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from test_node_ros import BROKEN, FRESH, HARMLESS, NODE, PERIOD_S, TEXT_QOS, Client  # noqa: E402

from spatial_mllm_interfaces.action import Ask as AskAction  # noqa: E402
from spatial_mllm_interfaces.msg import SpatialAnswer  # noqa: E402
from spatial_mllm_interfaces.srv import Ask  # noqa: E402
from spatial_mllm_ros.interfaces import answer_dict  # noqa: E402
from spatial_mllm_ros.ros.ask_action import CANCELLED  # noqa: E402

pytestmark = pytest.mark.ros
system = test_node_ros.system  # the same node processes, started afresh for this module

HARMLESS[Ask] = Ask.Request  # probing a fresh client: an empty question is answered at once with its error


class TypedClient:
    """The typed endpoints, on the test client's node: each node's typed answers and Ask action."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.typed: list[SpatialAnswer] = []
        for ns in (NODE, BROKEN, FRESH):
            client.node.create_subscription(SpatialAnswer, f"{ns}/answer_typed", self._on_typed, TEXT_QOS)
        self.actions = {ns: ActionClient(client.node, AskAction, f"{ns}/ask") for ns in (NODE, FRESH)}

    def _on_typed(self, msg: SpatialAnswer) -> None:
        with self.client.cond:
            self.typed.append(msg)
            self.client.cond.notify_all()

    def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        return self.client.wait_for(predicate, timeout, what)

    def typed_answer(self, qid: str, timeout: float = 30.0) -> SpatialAnswer:
        return self.wait_for(lambda: next((m for m in self.typed if m.id == qid), None), timeout,
                             f"the typed answer to {qid}")

    def send(self, goal: AskAction.Goal, ns: str = NODE, timeout: float = 10.0) -> tuple[Any, list]:
        """Send a goal until one is acknowledged (a new client's first responses can be lost, see Client)."""
        feedback: list[AskAction.Feedback] = []
        action = self.actions[ns]
        assert action.wait_for_server(timeout_sec=timeout), f"no action server {ns}/ask"
        for _ in range(5):
            future = action.send_goal_async(goal, feedback_callback=lambda m: feedback.append(m.feedback))
            deadline = time.monotonic() + timeout / 5
            while not future.done() and time.monotonic() < deadline:
                time.sleep(0.01)
            if future.done():
                assert future.result().accepted
                return future.result(), feedback
        raise AssertionError(f"{ns}/ask acknowledged no goal")

    @staticmethod
    def result(handle: Any, timeout: float = 60.0) -> tuple[int, SpatialAnswer]:
        """Status and answer of a goal, asking again while a response is lost."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            future = handle.get_result_async()
            ask_again = time.monotonic() + 3.0
            while not future.done() and time.monotonic() < min(ask_again, deadline):
                time.sleep(0.01)
            if future.done():
                return future.result().status, future.result().result.answer
        raise AssertionError(f"no result within {timeout} s")


@pytest.fixture(scope="module")
def typed(system: dict) -> TypedClient:
    client = TypedClient(system["client"])
    for ns in (NODE, FRESH):  # warm both action servers up to their clients (discovery races)
        handle, _ = client.send(AskAction.Goal(), ns)
        assert client.result(handle)[0] == GoalStatus.STATUS_ABORTED
    return client


def assert_agree(typed_answer: SpatialAnswer, json_answer: dict) -> None:
    """The typed answer says what the JSON answer says, field by field."""
    mine = answer_dict(typed_answer)
    assert set(mine) == set(json_answer)
    for key, value in json_answer.items():
        if key == "stamp":  # node time of the answer: float seconds vs. sec + nanosec
            assert mine[key] == pytest.approx(value, abs=1e-6)
        else:
            assert mine[key] == value, f"{key}: typed {mine[key]!r}, JSON {value!r}"


def stamp_ns(t: Any) -> int:
    return t.sec * 1_000_000_000 + t.nanosec


def test_service_answers_and_typed_json_answers_agree(system: dict, typed: TypedClient) -> None:
    client: Client = system["client"]
    request = Ask.Request(id="svc-1", question="Did the square move left?", frames=3, span_s=0.5)
    answer = client.call(Ask, f"{NODE}/ask_question", request).answer
    assert answer.error == "" and answer.id == "svc-1" and answer.kind == "yes_no"
    assert answer.value_text in ("yes", "no") and set(answer.option_names) == {"yes", "no"}
    assert answer.confidence == max(answer.option_probabilities) and answer.ood_score > 0
    assert answer.header.frame_id == "cam_optical" and answer.camera == "/image" and answer.model
    stamps = [stamp_ns(t) for t in answer.frame_stamps]
    # the frames' header stamps to the nanosecond: the camera stamps multiples of its 50 ms period
    assert len(stamps) == 3 and stamps == sorted(stamps) and all(s % 50_000_000 == 0 for s in stamps)
    assert stamps[-1] - stamps[0] == pytest.approx(0.5e9, abs=2 * PERIOD_S * 1e9)
    assert_agree(answer, json_answer(client, "svc-1"))
    assert_agree(typed.typed_answer("svc-1"), json_answer(client, "svc-1"))


def json_answer(client: Client, qid: str, timeout: float = 20.0) -> dict:
    return client.wait_for(lambda: next((a for a in client.answers if a["id"] == qid), None), timeout,
                           f"the JSON answer to {qid}")


# (JSON question, the same question as typed request fields or None, how its error starts)
ERROR_CASES = [
    ('{"id": "e-nan", "question": "x?", "frames": NaN}', {"question": "x?", "span_s": math.nan}, "bad JSON"),
    ({"id": "e-field", "question": "x?", "colour": "red"}, None, "bad JSON: unknown field(s) ['colour']"),
    ({"id": "e-empty", "question": " "}, {"question": " "},
     "bad JSON: 'question' must be a non-empty string"),
    ({"id": "e-frames", "question": "x?", "frames": 99}, {"question": "x?", "frames": 99},
     "'frames' must be in [1, 8]"),
    ({"id": "e-camera", "question": "x?", "camera": "side"}, {"question": "x?", "camera": "side"},
     "unknown camera 'side'"),
    ({"id": "e-kind", "question": "x?", "kind": "colour"}, {"question": "x?", "kind": "colour"},
     "unknown kind 'colour'"),
    ({"id": "e-span", "question": "x?", "span_s": 600}, {"question": "x?", "span_s": 600.0},
     "frames on /image cover"),
]


@pytest.mark.parametrize("message, typed_fields, error", ERROR_CASES, ids=[c[2][:24] for c in ERROR_CASES])
def test_json_errors_have_typed_counterparts(system: dict, typed: TypedClient, message: str | dict,
                                             typed_fields: dict | None, error: str) -> None:
    client: Client = system["client"]
    qid = json.loads(message)["id"] if isinstance(message, str) else message["id"]
    client.send(message)
    answer = json_answer(client, qid)
    assert answer["error"].startswith(error), answer["error"]
    assert_agree(typed.typed_answer(qid), answer)
    if typed_fields is not None:  # the same question through the typed service: the same error
        typed_answer = client.call(Ask, f"{NODE}/ask_question", Ask.Request(id=f"{qid}-srv", **typed_fields))
        assert typed_answer.answer.id == f"{qid}-srv" and typed_answer.answer.error.startswith(error)
        assert not typed_answer.answer.value_text and not len(typed_answer.answer.value_numbers)
        assert math.isnan(typed_answer.answer.confidence)
        time.sleep(0.5)
        assert [a["id"] for a in client.answers].count(f"{qid}-srv") == 1  # answered once, on the topics too


def test_queue_full_model_failure_unloaded_and_inactive_have_typed_counterparts(
    system: dict, typed: TypedClient,
) -> None:
    client: Client = system["client"]
    client.set_params(inject_failures=1)
    request = Ask.Request(id="e-model", question="Did it move?")
    answer = client.call(Ask, f"{NODE}/ask_question", request).answer
    assert answer.error.startswith("model failure: RuntimeError: injected failure")
    assert_agree(answer, json_answer(client, "e-model"))
    ids = [f"e-burst-{i}" for i in range(40)]
    for qid in ids:
        client.send({"id": qid, "question": "Did the square move right?"})
    answers = [json_answer(client, qid, 60) for qid in ids]
    assert any(a["error"] and a["error"].startswith("queue full") for a in answers)
    for answer in answers:
        assert_agree(typed.typed_answer(answer["id"]), answer)
    for ns, error in ((BROKEN, "model failed to load"), (FRESH, "node not active")):
        client.wait_for(lambda ns=ns: client.status[ns], 60, f"{ns} up")
        typed_answer = client.call(Ask, f"{ns}/ask_question", Ask.Request(id=f"e-{ns}", question="x?")).answer
        assert typed_answer.error.startswith(error), typed_answer.error
        answer = client.ask({"id": f"e-{ns}-json", "question": "x?"}, ns=ns)
        assert answer["error"] == typed_answer.error
        assert_agree(typed.typed_answer(f"e-{ns}-json"), answer)


def test_action_waits_for_frames_then_reports_vision_and_language(system: dict, typed: TypedClient) -> None:
    client: Client = system["client"]
    client.transition(Transition.TRANSITION_CONFIGURE, "inactive", ns=FRESH)
    client.transition(Transition.TRANSITION_ACTIVATE, "active", ns=FRESH)
    client.wait_for(lambda: client.status[FRESH][-1]["ready"], 10, "the fresh node ready")
    handle, feedback = typed.send(AskAction.Goal(id="act-1", question="Did the camera move left?"), FRESH)
    typed.wait_for(lambda: feedback, 10, "waiting feedback")
    assert (feedback[0].stage, feedback[0].detail) == (AskAction.Feedback.STAGE_WAITING_FOR_FRAMES,
                                                       "no frames yet on /fresh/image")
    camera = client.node.create_publisher(Image, "/fresh/image", QoSProfile(
        depth=10, reliability=QoSReliabilityPolicy.RELIABLE))
    client.wait_for(lambda: camera.get_subscription_count() > 0, 10, "the fresh node's image subscription")
    now = client.node.get_clock().now().nanoseconds
    sent = [now - (2 - k) * 500_000_000 for k in range(3)]

    def publish(k: int) -> None:
        msg = Image(height=48, width=64, encoding="rgb8", step=192, data=bytes([40 * k]) * (48 * 192))
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(sent[k], 1_000_000_000)
        camera.publish(msg)

    publish(0)  # one frame: the goal goes on waiting, a question now gets the error that says so
    one = "only 1 of 2 frames buffered on /fresh/image within span_s"
    typed.wait_for(lambda: feedback[-1].detail == one, 10, "feedback on the one frame")
    answer = client.ask({"id": "e-one", "question": "Did the camera move left?"}, ns=FRESH)
    assert answer["error"] == one
    assert_agree(typed.typed_answer("e-one"), answer)
    publish(1)
    publish(2)
    status, answer = typed.result(handle)
    assert status == GoalStatus.STATUS_SUCCEEDED and answer.error == "" and answer.id == "act-1"
    assert [stamp_ns(t) for t in answer.frame_stamps] == [sent[0], sent[2]]  # exact: 1 s apart
    stages = [f.stage for f in feedback]
    assert stages[-2:] == [AskAction.Feedback.STAGE_VISION, AskAction.Feedback.STAGE_LANGUAGE]
    assert set(stages[:-2]) == {AskAction.Feedback.STAGE_WAITING_FOR_FRAMES}
    assert_agree(answer, json_answer(client, "act-1"))
    client.node.destroy_publisher(camera)


def test_action_cancelled_while_waiting_for_frames_ends_cleanly(system: dict, typed: TypedClient) -> None:
    client: Client = system["client"]
    # 600 s of frames never fit the node's 64-frame buffer: the goal waits until cancelled
    handle, feedback = typed.send(AskAction.Goal(id="act-cancel", question="Did it move up?", span_s=600.0))
    typed.wait_for(lambda: feedback, 10, "waiting feedback")
    assert feedback[0].stage == AskAction.Feedback.STAGE_WAITING_FOR_FRAMES
    assert feedback[0].detail.startswith("frames on /image cover")
    cancel = handle.cancel_goal_async()
    status, answer = typed.result(handle, timeout=20)
    assert status == GoalStatus.STATUS_CANCELED and answer.id == "act-cancel" and answer.error == CANCELLED
    typed.wait_for(cancel.done, 10, "the cancel response")
    assert len(cancel.result().goals_canceling) == 1
    assert not [f for f in feedback if f.stage != AskAction.Feedback.STAGE_WAITING_FOR_FRAMES]
    assert_agree(answer, json_answer(client, "act-cancel"))
    time.sleep(0.5)
    assert [a["id"] for a in client.answers].count("act-cancel") == 1  # exactly one answer
    # the node goes on serving; a goal whose frames never come ends when wait_for_frames_s is up
    client.set_params(wait_for_frames_s=0.5)
    try:
        handle, _ = typed.send(AskAction.Goal(id="act-late", question="Did it move up?", span_s=600.0))
        status, answer = typed.result(handle)
        assert status == GoalStatus.STATUS_ABORTED and answer.error.startswith("frames on /image cover")
    finally:
        client.set_params(wait_for_frames_s=10.0)
    handle, _ = typed.send(AskAction.Goal(id="act-after", question="Did it move up?"))
    assert typed.result(handle)[0] == GoalStatus.STATUS_SUCCEEDED
