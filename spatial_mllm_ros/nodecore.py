"""The ROS-free question service behind the spatial node: parse, queue, pick frames by time, answer, measure.

The rclpy node (ros/spatial_node.py) only converts messages and calls this module, so every rule of the
interface contract (fields, errors, bounds, statistics) is testable without ROS.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import queue
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from spatial_mllm_ros.answers import Question
from spatial_mllm_ros.config import option
from spatial_mllm_ros.conventions import AnswerStage, QuestionKind
from spatial_mllm_ros.errors import SpatialMllmError
from spatial_mllm_ros.frames import Frame, FrameBuffer, FramesConfig
from spatial_mllm_ros.model.config import ModelConfig

log = logging.getLogger(__name__)

QOS_CHOICES = ("sensor_data", "reliable", "best_available")
TRANSPORT_CHOICES = ("raw", "compressed")
JSON_FIELDS = frozenset({"id", "question", "frames", "span_s", "camera", "kind", "options"})
MAX_ID_CHARS = 128
# How far into an unparseable message the sender's id is looked for (too long, too deep, bad literal).
ID_SEARCH_CHARS = 1 << 16
# JSON structure: strings (escapes included) and the punctuation that decides where keys are.
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]:,]')


class QuestionError(SpatialMllmError):
    """A question message that cannot be served as sent (bad JSON, bad field, unknown camera)."""

    def __init__(self, message: str, question_id: str | None = None) -> None:
        super().__init__(message)
        self.question_id = question_id  # the message's own id when it had a usable one


@dataclass
class NodeConfig:
    """Every parameter of the spatial node; ROS parameters, YAML and the CLI share this schema."""

    image_topics: list[str] = option(
        default_factory=lambda: ["image"],
        help="camera image topics (relative, remappable); several = several cameras, a question may name "
        "one by topic or by a path segment ('front' matches /camera/front/image_raw); a topic ending in "
        "/compressed is always sensor_msgs/CompressedImage; applied on configure")
    image_transport: str = option(
        "raw", help="raw: sensor_msgs/Image on each topic; compressed: CompressedImage on <topic>/compressed",
        choices=TRANSPORT_CHOICES)
    qos: str = option("sensor_data", help="camera subscription QoS (sensor_data: best effort)",
                     choices=QOS_CHOICES)
    image_queue_depth: int = option(5, help="camera subscription history depth (messages waiting for the "
                                    "executor; each costs one image of memory)", range=(1, 100))
    frames: int = option(2, range=(1, 64),
                         help="frames per question unless the question says otherwise (<= model.max_frames)")
    span_s: float = option(1.0, help="seconds between the first and last frame used, ending at the newest",
                          range=(0.0, 600.0))
    queue_size: int = option(8, help="questions waiting at most; more are answered with error 'queue full'",
                            range=(1, 1024))
    max_question_chars: int = option(2000, help="longer question messages are rejected", range=(16, 100000))
    standing_questions: list[str] = option(
        default_factory=list,
        help="questions (text or JSON) answered every standing_period_s and by the ~/ask_standing service")
    standing_period_s: float = option(
        0.0, help="period of the standing questions (0: only on ~/ask_standing)", range=(0.0, 3600.0))
    ask_timeout_s: float = option(
        60.0, help="how long the ~/ask_standing and ~/ask_question services wait for their answers",
        range=(0.1, 3600.0))
    wait_for_frames_s: float = option(
        10.0, help="how long an ~/ask action goal waits for the frames it needs (cancellable) before it is "
        "answered with what is missing", range=(0.0, 3600.0))
    publish_answer_image: bool = option(True, help="publish ~/answer_image (frames used, question, answer)")
    answer_image_height: int = option(240, help="height in pixels of each frame in ~/answer_image",
                                     range=(32, 2160))
    diagnostics_period_s: float = option(1.0, help="period of /diagnostics", range=(0.1, 60.0))
    stale_after_s: float = option(2.0, help="diagnostics WARN when the newest frame is older than this",
                                 range=(0.01, 3600.0))
    ood_warn_score: float = option(
        1.0, help="diagnostics WARN when the median OOD score of a camera's last answers is above this (1.0: "
        "the 99th percentile of the checkpoint's familiar frames)", range=(0.0, 1e6))
    autostart: bool = option(True, help="configure and activate at start (false: wait for lifecycle "
                            "transitions)", read_only=True)
    keep_model_loaded: bool = option(False, help="keep the model in memory while inactive (false: "
                                    "deactivate frees its GPU memory and activate reloads it)")
    cpu_threads: int = option(0, help="torch CPU threads for inference (0: torch's default); on a CPU-only "
                              "robot leave a core to the image callbacks", range=(0, 256))
    inject_failures: int = option(0, help="test hook: the next N inferences raise a model failure",
                                 range=(0, 1000))
    buffer: FramesConfig = field(default_factory=FramesConfig)
    model: ModelConfig = field(default_factory=ModelConfig)


@dataclass
class Request:
    """One question in the queue: what to ask, over which frames, and where its answer goes."""

    id: str
    text: str
    frames: int
    span_s: float
    camera: str | None = None
    kind: str | None = None
    options: tuple[str, ...] | None = None
    received: float = field(default_factory=time.monotonic)
    future: Future = field(default_factory=Future)
    on_stage: Callable[[AnswerStage], None] | None = None  # told when the model starts vision and language
    frame_stamps_ns: list[int] = field(default_factory=list)  # header stamps of the frames its answer used


def _as_int(value: Any, name: str, low: int, high: int) -> int:
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or int(value) != value):
        raise QuestionError(f"'{name}' must be an integer, got {value!r}")
    if not low <= value <= high:
        raise QuestionError(f"'{name}' must be in [{low}, {high}], got {value}")
    return int(value)


def _as_float(value: Any, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise QuestionError(f"'{name}' must be a finite number, got {value!r}")
    if not low <= value <= high:
        raise QuestionError(f"'{name}' must be in [{low}, {high}], got {value}")
    return float(value)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _usable_id(value: Any) -> str | None:
    if isinstance(value, (str, int)) and not isinstance(value, bool) and len(str(value)) <= MAX_ID_CHARS:
        return str(value)
    return None


def readable_id(text: str) -> str | None:
    """Find the top-level "id" of a JSON object that cannot be parsed whole (too long, too deep, bad value).

    Scans only structure tokens, so a message nested thousands deep costs no recursion; None when the
    message is no object or its id is missing or unusable.
    """
    text = text[:ID_SEARCH_CHARS]
    depth, key_next, key = 0, False, None
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        if token in "{[":
            depth += 1
            key_next = depth == 1 and token == "{"
            if depth == 1 and token == "[":
                return None
        elif token in "}]":
            depth -= 1
            if depth <= 0:
                return None
        elif depth != 1:
            continue
        elif token == ",":
            key_next = True
        elif token == ":":
            if key == "id":
                start = len(text) - len(text[match.end():].lstrip())
                try:
                    value, _ = json.JSONDecoder(parse_constant=_refuse_constant).raw_decode(text, start)
                except (ValueError, RecursionError):
                    return None
                return _usable_id(value)
            key = None
        elif key_next:  # a string right after '{' or ',' at the top level is a key
            key, key_next = token[1:-1], False
    return None


def parse_question(raw: str, config: NodeConfig, default_id: str) -> Request:
    """Read a question message: plain text, or the contract's JSON object; raises QuestionError.

    Whenever the message names a usable id it is kept on the error, so the sender can match the answer.
    """
    if len(raw) > config.max_question_chars:
        raise QuestionError(f"question too long: {len(raw)} > {config.max_question_chars} characters",
                            question_id=readable_id(raw.lstrip()) if raw.lstrip().startswith("{") else None)
    text = raw.strip()
    if not text:
        raise QuestionError("empty question")
    if not text.startswith(("{", "[")):
        return Request(id=default_id, text=text, frames=config.frames, span_s=config.span_s)
    try:
        obj = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise QuestionError("bad JSON: nested too deeply", question_id=readable_id(text)) from None
    except ValueError as exc:  # JSONDecodeError, NaN / Infinity, an integer too long to convert
        raise QuestionError(f"bad JSON: {exc}", question_id=readable_id(text)) from None
    if not isinstance(obj, dict):
        raise QuestionError("bad JSON: expected an object")
    qid = _usable_id(obj.get("id", default_id))
    if qid is None:
        raise QuestionError(f"'id' must be a string of at most {MAX_ID_CHARS} characters")
    try:
        return _request_from_json(obj, qid, config)
    except QuestionError as exc:
        raise QuestionError(str(exc), question_id=qid) from None


def _request_from_json(obj: dict[str, Any], qid: str, config: NodeConfig) -> Request:
    unknown = sorted(set(obj) - JSON_FIELDS)
    if unknown:
        raise QuestionError(f"bad JSON: unknown field(s) {unknown} (known: {sorted(JSON_FIELDS)})")
    question = obj.get("question")
    if not isinstance(question, str) or not question.strip():
        raise QuestionError("bad JSON: 'question' must be a non-empty string")
    kind = obj.get("kind")
    if kind is not None and (not isinstance(kind, str) or kind not in {k.value for k in QuestionKind}):
        raise QuestionError(f"unknown kind {kind!r} (known: {[k.value for k in QuestionKind]})")
    options = obj.get("options")
    if options is not None and not (isinstance(options, list) and all(isinstance(o, str) for o in options)):
        raise QuestionError("'options' must be a list of strings")
    camera = obj.get("camera")
    if camera is not None and not isinstance(camera, str):
        raise QuestionError("'camera' must be a string")
    return Request(
        id=qid,
        text=question.strip(),
        frames=_as_int(obj.get("frames", config.frames), "frames", 1, config.model.max_frames),
        span_s=_as_float(obj.get("span_s", config.span_s), "span_s", 0.0, 600.0),
        camera=camera,
        kind=kind,
        options=tuple(options) if options is not None else None,
    )


def match_camera(name: str, topics: Sequence[str]) -> str:
    """Resolve a question's camera to a configured topic: the topic, or a '/'-separated segment of it."""
    for topic in topics:
        if name == topic or name.strip("/") == topic.strip("/"):
            return topic
    for topic in topics:
        if name in topic.strip("/").split("/"):
            return topic
    raise QuestionError(f"unknown camera {name!r} (cameras: {list(topics)})")


