"""The spatial node over real DDS on loopback: a camera process, the node process, this test as client.

One node process (tiny random model, two cameras: raw `image` and JPEG `wrist/image/compressed`) serves
the tests in file order; a second node with an unloadable model checks the failure path.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

rclpy = pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import (  # noqa: E402
    QoSDurabilityPolicy,
    QoSHistoryPolicy,
    QoSProfile,
    QoSReliabilityPolicy,
)
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from spatial_mllm_ros.model.factory import make_tiny_model  # noqa: E402

pytestmark = pytest.mark.ros

NODE = "/spatial_mllm_node"
BROKEN = "/broken/spatial_mllm_node"
FRESH = "/fresh/spatial_mllm_node"  # autostart off, fed only by this test's frames
# Keep-all both ways: the test must not lose what it sends or what the node answers in a burst.
TEXT_QOS = QoSProfile(depth=1, reliability=QoSReliabilityPolicy.RELIABLE, history=QoSHistoryPolicy.KEEP_ALL)
STATUS_QOS = QoSProfile(depth=1, reliability=QoSReliabilityPolicy.RELIABLE,
                        durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
PERIOD_S = 0.05  # the camera's frame period; stamps are multiples of it
# Requests that change nothing (configure is invalid while active): probes for a fresh service client.
HARMLESS = {
    ChangeState: None,  # no request is harmless: transition() checks the state when a response is lost
    GetState: GetState.Request,
    SetParameters: SetParameters.Request,
    Trigger: Trigger.Request,
}


def fit_ood_statistics(checkpoint: Path) -> None:
    """Save OOD statistics with the test model, fitted on the pattern camera's own frames (familiar)."""
    from spatial_mllm_ros.model.config import ModelConfig
    from spatial_mllm_ros.model.ood import fit_feature_stats
    from spatial_mllm_ros.model.runtime import SpatialModel
    from spatial_mllm_ros.ros.pattern_camera import pattern

    model = SpatialModel.load(ModelConfig(checkpoint=str(checkpoint), device="cpu"))
    frames = [pattern(64, 48, i) for i in range(400)]
    fit_feature_stats(model.frame_descriptors(frames), components=4).save(checkpoint)
    model.close()


def spawn(args: list[str], log: Path) -> subprocess.Popen:
    out = log.open("w")
    return subprocess.Popen([sys.executable, *args], stdout=out, stderr=subprocess.STDOUT,
                            env=os.environ.copy())


