"""`spatial_mllm_node`: the lifecycle node that answers spatial questions over buffered camera frames.

A thin rclpy layer over nodecore.QuestionService: image callbacks only decode and push, a worker thread
runs the model, answers go out as JSON on ~/answer and typed (spatial_mllm_interfaces/msg/SpatialAnswer) on
~/answer_typed. Interface: /work/shared/docs/ros.md, docs/node.md and the README.
"""

from __future__ import annotations

import copy
import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import Executor, ExternalShutdownException, MultiThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import (
    QoSDurabilityPolicy,
    QoSHistoryPolicy,
    QoSProfile,
    QoSReliabilityPolicy,
    qos_profile_best_available,
    qos_profile_sensor_data,
)
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header, String
from std_srvs.srv import Trigger

from spatial_mllm_interfaces.msg import SpatialAnswer
from spatial_mllm_interfaces.srv import Ask
from spatial_mllm_ros.errors import ImageDecodeError
from spatial_mllm_ros.frames import Frame, FrameBuffer, frame_from_msg
from spatial_mllm_ros.interfaces import AnswerTypes, answer_message, question_json
from spatial_mllm_ros.nodecore import (
    NodeConfig,
    QuestionService,
    health_level,
    render_answer_image,
    stats_key_values,
)
from spatial_mllm_ros.ros.ask_action import AskAction
from spatial_mllm_ros.ros.convert import numpy_to_image
from spatial_mllm_ros.ros.params import declare_config, read_config, validate_parameters

NODE_NAME = "spatial_mllm_node"
ANSWER_TYPES = AnswerTypes(answer=SpatialAnswer, header=Header, time=Time)
# Answers are small and must not be lost: reliable, deep enough for a burst of answers.
TEXT_QOS = QoSProfile(depth=1000, reliability=QoSReliabilityPolicy.RELIABLE,
                      history=QoSHistoryPolicy.KEEP_LAST)
# Questions: keep-all, so a burst waits in DDS until the callback refuses or queues each one (a keep-last
# history silently replaced the oldest of a >1000-question burst before the node ever saw them).
QUESTION_QOS = QoSProfile(depth=1, reliability=QoSReliabilityPolicy.RELIABLE,
                          history=QoSHistoryPolicy.KEEP_ALL)