def _percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values), q)) if values else None


def gpu_memory_mb() -> float | None:
    """Allocated CUDA memory in MiB when torch is loaded with a GPU, else None (never imports torch)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    return torch.cuda.memory_allocated() / (1 << 20)


@dataclass
class CameraStats:
    """Input health of one camera topic."""

    topic: str
    received: int = 0
    kept: int = 0
    malformed: dict[str, int] = field(default_factory=dict)
    rate_hz: float = 0.0
    newest_stamp_ns: int | None = None
    newest_age_s: float | None = None


@dataclass
class ServiceStats:
    """What /diagnostics reports: inputs, queue, latencies, counts and model state."""

    cameras: list[CameraStats]
    queue_depth: int
    queue_size: int
    answered: int
    rejected: int
    failed: int
    latency_last_ms: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    callback_p50_ms: float | None
    callback_p99_ms: float | None
    delay_p50_ms: float | None  # header stamp -> callback: transport and executor delay
    delay_p99_ms: float | None
    model: str
    backend: str
    device: str
    model_state: str  # "loaded", "not loaded: <reason>"
    last_error: str | None
    gpu_memory_mb: float | None
    cache_mb: float | None = None  # the model's vision-embedding cache (bounded by model.cache_bytes)
    cache_hit_rate: float | None = None
    ood_scores: dict[str, float] = field(default_factory=dict)  # camera -> median of its last answers' scores
    shift_expert_answers: int | None = None  # questions the model's shift expert answered (None: it has none)


class _CameraCounter:
    """Arrival times and counts of one camera, for its rate and age."""

    def __init__(self, topic: str) -> None:
        self.stats = CameraStats(topic)
        self.arrivals: deque[float] = deque(maxlen=512)


class QuestionService:
    """Bounded question queue plus one inference worker thread; every question gets exactly one answer."""

    RATE_WINDOW_S = 5.0
    MAX_BATCH = 8  # queued questions answered by one model call
    OOD_WINDOW = 5  # answers per camera whose median OOD score /diagnostics reports (one odd frame is noise)

    def __init__(
        self,
        config: NodeConfig,
        buffer: FrameBuffer,
        publish: Callable[[dict[str, Any], list[Frame]], None],
        now_ns: Callable[[], int],
    ) -> None:
        self.config = config
        self.buffer = buffer
        self.cameras: list[str] = list(config.image_topics)  # the node sets the resolved topic names
        self._publish = publish
        self._now_ns = now_ns
        self._queue: queue.Queue[Request] = queue.Queue(maxsize=config.queue_size)
        self._lock = threading.Lock()
        self._model: Any = None
        self._model_reason = "not configured"
        self._ids = itertools.count(1)
        self._cameras: dict[str, _CameraCounter] = {}
        self._latencies: deque[float] = deque(maxlen=256)
        self._ood: dict[str, deque[float]] = {}
        self._callback_ms: deque[float] = deque(maxlen=1024)  # the last ~30 s of a 30 Hz camera
        self._delay_ms: deque[float] = deque(maxlen=1024)
        self._answered = self._rejected = self._failed = 0
        self._last_error: str | None = None
        self._inject = config.inject_failures
        self._closed: str | None = "node not active"
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None

    # ---- model -------------------------------------------------------------------------------------
    def set_model(self, model: Any, reason: str = "") -> None:
        """Serve with `model` (None: answer every question with `reason` as the error)."""
        with self._lock:
            self._model = model
            self._model_reason = reason or "not configured"
            if model is not None:
                self._last_error = None

    def inject_failures(self, n: int) -> None:
        """Test hook: make the next `n` inferences raise a model failure."""
        with self._lock:
            self._inject = n

    @property
    def pending_failures(self) -> int:
        """Injected failures not yet spent; a reconfigured node carries them over instead of refilling."""
        with self._lock:
            return self._inject

    # ---- inputs ------------------------------------------------------------------------------------
    def _camera(self, topic: str) -> _CameraCounter:
        counter = self._cameras.get(topic)
        if counter is None:
            counter = self._cameras.setdefault(topic, _CameraCounter(topic))
        return counter

    def add_frame(self, frame: Frame, callback_started: float) -> bool:
        """Push a decoded frame into the buffer and count it; returns whether the buffer kept it."""
        kept = self.buffer.push(frame)
        counter = self._camera(frame.topic)
        with self._lock:
            counter.stats.received += 1
            counter.stats.kept += int(kept)
            counter.arrivals.append(time.monotonic())
            counter.stats.newest_stamp_ns = frame.stamp_ns
            self._callback_ms.append((time.perf_counter() - callback_started) * 1e3)
            self._delay_ms.append((self._now_ns() - frame.stamp_ns) * 1e-6)
        return kept

    def add_malformed(self, topic: str, reason: str) -> int:
        """Count a message that could not be decoded; returns how many of this reason so far."""
        counter = self._camera(topic)
        with self._lock:
            counter.stats.received += 1
            n = counter.stats.malformed.get(reason, 0) + 1
            counter.stats.malformed[reason] = n
        return n

    # ---- questions ---------------------------------------------------------------------------------
    def next_id(self) -> str:
        """Make a fresh id for questions that bring none: q1, q2, ..."""
        return f"q{next(self._ids)}"

    def _parse(self, raw: str, default_id: str) -> Request:
        request = parse_question(raw, self.config, default_id)
        if request.camera is not None:
            try:
                request.camera = match_camera(request.camera, self.cameras)
            except QuestionError as exc:
                raise QuestionError(str(exc), question_id=request.id) from None
        return request

    def read(self, raw: str, qid: str | None = None) -> Request:
        """Parse one question message; one that cannot be served as sent comes back answered (future done).

        `qid` is the id of a question that brings none (default: the next q<N>).
        """
        qid = qid or self.next_id()
        try:
            return self._parse(raw, qid)
        except QuestionError as exc:
            bad = Request(id=exc.question_id or qid, text=raw[:200], frames=0, span_s=0.0)
            self.reject(bad, str(exc))
        except Exception as exc:  # a message no rule foresaw still gets its one answer, and the node lives
            log.warning("unexpected error reading question %s: %s", qid, exc)
            bad = Request(id=qid, text=raw[:200], frames=0, span_s=0.0)
            self.reject(bad, f"unreadable question: {type(exc).__name__}: {exc}")
        return bad

    def submit(self, raw: str) -> Future:
        """Parse and enqueue one question message; parse errors and a full queue are answered at once."""
        return self.enqueue(self.read(raw))

    def enqueue(self, request: Request) -> Future:
        """Queue a parsed request, or answer it at once with the error: inactive node or 'queue full'.

        A request read() already answered (it could not be served as sent) keeps its one answer.
        """
        if request.future.done():
            return request.future
        with self._lock:
            error = self._closed
            if error is None:
                try:
                    self._queue.put_nowait(request)
                except queue.Full:
                    error = f"queue full ({self.config.queue_size} waiting)"
        if error is not None:
            return self.reject(request, error)
        return request.future

    def standing_requests(self) -> list[Request]:
        """Fresh requests for every standing question (unparseable ones are answered with their error)."""
        requests = [self.read(raw, f"standing-{i}") for i, raw in enumerate(self.config.standing_questions)]
        return [r for r in requests if not r.future.done()]

    def ask_standing(self) -> list[Request]:
        """Enqueue every standing question now; their futures resolve to their answer dicts."""
        requests = self.standing_requests()
        for request in requests:
            self.enqueue(request)
        return requests

    def answer_within(self, request: Request, deadline: float) -> dict[str, Any]:
        """Return the request's answer, or one saying it is late once `deadline` (time.monotonic) has passed.

        A late answer still reaches the answer topics when it is ready.
        """
        try:
            return request.future.result(timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            late = f"no answer within ask_timeout_s={self.config.ask_timeout_s}"
            return self._answer_dict(request, error=late)

    def reject(self, request: Request, error: str) -> Future:
        """Answer a request at once with `error` (a refused or cancelled question still gets its answer)."""
        with self._lock:
            self._rejected += 1
        answer = self._answer_dict(request, error=error)
        self._emit(request, answer, [])
        return request.future

    def _emit(self, request: Request, answer: dict[str, Any], frames: list[Frame]) -> None:
        try:
            self._publish(answer, frames)
        except Exception as exc:  # a transport failure (e.g. during shutdown) must not kill the worker
            log.warning("could not publish the answer to %s: %s", request.id, exc)
        request.frame_stamps_ns = [f.stamp_ns for f in frames]
        if not request.future.done():
            request.future.set_result(answer)

    # ---- worker ------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether the worker is serving questions (between start() and stop())."""
        return self._worker is not None and self._worker.is_alive()

    def start(self) -> None:
        """Start the inference worker thread (idempotent)."""
        if self._worker is not None and self._worker.is_alive():
            return
        with self._lock:
            self._closed = None
        self._stop.clear()
        self._worker = threading.Thread(target=self._run, name="spatial-mllm-worker", daemon=True)
        self._worker.start()

    def stop(self, reason: str = "node not active") -> None:
        """Join the worker; queued and later questions are answered with `reason` until start()."""
        with self._lock:
            self._closed = reason
        self._stop.set()
        if self._worker is not None:
            self._worker.join()
            self._worker = None
        while True:
            try:
                request = self._queue.get_nowait()
            except queue.Empty:
                break
            self.reject(request, reason)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                batch = [self._queue.get(timeout=0.1)]
            except queue.Empty:
                continue
            while len(batch) < self.MAX_BATCH:  # whatever else is waiting shares the same model call
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self.answer_batch(batch)

    def answer(self, request: Request) -> dict[str, Any]:
        """Answer one request now: pick frames, run the model, publish the answer."""
        return self.answer_batch([request])[0]

    def answer_batch(self, requests: Sequence[Request]) -> list[dict[str, Any]]:
        """Answer requests now (the worker's step), in order; those over the same frames run as one batch.

        Standing questions all ask about the newest frames, so they share one vision pass and one
        language batch (`SpatialModel.ask_many`) instead of queueing behind each other.
        """
        answers: dict[int, dict[str, Any]] = {}
        groups: dict[tuple[str, ...], tuple[list[Frame], list[tuple[int, Question, float]]]] = {}
        with self._lock:
            model, reason = self._model, self._model_reason
        for i, request in enumerate(requests):
            started = time.monotonic()
            prepared = self._prepare(request, model, reason, started)
            if isinstance(prepared, dict):
                answers[i] = prepared
                continue
            frames, question = prepared
            with self._lock:
                inject = self._inject > 0
                self._inject -= int(inject)
            if inject:
                failure = RuntimeError("injected failure (inject_failures test hook)")
                answers[i] = self._finish(request, frames, failure, started, model)
                continue
            groups.setdefault(tuple(f.key for f in frames), (frames, []))[1].append((i, question, started))
        for frames, group in groups.values():
            listeners = [requests[i].on_stage for i, _, _ in group if requests[i].on_stage is not None]
            results = self._infer(model, frames, [q for _, q, _ in group], _tell_all(listeners))
            for (i, _, started), result in zip(group, results):
                answers[i] = self._finish(requests[i], frames, result, started, model)
        return [answers[i] for i in range(len(requests))]

    def _prepare(
        self, request: Request, model: Any, reason: str, started: float
    ) -> tuple[list[Frame], Question] | dict[str, Any]:
        """Pick the request's frames and build its question, or answer it with why it cannot run yet."""
        if model is None:
            return self._fail(request, f"model not loaded: {reason}", [], started, count_failed=False)
        frames, missing = self._frames(request)
        if missing is not None:
            return self._fail(request, missing, frames, started, count_failed=False)
        kind = QuestionKind(request.kind) if request.kind is not None else None
        return frames, Question(request.text, kind=kind, options=request.options, id=request.id)

    def _frames(self, request: Request) -> tuple[list[Frame], str | None]:
        """Pick the request's frames from the buffer; say why they cannot serve it yet (None: they can)."""
        camera = request.camera or self.cameras[0]
        frames = self.buffer.select(request.frames, span_s=request.span_s, topic=camera)
        if not frames:
            return frames, f"no frames yet on {camera}"
        if len(frames) < request.frames:  # a multi-frame question over one frame would be answered wrongly
            return frames, f"only {len(frames)} of {request.frames} frames buffered on {camera} within span_s"
        covered = (frames[-1].stamp_ns - frames[0].stamp_ns) * 1e-9
        if len(frames) > 1 and covered < 0.5 * request.span_s:  # the history is too short for the question
            return frames, f"frames on {camera} cover {covered:.2f} s of span_s {request.span_s:g} s so far"
        return frames, None

    def missing_frames(self, request: Request) -> str | None:
        """Say what the buffer still lacks to serve `request` (None: nothing), for a question that waits."""
        return self._frames(request)[1]

    @staticmethod
    def _infer(model: Any, frames: list[Frame], questions: list[Question],
               on_stage: Callable[[AnswerStage], None] | None = None) -> list[Any]:
        """Run questions over the same frames: one batch, or one by one if the batch fails.

        One bad question then cannot fail the rest; an exception stands in for an answer that failed.
        """
        pixels, keys = [f.pixels for f in frames], [f.key for f in frames]
        if len(questions) > 1:
            try:
                return list(model.ask_many(pixels, questions, keys=keys, on_stage=on_stage))
            except Exception as exc:  # answered one by one below, each with its own error
                log.debug("batch of %d failed (%s); answering one by one", len(questions), exc)
        results: list[Any] = []
        for question in questions:
            try:
                results.append(model.ask(pixels, question, keys=keys, on_stage=on_stage))
            except Exception as exc:  # any runtime failure becomes an error answer, the worker lives on
                results.append(exc)
        return results

    def _finish(
        self, request: Request, frames: list[Frame], result: Any, started: float, model: Any
    ) -> dict[str, Any]:
        if isinstance(result, Exception):
            return self._fail(request, f"model failure: {type(result).__name__}: {result}", frames, started)
        answer = self._answer_dict(request, frames=frames, result=result, started=started, model=model)
        with self._lock:
            self._answered += 1
            self._latencies.append(answer["latency_ms"])
            if answer["ood_score"] is not None and answer["camera"]:
                recent = self._ood.setdefault(answer["camera"], deque(maxlen=self.OOD_WINDOW))
                recent.append(answer["ood_score"])
            if result.error is None:
                self._last_error = None
        self._emit(request, answer, frames)
        return answer

    def _fail(self, request: Request, error: str, frames: list[Frame], started: float,
              count_failed: bool = True) -> dict[str, Any]:
        with self._lock:
            if count_failed:
                self._failed += 1
                self._last_error = error
            else:
                self._rejected += 1
        answer = self._answer_dict(request, frames=frames, error=error, started=started)
        self._emit(request, answer, frames)
        return answer

    def _answer_dict(self, request: Request, frames: Sequence[Frame] = (), result: Any = None,
                     error: str | None = None, started: float | None = None, model: Any = None,
                     ) -> dict[str, Any]:
        now = time.monotonic()
        wait_ms = ((started if started is not None else now) - request.received) * 1e3
        timing = getattr(model, "last_timing", None) if result is not None else None
        parsed = result.to_dict() if result is not None else {}
        answer: dict[str, Any] = {
            "id": request.id,
            "question": request.text,
            "answer": parsed.get("raw", ""),
            "value": parsed.get("value"),
            "kind": parsed.get("kind", request.kind),
            "unit": parsed.get("unit"),
            "confidence": parsed.get("confidence"),
            "probabilities": parsed.get("probabilities"),
            "ood_score": parsed.get("ood_score"),
            "frame_stamps": [stamp_seconds(f.stamp_ns) for f in frames],
            "frame_id": frames[-1].frame_id if frames else "",
            "camera": frames[-1].topic if frames else request.camera,
            "stamp": self._now_ns() * 1e-9,
            "latency_ms": round((now - request.received) * 1e3, 3),
            "latency": {
                "wait_ms": round(wait_ms, 3),
                "vision_ms": round(timing.vision_ms, 3) if timing is not None else None,
                "language_ms": round(timing.language_ms, 3) if timing is not None else None,
            },
            "model": getattr(model, "name", "") if model is not None else (
                getattr(self._model, "name", "") if self._model is not None else ""),
            "error": error if error is not None else parsed.get("error"),
        }
        return answer

    # ---- health ------------------------------------------------------------------------------------
    def stats(self) -> ServiceStats:
        """Take a consistent snapshot for /diagnostics and benchmarks."""
        now_mono = time.monotonic()
        now_ns = self._now_ns()
        with self._lock:
            cameras = []
            for counter in self._cameras.values():
                recent = [t for t in counter.arrivals if now_mono - t <= self.RATE_WINDOW_S]
                span = (recent[-1] - recent[0]) if len(recent) > 1 else 0.0
                counter.stats.rate_hz = (len(recent) - 1) / span if span > 0 else 0.0
                newest = counter.stats.newest_stamp_ns
                counter.stats.newest_age_s = (now_ns - newest) * 1e-9 if newest else None
                cameras.append(CameraStats(**{**counter.stats.__dict__,
                                              "malformed": dict(counter.stats.malformed)}))
            latencies = list(self._latencies)
            callbacks = list(self._callback_ms)
            delays = list(self._delay_ms)
            model = self._model
            return ServiceStats(
                cameras=cameras,
                queue_depth=self._queue.qsize(),
                queue_size=self.config.queue_size,
                answered=self._answered,
                rejected=self._rejected,
                failed=self._failed,
                latency_last_ms=latencies[-1] if latencies else None,
                latency_p50_ms=_percentile(latencies, 50),
                latency_p95_ms=_percentile(latencies, 95),
                callback_p50_ms=_percentile(callbacks, 50),
                callback_p99_ms=_percentile(callbacks, 99),
                delay_p50_ms=_percentile(delays, 50),
                delay_p99_ms=_percentile(delays, 99),
                model=getattr(model, "name", "") if model is not None else "",
                backend=getattr(model, "backend", "") if model is not None else "",
                device=getattr(model, "device", "") if model is not None else "",
                model_state="loaded" if model is not None else f"not loaded: {self._model_reason}",
                last_error=self._last_error,
                gpu_memory_mb=gpu_memory_mb(),
                ood_scores={camera: float(np.median(scores)) for camera, scores in self._ood.items()},
                shift_expert_answers=(model.expert_answers if getattr(model, "expert", None) is not None
                                      else None),
                **_cache_figures(model),
            )