def stop(proc: subprocess.Popen, sig: int = signal.SIGINT, timeout: float = 20.0) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class Client:
    """The test's rclpy node: question publishers, answer/diagnostics subscribers, service clients."""

    def __init__(self) -> None:
        self.node = rclpy.create_node("test_client")
        self.answers: list[dict] = []
        self.diagnostics: dict[str, dict[str, Any]] = {}
        self.answer_images: list[Image] = []
        self.cond = threading.Condition()
        self.clients: dict[str, Any] = {}
        self.status: dict[str, list[dict]] = {ns: [] for ns in (NODE, BROKEN, FRESH)}
        self.pubs = {ns: self.node.create_publisher(String, f"{ns}/question", TEXT_QOS)
                     for ns in (NODE, BROKEN, FRESH)}
        for ns in (NODE, BROKEN, FRESH):
            self.node.create_subscription(String, f"{ns}/answer", self._on_answer, TEXT_QOS)
            self.node.create_subscription(String, f"{ns}/status", lambda m, ns=ns: self._on_status(m, ns),
                                          STATUS_QOS)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 50)
        self.node.create_subscription(Image, f"{NODE}/answer_image", self.answer_images.append, 10)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _on_answer(self, msg: String) -> None:
        with self.cond:
            self.answers.append(json.loads(msg.data))
            self.cond.notify_all()

    def _on_status(self, msg: String, ns: str) -> None:
        with self.cond:
            self.status[ns].append(json.loads(msg.data))
            self.cond.notify_all()

    def _on_diag(self, msg: DiagnosticArray) -> None:
        with self.cond:
            for status in msg.status:
                values = {kv.key: kv.value for kv in status.values}
                self.diagnostics[status.name.split(":")[0]] = {"level": status.level[0] if isinstance(
                    status.level, bytes) else status.level, "message": status.message, **values}
            self.cond.notify_all()

    def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                result = predicate()
                if result:
                    return result
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
                self.cond.wait(min(left, 0.2))

    def diag(self, ns: str = NODE) -> dict[str, Any]:
        with self.cond:
            return dict(self.diagnostics.get(ns, {}))

    def send(self, payload: str | dict, ns: str = NODE) -> None:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        self.pubs[ns].publish(String(data=data))

    def ask(self, payload: str | dict, ns: str = NODE, timeout: float = 30.0) -> dict:
        key = ("id", payload["id"]) if isinstance(payload, dict) else ("question", payload.strip())
        start = len(self.answers)
        self.send(payload, ns)
        return self.wait_for(lambda: next((a for a in self.answers[start:] if a.get(key[0]) == key[1]), None),
                             timeout, f"the answer to {payload!r}")

    def _call_once(self, client: Any, request: Any, timeout: float) -> Any:
        future = client.call_async(request)
        deadline = time.monotonic() + timeout
        while not future.done():
            if time.monotonic() > deadline:
                client.remove_pending_request(future)
                return None
            time.sleep(0.01)
        return future.result()

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 30.0) -> Any:
        # One client per service, probed until it gets a response: the first responses of a new client
        # are lost while the server has not yet discovered the client's response reader (DDS race).
        client = self.clients.get(name)
        if client is None:
            client = self.node.create_client(srv_type, name)
            assert client.wait_for_service(timeout_sec=timeout), f"service {name} not available"
            probe = HARMLESS[srv_type]
            if probe is not None:
                assert any(self._call_once(client, probe(), 2.0) is not None for _ in range(15)), name
            self.clients[name] = client
        response = self._call_once(client, request, timeout)
        assert response is not None, f"{name} did not answer in {timeout} s"
        return response

    def set_params(self, ns: str = NODE, **values: Any) -> None:
        request = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg()
                                                    for k, v in values.items()])
        results = self.call(SetParameters, f"{ns}/set_parameters", request).results
        assert all(r.successful for r in results), results

    def transition(self, transition_id: int, goal: str, ns: str = NODE) -> None:
        request = ChangeState.Request(transition=Transition(id=transition_id))
        try:
            assert self.call(ChangeState, f"{ns}/change_state", request, timeout=10.0).success
        except AssertionError:  # the response may be lost (see call): the state says what happened
            deadline = time.monotonic() + 20
            while self.state(ns) != goal:
                assert time.monotonic() < deadline, f"transition {transition_id} never reached {goal}"
                time.sleep(0.2)

    def state(self, ns: str = NODE) -> str:
        return self.call(GetState, f"{ns}/get_state", GetState.Request()).current_state.label

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("node")
    checkpoint = make_tiny_model(tmp / "tiny")
    fit_ood_statistics(checkpoint)
    params = tmp / "params.yaml"
    params.write_text(
        "/**:\n  ros__parameters:\n"
        "    image_topics: [image, wrist/image/compressed]\n    qos: best_available\n"
        '    standing_questions: ["Is the cube on the table?"]\n'
        "    queue_size: 8\n    diagnostics_period_s: 0.25\n    stale_after_s: 10.0\n"
        # the camera's 52 frames are the familiar set itself: the top 1 % of them score just above 1
        "    ood_warn_score: 2.0\n"
        f"    model:\n      checkpoint: {checkpoint}\n      device: cpu\n")
    broken = tmp / "broken.yaml"
    broken.write_text("/**:\n  ros__parameters:\n    model:\n      checkpoint: /nonexistent/model\n")
    fresh = tmp / "fresh.yaml"
    fresh.write_text("/**:\n  ros__parameters:\n    autostart: false\n    qos: reliable\n"
                     f"    image_topics: [/fresh/image]\n    model:\n      checkpoint: {checkpoint}\n")
    camera = spawn(["-m", "spatial_mllm_ros.ros.pattern_camera", "--topic", "/image", "--compressed-topic",
                    "/wrist/image/compressed", "--rate", str(1 / PERIOD_S), "--size", "64x48",
                    "--quantum-ms", str(PERIOD_S * 1000), "--frame-id", "cam_optical"], tmp / "camera.log")
    node = spawn(["-m", "spatial_mllm_ros", "bringup", "--params-file", str(params)], tmp / "node.log")
    broken_node = spawn(["-m", "spatial_mllm_ros", "bringup", "--params-file", str(broken), "--namespace",
                         "broken"], tmp / "broken.log")
    fresh_node = spawn(["-m", "spatial_mllm_ros", "bringup", "--params-file", str(fresh), "--namespace",
                        "fresh"], tmp / "fresh.log")
    client = None
    try:
        rclpy.init()
        client = Client()
        client.wait_for(lambda: client.diag().get("lifecycle_state") == "active"
                        and int(client.diag().get("/image: kept", 0)) > 25
                        and int(client.diag().get("/wrist/image: kept", 0)) > 25,
                        120, "node active with frames")
        client.wait_for(lambda: client.pubs[NODE].get_subscription_count() > 0, 10, "question subscriber")
        yield {"client": client, "node": node, "broken": broken_node, "fresh": fresh_node, "tmp": tmp}
    finally:
        if client is not None:
            client.close()
        rclpy.try_shutdown()
        for proc in (node, broken_node, fresh_node, camera):
            stop(proc)
        print((tmp / "node.log").read_text()[-3000:])


