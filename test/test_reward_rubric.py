"""Rubric parsing and reward rules, rank statistics, the manifest and the atomic outputs (no model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spatial_mllm_ros.answers import parse_answer
from spatial_mllm_ros.conventions import QuestionKind
from spatial_mllm_ros.reward import (
    EpisodeResult,
    Label,
    Manifest,
    auc,
    load_rubric,
    parse_rubric,
    read_results,
    spearman,
    value_order_correlation,
)
from spatial_mllm_ros.reward.errors import ManifestError, RubricError
from spatial_mllm_ros.reward.rubric import CheckScores, aggregate_episode, rubric_text

CONFIG = Path(__file__).resolve().parents[1] / "config"


def test_shipped_rubrics_load(tmp_path: Path) -> None:
    rubrics = sorted(CONFIG.glob("rubric_*.yaml"))
    assert len(rubrics) >= 2
    for path in rubrics:
        rubric = load_rubric(path)
        copy = tmp_path / path.name
        copy.write_text(rubric_text(rubric))
        assert load_rubric(copy) == rubric  # the copy kept beside labels reads back identically


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"name": "x", "checks": [{"question": "Did it move left?", "expect": "yes", "targt_mm": 3}]},
         r"checks\[0\]: unknown key 'targt_mm'"),
        ({"name": "x", "checks": [], "progres": {"question": "q"}}, "unknown key 'progres'"),
        ({"name": "x", "progress": {"question": "q", "scal": 2}}, r"progress: unknown key 'scal'"),
        ({"name": "x", "checks": [{"question": "Did it move left?"}]}, "direction check needs expect"),
        ({"name": "x", "checks": [{"type": "metric", "question": "How far?"}]}, "target_mm > 0"),
        ({"name": "x", "checks": [{"type": "wiggle", "question": "q"}]}, "type 'wiggle'"),
        ({"name": "x"}, "at least one check"),
    ],
)
def test_bad_rubrics_name_the_problem(tmp_path: Path, data: dict, match: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(data))
    with pytest.raises(RubricError, match=match) as err:
        load_rubric(path)
    assert str(path) in str(err.value)


def test_reward_rules() -> None:
    rubric = parse_rubric({
        "name": "r",
        "checks": [
            {"question": "Did the gripper move left?", "expect": True},  # YAML's bare yes is a bool
            {"question": "Which direction did the gripper move?", "expect": "left"},
            {"type": "metric", "question": "How far did the red cube move?", "target_mm": 100},
            {"type": "static", "question": "How far did the blue cube move?"},
        ],
    })
    yes_no, direction, metric, static = rubric.checks
    assert yes_no.expect == "yes" and yes_no.as_question().resolved_kind() is QuestionKind.YES_NO
    assert yes_no.reward(parse_answer("`yes`", "yes_no")) == 1.0
    assert yes_no.reward(parse_answer("`no`", "yes_no")) == -1.0
    assert yes_no.reward(parse_answer("hmm", "yes_no")) == 0.0
    assert direction.reward(parse_answer("It moved `left`.", "direction")) == 1.0
    assert direction.reward(parse_answer("`right`", "direction")) == -1.0
    assert metric.span == "episode" and yes_no.span == "step"
    assert metric.reward(parse_answer("`100`", "distance")) == 1.0
    assert metric.reward(parse_answer("`150`", "distance")) == pytest.approx(0.5)
    assert metric.reward(parse_answer("`30 cm`", "distance")) == 0.0
    assert static.reward(parse_answer("The point did not move.", "distance")) == 1.0
    assert static.reward(parse_answer("`4`", "distance")) == 1.0  # below the 10 mm static threshold
    assert static.reward(parse_answer("`80`", "distance")) == -1.0
    scores = [CheckScores("a", 1.0, [1.0, -1.0, 1.0]), CheckScores("b", 2.0, [0.5])]
    assert aggregate_episode(scores, "mean") == pytest.approx((1 / 3 + 1.0) / 3)
    assert aggregate_episode(scores, "min") == pytest.approx((-1.0 + 1.0) / 3)
    assert aggregate_episode(scores, "last") == pytest.approx((1.0 + 1.0) / 3)


def test_rank_statistics() -> None:
    assert value_order_correlation([0, 0.2, 0.5, 0.9]) == pytest.approx(1.0)
    assert value_order_correlation([0.9, 0.5, 0.2, 0.0]) == pytest.approx(-1.0)
    assert value_order_correlation([0.3, 0.3, 0.3]) == 0.0  # constant predictions count as 0 (GVL)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486833)
    assert auc([0.9, 0.8], [0.1, 0.2]) == 1.0 and auc([0.5], [0.5]) == 0.5 and auc([], [1.0]) is None


def _result(bag: str, episode: int) -> EpisodeResult:
    label = Label(bag, f"/bags/{bag}", episode, "/cam", "c0", "direction", "step", 0, [1, 2], "q?", "`yes`",
                  '"yes"', None, 0.9, 1.0, "yes")
    return EpisodeResult(bag, f"/bags/{bag}", episode, f"{bag}#{episode}", "/cam", 1, 2, labels=[label],
                         stamps_ns=[1, 2], step_rewards={0: 1.0}, reward=1.0)


def test_manifest_resumes_and_refuses_other_settings(tmp_path: Path) -> None:
    m = Manifest(tmp_path, {"rubric": "a"})
    m.record(_result("b", 0))
    m.record(_result("b", 0))  # re-recording the same episode never duplicates it
    with open(tmp_path / "manifest.jsonl", "a") as fh:
        fh.write('{"key": "b#1", "pa')  # a line torn by kill -9
    again = Manifest(tmp_path, {"rubric": "a"})
    assert again.done == {"b#0"}
    again.record(_result("b", 1))
    assert [r.episode for r in read_results(tmp_path)] == [0, 1]
    assert [len(r.labels) for r in again.results()] == [1, 1]
    with pytest.raises(ManifestError, match="rubric"):
        Manifest(tmp_path, {"rubric": "b"})


def test_placeholders_come_from_episode_markers() -> None:
    rubric = load_rubric(CONFIG / "rubric_sim_push_left.yaml")
    filled = rubric.for_episode({"object": "red cube", "success": True})
    assert filled.checks[0].question == "Did the red cube move left?"
    assert filled.checks[0].truth == "truth.objects.red cube.front.direction"
    assert filled.progress is not None
    assert filled.progress.question == "How far did the red cube move between Image-1 and Image-2?"
    with pytest.raises(RubricError, match="needs episode label 'object'"):
        rubric.for_episode({"motion": "idle"})


def test_annotate_config_takes_the_rubrics_split_and_sampling_unless_overridden() -> None:
    from spatial_mllm_ros.model.config import ModelConfig
    from spatial_mllm_ros.reward import AnnotateConfig, Sampling, Split

    rubric = load_rubric(CONFIG / "rubric_move_left.yaml")  # split: marker, count: 6
    model = ModelConfig(device="cpu")
    plain = AnnotateConfig.from_rubric(rubric, model)
    assert plain.split == Split.parse("marker")
    assert plain.sampling == Sampling(count=6)
    # one sampling flag replaces the rubric's whole sampling; the split flag only the split
    every = AnnotateConfig.from_rubric(rubric, model, every=3, split="whole", image_topic="/cam")
    assert every.sampling == Sampling(every=3)
    assert every.split == Split.parse("whole")
    assert every.image_topic == "/cam"
    assert AnnotateConfig.from_rubric(rubric, model, step_s=0.5).sampling == Sampling(step_s=0.5)
