"""`spatial-mllm evaluate`: scoring an answer file and a checkpoint end to end on a small benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spatial_mllm_ros.cli import main
from spatial_mllm_ros.conventions import format_value
from spatial_mllm_ros.model.calibration import load_calibration
from spatial_mllm_ros.model.factory import make_tiny_model
from spatial_mllm_ros.multispa.evaluate import BenchmarkError, load_benchmark, read_answers, score_answers
from spatial_mllm_ros.multispa.format import make_sample, sample_to_json


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("bench")
    for k in range(2):
        Image.fromarray(np.full((48, 64, 3), 90 * k, np.uint8)).save(d / f"f{k}.png")
    rows = [
        ("camera_translation_x", "direction", "Did the camera move left or right?", "left"),
        ("camera_translation_z", "direction", "Did the camera move forward or backward?", "forward"),
        ("robot_gripper_distance", "distance", "How far did the gripper move?", 200),
        ("robot_object_distance", "distance", "How far did the red cube move?", 0),
        ("correspondence_coord", "coordinate", "Where is the point in Image-2?", (500, 500)),
    ]
    lines = [
        sample_to_json(
            make_sample(
                f"q{i}",
                ["f0.png", "f1.png"],
                q,
                format_value(kind, v),
                kind=kind,
                task=task,
                sizes=[(64, 48)] * 2,
            )
        )
        for i, (task, kind, q, v) in enumerate(rows)
    ]
    (d / "benchmark.jsonl").write_text("\n".join(lines) + "\n")
    return d


def test_answer_file_is_scored_with_the_paper_rules(bench: Path, tmp_path: Path) -> None:
    answers = [
        {"id": "q0", "answer": "The camera moved `left`."},
        {"id": "q1", "answer": "backward"},
        {"id": "q2", "answer": "About `235` mm."},  # 17.5% off: correct
        {"id": "q3", "answer": "The point did not move."},  # zero ground truth, parsed as 0
        {"id": "q4", "answer": "`[ 540 , 500 ]`"},  # 40/1000 * 64 = 2.6 px <= 3.2 px
    ]
    path = tmp_path / "answers.jsonl"
    path.write_text("".join(json.dumps(a) + "\n" for a in answers))
    scores = score_answers(load_benchmark(bench), read_answers(path))
    acc = {k: s.accuracy for k, s in scores.subtasks.items()}
    assert acc == {
        "camera_translation_x": 100.0,
        "camera_translation_z": 0.0,
        "robot_gripper_distance": 100.0,
        "robot_object_distance": 100.0,
        "correspondence_coord": 100.0,
    }
    assert scores.table2()["Camera translation direction"] == 50.0
    rc = main(
        ["evaluate", "--answers", str(path), "--benchmark", str(bench), "--output", str(tmp_path / "rep")]
    )
    assert rc == 0
    report = json.loads((tmp_path / "rep" / "scores.json").read_text())
    assert report["total"] == 5 and report["overall"] == 80.0
    assert "| Average |" in (tmp_path / "rep" / "scores.md").read_text()
    # new fields only: the one zero-truth object distance is what a constant 0 gets, so it is not beaten
    still = report["subtasks"]["robot_object_distance"]
    assert (still["accuracy"], still["baseline"], still["baseline_answer"]) == (100.0, 100.0, "0")
    assert still["beats_baseline"] is False and still["chance"] is None
    assert report["subtasks"]["camera_translation_x"]["chance"] == 50.0
    assert report["ece"] is None  # these answers carry no confidence
    assert (tmp_path / "rep" / "heatmap.png").is_file()


def test_missing_answers_count_as_wrong_and_bad_files_are_named(bench: Path, tmp_path: Path) -> None:
    path = tmp_path / "few.jsonl"
    path.write_text(json.dumps({"id": "q0", "answer": "`left`"}) + "\n")
    scores = score_answers(load_benchmark(bench), read_answers(path))
    assert scores.total == 5 and scores.overall == 20.0
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n")
    with pytest.raises(BenchmarkError, match="bad.jsonl:1"):
        read_answers(bad)
    with pytest.raises(BenchmarkError, match="no benchmark"):
        load_benchmark(tmp_path / "nowhere")


def test_checkpoint_is_answered_through_the_runtime(bench: Path, tmp_path: Path) -> None:
    ckpt = make_tiny_model(tmp_path / "ckpt", image_size=56, max_tiles=1)
    flags = ["--output", str(tmp_path / "r"), "--fit-temperature", bench.name]
    assert main(["evaluate", "--checkpoint", str(ckpt), "--benchmark", str(bench), *flags]) == 0
    assert load_calibration(ckpt) is None  # the checkpoint is changed only when asked
    assert main(["evaluate", "--checkpoint", str(ckpt), "--benchmark", str(bench), *flags,
                 "--save-calibration"]) == 0
    saved = load_calibration(ckpt)  # the temperature travels with the checkpoint, next to config.json
    assert saved is not None and saved.fitted_on == bench.name and saved.questions == 2  # the two directions
    assert load_calibration(tmp_path / "r") == saved
    report = json.loads((tmp_path / "r" / "scores.json").read_text())
    assert report["total"] == 5
    lines = (tmp_path / "r" / "answers.jsonl").read_text().splitlines()
    answers = {a["id"]: a for a in map(json.loads, lines)}
    assert set(answers) == {f"q{i}" for i in range(5)}
    left_right = answers["q0"]["probabilities"]  # a closed set: per-option probabilities, for calibration
    assert set(left_right) == {"left", "right"}
    assert answers["q0"]["confidence"] == pytest.approx(max(left_right.values()))


def _write_set(root: Path, name: str, rows: list[tuple[str, str, str, object, dict]]) -> None:
    """A benchmark set NAME/benchmark.jsonl and its answers ANSWERS/NAME/answers.jsonl, from one row each."""
    (root / "suite" / name).mkdir(parents=True)
    (root / "answers" / name).mkdir(parents=True)
    samples = [
        sample_to_json(make_sample(f"{name}{i}", ["f.png"], q, format_value(kind, t), kind=kind, task=task))
        for i, (task, kind, q, t, _) in enumerate(rows)
    ]
    (root / "suite" / name / "benchmark.jsonl").write_text("\n".join(samples) + "\n")
    answers = [json.dumps({"id": f"{name}{i}", **reply}) for i, (*_, reply) in enumerate(rows)]
    (root / "answers" / name / "answers.jsonl").write_text("\n".join(answers) + "\n")


def _direction(truth: str, answer: str) -> tuple[str, str, str, object, dict]:
    other = {"left": "right", "right": "left"}[answer]
    reply = {"answer": f"`{answer}`", "confidence": 0.9, "probabilities": {answer: 0.9, other: 0.1}}
    return ("camera_translation_x", "direction", "Did the camera move left or right?", truth, reply)


@pytest.fixture()
def suite(tmp_path: Path) -> Path:
    """Two sets: "plain" (camera x all right at 0.9; "did it move" always "no" at 0.7, as 8 of 10 truths are;
    distance 3 of 4 within 20 % at 0.5) and "dim" (camera x 3 of 10 right, still at 0.9)."""
    sides = ["left", "right"] * 5
    moved = [
        ("robot_object_moved", "yes_no", "Did the red cube move?", truth,
         {"answer": "`no`", "confidence": 0.7, "probabilities": {"yes": 0.3, "no": 0.7}})
        for truth in ["no"] * 8 + ["yes"] * 2
    ]
    distance = [  # value distributions, not options: never part of the temperature fit
        ("robot_object_distance", "distance", "How far did the red cube move?", truth,
         {"answer": f"`{said}`", "confidence": 0.5, "probabilities": {str(said): 0.5, "90": 0.2}})
        for truth, said in [(0, 0), (0, 0), (150, 160), (300, 0)]
    ]
    _write_set(tmp_path, "plain", [_direction(s, s) for s in sides] + moved + distance)
    flipped = {"left": "right", "right": "left"}
    _write_set(tmp_path, "dim", [_direction(s, s if i < 3 else flipped[s]) for i, s in enumerate(sides)])
    return tmp_path


def test_several_sets_are_reported_against_their_baselines_with_calibration(suite: Path) -> None:
    out = suite / "report"
    flags = ["--answers", str(suite / "answers"), "--output", str(out), "--fit-temperature", "plain"]
    assert main(["evaluate", "--benchmark", str(suite / "suite"), *flags]) == 0
    report = json.loads((out / "report.json").read_text())
    assert list(report["sets"]) == ["dim", "plain"]
    plain, dim = report["sets"]["plain"]["subtasks"], report["sets"]["dim"]["subtasks"]
    x = plain["camera_translation_x"]
    # 10/10 right: Wilson lower bound 72.2 % > the 50 % of always "left" (a tie with "right": first seen)
    assert (x["accuracy"], x["chance"], x["baseline"], x["baseline_answer"]) == (100.0, 50.0, 50.0, "left")
    assert x["margin"] == 50.0 and x["beats_baseline"] is True
    assert x["mean_confidence"] == pytest.approx(0.9) and x["ece"] == pytest.approx(0.1)
    m = plain["robot_object_moved"]  # always "no" is exactly the majority answer
    assert (m["accuracy"], m["baseline"], m["baseline_answer"], m["margin"]) == (80.0, 80.0, "no", 0.0)
    assert m["beats_baseline"] is False and m["ece"] == pytest.approx(0.1)
    d = plain["robot_object_distance"]  # 75 % vs 50 % for a constant 0, but on 4 questions: not beaten
    assert (d["accuracy"], d["chance"], d["baseline"], d["beats_baseline"]) == (75.0, None, 50.0, False)
    assert d["ece"] == pytest.approx(0.25)
    # bins 0.9 (10 answers, gap 0.1), 0.7 (10, gap 0.1), 0.5 (4, gap 0.25): 3 / 24
    assert report["sets"]["plain"]["ece"] == pytest.approx(0.125)
    assert dim["camera_translation_x"]["accuracy"] == 30.0
    assert dim["camera_translation_x"]["beats_baseline"] is False
    assert report["sets"]["dim"]["ece"] == pytest.approx(0.6)  # 30 % right at 0.9

    # the temperature minimises the NLL of plain's 20 closed-set answers (a grid search, by hand):
    # 10 right at 0.9, 8 right at 0.7 and 2 wrong at 0.7, two options each
    beta = 1 / np.linspace(0.2, 3.0, 280_001)
    nll = 10 * np.log1p(9.0**-beta) + 8 * np.log1p((3 / 7) ** beta) + 2 * np.log1p((7 / 3) ** beta)
    t = report["calibration"]["temperature"]
    assert t == pytest.approx(1 / beta[np.argmin(nll)], rel=1e-4)
    assert report["calibration"]["questions"] == 20
    assert json.loads((out / "calibration.json").read_text())["temperature"] == t
    sharper = 1 / (1 + 9.0 ** (-1 / t))  # dim's 0.9 after the temperature
    assert report["sets"]["dim"]["ece_calibrated"] == pytest.approx(abs(0.3 - sharper))

    md = (out / "report.md").read_text()
    assert "| camera_translation_x | 30.0 ✗ | 100.0 |" in md
    assert "| robot_object_moved | - | 80.0 ✗ |" in md
    assert "| robot_object_moved | 80.00 | 50.0 | 80.0 | `no` | +0.0 | **✗ no** |" in md
    for name in ("plain", "dim"):
        assert json.loads((out / name / "scores.json").read_text())["set"] == name
    heat = np.asarray(Image.open(out / "heatmap.png").convert("RGB")).astype(int)
    assert heat.shape[0] > 200 and heat.shape[1] > 300
    assert len(np.unique(heat.reshape(-1, 3), axis=0)) > 50  # colours, text and hatching, not a blank
    red = (heat[..., 0] > 200) & (heat[..., 1] < 60) & (heat[..., 2] < 60)
    assert red.sum() > 100  # the hatching of the cells that do not beat their baseline

    # the same sets named one by one give the same report
    named = ["--set", f"plain={suite / 'suite' / 'plain'}", "--set", f"dim={suite / 'suite' / 'dim'}"]
    flags[3] = str(suite / "named")
    assert main(["evaluate", *named, *flags]) == 0
    again = json.loads((suite / "named" / "report.json").read_text())
    assert again["sets"] == {"plain": report["sets"]["plain"], "dim": report["sets"]["dim"]}
    assert main(["evaluate", *named, *flags[:4], "--fit-temperature", "bright"]) == 1  # no such set
    assert main(["evaluate", "--set", "plain", *flags[:4]]) == 1  # not NAME=PATH