def check_stamps(answer: dict, n: int, span_s: float) -> None:
    stamps = answer["frame_stamps"]
    assert len(stamps) == n and stamps == sorted(stamps)
    for s in stamps:  # header stamps of real published frames: multiples of the camera period
        assert abs(s / PERIOD_S - round(s / PERIOD_S)) < 1e-3
    assert stamps[-1] - stamps[0] == pytest.approx(span_s, abs=2 * PERIOD_S)
    assert abs(time.time() - stamps[-1]) < 5.0  # ROS time of recent frames (no sim time here)


def test_plain_question_answered_with_stamps(system: dict) -> None:
    client: Client = system["client"]
    n_images = len(client.answer_images)
    answer = client.ask("Did the gripper move left?")
    assert answer["error"] is None, answer
    assert {"id", "question", "answer", "value", "kind", "frame_stamps", "frame_id", "latency_ms", "model",
            "error", "probabilities", "latency"} <= set(answer)
    assert answer["kind"] == "yes_no" and set(answer["probabilities"]) == {"yes", "no"}
    assert isinstance(answer["ood_score"], float) and answer["ood_score"] > 0
    client.wait_for(lambda: client.diag().get("/image: ood_score"), 10, "the OOD score on /diagnostics")
    assert answer["frame_id"] == "cam_optical" and answer["camera"] == "/image" and answer["model"]
    assert set(answer["latency"]) == {"wait_ms", "vision_ms", "language_ms"} and answer["latency_ms"] > 0
    check_stamps(answer, 2, 1.0)
    image = client.wait_for(lambda: client.answer_images[n_images:], 10, "the answer image")[-1]
    assert image.encoding == "rgb8" and image.height > 240 and image.width == 2 * 320


def test_json_question_frames_by_time(system: dict) -> None:
    client: Client = system["client"]
    answer = client.ask({"id": "j1", "question": "Which direction did the square move?", "frames": 3,
                         "span_s": 0.5})
    assert answer["error"] is None and answer["id"] == "j1" and answer["kind"] == "direction"
    check_stamps(answer, 3, 0.5)


def test_compressed_camera_named_in_question(system: dict) -> None:
    client: Client = system["client"]
    answer = client.ask({"id": "c1", "question": "Did the camera move right?", "camera": "wrist"})
    assert answer["error"] is None and answer["camera"] == "/wrist/image"
    check_stamps(answer, 2, 1.0)


