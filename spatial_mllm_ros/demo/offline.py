"""The demo's offline stage: record episodes to a rosbag2, annotate it with a rubric, grade the labels.

The sim recorder writes the bag; the reward annotator writes labels, plots and a report; the labels are
graded against the truth in the bag's /episode markers. Two rubrics: the gripper one (translations left
and right) and an object one (pushes left against failed grasps, the held-out push-left set's first
episodes), whose figures show how far the model's object answers carry a reward.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from spatial_mllm_ros.demo.errors import DemoError
from spatial_mllm_ros.demo.script import DEMO_CAMERA
from spatial_mllm_ros.model.config import ModelConfig
from spatial_mllm_ros.reward import AnnotateConfig, AnnotateSummary, RewardEvaluation, load_rubric
from spatial_mllm_ros.reward.errors import RewardError
from spatial_mllm_ros.reward.evaluate import EVAL_NAME, annotate_and_grade
from spatial_mllm_ros.reward.heldout import PUSH_LEFT, heldout_episodes
from spatial_mllm_ros.reward.manifest import MANIFEST_NAME
from spatial_mllm_ros.reward.outputs import PLOTS_DIR
from spatial_mllm_ros.sim.episodes import generate_episodes
from spatial_mllm_ros.sim.recorder import record_episodes
from spatial_mllm_ros.sim.scene import SceneConfig

EXAMPLE_RUBRIC_NAME = "rubric_move_left.yaml"
# Episodes of the bag: the rubric asks "did the gripper move left?" and "left or right?": successes (left)
# and failures (right), so the labels' rewards should separate them.
BAG_MOTIONS = tuple(f"translate:direction={d},distance={m:g},camera={DEMO_CAMERA}"
                    for d, m in (("left", 0.1), ("right", 0.1), ("left", 0.08), ("right", 0.08)))
BAG_DIR, LABELS_DIR = "bag", "labels"
# Frames per episode the annotator samples (as `annotate --count 3`): each step then spans 4-6 cm of a
# 10 cm move. The rubric's 6 would make the first and last steps of an eased move < 10 mm ("did not
# move" by the answer conventions) while reward-eval grades every step against the episode's direction.
DEMO_COUNT = 3
# The object stage: the first episodes of the held-out push-left set (a push left and a failed grasp per
# scene), labelled with its rubric at the rubric's own sampling; bench_reward.py --eval grades 16.
OBJECT_EPISODES = 4
OBJECT_BAG_DIR, OBJECT_LABELS_DIR = "object_bag", "object_labels"


@dataclass
class OfflineResult:
    """Where the bag and the annotator's outputs are, and how the labels grade against truth."""

    bag: Path
    labels_dir: Path
    summary: AnnotateSummary
    evaluation: RewardEvaluation
    rubric: Path
    name: str = ""  # prefixes its output names ("object labels") beside another stage's

    @property
    def outputs(self) -> dict[str, Path]:
        """The files a person opens: labels, plots, report and the graded figures."""
        d = self.labels_dir
        files = {"bag": self.bag, "labels": d / "labels.parquet", "labels (jsonl)": d / "labels.jsonl",
                 "episodes": d / "episodes.csv", "plots": d / PLOTS_DIR, "report": d / "report.html",
                 "eval": d / EVAL_NAME}
        return {f"{self.name} {key}".strip(): path for key, path in files.items()}


def example_rubric(name: str = EXAMPLE_RUBRIC_NAME) -> Path:
    """Find an example rubric: the checkout's config/, else the ament-installed share/ directory."""
    checkout = Path(__file__).resolve().parents[2] / "config" / name
    if checkout.is_file():
        return checkout
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("spatial_mllm_ros")) / "config" / name
    except Exception:  # not installed through ament either: report the checkout path when loading
        return checkout


EXAMPLE_RUBRIC = example_rubric()


def _fresh(path: Path, marker: str) -> None:
    """Remove a previous run's output directory (only one this stage wrote: it holds `marker`)."""
    if not path.exists():
        return
    if not (path / marker).exists() and any(path.iterdir()):
        raise DemoError(f"{path} exists and is not a previous demo output (no {marker}): "
                        "choose another --out")
    shutil.rmtree(path)


def record_bag(path: Path, seed: int, n_frames: int, fps: float,
               motions: Sequence[str] = BAG_MOTIONS) -> Path:
    """Record `motions` (scene seed + k for episode k) from the front camera into a new mcap bag."""
    _fresh(path, "metadata.yaml")
    config = SceneConfig(seed=seed, cameras=(DEMO_CAMERA,))
    episodes = generate_episodes(config, len(motions), motions, n_frames, fps, depth=False, seg=False)
    return record_episodes(episodes, path)


def run_offline(out: Path, checkpoint: Path, rubric_path: Path = EXAMPLE_RUBRIC, seed: int = 0,
                n_frames: int = 16, fps: float = 10.0, device: str = "auto", show_progress: bool = True,
                motions: Sequence[str] = BAG_MOTIONS, count: int | None = DEMO_COUNT) -> OfflineResult:
    """Record the bag, annotate it with the rubric into out/labels, grade it (eval.json beside the labels).

    `count` frames per episode (None: the rubric's sampling).
    """
    bag = record_bag(out / BAG_DIR, seed, n_frames, fps, motions)
    return _label(bag, out / LABELS_DIR, rubric_path, checkpoint, device, count, show_progress)


def run_object_offline(out: Path, checkpoint: Path, device: str = "auto", show_progress: bool = True,
                       episodes: int = OBJECT_EPISODES) -> OfflineResult:
    """Record the held-out push-left set's first episodes, label them with its object rubric, grade them."""
    path = out / OBJECT_BAG_DIR
    _fresh(path, "metadata.yaml")
    bag = record_episodes(heldout_episodes(PUSH_LEFT, episodes), path)
    return _label(bag, out / OBJECT_LABELS_DIR, example_rubric(PUSH_LEFT.rubric), checkpoint, device, None,
                  show_progress, name="object")


def _label(bag: Path, labels_dir: Path, rubric_path: Path, checkpoint: Path, device: str, count: int | None,
           show_progress: bool, name: str = "") -> OfflineResult:
    """Annotate one bag into a fresh labels_dir and grade it against its /episode markers."""
    _fresh(labels_dir, MANIFEST_NAME)  # a new bag at the same path must not resume the old labels
    model = ModelConfig(checkpoint=str(checkpoint), device=device)
    config = AnnotateConfig.from_rubric(load_rubric(rubric_path), model, count=count)
    try:
        summary, evaluation = annotate_and_grade([bag], config, labels_dir, show_progress)
    except RewardError as exc:
        raise DemoError(str(exc)) from exc
    return OfflineResult(bag, labels_dir, summary, evaluation, rubric_path, name)
