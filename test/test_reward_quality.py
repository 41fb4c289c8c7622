"""Reward grading: figures and intervals on hand-made episodes, the held-out sets, reward-eval's output.

The last test grades the shipped model on held-out sim episodes (slow).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spatial_mllm_ros.bags import Bag, Split, find_episodes
from spatial_mllm_ros.reward import (
    AnnotateConfig,
    EpisodeResult,
    Label,
    RewardEvaluation,
    annotate_to_dir,
    evaluate,
    load_rubric,
    parse_rubric,
)
from spatial_mllm_ros.reward.evaluate import (
    MISSING,
    REWARD_TARGETS,
    annotate_and_grade,
    format_figures,
    lookup,
    missed,
)
from spatial_mllm_ros.reward.heldout import (
    HELDOUT_SETS,
    PICK_PLACE,
    SEED_STRIDE,
    HeldoutSet,
    heldout_sim_bags,
)

CONFIG = Path(__file__).resolve().parents[1] / "config"
RUBRIC = parse_rubric({
    "name": "hand-made",
    "checks": [
        {"id": "left", "question": "Did the cube move left?", "expect": "yes", "truth": "truth.dir",
         "truth_equals": "left"},
        {"id": "far", "type": "metric", "question": "How far did the cube move?", "target_mm": 100,
         "truth": "truth.mm"},
    ],
})


def _episode(k: int, success: bool, said: str, said_mm: int, voc: float) -> EpisodeResult:
    """One graded episode: a step label answering `said` and an episode label answering `said_mm`."""
    truth = {"success": success, "truth": {"dir": "left" if success else None, "mm": 100 if success else 0}}
    asked = (("left", "direction", "step", said), ("far", "metric", "episode", said_mm))
    labels = [Label("b", "b", k, "t", check, kind, span, 0, [0, 1], "q", "a", json.dumps(v), None, None, 0.0)
              for check, kind, span, v in asked]
    return EpisodeResult("b", "b", k, "k", "t", 0, 1, labels=labels, reward=1.0 if success else -1.0,
                         voc=voc, truth=truth)


def test_figures_intervals_and_bars_on_hand_made_episodes() -> None:
    """5 successes, 5 failures, every direction answer right: a known Wilson case and perfect separation."""
    results = [_episode(k, True, "yes", 80, 0.9) for k in range(5)]
    results += [_episode(5 + k, False, "no", 0, 0.1) for k in range(5)]
    ev = evaluate(results, RUBRIC)
    assert (ev.n_success, ev.n_failure, ev.direction_n, ev.distance_n) == (5, 5, 10, 10)
    # 10 of 10 right: Wilson [10 / (10 + 1.96^2), 1] = [0.7225, 1]; always "yes" scores 5 of 10
    assert ev.direction_agreement == 1.0 and ev.direction_baseline == 0.5
    assert ev.direction_by_truth == {"yes": [5, 5], "no": [5, 5]}
    assert ev.direction_agreement_ci95 == (pytest.approx(0.7225, abs=1e-4), pytest.approx(1.0))
    assert ev.auc == 1.0 and ev.auc_ci95 == (1.0, 1.0) and ev.auc_chance == 0.5
    assert ev.voc_success_ci95 == pytest.approx((0.9, 0.9))
    assert ev.voc_failure_ci95 == pytest.approx((0.1, 0.1))
    assert ev.voc_gap == pytest.approx(0.8) and ev.voc_gap_ci95 == pytest.approx((0.8, 0.8))
    # 20 mm off on the five 100 mm truths, exact on the still ones: 10 mm; the median truth (50 mm) errs 50
    assert ev.distance_mae_mm == 10.0 and ev.distance_baseline_mae_mm == 50.0
    lo, hi = ev.distance_mae_mm_ci95
    assert 0.0 <= lo < 10.0 < hi <= 20.0
    assert missed(ev) == []
    saved = json.loads(ev.to_json())
    assert saved["auc_ci95"] == [1.0, 1.0] and saved["direction_agreement_ci95"][1] == 1.0
    assert RewardEvaluation.from_dict(saved) == ev  # a saved run reads back to print beside another


def test_a_reward_that_ignores_the_episode_misses_the_targets() -> None:
    """Every answer "no", every reward equal, flat progress: AUC 0.5 is chance and every target is missed."""
    results = [_episode(k, k % 2 == 0, "no", 0, 0.0) for k in range(6)]
    for r in results:
        r.reward = 0.0
    ev = evaluate(results, RUBRIC)
    assert ev.auc == 0.5 and ev.auc_ci95 == (0.5, 0.5)
    assert ev.direction_agreement == 0.5 == ev.direction_baseline
    assert missed(ev, REWARD_TARGETS) == ["success/failure AUC", "VOC, successes",
                                          "VOC gap (successes - failures)", "direction agreement"]
    table = format_figures(ev, REWARD_TARGETS)
    assert table.splitlines()[-1].startswith("MISSED: success/failure AUC")
    assert "[0.500, 0.500]" in table and "0.500 chance" in table and "0.500 commonest truth" in table
    assert "direction agreement by true answer: no 3/3, yes 0/3" in table


def test_the_pick_place_rubric_loads_and_both_sets_have_their_own_seeds() -> None:
    rubric = load_rubric(CONFIG / PICK_PLACE.rubric)
    assert {c.id: c.type for c in rubric.checks} == {"moved_right": "direction", "distance": "metric"}
    assert rubric.progress is not None and rubric.split == "marker"
    for held in HELDOUT_SETS.values():
        assert (CONFIG / held.rubric).is_file()
        # apart from the recipe's training scenes (0-299) and its held-out benchmark (100000 on)
        assert held.first_seed >= 300 and held.first_seed + SEED_STRIDE <= 100_000
    assert len({h.first_seed for h in HELDOUT_SETS.values()}) == len(HELDOUT_SETS)


@pytest.fixture(scope="module")
def pick_place_bags(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two held-out pick-and-place episodes (a success, a failed grasp), 6 frames: a pick needs 0.5 s."""
    return heldout_sim_bags(tmp_path_factory.mktemp("pick_place"), 2, PICK_PLACE, n_frames=6)