def test_bad_questions_answered_with_errors(system: dict) -> None:
    client: Client = system["client"]
    assert client.ask("{not json")["error"].startswith("bad JSON")
    assert "frames" in client.ask({"id": "b1", "question": "x?", "frames": 99})["error"]
    assert "unknown camera 'side'" in client.ask({"id": "b2", "question": "x?", "camera": "side"})["error"]


def test_standing_questions_and_trigger(system: dict) -> None:
    client: Client = system["client"]
    response = client.call(Trigger, f"{NODE}/ask_standing", Trigger.Request())
    answers = json.loads(response.message)
    assert response.success and [a["id"] for a in answers] == ["standing-0"]
    assert answers[0]["question"] == "Is the cube on the table?" and answers[0]["error"] is None
    start = len(client.answers)
    client.set_params(standing_period_s=0.3)
    try:
        client.wait_for(lambda: sum(a["id"] == "standing-0" for a in client.answers[start:]) >= 3, 20,
                        "three standing answers")
    finally:
        client.set_params(standing_period_s=0.0)
    client.wait_for(lambda: client.diag().get("queue_depth") == "0", 30, "the standing questions drained")


def malformed_messages() -> list[tuple[str, Image | CompressedImage]]:
    def image(**fields: Any) -> Image:
        base = {"height": 4, "width": 4, "encoding": "rgb8", "step": 12, "data": bytes(48)}
        return Image(**{**base, **fields})

    return [
        ("unknown_encoding", image(encoding="yuv-special")),
        ("bad_shape", image(width=0, step=0)),
        ("too_large", image(width=100_000, height=100_000, step=300_000)),
        ("step_too_small", image(step=5)),
        ("data_too_short", image(data=bytes(10))),
        ("corrupt_data", CompressedImage(format="jpeg", data=b"\xff\xd8\xff" + bytes(20))),
    ]


def test_malformed_images_counted_and_node_alive(system: dict) -> None:
    client: Client = system["client"]
    raw = client.node.create_publisher(Image, "/image", 10)
    jpeg = client.node.create_publisher(CompressedImage, "/wrist/image/compressed", 10)
    client.wait_for(lambda: raw.get_subscription_count() > 0 and jpeg.get_subscription_count() > 0, 10,
                    "the node's image subscriptions")
    messages = malformed_messages()

    def counted() -> bool:
        d = client.diag()
        topic = {Image: "/image", CompressedImage: "/wrist/image"}
        return all(int(d.get(f"{topic[type(m)]}: malformed {r}", 0)) >= 1 for r, m in messages)

    # A loaded machine may drop a burst from the camera's keep-last queue (as with a real camera): send
    # rounds until every kind has arrived once, then require each to be counted.
    deadline = time.monotonic() + 20
    while not counted() and time.monotonic() < deadline:
        for _, msg in messages:
            (jpeg if isinstance(msg, CompressedImage) else raw).publish(msg)
            time.sleep(0.05)
        time.sleep(0.5)
    client.wait_for(counted, 10, "every malformed kind counted in /diagnostics")
    assert system["node"].poll() is None
    assert client.ask("Is the node still answering?")["error"] is None
    log = (system["tmp"] / "node.log").read_text()
    assert all(f"({1}x {reason})" in log for reason, _ in messages)


