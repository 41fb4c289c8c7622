"""End to end: sim-shaped bags -> tiny real model -> labels, plots, report, reward bags; resume; Ray."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spatial_mllm_ros.reward import (
    AnnotateConfig,
    Sampling,
    Split,
    annotate_to_dir,
    load_rubric,
    read_results,
)

CONFIG = Path(__file__).resolve().parents[1] / "config"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from spatial_mllm_ros.model.factory import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny"), image_size=64)


@pytest.fixture(scope="module")
def sim_episodes() -> list:
    """Two MuJoCo episodes: the gripper translating left (success) and a grasp that slips (failure)."""
    from spatial_mllm_ros.sim import SceneConfig, parse_motion, run_episode

    cfg = SceneConfig(seed=3, n_objects=2, width=160, height=120, cameras=("front",), shadows=False)
    kw = {"n_frames": 6, "depth": False, "seg": False, "n_track_points": 0}
    return [run_episode(cfg, parse_motion("translate:direction=left,distance=0.1"), **kw),
            run_episode(cfg, parse_motion("failed_grasp"), **kw)]


@pytest.fixture(scope="module")
def bags(tmp_path_factory: pytest.TempPathFactory, sim_episodes: list) -> dict[str, Path]:
    from spatial_mllm_ros.sim.recorder import record_episodes

    root = tmp_path_factory.mktemp("bags")
    return {
        "mcap_raw": record_episodes(sim_episodes, root / "mcap_raw", storage="mcap"),
        "sqlite_jpeg": record_episodes(sim_episodes, root / "sqlite_jpeg", "sqlite3", compressed=True),
    }


def _config(tiny_model: Path, rubric: str = "rubric_move_left.yaml", **kw: object) -> AnnotateConfig:
    from spatial_mllm_ros.model.config import ModelConfig

    rubric_obj = load_rubric(CONFIG / rubric)
    return AnnotateConfig(
        rubric=rubric_obj, model=ModelConfig(checkpoint=str(tiny_model), device="cpu", max_new_tokens=8),
        image_topic=kw.pop("image_topic", None), split=Split.parse("marker"),
        sampling=Sampling(count=4), **kw,
    )


def test_batch_outputs_and_bad_bags(
    tmp_path: Path, tiny_model: Path, bags: dict[str, Path], fixture_bags: Path,
) -> None:
    import pyarrow.parquet as pq
    from rosbags.highlevel import AnyReader

    corrupt = tmp_path / "corrupt"
    shutil.copytree(bags["mcap_raw"], corrupt)
    mcap = next(corrupt.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[:300])
    batch = [bags["mcap_raw"], corrupt, bags["sqlite_jpeg"], fixture_bags / "evo_tf_example"]
    config = _config(tiny_model, rubric="rubric_push_distance.yaml")
    out = tmp_path / "out"
    summary = annotate_to_dir(batch, config, out, write_bag=True, show_progress=False)
    failed = {Path(b.bag_path).name: b.error for b in summary.failed}
    assert set(failed) == {"corrupt", "evo_tf_example"}
    assert "corrupt" in failed["corrupt"]
    assert "no image topic" in failed["evo_tf_example"] and "/tf_static" in failed["evo_tf_example"]
    assert summary.episodes == 4
    table = pq.read_table(out / "labels.parquet")
    rows = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    assert table.num_rows == len(rows) == summary.labels
    # per episode: 2 episode-span checks + progress over 3 shuffled frames
    assert summary.labels == 4 * (2 + 3)
    assert set(table.column("check_type").to_pylist()) == {"metric", "static", "progress"}
    assert all(len(r["stamps_ns"]) == 2 and r["question"] and r["answer"] is not None for r in rows)
    csv_lines = (out / "episodes.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + 4 + 2 and "voc" in csv_lines[0]
    assert len(list((out / "plots").glob("*.png"))) == 4
    assert "Failed bags" in (out / "report.html").read_text()
    for name in ("mcap_raw", "sqlite_jpeg"):
        with AnyReader([out / "bags" / f"{name}_reward"]) as reader:
            topics = {t: i.msgcount for t, i in reader.topics.items()}
            conns = [c for c in reader.connections if c.topic == "/reward/answers"]
            docs = [json.loads(reader.deserialize(raw, c.msgtype).data)
                    for c, _, raw in reader.messages(conns)]
        assert topics["/reward"] == 2 and topics["/episode"] == 4  # episode rewards; markers copied
        assert sum(len(d["labels"]) for d in docs) == 10 and "episode_reward" in docs[-1]
    # idempotent: the same command again changes nothing
    before = (out / "labels.jsonl").read_bytes()
    again = annotate_to_dir(batch, config, out, write_bag=True, show_progress=False)
    assert again.resumed == 4 and (out / "labels.jsonl").read_bytes() == before


def test_cli_resumes_after_kill_9(
    tmp_path: Path, tiny_model: Path, python_exe: str, sim_episodes: list,
) -> None:
    from spatial_mllm_ros.sim.recorder import record_episodes

    bag = record_episodes(sim_episodes * 2, tmp_path / "long")
    out = tmp_path / "out"
    cmd = [python_exe, "-m", "spatial_mllm_ros", "annotate", str(bag), "--rubric",
           str(CONFIG / "rubric_move_left.yaml"), "--out", str(out), "--checkpoint", str(tiny_model),
           "--device", "cpu", "--count", "4", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    manifest = out / "manifest.jsonl"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        if manifest.exists() and len(manifest.read_text().splitlines()) >= 2:  # header + first episode
            break
        time.sleep(0.01)
    assert proc.poll() is None, f"annotate ended before the kill: {proc.stderr.read().decode()[-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_at_kill = len(read_results(out))
    assert 1 <= done_at_kill < 4
    rerun = subprocess.run(cmd + ["--jobs", "2"], env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"({done_at_kill} resumed)" in rerun.stdout
    rows = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    keys = [(r["episode"], r["check"], r["step"]) for r in rows]
    assert len(keys) == len(set(keys)) == 4 * 2 * 3  # 4 episodes x 2 checks x 3 steps, none twice
    assert sorted({r["episode"] for r in rows}) == list(range(4))


def test_kill_9_of_the_cli_ends_its_workers(
    tmp_path: Path, tiny_model: Path, python_exe: str, sim_episodes: list,
) -> None:
    """`annotate --jobs 2` killed like the OOM killer does leaves no worker (each holds a model) behind."""
    psutil = pytest.importorskip("psutil")
    from test_reward_support import running

    from spatial_mllm_ros.sim.recorder import record_episodes

    first = record_episodes(sim_episodes, tmp_path / "bag0")
    bags = [first, *(shutil.copytree(first, tmp_path / f"bag{i}") for i in range(1, 4))]
    out = tmp_path / "out"
    cmd = [python_exe, "-m", "spatial_mllm_ros", "annotate", *map(str, bags), "--rubric",
           str(CONFIG / "rubric_move_left.yaml"), "--out", str(out), "--checkpoint", str(tiny_model),
           "--device", "cpu", "--count", "4", "--jobs", "2", "--no-progress", "--no-plots"]
    log = tmp_path / "stderr.txt"
    with log.open("wb") as err:  # a file, not a pipe: leaked workers would hold a pipe open
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    driver = psutil.Process(proc.pid)
    run: dict[int, psutil.Process] = {}  # every process the run started, however briefly

    def alive() -> list[int]:
        return [pid for pid, p in run.items() if running(p)]

    manifest = out / "manifest.jsonl"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                run.update({p.pid: p for p in driver.children(recursive=True)})
            except psutil.NoSuchProcess:
                break
            if manifest.exists() and len(manifest.read_text().splitlines()) >= 2:  # a bag came back
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"annotate ended before the kill: {log.read_text()[-2000:]}"
        workers = [p for p in run.values() if "--multiprocessing-fork" in " ".join(p.cmdline())]
        assert len(workers) == 2, [p.cmdline() for p in run.values()]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 5
        while alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        left = {pid: run[pid].cmdline() for pid in alive()}
        assert not left, f"alive 5 s after the driver's kill -9: {left}"
    finally:
        for pid in alive():  # this test's own leftovers, so a failure does not leak them
            run[pid].kill()
        if proc.poll() is None:
            proc.kill()


def test_ray_tasks_match_in_process(tmp_path: Path, tiny_model: Path, bags: dict[str, Path]) -> None:
    pytest.importorskip("ray", reason="ray is the optional extra spatial_mllm_ros[ray]; not installed here")
    config = _config(tiny_model)
    local = annotate_to_dir([bags["mcap_raw"]], config, tmp_path / "local", show_progress=False)
    ray = annotate_to_dir([bags["mcap_raw"]], config, tmp_path / "ray", ray_address="local",
                          show_progress=False)
    assert not local.failed and not ray.failed and ray.episodes == local.episodes == 2
    ray_rows = (tmp_path / "ray" / "labels.jsonl").read_text()
    assert ray_rows == (tmp_path / "local" / "labels.jsonl").read_text()
    res = subprocess.run([sys.executable, "-m", "spatial_mllm_ros", "reward-eval", str(tmp_path / "ray")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    ev = json.loads((tmp_path / "ray" / "eval.json").read_text())
    assert 0 < ev["direction_n"] <= 2 * 2 * 3 and 0.0 <= ev["direction_agreement"] <= 1.0
    assert ev["n_success"] == 1 and ev["n_failure"] == 1 and ev["auc"] is not None


def test_each_frame_is_encoded_once(tiny_model: Path, bags: dict[str, Path]) -> None:
    from spatial_mllm_ros.model.runtime import SpatialModel
    from spatial_mllm_ros.reward import Bag, EpisodeResult, EpisodeScorer, find_episodes, parse_rubric
    from spatial_mllm_ros.reward.errors import EmptyEpisodeError

    rubric = parse_rubric({
        "name": "many questions",
        "checks": [
            {"question": "Did the gripper move left?", "expect": "yes"},
            {"question": "Which direction did the gripper move?", "expect": "left"},
            {"type": "metric", "question": "How far did the gripper move?", "target_mm": 100},
        ],
        "progress": {"question": "How far did the gripper move?", "scale": 100},
    })
    model = SpatialModel.load(_config(tiny_model).model)
    with Bag(bags["sqlite_jpeg"]) as bag:
        topic = bag.image_topic()
        episode = find_episodes(bag, topic, Split.parse("marker"))[0]
        frames = [f for _, f in bag.frames(topic, episode.times)]
    result = EpisodeScorer(model, rubric).score(episode, frames, EpisodeResult("b", "b", 0, "k", topic, 0, 0))
    n = len(frames)
    assert len(result.labels) == 2 * (n - 1) + 1 + (n - 1)  # every question asked...
    assert model.cache_stats.misses == n  # ...but each frame's vision embedding computed once
    with pytest.raises(EmptyEpisodeError, match="episode 0: 1 frame"):
        EpisodeScorer(model, rubric).score(episode, frames[:1], EpisodeResult("b", "b", 0, "k", topic, 0, 0))
    model.close()


def test_step_truth_from_sim_poses_matches_the_sim(bags: dict[str, Path], sim_episodes: list) -> None:
    from spatial_mllm_ros.reward import Bag, find_episodes
    from spatial_mllm_ros.reward.evaluate import MISSING, PoseTruth

    truth = PoseTruth(str(bags["mcap_raw"]))
    with Bag(bags["mcap_raw"]) as bag:
        episodes = find_episodes(bag, bag.image_topic(), Split.parse("marker"))
    for sim, ep in zip(sim_episodes, episodes):
        obj = sim.object_names[0]
        for i, j in ((0, 1), (2, 3), (0, len(ep.times) - 1)):
            t0, t1 = ep.times[i], ep.times[j]
            gripper = sim.gripper_motion(i, j, "front").direction
            assert truth.value("truth.gripper.front.direction", t0, t1) == gripper
            want = sim.object_motion(obj, i, j, "front").distance_mm
            assert truth.value(f"truth.objects.{obj}.front.distance_mm", t0, t1) == want
    assert truth.value("truth.cameras.front.direction", 0, 1) is MISSING  # not a pose path: marker decides


def test_ood_score_column_and_unfamiliar_episodes_flagged(
    tmp_path: Path, tiny_model: Path, bags: dict[str, Path],
) -> None:
    import csv

    import numpy as np
    import pyarrow.parquet as pq

    from spatial_mllm_ros.model.config import ModelConfig
    from spatial_mllm_ros.model.ood import fit_feature_stats
    from spatial_mllm_ros.model.runtime import SpatialModel

    checkpoint = tmp_path / "with_ood"
    shutil.copytree(tiny_model, checkpoint)
    model = SpatialModel.load(ModelConfig(checkpoint=str(checkpoint), device="cpu"))
    grey = [np.full((120, 160, 3), v, np.uint8) for v in range(60, 200, 4)]  # nothing like the sim scenes
    fit_feature_stats(model.frame_descriptors(grey), components=4).save(checkpoint)
    out = tmp_path / "out"
    summary = annotate_to_dir([bags["mcap_raw"]], _config(checkpoint), out, show_progress=False, plots=False)
    scores = pq.read_table(out / "labels.parquet").column("ood_score").to_pylist()
    assert scores and all(s is not None and s > 1 for s in scores)
    episodes = list(csv.DictReader((out / "episodes.csv").open()))
    assert [e["out_of_distribution"] for e in episodes] == ["True", "True"]
    assert summary.out_of_distribution == 2
    assert "2 episode(s) look out of distribution" in (out / "report.html").read_text()


def test_outputs_are_written_off_the_answering_thread_and_a_failure_surfaces(
    tmp_path: Path, tiny_model: Path, bags: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading

    from spatial_mllm_ros.reward import outputs
    from spatial_mllm_ros.reward.errors import OutputError

    plotted: list[str] = []
    real_plot = outputs.plot_episode

    def plot(out: Path, result: object) -> Path:
        plotted.append(threading.current_thread().name)
        return real_plot(out, result)

    monkeypatch.setattr(outputs, "plot_episode", plot)
    config = _config(tiny_model)
    summary = annotate_to_dir([bags["mcap_raw"]], config, tmp_path / "ok", show_progress=False)
    assert summary.episodes == 2 and plotted == ["output-writer"] * 2
    assert len(list((tmp_path / "ok" / "plots").glob("*.png"))) == 2

    def broken(out: Path, result: object) -> Path:
        raise OSError("No space left on device")

    monkeypatch.setattr(outputs, "plot_episode", broken)
    with pytest.raises(OutputError, match="No space left on device"):
        annotate_to_dir([bags["mcap_raw"]], config, tmp_path / "full", show_progress=False)
    assert not [t for t in threading.enumerate() if t.name == "output-writer"]