def stamp_seconds(ns: int) -> float:
    """Write a ROS time in nanoseconds as the seconds the answer JSON carries (rounded to the nanosecond)."""
    return round(ns * 1e-9, 9)


def _tell_all(listeners: list[Callable[[AnswerStage], None]]) -> Callable[[AnswerStage], None] | None:
    """One stage callback for a batch that tells each request's listener; a listener that fails is logged."""
    if not listeners:
        return None

    def tell(stage: AnswerStage) -> None:
        for listener in listeners:
            try:
                listener(stage)
            except Exception as exc:  # a feedback channel that broke must not fail the model call
                log.warning("stage listener failed at %s: %s", stage.value, exc)

    return tell


def _cache_figures(model: Any) -> dict[str, float]:
    cache = getattr(model, "cache_stats", None)
    if cache is None:
        return {}
    lookups = cache.hits + cache.misses
    return {"cache_mb": cache.bytes / 2**20, "cache_hit_rate": cache.hits / lookups if lookups else 0.0}


def health_level(stats: ServiceStats, stale_after_s: float, ood_warn_score: float = 1.0
                 ) -> tuple[int, str]:
    """Diagnostic level (0 OK, 1 WARN, 2 ERROR) and a one-line summary, ROS-free."""
    if stats.model_state != "loaded":
        return 2, f"model {stats.model_state}"
    if stats.last_error:
        return 2, f"last inference failed: {stats.last_error}"
    ages = [c.newest_age_s for c in stats.cameras if c.newest_age_s is not None]
    if not ages:
        return 1, "no frames yet"
    if min(ages) > stale_after_s:
        return 1, f"frames stale: newest is {min(ages):.1f} s old"
    unfamiliar = {c: s for c, s in stats.ood_scores.items() if s > ood_warn_score}
    if unfamiliar:
        camera, score = max(unfamiliar.items(), key=lambda kv: kv[1])
        return 1, (f"{camera} looks out of distribution (OOD score {score:.1f} > {ood_warn_score:g}): "
                   "answers may be wrong however confident; fine-tune on this camera's data")
    if stats.queue_depth >= stats.queue_size:
        return 1, "question queue full"
    return 0, f"ok: {stats.answered} answered"