# ~/status: the last word stays readable by clients that join later (latched).
STATUS_QOS = QoSProfile(depth=1, reliability=QoSReliabilityPolicy.RELIABLE,
                        durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
IMAGE_QOS = {"sensor_data": qos_profile_sensor_data, "reliable": QoSProfile(
    depth=10, reliability=QoSReliabilityPolicy.RELIABLE), "best_available": qos_profile_best_available}
# `best_available` resolved with no publisher discovered yet asks for manual-by-topic liveliness, which no
# ordinary camera offers: such a subscription never receives (seen in CI when the node configured first).
# Until a publisher appears the camera is read best effort (matches every publisher), then re-subscribed
# with best_available; polled this often.
BEST_AVAILABLE_RESOLVE_S = 0.5
GIL_SWITCH_INTERVAL_S = 0.0005
# Paths and code trust of the model cannot change under a running node.
READ_ONLY = ("model.checkpoint", "model.adapter", "model.shift_expert", "model.trust_remote_code")
# Parameters that take effect at once; the others on the next configure/activate.
LIVE = {"frames", "span_s", "standing_questions", "standing_period_s", "publish_answer_image",
        "answer_image_height", "stale_after_s", "max_question_chars", "ask_timeout_s", "inject_failures",
        "ood_warn_score", "wait_for_frames_s"}


class SpatialNode(LifecycleNode):
    """Lifecycle node: configure loads the model and subscribes, activate opens the camera gate.

    Deactivate closes the gate and frees GPU memory; `~/status` (latched) says when frames are served.
    """

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.config: NodeConfig = declare_config(self, NodeConfig(), read_only=READ_ONLY)
        self.model: Any = None  # a SpatialModel once configured
        self.service = self._make_service()
        self._image_subs: dict[str, Any] = {}  # full topic -> subscription
        self._unresolved: dict[str, tuple[type, str]] = {}  # best_available topics read best effort for now
        self._resolve_timer: Any = None
        self._standing_timer: Any = None
        self._images_group = MutuallyExclusiveCallbackGroup()
        self._ask_group = ReentrantCallbackGroup()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._after_set_parameters)
        # Questions, answers, the service and diagnostics live as long as the node, so a question sent
        # to an inactive node still gets an answer (with the reason as its error).
        self._answer_pub = self.create_publisher(String, "~/answer", TEXT_QOS)
        self._typed_answer_pub = self.create_publisher(SpatialAnswer, "~/answer_typed", TEXT_QOS)
        self._answer_image_pub = self.create_publisher(Image, "~/answer_image", 2)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._status_pub = self.create_publisher(String, "~/status", STATUS_QOS)
        self.create_subscription(String, "~/question", self._on_question, QUESTION_QOS)
        # The services wait for their answers in an executor thread (at most ask_timeout_s); the action never.
        self.create_service(Ask, "~/ask_question", self._on_ask_question, callback_group=self._ask_group)
        self.create_service(Trigger, "~/ask_standing", self._on_ask_standing, callback_group=self._ask_group)
        self._ask_action = AskAction(self, lambda: self.service, lambda: self.config, ANSWER_TYPES,
                                     self._ask_group)
        self._diag_timer = self.create_timer(self.config.diagnostics_period_s, self._publish_diagnostics)
        self._answer_invalid_transitions()
        self._publish_status("unconfigured")

    def _answer_invalid_transitions(self) -> None:
        """Answer a ChangeState request the state machine refuses (activate while active) with success=false.

        rclpy raises inside its own service callback then, and the caller waits for a response that
        never comes until its own timeout.
        """
        service = self._service_change_state
        handle = service.callback

        def change_state(request: Any, response: Any) -> Any:
            try:
                return handle(request, response)
            except _rclpy.RCLError as exc:
                self.get_logger().warning(f"lifecycle transition {request.transition.id} "
                                          f"'{request.transition.label}' refused in state "
                                          f"{self.lifecycle_state}: {str(exc).splitlines()[0]}")
                response.success = False
                return response

        service.callback = change_state

    # ---- lifecycle -------------------------------------------------------------------------------
    @property
    def lifecycle_state(self) -> str:
        """Label of the current lifecycle state: unconfigured, inactive, active, ... (rclpy has no getter)."""
        return self._state_machine.current_state[1]

    def _make_service(self) -> QuestionService:
        cfg = self.config
        return QuestionService(cfg, FrameBuffer.from_config(cfg.buffer), self._publish_answer, self._now_ns)

    def _load_model(self) -> bool:
        try:  # the runtime (torch, transformers) is imported here: a broken install is a load failure
            import torch

            from spatial_mllm_ros.model.runtime import SpatialModel

            if self.config.cpu_threads > 0:
                torch.set_num_threads(self.config.cpu_threads)
            self.model = SpatialModel.load(self.config.model)
        except Exception as exc:  # any load failure leaves the node alive, unconfigured, with the reason
            reason = f"model failed to load: {type(exc).__name__}: {exc}"
            self.get_logger().error(reason)
            self.service.set_model(None, reason)
            self.service.stop(reason)
            return False
        self.service.set_model(self.model)
        self.get_logger().info(f"model {self.model.name} on {self.model.device} ({self.model.backend})")
        return True

    def _close_model(self, reason: str) -> None:
        self.service.set_model(None, reason)
        if self.model is not None:
            self.model.close()
            self.model = None

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.config = read_config(self, NodeConfig)
        spent = self.service.pending_failures  # a test hook's count is used up, not refilled
        self.service = self._make_service()
        self.service.inject_failures(spent)
        if not self._load_model():
            self._publish_status("unconfigured")
            return TransitionCallbackReturn.FAILURE
        # Subscribed here, gated until activate: discovery runs while the node waits to be activated. After
        # the model load, so `qos: best_available` resolves against cameras that had time to appear.
        self._subscribe_images()
        self._publish_status("inactive")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.model is None and not self._load_model():
            return TransitionCallbackReturn.FAILURE
        self.service.start()
        self._restart_standing_timer()
        self._publish_status("active")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_inputs("node inactive")
        if not self.config.keep_model_loaded:
            self._close_model("deactivated (model released; activate reloads it)")
        self._publish_status("inactive")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._unsubscribe_images()
        self._close_model("not configured")
        self._publish_status("unconfigured")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.close()
        self._publish_status("finalized")
        return TransitionCallbackReturn.SUCCESS

    def close(self) -> None:
        """Stop inputs and the worker and free the model (idempotent; used by shutdown paths)."""
        self._stop_inputs("node shutting down")
        self._unsubscribe_images()
        self._close_model("node shut down")

    def autostart(self) -> None:
        """Configure and activate now unless the `autostart` parameter is false."""
        if not self.config.autostart:
            return
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    def _stop_inputs(self, reason: str) -> None:
        if self._standing_timer is not None:
            self.destroy_timer(self._standing_timer)
            self._standing_timer = None
        self.service.stop(reason)
        self.service.buffer.clear()

    # ---- inputs ----------------------------------------------------------------------------------
    def _unsubscribe_images(self) -> None:
        for sub in self._image_subs.values():
            self.destroy_subscription(sub)
        self._image_subs = {}
        self._unresolved = {}
        if self._resolve_timer is not None:
            self.destroy_timer(self._resolve_timer)
            self._resolve_timer = None

    def _subscribe_images(self) -> None:
        self._unsubscribe_images()
        cameras = []
        for topic in self.config.image_topics:
            compressed = topic.endswith("/compressed") or self.config.image_transport == "compressed"
            base = topic.removesuffix("/compressed")
            name = self.resolve_topic_name(base)  # remaps apply to the base topic, like image_transport
            if name in cameras:  # "image" and "/image" are one camera: subscribed once
                self.get_logger().warning(f"image_topics names camera {name} twice: subscribed once")
                continue
            cameras.append(name)
            self._subscribe_camera(CompressedImage if compressed else Image,
                                   f"{name}/compressed" if compressed else name, name)
        self.service.cameras = cameras
        if self._unresolved:
            self._resolve_timer = self.create_timer(BEST_AVAILABLE_RESOLVE_S, self._resolve_best_available)

    def _subscribe_camera(self, msg_type: type, topic: str, camera: str) -> None:
        how = self.config.qos
        qos = copy.copy(IMAGE_QOS[how])
        if how == "best_available" and not self.get_publishers_info_by_topic(topic):
            qos = copy.copy(qos_profile_sensor_data)
            self._unresolved[topic] = (msg_type, camera)
            how = "best_available: no publisher yet, best effort until one appears"
        qos.depth = self.config.image_queue_depth
        self._image_subs[topic] = self.create_subscription(
            msg_type, topic, lambda msg, cam=camera: self._on_image(msg, cam), qos,
            callback_group=self._images_group)
        self.get_logger().info(f"camera {camera}: {msg_type.__name__} on {topic} ({how})")

    def _resolve_best_available(self) -> None:
        """Re-subscribe each best_available camera read best effort for now once a publisher is discovered."""
        for topic, (msg_type, camera) in list(self._unresolved.items()):
            if self.get_publishers_info_by_topic(topic):
                self._unresolved.pop(topic, None)
                old = self._image_subs.pop(topic, None)
                if old is not None:
                    self.destroy_subscription(old)
                self._subscribe_camera(msg_type, topic, camera)
        if not self._unresolved and self._resolve_timer is not None:
            self.destroy_timer(self._resolve_timer)
            self._resolve_timer = None

    def _on_image(self, msg: Image | CompressedImage, camera: str) -> None:
        if not self.service.running:  # configured, not active: the gate is closed
            return
        started = time.perf_counter()
        try:
            frame = frame_from_msg(msg, camera, self.config.buffer.max_pixels)
        except ImageDecodeError as exc:
            n = self.service.add_malformed(camera, exc.reason)
            if n == 1 or n % 100 == 0:
                self.get_logger().warning(f"malformed image on {camera} ({n}x {exc.reason}): {exc}")
            return
        if frame.stamp_ns == 0:  # unstamped camera: the node clock (sim time when use_sim_time)
            frame = replace(frame, stamp_ns=self._now_ns())
        self.service.add_frame(frame, started)

    def _on_question(self, msg: String) -> None:
        self.service.submit(msg.data)

    def _on_ask_question(self, request: Ask.Request, response: Ask.Response) -> Ask.Response:
        question = self.service.read(question_json(request))
        self.service.enqueue(question)
        answer = self.service.answer_within(question, time.monotonic() + self.config.ask_timeout_s)
        response.answer = answer_message(answer, question.frame_stamps_ns, ANSWER_TYPES)
        return response

    def _on_ask_standing(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        questions = self.service.ask_standing()
        deadline = time.monotonic() + self.config.ask_timeout_s
        answers = [self.service.answer_within(q, deadline) for q in questions]
        response.success = bool(answers) and all(a["error"] is None for a in answers)
        response.message = json.dumps(answers)
        return response

    def _on_standing_timer(self) -> None:
        self.service.ask_standing()

    def _restart_standing_timer(self) -> None:
        if self._standing_timer is not None:
            self.destroy_timer(self._standing_timer)
            self._standing_timer = None
        if self.config.standing_period_s > 0 and self.config.standing_questions:
            self._standing_timer = self.create_timer(self.config.standing_period_s, self._on_standing_timer)

    # ---- outputs ---------------------------------------------------------------------------------
    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _publish_answer(self, answer: dict[str, Any], frames: list[Frame]) -> None:
        if not self.context.ok():  # shutting down: no one left to deliver to
            return
        self._answer_pub.publish(String(data=json.dumps(answer)))
        self._typed_answer_pub.publish(answer_message(answer, [f.stamp_ns for f in frames], ANSWER_TYPES))
        if answer["error"]:
            self.get_logger().warning(f"question {answer['id']}: {answer['error']}",
                                      throttle_duration_sec=2.0)
        if frames and self.config.publish_answer_image:
            text = answer["answer"] if not answer["error"] else f"error: {answer['error']}"
            canvas = render_answer_image(frames, answer["question"], text, self.config.answer_image_height)
            self._answer_image_pub.publish(numpy_to_image(canvas, self._now_ns(), frames[-1].frame_id))

    def _publish_diagnostics(self) -> None:
        stats = self.service.stats()
        level, message = health_level(stats, self.config.stale_after_s, self.config.ood_warn_score)
        state = self.lifecycle_state
        status = DiagnosticStatus(
            level=bytes([level]), name=f"{self.get_fully_qualified_name()}: spatial questions",
            message=f"[{state}] {message}", hardware_id=stats.model or "none",
            values=[KeyValue(key=k, value=v)
                    for k, v in [("lifecycle_state", state), *stats_key_values(stats)]],
        )
        self._diag_pub.publish(DiagnosticArray(header=self._header(), status=[status]))

    def _publish_status(self, state: str) -> None:
        """Latch the lifecycle state on ~/status: `ready` is true once frames and questions are served."""
        if not self.context.ok():
            return
        status = {"state": state, "ready": state == "active", "cameras": list(self.service.cameras),
                  "model": getattr(self.model, "name", ""), "stamp": self._now_ns() * 1e-9}
        self._status_pub.publish(String(data=json.dumps(status)))

    def _header(self) -> Header:
        return Header(stamp=self.get_clock().now().to_msg())

    # ---- parameters ------------------------------------------------------------------------------
    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        error = validate_parameters(self, NodeConfig, params)
        return SetParametersResult(successful=error is None, reason=error or "")

    def _after_set_parameters(self, params: list[Parameter]) -> None:
        self.config = read_config(self, NodeConfig)
        changed = {p.name for p in params}
        for name in changed & LIVE:
            setattr(self.service.config, name, getattr(self.config, name))
        if "inject_failures" in changed:
            self.service.inject_failures(self.config.inject_failures)
        if changed & {"standing_questions", "standing_period_s"} and self.service.running:
            self._restart_standing_timer()
        if "diagnostics_period_s" in changed:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = self.create_timer(self.config.diagnostics_period_s, self._publish_diagnostics)


def _quietly(node: Node, step: Callable[[], Any] | None) -> None:
    """Run one shutdown step; a failure is logged, never raised, so the rest of the shutdown happens."""
    if step is None:
        return
    try:
        step()
    except Exception as exc:
        node.get_logger().warning(f"error while shutting down: {type(exc).__name__}: {exc}")


def _spin_quietly(executor: Executor) -> None:
    """Spin until shutdown; a callback that raises is logged and the node keeps serving.

    rclpy lets callback exceptions (e.g. an invalid lifecycle transition requested by a client) escape
    spin() and end the process; a robot node must survive its clients.
    """
    while executor.context.ok():
        try:
            executor.spin_once(timeout_sec=0.5)
        except (KeyboardInterrupt, ExternalShutdownException):
            return
        except Exception as exc:
            if not executor.context.ok():  # SIGINT/SIGTERM shut the context down mid-wait: normal
                return
            rclpy.logging.get_logger(NODE_NAME).error(f"a callback raised {type(exc).__name__}: {exc}")


def spin(groups: list[tuple[Executor, list[Node]]]) -> None:
    """Spin each executor with its nodes until SIGINT/SIGTERM, then close and destroy them, no traceback.

    The first executor spins in this thread (nodes holding thread-bound resources such as a GL context
    belong there), the others in background threads.
    """
    # Image callbacks wait for the GIL while the inference thread runs Python code: hand it over every
    # 0.5 ms instead of every 5 ms so a callback never waits long (see bench/bench_node.py).
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    for executor, nodes in groups:
        for node in nodes:
            executor.add_node(node)
    threads = [threading.Thread(target=_spin_quietly, args=(ex,), daemon=True) for ex, _ in groups[1:]]
    for thread in threads:
        thread.start()
    try:
        _spin_quietly(groups[0][0])
    finally:
        main_node = groups[0][1][0]
        # wakes the other executors; races with rclpy's own signal-handler shutdown, hence quietly
        _quietly(main_node, main_node.context.try_shutdown)
        for thread in threads:
            thread.join(timeout=10)
        for executor, nodes in groups:
            for node in nodes:
                _quietly(node, getattr(node, "close", None))  # worker threads, models, renderers
            executor.shutdown()
            for node in nodes:
                _quietly(node, node.destroy_node)


def main(args: list[str] | None = None) -> None:
    """Entry point `spatial_mllm_node` (also `ros2 run spatial_mllm_ros spatial_mllm_node`)."""
    rclpy.init(args=args)
    try:
        node = SpatialNode()
        node.autostart()
    except (KeyboardInterrupt, ExternalShutdownException):  # stopped while starting: a clean exit
        rclpy.try_shutdown()
        return
    spin([(MultiThreadedExecutor(num_threads=4), [node])])


if __name__ == "__main__":
    main()