def test_heldout_bags_carry_the_truth_the_grader_needs(pick_place_bags: list[Path]) -> None:
    rubric = load_rubric(CONFIG / PICK_PLACE.rubric)
    outcomes = []
    for path in pick_place_bags:
        with Bag(path) as bag:
            for ep in find_episodes(bag, bag.image_topic(rubric.image_topic), Split.parse("marker")):
                outcomes.append(ep.labels["success"])
                for check in rubric.for_episode(ep.labels).checks:
                    assert lookup(ep.labels, check.truth) is not MISSING, check.truth
    assert sorted(outcomes) == [False, True]


def test_reward_eval_prints_and_saves_every_figure_with_its_interval(
    tmp_path: Path, pick_place_bags: list[Path], capsys: pytest.CaptureFixture[str],
) -> None:
    from spatial_mllm_ros.cli import main
    from spatial_mllm_ros.model.config import ModelConfig
    from spatial_mllm_ros.model.factory import make_tiny_model

    model = ModelConfig(checkpoint=str(make_tiny_model(tmp_path / "tiny", image_size=64)), device="cpu",
                        max_new_tokens=8)
    config = AnnotateConfig.from_rubric(load_rubric(CONFIG / PICK_PLACE.rubric), model, count=3)
    annotate_to_dir(pick_place_bags, config, tmp_path / "out", show_progress=False, plots=False)
    capsys.readouterr()
    assert main(["reward-eval", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[1].split()[:4] == ["figure", "value", "95", "%"]
    assert [line[:32].strip() for line in printed[2:9]] == [f.name for f in evaluate([], RUBRIC).figures()]
    saved = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert (saved["n_success"], saved["n_failure"], saved["auc_chance"]) == (1, 1, 0.5)
    assert saved["auc"] is not None and saved["direction_agreement"] is not None  # a random model, graded
    for f in evaluate([], RUBRIC).figures():  # a figure and its interval are both there, or both not
        assert (saved[f.key] is None) == (saved[f"{f.key}_ci95"] is None), f.key
        if saved[f.key] is not None:
            assert saved[f"{f.key}_ci95"][0] <= saved[f.key] <= saved[f"{f.key}_ci95"][1], f.key


@pytest.mark.slow
@pytest.mark.parametrize("held", HELDOUT_SETS.values(), ids=list(HELDOUT_SETS))
def test_shipped_model_rewards_separate_success_from_failure(tmp_path: Path, held: HeldoutSet) -> None:
    """The annotator's quality bars (REWARD_TARGETS) on 16 held-out episodes, as bench_reward.py --eval 16."""
    from spatial_mllm_ros.model.config import ModelConfig
    from spatial_mllm_ros.model.factory import default_checkpoint

    if not (default_checkpoint() / "config.json").exists():
        pytest.skip(f"the shipped model is not at {default_checkpoint()} yet")
    config = AnnotateConfig.from_rubric(load_rubric(CONFIG / held.rubric), ModelConfig())
    _, ev = annotate_and_grade(heldout_sim_bags(tmp_path, 16, held), config, tmp_path / "out")
    assert ev.n_success == ev.n_failure == 8
    assert not missed(ev, REWARD_TARGETS), format_figures(ev, REWARD_TARGETS)
