"""End to end in simulation: shorter versions of `spatial-mllm demo`.

The MuJoCo world's live node and the spatial node run over real DDS (loopback, this run's domain) and
answer direction questions about scripted moves; a bag recorded by the sim recorder is annotated with
the example rubric and graded against the truth in its /episode markers. The model is the shipped
SpatialMLLM-tiny when it is there (then agreement with truth is asserted), else a tiny random model
(then only fields, stamps and coverage are).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mujoco")

from spatial_mllm_ros.demo import (  # noqa: E402
    DEMO_CAMERA,
    ModelMissingError,
    agreement,
    demo_moves,
    resolve_checkpoint,
    truth_of,
)
from spatial_mllm_ros.demo.script import GRIPPER_DIRECTION_Q, Probe  # noqa: E402
from spatial_mllm_ros.model.factory import default_checkpoint, make_tiny_model  # noqa: E402
from spatial_mllm_ros.sim.motions import run_episode, translate  # noqa: E402
from spatial_mllm_ros.sim.scene import SceneConfig  # noqa: E402
from spatial_mllm_ros.sim.topics import episode_marker, image_topic  # noqa: E402

SHIPPED = default_checkpoint()
HAVE_SHIPPED = SHIPPED.is_dir()
NEEDS_SHIPPED = pytest.mark.skipif(
    not HAVE_SHIPPED, reason=f"the shipped SpatialMLLM-tiny is not at {SHIPPED} yet: agreement with truth "
    "is only meaningful for a trained model (a tiny random one answers at chance)")
# Four translations: 3 direction questions each (did it move <it>? did it move <opposite>? which way?).
LIVE_MOVES = tuple(m for m in demo_moves("right") if m.label.startswith("gripper"))
BAG_MOTIONS = (f"translate:direction=left,distance=0.1,camera={DEMO_CAMERA}",
               f"translate:direction=right,distance=0.1,camera={DEMO_CAMERA}")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped model when it is there, else a tiny random one (same code paths)."""
    return SHIPPED if HAVE_SHIPPED else make_tiny_model(tmp_path_factory.mktemp("tiny"))


def test_truth_and_agreement_from_a_real_episode() -> None:
    """Truth comes from the same /episode marker the live node publishes, judged per question kind."""
    episode = run_episode(SceneConfig(seed=5, cameras=(DEMO_CAMERA,), width=64, height=48),
                          translate("left", 0.1, DEMO_CAMERA), n_frames=4, depth=False, seg=False)
    labels = json.loads(json.dumps(episode_marker(episode, 0, "end", 0)))["labels"]
    assert truth_of(Probe("Did the gripper move left?", "gripper", "moved_left"), labels) == "yes"
    assert truth_of(Probe("Did the gripper move up?", "gripper", "moved_up"), labels) == "no"
    assert truth_of(Probe(GRIPPER_DIRECTION_Q, "gripper", "direction"), labels) == "left"
    assert truth_of(Probe("Did the camera move?", "camera", "moved"), labels) == "no"
    distance = truth_of(Probe("How far did the gripper move?", "gripper", "distance"), labels)
    assert distance == pytest.approx(100, abs=5)
    far = Probe("How far did the gripper move?", "gripper", "distance")
    assert agreement(far, 100, 115) and not agreement(far, 100, 200) and not agreement(far, 100, None)
    yes = Probe("Did the gripper move left?", "gripper", "moved_left")
    assert agreement(yes, "yes", True) and agreement(yes, "yes", "Yes") and not agreement(yes, "yes", "no")


