"""`spatial-mllm evaluate`: scoring an answer file and a checkpoint end to end on a small benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spatial_mllm_ros.cli import main
from spatial_mllm_ros.model.factory import make_tiny_model
from spatial_mllm_ros.multispa.evaluate import BenchmarkError, load_benchmark, read_answers, score_answers
from spatial_mllm_ros.multispa.format import format_value, make_sample, sample_to_json


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
    rc = main(
        ["evaluate", "--checkpoint", str(ckpt), "--benchmark", str(bench), "--output", str(tmp_path / "r")]
    )
    assert rc == 0
    report = json.loads((tmp_path / "r" / "scores.json").read_text())
    assert report["total"] == 5
    answers = [json.loads(x) for x in (tmp_path / "r" / "answers.jsonl").read_text().splitlines()]
    assert {a["id"] for a in answers} == {f"q{i}" for i in range(5)}