def stats_key_values(stats: ServiceStats) -> list[tuple[str, str]]:
    """Flatten the stats into the (key, value) pairs of a DiagnosticStatus."""

    def fmt(x: float | None, digits: int = 1) -> str:
        return "" if x is None else f"{x:.{digits}f}"

    pairs = [
        ("model", stats.model), ("backend", stats.backend), ("device", stats.device),
        ("model_state", stats.model_state), ("queue_depth", str(stats.queue_depth)),
        ("queue_size", str(stats.queue_size)), ("answered", str(stats.answered)),
        ("rejected", str(stats.rejected)), ("failed", str(stats.failed)),
        ("latency_last_ms", fmt(stats.latency_last_ms)), ("latency_p50_ms", fmt(stats.latency_p50_ms)),
        ("latency_p95_ms", fmt(stats.latency_p95_ms)), ("image_callback_p50_ms", fmt(stats.callback_p50_ms)),
        ("image_callback_p99_ms", fmt(stats.callback_p99_ms)),
        ("image_delay_p50_ms", fmt(stats.delay_p50_ms)), ("image_delay_p99_ms", fmt(stats.delay_p99_ms)),
        ("gpu_memory_mb", fmt(stats.gpu_memory_mb) or "n/a"), ("last_error", stats.last_error or ""),
        ("embedding_cache_mb", fmt(stats.cache_mb)),
        ("embedding_cache_hit_rate", "" if stats.cache_hit_rate is None else f"{stats.cache_hit_rate:.2f}"),
        ("shift_expert_answers", fmt(stats.shift_expert_answers, 0)),
    ]
    for cam in stats.cameras:
        pairs += [
            (f"{cam.topic}: rate_hz", f"{cam.rate_hz:.1f}"),
            (f"{cam.topic}: newest_age_s", fmt(cam.newest_age_s)),
            (f"{cam.topic}: received", str(cam.received)),
            (f"{cam.topic}: kept", str(cam.kept)),
            (f"{cam.topic}: malformed", str(sum(cam.malformed.values()))),
            (f"{cam.topic}: ood_score", fmt(stats.ood_scores.get(cam.topic), 2)),
        ]
        pairs += [(f"{cam.topic}: malformed {reason}", str(n)) for reason, n in sorted(cam.malformed.items())]
    return pairs


def render_answer_image(frames: Sequence[Frame], question: str, answer: str, height: int = 240) -> np.ndarray:
    """Draw the frames used side by side at `height`, the question above and the answer below (RGB)."""
    tiles = []
    for frame in frames:
        h, w = frame.pixels.shape[:2]
        width = max(1, round(w * height / h))
        tiles.append(cv2.resize(frame.pixels, (width, height), interpolation=cv2.INTER_AREA))
    strip = np.concatenate(tiles, axis=1) if tiles else np.zeros((height, height, 3), np.uint8)
    band = max(20, height // 8)
    canvas = np.zeros((strip.shape[0] + 2 * band, strip.shape[1], 3), np.uint8)
    canvas[band:band + strip.shape[0]] = strip
    scale = band / 40.0
    for text, y, color in ((f"Q: {question}", band - band // 4, (255, 255, 255)),
                           (f"A: {answer}", canvas.shape[0] - band // 4, (255, 220, 0))):
        cv2.putText(canvas, text[:200], (4, y), cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)
    return canvas