def test_flood_of_500_questions_none_lost(system: dict) -> None:
    client: Client = system["client"]
    proc = psutil.Process(system["node"].pid)
    rss_before = proc.memory_info().rss
    start = len(client.answers)
    t0 = time.monotonic()
    for i in range(500):
        client.send({"id": f"flood-{i}", "question": "Did the square move right?"})
        if i % 50 == 49:
            time.sleep(max(0.0, t0 + (i + 1) / 500 - time.monotonic()))
    assert time.monotonic() - t0 < 1.5
    ids = {f"flood-{i}" for i in range(500)}

    def all_answered() -> bool:
        return ids <= {a["id"] for a in client.answers[start:]}

    client.wait_for(all_answered, 60, "an answer to each of the 500 questions")
    flood = [a for a in client.answers[start:] if a["id"] in ids]
    assert len(flood) == 500  # exactly one answer each
    ok = [a for a in flood if a["error"] is None]
    rejected = [a for a in flood if a["error"]]
    assert ok and all(a["error"].startswith("queue full") for a in rejected)
    assert len(ok) + len(rejected) == 500
    growth_mb = (proc.memory_info().rss - rss_before) / 2**20
    print(f"flood: {len(ok)} answered, {len(rejected)} rejected 'queue full', RSS {growth_mb:+.1f} MiB")
    assert growth_mb < 64, f"node RSS grew {growth_mb:.0f} MiB during the flood"
    client.wait_for(lambda: client.diag().get("queue_depth") == "0", 10, "queue drained")


def test_burst_of_5000_questions_each_answered_once(system: dict) -> None:
    client: Client = system["client"]
    start = len(client.answers)
    t0 = time.monotonic()
    for i in range(5000):  # as fast as one publisher can
        client.send({"id": f"burst-{i}", "question": "Did the square move left?"})
    sent_s = time.monotonic() - t0
    ids = {f"burst-{i}" for i in range(5000)}
    client.wait_for(lambda: ids <= {a["id"] for a in client.answers[start:]}, 120,
                    "an answer to each of the 5000 questions")
    burst = [a for a in client.answers[start:] if a["id"] in ids]
    assert len(burst) == 5000  # exactly once each
    refused = [a for a in burst if a["error"]]
    assert all(a["error"].startswith("queue full") for a in refused)
    print(f"burst: 5000 sent in {sent_s:.1f} s, {5000 - len(refused)} answered, {len(refused)} 'queue full'")
    client.wait_for(lambda: client.diag().get("queue_depth") == "0", 30, "queue drained")


@pytest.mark.parametrize("message, qid", [
    ('{"id": "nan", "question": "x?", "frames": NaN}', "nan"),
    ('{"id": "inf", "question": "x?", "span_s": Infinity}', "inf"),
    ('{"id": "big", "question": "x?", "frames": 1e400}', "big"),
    ('{"id": "deep", "question": "x?", "options": ' + "[" * 1500 + "]" * 1500 + "}", "deep"),
])
def test_unreadable_numbers_and_deep_json_answered_once(system: dict, message: str, qid: str) -> None:
    client: Client = system["client"]
    start = len(client.answers)
    client.send(message)
    answer = client.wait_for(lambda: next((a for a in client.answers[start:] if a["id"] == qid), None), 20,
                             f"the answer to {qid}")
    assert answer["error"]
    time.sleep(0.5)
    assert [a["id"] for a in client.answers[start:]].count(qid) == 1
    assert "Traceback" not in (system["tmp"] / "node.log").read_text()


def test_status_is_latched_and_frames_right_after_ready_are_used(system: dict) -> None:
    client: Client = system["client"]
    client.wait_for(lambda: client.status[NODE] and client.status[NODE][-1]["ready"], 10,
                    "the active node's latched status (sent before this test subscribed)")
    assert client.status[NODE][-1]["state"] == "active"
    assert client.wait_for(lambda: client.status[FRESH], 60, "the fresh node's status")[-1]["state"] == \
        "unconfigured"
    camera = client.node.create_publisher(Image, "/fresh/image", QoSProfile(
        depth=10, reliability=QoSReliabilityPolicy.RELIABLE))
    client.transition(Transition.TRANSITION_CONFIGURE, "inactive", ns=FRESH)
    # the image subscription exists from configure on, so discovery is done before the gate opens
    client.wait_for(lambda: camera.get_subscription_count() > 0, 10, "the fresh node's image subscription")
    assert client.wait_for(lambda: client.status[FRESH][-1]["state"] == "inactive" and client.status[FRESH],
                           10, "status inactive")[-1]["ready"] is False
    client.transition(Transition.TRANSITION_ACTIVATE, "active", ns=FRESH)
    client.wait_for(lambda: client.status[FRESH][-1]["ready"], 10, "status ready")
    now = client.node.get_clock().now().nanoseconds
    for k in range(3):  # at once, as a client that waited for `ready` does
        stamp = now - (2 - k) * 500_000_000
        msg = Image(height=48, width=64, encoding="rgb8", step=192, data=bytes([40 * k]) * (48 * 192))
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
        camera.publish(msg)
    # all three kept (none dropped by a closed gate); the question's topic is not ordered with the images'
    client.wait_for(lambda: client.diag(FRESH).get("/fresh/image: kept") == "3", 10, "3 frames kept")
    answer = client.ask({"id": "fresh-1", "question": "Did the camera move left?"}, ns=FRESH)
    assert answer["error"] is None, answer
    assert len(answer["frame_stamps"]) == 2
    client.node.destroy_publisher(camera)


