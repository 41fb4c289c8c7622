"""nodecore without ROS: question parsing, queue bounds, frame choice by time, answers, failures, stats."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from spatial_mllm_ros.config import from_dict, parameter_rows
from spatial_mllm_ros.conventions import AnswerStage
from spatial_mllm_ros.errors import ConfigError
from spatial_mllm_ros.frames import Frame, FrameBuffer
from spatial_mllm_ros.model.config import ModelConfig
from spatial_mllm_ros.model.factory import make_tiny_model
from spatial_mllm_ros.model.runtime import SpatialModel
from spatial_mllm_ros.nodecore import (
    NodeConfig,
    QuestionError,
    QuestionService,
    Request,
    health_level,
    match_camera,
    parse_question,
    render_answer_image,
    stamp_seconds,
    stats_key_values,
)

FIELDS = {"id", "question", "answer", "value", "kind", "frame_stamps", "frame_id", "latency_ms", "model",
          "error", "probabilities", "latency"}
T0 = 1_700_000_000_000_000_000  # a plausible ROS time in ns


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> SpatialModel:
    checkpoint = make_tiny_model(tmp_path_factory.mktemp("tiny"))
    loaded = SpatialModel.load(ModelConfig(checkpoint=str(checkpoint), device="cpu"))
    yield loaded
    loaded.close()


class Clock:
    def __init__(self) -> None:
        self.ns = T0

    def __call__(self) -> int:
        return self.ns


def make_service(config: NodeConfig | None = None) -> tuple[QuestionService, list[dict], Clock]:
    published: list[dict] = []
    clock = Clock()
    config = config or NodeConfig()
    service = QuestionService(config, FrameBuffer(), lambda a, frames: published.append(a), clock)
    return service, published, clock


def feed(service: QuestionService, clock: Clock, n: int = 21, period_s: float = 0.1, topic: str = "image",
         frame_id: str = "cam") -> list[int]:
    stamps = []
    for i in range(n):
        pixels = np.full((48, 64, 3), i * 10 % 256, np.uint8)
        stamp = T0 + round(i * period_s * 1e9)
        service.add_frame(Frame(pixels, stamp, frame_id, topic), time.perf_counter())
        stamps.append(stamp)
    clock.ns = stamps[-1]
    return stamps


def test_parse_plain_and_json() -> None:
    cfg = NodeConfig()
    plain = parse_question("  Did the gripper move left?  ", cfg, "q1")
    assert (plain.id, plain.text, plain.frames, plain.span_s) == ("q1", "Did the gripper move left?", 2, 1.0)
    req = parse_question(json.dumps({"id": "a", "question": "Which way?", "frames": 3, "span_s": 0.5,
                                     "camera": "front", "kind": "direction"}), cfg, "q2")
    assert (req.id, req.frames, req.span_s, req.camera, req.kind) == ("a", 3, 0.5, "front", "direction")


@pytest.mark.parametrize("raw, message", [
    ("{not json", "bad JSON"),
    ("[1, 2]", "bad JSON"),
    ('{"question": ""}', "non-empty"),
    ('{"question": "x", "frames": 0}', "frames"),
    ('{"question": "x", "frames": 2.5}', "integer"),
    ('{"question": "x", "span_s": -1}', "span_s"),
    ('{"question": "x", "kind": "colour"}', "unknown kind"),
    ('{"question": "x", "spam": 1}', "unknown field"),
    ("   ", "empty"),
    ("x" * 3000, "too long"),
])
def test_parse_rejects_with_reason(raw: str, message: str) -> None:
    with pytest.raises(QuestionError, match=message):
        parse_question(raw, NodeConfig(), "q")


def test_match_camera() -> None:
    topics = ["/camera/front/image_raw", "/wrist/image"]
    assert match_camera("front", topics) == "/camera/front/image_raw"
    assert match_camera("/wrist/image", topics) == "/wrist/image"
    assert match_camera("wrist", topics) == "/wrist/image"
    with pytest.raises(QuestionError, match="unknown camera 'side'"):
        match_camera("side", topics)


def test_config_schema_rows_and_validation() -> None:
    rows = {r.name: r for r in parameter_rows(NodeConfig)}
    assert rows["qos"].choices == ("sensor_data", "reliable", "best_available")
    assert rows["frames"].range == (1, 64) and rows["autostart"].read_only
    assert "model.checkpoint" in rows and "buffer.max_frames" in rows
    assert all(r.description for r in rows.values() if not r.name.startswith(("model.", "buffer.")))
    with pytest.raises(ConfigError, match="qos"):
        from_dict(NodeConfig, {"qos": "fast"})
    with pytest.raises(ConfigError, match="span_s"):
        from_dict(NodeConfig, {"span_s": -2.0})


def test_answer_fields_and_frames_by_time(model: SpatialModel) -> None:
    service, published, clock = make_service()
    service.set_model(model)
    stamps = feed(service, clock)
    request = parse_question(json.dumps({"id": "x", "question": "Did the camera move left?", "frames": 3,
                                         "span_s": 1.0}), service.config, "q")
    answer = service.answer(request)
    assert published == [answer]
    assert set(answer) >= FIELDS
    assert answer["error"] is None and answer["id"] == "x" and answer["frame_id"] == "cam"
    # three frames spanning 1 s ending at the newest, oldest first, reported in ROS seconds
    expected = [stamps[-11] * 1e-9, stamps[-6] * 1e-9, stamps[-1] * 1e-9]
    assert answer["frame_stamps"] == pytest.approx(expected, abs=1e-6)
    assert answer["kind"] == "yes_no" and set(answer["probabilities"]) == {"yes", "no"}
    assert answer["model"] == model.name and answer["latency_ms"] > 0
    assert set(answer["latency"]) == {"wait_ms", "vision_ms", "language_ms"}
    assert answer["latency"]["vision_ms"] is not None
    json.dumps(answer)  # publishable as is
    stats = service.stats()
    assert stats.cache_mb > 0 and stats.cache_hit_rate is not None  # the frames' embeddings are cached


def test_no_frames_and_no_model_are_answered_with_errors(model: SpatialModel) -> None:
    service, published, clock = make_service()
    req = parse_question("Is the cube on the table?", service.config, "q")
    assert "model not loaded" in service.answer(req)["error"]
    service.set_model(model)
    assert service.answer(req)["error"].startswith("no frames yet")
    service.add_frame(Frame(np.zeros((48, 64, 3), np.uint8), T0, "cam", "image"), time.perf_counter())
    too_few = service.answer(req)
    assert too_few["error"] == "only 1 of 2 frames buffered on image within span_s"
    assert too_few["frame_stamps"] == [T0 * 1e-9]
    service.add_frame(Frame(np.zeros((48, 64, 3), np.uint8), T0 + 100_000_000, "cam", "image"),
                      time.perf_counter())
    assert service.answer(req)["error"] == "frames on image cover 0.10 s of span_s 1 s so far"
    assert service.stats().rejected == 4 and len(published) == 4


def test_queue_bound_rejects_and_worker_answers_everything(model: SpatialModel) -> None:
    service, published, clock = make_service(NodeConfig(queue_size=4))
    service.set_model(model)
    feed(service, clock)
    assert service.submit("Is it there?").result(timeout=1)["error"] == "node not active"
    service.start()
    futures = [service.submit(json.dumps({"id": f"f{i}", "question": "Did it move left?"}))
               for i in range(40)]
    answers = [f.result(timeout=60) for f in futures]
    service.stop()
    assert sorted(a["id"] for a in answers) == sorted(f"f{i}" for i in range(40))
    ok = [a for a in answers if a["error"] is None]
    full = [a for a in answers if a["error"] and a["error"].startswith("queue full")]
    # the worker answers while the burst arrives, so a few more than queue_size may get through
    assert 4 <= len(ok) <= 10 and len(ok) + len(full) == 40 and len(published) == 41
    stats = service.stats()
    assert (stats.answered, stats.rejected) == (len(ok), len(full) + 1) and stats.queue_depth == 0


class _CountingModel:
    """The real model, with its calls counted (a spy, not a stand-in: every answer is the model's)."""

    def __init__(self, model: SpatialModel) -> None:
        self.model, self.calls = model, []

    def __getattr__(self, name: str) -> object:
        return getattr(self.model, name)

    def ask(self, *args: object, **kw: object) -> object:
        self.calls.append("ask")
        return self.model.ask(*args, **kw)

    def ask_many(self, images: list, questions: list, **kw: object) -> object:
        self.calls.append(f"ask_many:{len(questions)}")
        return self.model.ask_many(images, questions, **kw)


def test_questions_over_the_same_frames_share_one_model_call(model: SpatialModel) -> None:
    service, published, clock = make_service()
    spy = _CountingModel(model)
    service.set_model(spy)
    feed(service, clock)
    texts = ["Did the camera move left?", "Did the camera move up?", "Is the cube closer than the ball?"]
    requests = [parse_question(json.dumps({"id": f"b{i}", "question": t}), service.config, "q")
                for i, t in enumerate(texts)]
    other = parse_question(json.dumps({"id": "one", "question": "Did it move?", "frames": 3}),
                           service.config, "q")
    answers = service.answer_batch([requests[0], other, *requests[1:]])
    assert [a["id"] for a in answers] == ["b0", "one", "b1", "b2"]  # returned in request order
    by_id = {a["id"]: a for a in published}
    assert len(published) == 4 and all(by_id[a["id"]] == a for a in answers)  # each one published
    assert all(a["error"] is None for a in answers)
    assert sorted(spy.calls) == ["ask", "ask_many:3"]  # 2-frame questions batched, the 3-frame one alone
    alone = [service.answer(r) for r in requests]
    for batched, single in zip([answers[0], *answers[2:]], alone):
        assert batched["value"] == single["value"] and batched["frame_stamps"] == single["frame_stamps"]
        assert batched["confidence"] == pytest.approx(single["confidence"], abs=1e-4)
    assert service.stats().answered == 7


def test_a_failing_batch_is_answered_one_by_one(model: SpatialModel) -> None:
    service, published, clock = make_service()
    service.set_model(model)
    feed(service, clock)
    good = parse_question("Did the camera move left?", service.config, "q")
    # longer than the runtime takes (the node's own bound is set separately): the model refuses it
    bad = Request(id="long", text="Did it move? " * 4000, frames=good.frames, span_s=good.span_s)
    answers = service.answer_batch([good, bad])
    assert answers[0]["error"] is None
    assert answers[1]["error"].startswith("model failure")  # only the bad question fails
    assert service.stats().failed == 1


def test_injected_failure_then_recovery(model: SpatialModel) -> None:
    service, published, clock = make_service()
    service.set_model(model)
    feed(service, clock)
    service.inject_failures(1)
    req = parse_question("Did the camera move right?", service.config, "q")
    failed = service.answer(req)
    assert failed["error"].startswith("model failure: RuntimeError: injected failure")
    assert failed["frame_stamps"]  # the frames it tried are still reported
    assert health_level(service.stats(), 2.0)[0] == 2
    assert service.answer(req)["error"] is None
    stats = service.stats()
    assert (stats.failed, stats.answered, stats.last_error) == (1, 1, None)
    assert health_level(stats, 2.0)[0] == 0


def test_stop_drains_queue_with_reason(model: SpatialModel) -> None:
    service, published, clock = make_service()
    futures = [service.enqueue(parse_question("x?", service.config, f"q{i}")) for i in range(3)]
    assert all(f.result(timeout=1)["error"] == "node not active" for f in futures)
    service.start()
    service.stop("node inactive")
    assert service.submit("y?").result(timeout=1)["error"] == "node inactive"


def test_stats_and_health(model: SpatialModel) -> None:
    service, published, clock = make_service()
    assert health_level(service.stats(), 2.0) == (2, "model not loaded: not configured")
    service.set_model(model)
    assert health_level(service.stats(), 2.0)[0] == 1  # no frames yet
    feed(service, clock, n=11, period_s=0.1)
    n = service.add_malformed("image", "bad_shape")
    assert n == 1
    clock.ns += 5_000_000_000
    level, message = health_level(service.stats(), 2.0)
    assert level == 1 and "stale" in message
    stats = service.stats()
    cam = stats.cameras[0]
    assert (cam.topic, cam.received, cam.kept, cam.malformed) == ("image", 12, 11, {"bad_shape": 1})
    assert cam.newest_age_s == pytest.approx(5.0)
    keys = dict(stats_key_values(stats))
    assert keys["image: malformed bad_shape"] == "1" and keys["gpu_memory_mb"] == "n/a"
    assert stats.callback_p99_ms is not None and stats.callback_p99_ms < 50


def test_standing_questions(model: SpatialModel) -> None:
    cfg = NodeConfig(standing_questions=["Did the cube move left?", '{"id": "s", "question": "Is it up?"}',
                                         "{bad"])
    service, published, clock = make_service(cfg)
    service.set_model(model)
    feed(service, clock)
    service.start()
    answers = [r.future.result(timeout=30) for r in service.ask_standing()]
    service.stop()
    assert [a["id"] for a in answers] == ["standing-0", "s"]
    assert all(a["error"] is None for a in answers)
    assert published[0]["id"] == "standing-2" and published[0]["error"].startswith("bad JSON")


def test_a_waiting_question_sees_what_is_missing_then_its_stages_and_stamps(model: SpatialModel) -> None:
    service, published, clock = make_service()
    service.set_model(model)
    request = service.read(json.dumps({"id": "w", "question": "Did the camera move left?"}))
    assert not request.future.done() and service.missing_frames(request) == "no frames yet on image"
    late = service.answer_within(request, time.monotonic())  # not queued yet: late at once, still whole
    assert (late["id"], late["error"]) == ("w", "no answer within ask_timeout_s=60.0") and set(late) >= FIELDS
    stamps = feed(service, clock, n=11)
    assert service.missing_frames(request) is None
    stages: list[AnswerStage] = []
    request.on_stage = stages.append
    answer = service.answer(request)
    assert answer["error"] is None and stages == [AnswerStage.VISION, AnswerStage.LANGUAGE]
    assert request.frame_stamps_ns == [stamps[0], stamps[-1]]  # exact, beside the JSON's float seconds
    assert answer["frame_stamps"] == [stamp_seconds(ns) for ns in request.frame_stamps_ns]
    unreadable = service.read("{not json")
    assert unreadable.future.result(timeout=1)["error"].startswith("bad JSON") and published[-1]["id"] == "q2"


def test_render_answer_image(tmp_path: Path) -> None:
    frames = [Frame(np.zeros((480, 640, 3), np.uint8), T0 + i) for i in range(3)]
    img = render_answer_image(frames, "Did the gripper move left?", "`left`", height=120)
    assert img.dtype == np.uint8 and img.shape[1] == 3 * 160 and img.shape[0] > 120
    assert img[:, :, :].max() == 255  # the text is drawn


def malformed_questions(n_random: int = 300) -> list[tuple[str, str | None]]:
    """(message, the id its answer must carry or None for a generated one): a table of bad JSON."""
    rng = np.random.default_rng(0)
    deep = "[" * 1500 + "]" * 1500
    bad_values = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", '"2"', "[]", "{}", "null", "true",
                  "2.5", "1" + "0" * 30, "1" * 5000, deep, '"' + "x" * 50 + '"']
    cases: list[tuple[str, str | None]] = []
    for i, value in enumerate(bad_values):
        for field in ("frames", "span_s", "question", "kind", "options", "camera", "spam"):
            qid = f"v{i}-{field}"
            question = '"Did it move left?"' if field != "question" else value
            body = f'"question": {question}' + (f', "{field}": {value}' if field != "question" else "")
            cases.append((f'{{"id": "{qid}", {body}}}', qid))
            cases.append((f'{{{body}, "id": "{qid}"}}', qid))  # the id after the bad value
    for value in ("true", "[1]", "{}", "1.5", '"' + "x" * 200 + '"', "NaN", deep):
        cases.append((f'{{"id": {value}, "question": "x?"}}', None))  # no usable id: a generated one
    cases += [(deep, None), ("{" * 2000, None), ('{"a": ' * 1500 + "1" + "}" * 1500, None),
              ('{"id": "too-long", "question": "' + "x" * 3000 + '"}', "too-long"),
              ('{"question": "' + "x" * 3000 + '", "id": "long-late"}', "long-late")]
    for k in range(n_random):  # a valid message cut, or with bytes flipped, after its id
        qid = f"r{k}"
        text = json.dumps({"id": qid, "question": "Which way did the cube move?", "frames": 2, "span_s": 1.0})
        head = len(f'{{"id": "{qid}",')
        chars = list(text)
        if k % 2:
            text = text[: int(rng.integers(head, len(text) - 1))]
        else:
            for pos in rng.integers(head, len(chars) - 1, size=3):
                chars[pos] = "{[]}:,\"\\N1e"[int(rng.integers(0, 11))]
            text = "".join(chars)
        cases.append((text, qid))
    return [(raw, qid) for raw, qid in cases if _refused(raw)]  # e.g. "span_s": 2.5 is a fine question


