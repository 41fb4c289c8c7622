"""The demo's offline stage: record episodes to a rosbag2, annotate it with a rubric, grade the labels.

The sim recorder writes the bag; the reward annotator writes labels, plots and a report; the labels are
graded against the truth in the bag's /episode markers.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from spatial_mllm_ros.demo.errors import DemoError
from spatial_mllm_ros.demo.script import DEMO_CAMERA
from spatial_mllm_ros.model.config import ModelConfig
from spatial_mllm_ros.reward import (
    AnnotateConfig,
    AnnotateSummary,
    RewardEvaluation,
    annotate_to_dir,
    atomic_write_text,
    evaluate_dir,
    load_rubric,
)
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


@dataclass
class OfflineResult:
    """Where the bag and the annotator's outputs are, and how the labels grade against truth."""

    bag: Path
    labels_dir: Path
    summary: AnnotateSummary
    evaluation: RewardEvaluation

    @property
    def outputs(self) -> dict[str, Path]:
        """The files a person opens: labels, plots, report and the graded figures."""
        d = self.labels_dir
        return {"bag": self.bag, "labels": d / "labels.parquet", "labels (jsonl)": d / "labels.jsonl",
                "episodes": d / "episodes.csv", "plots": d / PLOTS_DIR, "report": d / "report.html",
                "eval": d / "eval.json"}


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
    labels_dir = out / LABELS_DIR
    _fresh(labels_dir, MANIFEST_NAME)  # a new bag at the same path must not resume the old labels
    rubric = load_rubric(rubric_path)
    model = ModelConfig(checkpoint=str(checkpoint), device=device)
    config = AnnotateConfig.from_rubric(rubric, model, count=count)
    summary = annotate_to_dir([bag], config, labels_dir, show_progress=show_progress)
    if summary.failed:
        raise DemoError(f"annotating {bag} failed: {summary.failed[0].error}")
    evaluation = evaluate_dir(labels_dir, rubric)
    atomic_write_text(labels_dir / "eval.json", evaluation.to_json())
    return OfflineResult(bag, labels_dir, summary, evaluation)