def test_best_available_camera_that_starts_after_the_node(system: dict) -> None:
    """A camera driver started after the node is still read, and reliably once it is discovered.

    rclpy's best_available resolved with no publisher yet asks for manual-by-topic liveliness: such a
    subscription never matched an ordinary camera (CI saw it when the node configured before discovery).
    """
    client: Client = system["client"]  # the fresh node is active after the test above
    for transition, goal in ((Transition.TRANSITION_DEACTIVATE, "inactive"),
                             (Transition.TRANSITION_CLEANUP, "unconfigured")):
        client.transition(transition, goal, ns=FRESH)
    client.set_params(ns=FRESH, qos="best_available", image_topics=["/late/image"])
    client.transition(Transition.TRANSITION_CONFIGURE, "inactive", ns=FRESH)
    client.transition(Transition.TRANSITION_ACTIVATE, "active", ns=FRESH)

    def reliability() -> list[QoSReliabilityPolicy]:
        return [i.qos_profile.reliability for i in client.node.get_subscriptions_info_by_topic("/late/image")]

    assert client.wait_for(reliability, 10, "the node's subscription to /late/image") == \
        [QoSReliabilityPolicy.BEST_EFFORT]  # no publisher yet: best effort, which matches any camera
    camera = client.node.create_publisher(Image, "/late/image", QoSProfile(
        depth=10, reliability=QoSReliabilityPolicy.RELIABLE))
    client.wait_for(lambda: reliability() == [QoSReliabilityPolicy.RELIABLE], 10,
                    "re-subscribed with the camera's reliable QoS")
    client.wait_for(lambda: camera.get_subscription_count() > 0, 10, "matched")
    now = client.node.get_clock().now().nanoseconds
    for k in range(3):
        msg = Image(height=48, width=64, encoding="rgb8", step=192, data=bytes([40 * k]) * (48 * 192))
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now - (2 - k) * 500_000_000, 1_000_000_000)
        camera.publish(msg)
    client.wait_for(lambda: client.diag(FRESH).get("/late/image: kept") == "3", 10, "3 frames kept")
    log = (system["tmp"] / "fresh.log").read_text()
    assert "no publisher yet" in log and "incompatible QoS" not in log
    client.node.destroy_publisher(camera)


def test_model_failure_injected_then_recovery(system: dict) -> None:
    client: Client = system["client"]
    client.set_params(inject_failures=2)
    for i in range(2):
        answer = client.ask({"id": f"fail-{i}", "question": "Did the gripper move up?"})
        assert answer["error"].startswith("model failure: RuntimeError: injected failure"), answer
    client.wait_for(lambda: client.diag().get("level") == 2 and "failed" in client.diag()["message"], 10,
                    "diagnostics ERROR after the failure")
    assert client.ask({"id": "recovered", "question": "Did the gripper move up?"})["error"] is None
    client.wait_for(lambda: client.diag().get("level") == 0, 10, "diagnostics OK after recovery")
    assert int(client.diag()["failed"]) >= 2