def _refused(raw: str) -> bool:
    try:
        parse_question(raw, NodeConfig(), "unused")
    except QuestionError:
        return True
    return False


def test_malformed_json_gets_exactly_one_answer_with_its_id(model: SpatialModel) -> None:
    cases = malformed_questions()
    assert len(cases) > 400
    service, published, clock = make_service()
    service.set_model(model)
    feed(service, clock)
    service.start()
    futures = [service.submit(raw) for raw, _ in cases]
    answers = [f.result(timeout=10) for f in futures]
    service.stop()
    assert len(published) == len(cases)  # exactly one answer each, none raised out of submit
    for (raw, qid), answer in zip(cases, answers):
        assert answer["error"], raw[:80]
        if qid is not None:
            assert answer["id"] == qid, (raw[:80], answer)
        else:
            assert answer["id"].startswith("q"), (raw[:80], answer)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "1e400", "-1e400"])
def test_non_finite_numbers_are_refused_with_the_id(value: str) -> None:
    for field in ("frames", "span_s"):
        with pytest.raises(QuestionError) as err:
            parse_question(f'{{"id": "n", "question": "x?", "{field}": {value}}}', NodeConfig(), "q")
        assert err.value.question_id == "n"


def test_injected_failures_are_not_refilled() -> None:
    service, _, _ = make_service(NodeConfig(inject_failures=3))
    assert service.pending_failures == 3
    service.inject_failures(1)
    assert service.pending_failures == 1


def test_unfamiliar_camera_warns_on_diagnostics(model: SpatialModel) -> None:
    service, _, clock = make_service()
    service.set_model(model)
    feed(service, clock)
    stats = service.stats()
    assert health_level(stats, 2.0)[0] == 0 and stats.ood_scores == {}  # no OOD statistics: no score
    assert ("shift_expert_answers", "") in stats_key_values(stats)  # it has no shift expert
    stats.ood_scores = {"image": 0.8}
    assert health_level(stats, 2.0)[0] == 0
    stats.ood_scores = {"image": 3.2}
    level, message = health_level(stats, 2.0)
    assert level == 1 and "image looks out of distribution (OOD score 3.2 > 1)" in message
    assert health_level(stats, 2.0, ood_warn_score=5.0)[0] == 0
    assert ("image: ood_score", "3.20") in stats_key_values(stats)
