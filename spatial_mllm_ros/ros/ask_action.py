"""The spatial node's `~/ask` action: a typed question that waits for its frames and reports its stage.

No goal holds an executor thread. A goal is accepted at once; while the buffer lacks the frames it needs,
a timer re-checks it (feedback STAGE_WAITING_FOR_FRAMES says what is missing) and a cancel ends it; then it
joins the question queue, the inference worker reports STAGE_VISION and STAGE_LANGUAGE, and only when its
answer is there is the goal executed, which just returns it. So any number of waiting goals leaves the
camera callbacks their threads (rclpy's Jazzy executor would spin on a coroutine that awaits).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from rclpy.action import ActionServer, CancelResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.callback_groups import CallbackGroup, MutuallyExclusiveCallbackGroup
from rclpy.node import Node

from spatial_mllm_interfaces.action import Ask
from spatial_mllm_ros.conventions import AnswerStage
from spatial_mllm_ros.interfaces import AnswerTypes, answer_message, question_json
from spatial_mllm_ros.nodecore import NodeConfig, QuestionService, Request

POLL_S = 0.05  # how often waiting goals are checked against the frame buffer
CANCELLED = "cancelled while waiting for frames"


@dataclass
class _Goal:
    """One accepted goal and where it is."""

    handle: ServerGoalHandle
    request: Request
    deadline: float  # time.monotonic() after which it stops waiting for frames
    waiting: bool = True  # still waiting for frames: the only time it can be cancelled
    cancelled: bool = False
    missing: str | None = None  # what the last waiting feedback said was missing


class AskAction:
    """Serve `~/ask` (spatial_mllm_interfaces/action/Ask) over the node's current question service."""

    def __init__(self, node: Node, service: Callable[[], QuestionService], config: Callable[[], NodeConfig],
                 types: AnswerTypes, group: CallbackGroup) -> None:
        self._service = service  # callables: configure replaces the node's service and config
        self._config = config
        self._types = types
        self._goals: dict[bytes, _Goal] = {}
        self._lock = threading.Lock()
        self._server = ActionServer(node, Ask, "~/ask", execute_callback=self._execute,
                                    handle_accepted_callback=self._accepted, cancel_callback=self._cancel,
                                    callback_group=group)
        self._timer = node.create_timer(POLL_S, self._poll, callback_group=MutuallyExclusiveCallbackGroup())
        self._timer.cancel()  # runs only while goals wait

    def _accepted(self, handle: ServerGoalHandle) -> None:
        service, config = self._service(), self._config()
        request = service.read(question_json(handle.request))
        goal = _Goal(handle, request, deadline=time.monotonic() + config.wait_for_frames_s)
        request.on_stage = lambda stage: self._feedback(goal, stage)
        with self._lock:
            # beyond queue_size waiting goals, a goal is served at once, like a question on the topic
            waiting = sum(g.waiting for g in self._goals.values())
            goal.waiting = not request.future.done() and waiting < config.queue_size
            self._goals[bytes(handle.goal_id.uuid)] = goal
            if goal.waiting:
                self._timer.reset()
        request.future.add_done_callback(lambda _: handle.execute())  # answered: execute returns it
        if not goal.waiting:
            service.enqueue(request)

    def _cancel(self, handle: ServerGoalHandle) -> CancelResponse:
        with self._lock:
            goal = self._goals.get(bytes(handle.goal_id.uuid))
            if goal is None or not goal.waiting:
                return CancelResponse.REJECT  # its question is with the model: the answer comes soon
            goal.cancelled = True
        return CancelResponse.ACCEPT

    def _poll(self) -> None:
        service = self._service()
        with self._lock:
            waiting = [g for g in self._goals.values() if g.waiting]
        for goal in waiting:
            self._check(goal, service)
        with self._lock:
            if not any(g.waiting for g in self._goals.values()):
                self._timer.cancel()

    def _check(self, goal: _Goal, service: QuestionService) -> None:
        """End a cancelled goal's wait, send a waiting one on once its frames are there or its time is up."""
        with self._lock:
            if goal.cancelled and not goal.handle.is_cancel_requested:
                return  # rclpy moves it to CANCELING right after the cancel callback: next time
            missing = None if goal.cancelled or not service.running else service.missing_frames(goal.request)
            if missing is not None and time.monotonic() < goal.deadline:
                report, goal.missing = missing != goal.missing, missing
            else:
                report, goal.waiting = False, False
        if goal.waiting:
            if report:
                self._feedback(goal, AnswerStage.WAITING_FOR_FRAMES, missing)
        elif goal.cancelled:
            service.reject(goal.request, CANCELLED)
        else:
            service.enqueue(goal.request)  # frames there (or time up: answered with what is missing)

    def _feedback(self, goal: _Goal, stage: AnswerStage, detail: str = "") -> None:
        stage_id = getattr(Ask.Feedback, f"STAGE_{stage.name}")
        goal.handle.publish_feedback(Ask.Feedback(stage=stage_id, detail=detail))

    def _execute(self, handle: ServerGoalHandle) -> Ask.Result:
        """Finish a goal whose answer is there: CANCELED, ABORTED (the answer has an error) or SUCCEEDED."""
        with self._lock:
            goal = self._goals.pop(bytes(handle.goal_id.uuid))
        answer = goal.request.future.result()
        if goal.cancelled:
            handle.canceled()
        elif answer["error"]:
            handle.abort()
        else:
            handle.succeed()
        return Ask.Result(answer=answer_message(answer, goal.request.frame_stamps_ns, self._types))