def test_demo_without_its_model_says_what_to_pass(tmp_path: Path) -> None:
    """`spatial-mllm demo --checkpoint MISSING` fails at once with one line naming the path and the flag."""
    missing = tmp_path / "nope"
    with pytest.raises(ModelMissingError, match="--checkpoint"):
        resolve_checkpoint(missing)
    proc = subprocess.run([sys.executable, "-m", "spatial_mllm_ros", "demo", "--checkpoint", str(missing),
                           "--out", str(tmp_path / "out"), "--no-progress"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and str(missing) in proc.stderr and "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def live(model_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 (DemoResult)
    """The demo's live stage on four translations, over DDS in this run's domain."""
    pytest.importorskip("rclpy")
    from spatial_mllm_ros.ros.demo import DemoOptions, run_demo

    options = DemoOptions(out=tmp_path_factory.mktemp("live"), checkpoint=str(model_dir), device="cpu",
                          domain_id=int(os.environ["ROS_DOMAIN_ID"]), moves=LIVE_MOVES, offline=False,
                          progress=False, realtime_factor=2.0)
    return run_demo(options, say=lambda line: None)


@pytest.mark.ros
def test_live_answers_have_the_contract_fields_and_sim_stamps(live) -> None:  # noqa: ANN001
    """Every question is answered, over two frames spanning its move, stamped in simulated time."""
    from spatial_mllm_ros.ros.demo import QUESTION_FRAMES, move_span_s

    asked = sum(len(m.probes) for m in LIVE_MOVES)
    assert len(live.rows) == asked and live.summary["errors"] == 0
    answers = [json.loads(line) for line in (live.out / "live_answers.jsonl").read_text().splitlines()]
    assert len(answers) == asked
    for row in live.rows:
        assert row.error is None and row.answer and row.value is not None, row
        assert row.latency_ms > 0
        assert len(row.frame_stamps) == QUESTION_FRAMES
        first, last = row.frame_stamps
        assert 0 < first < last < 600  # seconds of /clock time, not wall time
        assert last - first == pytest.approx(move_span_s(), abs=0.11)
        if row.asks == "direction":
            assert row.value in ("left", "right", "up", "down", "forward", "backward")
    # the simulation pauses while a move's questions are answered: they all see that move's frames
    spans = [{tuple(r.frame_stamps) for r in live.rows if r.move == m.label} for m in LIVE_MOVES]
    assert all(len(s) == 1 for s in spans)
    firsts = [next(iter(s))[0] for s in spans]
    assert firsts == sorted(firsts) and len(set(firsts)) == len(firsts)
    assert {a["truth"] for a in answers if a["asks"] == "direction"} == {"left", "right", "up", "down"}
    assert len(list((live.out / "answers").glob("*.png"))) == asked  # the node's ~/answer_image per question


@pytest.mark.ros
@NEEDS_SHIPPED
def test_live_direction_answers_agree_with_truth(live) -> None:  # noqa: ANN001
    """The shipped model agrees with the simulation on >= 90 % of the direction questions."""
    s = live.summary
    assert s["direction_questions"] >= 12
    assert s["direction_agree"] / s["direction_questions"] >= 0.9, [
        (r.move, r.question, r.value, r.truth) for r in live.rows if not r.agree]


@pytest.fixture(scope="module")
def offline(model_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 (OfflineResult)
    """A bag of two episodes recorded by the sim recorder, annotated with config/rubric_move_left.yaml."""
    from spatial_mllm_ros.demo import run_offline

    return run_offline(tmp_path_factory.mktemp("offline"), model_dir, device="cpu", seed=3,
                       show_progress=False, motions=BAG_MOTIONS)


def test_recorded_bag_is_labelled_at_every_step(offline) -> None:  # noqa: ANN001
    """Every sampled step of every episode gets a label per rubric check, readable by pyarrow."""
    import pyarrow.parquet as pq

    from spatial_mllm_ros.demo.offline import DEMO_COUNT, EXAMPLE_RUBRIC
    from spatial_mllm_ros.reward import load_rubric

    rubric = load_rubric(EXAMPLE_RUBRIC)
    steps = DEMO_COUNT - 1
    assert offline.summary.episodes == len(BAG_MOTIONS) and not offline.summary.failed
    rows = pq.read_table(offline.outputs["labels"]).to_pylist()
    assert len(rows) == len(BAG_MOTIONS) * steps * len(rubric.checks) == offline.summary.labels
    for episode in range(len(BAG_MOTIONS)):
        for check in rubric.checks:
            got = sorted(r["step"] for r in rows if r["episode"] == episode and r["check"] == check.id)
            assert got == list(range(steps)), (episode, check.id, got)
    assert all(r["topic"] == image_topic(DEMO_CAMERA) and r["error"] is None for r in rows)
    assert len(list(offline.outputs["plots"].glob("*.png"))) == len(BAG_MOTIONS)
    assert offline.outputs["report"].is_file()
    graded = json.loads(offline.outputs["eval"].read_text())
    assert graded["episodes"] == len(BAG_MOTIONS) and graded["direction_n"] == len(rows)


@NEEDS_SHIPPED
def test_recorded_bag_labels_match_the_episode_truth(offline) -> None:  # noqa: ANN001
    """With the shipped model the labels agree with the /episode markers' truth on >= 90 % of checks."""
    assert offline.evaluation.direction_agreement >= 0.9, offline.evaluation.to_json()



def test_object_rubric_stage_grades_pushes_against_failed_grasps_and_says_what_it_misses(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """The demo's object stage: held-out pushes and failed grasps, labelled and graded; the demo prints the
    figures with intervals and, when a target is missed, says so (whatever model runs)."""
    from spatial_mllm_ros.cli.demo import _print_object_stage
    from spatial_mllm_ros.demo.offline import run_object_offline
    from spatial_mllm_ros.reward.evaluate import REWARD_TARGETS, missed

    stage = run_object_offline(tmp_path, model_dir, device="cpu", show_progress=False, episodes=2)
    assert (stage.evaluation.n_success, stage.evaluation.n_failure) == (1, 1)
    assert stage.rubric.name == "rubric_sim_push_left.yaml"
    assert all(stage.outputs[f"object {k}"].exists() for k in ("bag", "labels", "eval", "report"))
    _print_object_stage(stage, 1.0)
    printed = capsys.readouterr().out
    assert "success/failure AUC" in printed and "95 % interval" in printed
    short = missed(stage.evaluation, REWARD_TARGETS)
    assert ("MISSED: " + ", ".join(short) if short else "every target met") in printed
    assert ("do not tell these pushes from failed grasps" in printed) == bool(short)