def test_invalid_lifecycle_transition_does_not_kill_node(system: dict) -> None:
    client: Client = system["client"]
    change = client.node.create_client(ChangeState, f"{NODE}/change_state")
    assert change.wait_for_service(timeout_sec=10)
    configure_while_active = ChangeState.Request(transition=Transition(id=Transition.TRANSITION_CONFIGURE))
    activate_while_active = ChangeState.Request(transition=Transition(id=Transition.TRANSITION_ACTIVATE))
    client._call_once(change, configure_while_active, 3.0)  # the first responses may be lost (see call)
    for request in (configure_while_active, activate_while_active):
        response = client._call_once(change, request, 5.0)
        assert response is not None, "a refused transition must still be answered"
        assert response.success is False
    assert system["node"].poll() is None and client.state() == "active"
    assert client.ask({"id": "still-alive", "question": "Did it move up?"})["error"] is None
    client.node.destroy_client(change)


def test_lifecycle_cycles_without_memory_growth(system: dict) -> None:
    client: Client = system["client"]
    proc = psutil.Process(system["node"].pid)
    rss = []
    for cycle in range(20):
        client.transition(Transition.TRANSITION_DEACTIVATE, "inactive")
        if cycle == 0:
            assert client.state() == "inactive"
            assert client.ask({"id": "while-inactive", "question": "x?"})["error"] == "node inactive"
        client.transition(Transition.TRANSITION_ACTIVATE, "active")
        rss.append(proc.memory_info().rss)
    assert client.state() == "active"
    growth_mb = (rss[-1] - rss[2]) / 2**20
    print(f"lifecycle: RSS after cycles 3..20 (MiB): {[round(r / 2**20) for r in rss[2:]]}")
    assert growth_mb < 40, f"RSS grew {growth_mb:.0f} MiB over 18 deactivate/activate cycles"
    kept = int(client.diag()["/image: kept"])
    client.wait_for(lambda: int(client.diag()["/image: kept"]) > kept + 25, 20, "frames after reactivation")
    assert client.ask({"id": "after-cycles", "question": "Did it move left?"})["error"] is None


def test_spent_injected_failures_stay_spent_after_cleanup_and_configure(system: dict) -> None:
    client: Client = system["client"]  # test_model_failure_injected_then_recovery spent inject_failures=2
    for transition, goal in ((Transition.TRANSITION_DEACTIVATE, "inactive"),
                             (Transition.TRANSITION_CLEANUP, "unconfigured"),
                             (Transition.TRANSITION_CONFIGURE, "inactive"),
                             (Transition.TRANSITION_ACTIVATE, "active")):
        client.transition(transition, goal)
    client.wait_for(lambda: client.status[NODE][-1]["ready"], 10, "ready again")
    # configure made a new service: its counters start again at 0
    def fresh_frames() -> bool:
        d = client.diag()
        return d.get("answered") == "0" and int(d.get("/image: kept", 0)) > 25

    client.wait_for(fresh_frames, 20, "frames after configure")
    assert client.ask({"id": "after-reconfigure", "question": "Did it move up?"})["error"] is None


def test_unloadable_model_leaves_node_unconfigured(system: dict) -> None:
    client: Client = system["client"]
    diag = client.wait_for(lambda: client.diag(BROKEN).get("level") == 2 and client.diag(BROKEN), 120,
                           "the broken node's diagnostics")
    assert "model failed to load" in diag["model_state"] and "/nonexistent/model" in diag["model_state"]
    assert diag["lifecycle_state"] == "unconfigured" and client.state(BROKEN) == "unconfigured"
    answer = client.ask({"id": "to-broken", "question": "x?"}, ns=BROKEN)
    assert answer["error"].startswith("model failed to load")
    proc: subprocess.Popen = system["broken"]
    assert stop(proc, signal.SIGINT) == 0
    log = (system["tmp"] / "broken.log").read_text()
    assert "model failed to load" in log and "Traceback" not in log


def test_sigterm_shuts_down_cleanly(system: dict) -> None:
    proc: subprocess.Popen = system["node"]
    assert stop(proc, signal.SIGTERM) == 0
    assert "Traceback" not in (system["tmp"] / "node.log").read_text()
