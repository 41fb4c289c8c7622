"""Grade annotations against simulation truth: the /episode markers the sim recorder writes.

Truth per check comes from the check's `truth` path (dotted keys into the marker labels, e.g.
"truth.gripper.front.direction"); with `truth_equals` a yes/no question is true when that value equals
it. Step labels of gripper/object paths are graded per step from the bag's pose topics.
Reported: direction agreement, distance error, VOC of successful vs failed episodes, and the AUC of the
episode reward separating successes from failures.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spatial_mllm_ros.reward.bags import Bag
from spatial_mllm_ros.reward.episodes import DEFAULT_MARKER_TOPIC, Split, find_episodes
from spatial_mllm_ros.reward.errors import RewardError, RubricError
from spatial_mllm_ros.reward.labels import EpisodeResult
from spatial_mllm_ros.reward.rubric import Check, Rubric
from spatial_mllm_ros.reward.scores import auc

MISSING = object()


def lookup(labels: dict[str, Any], path: str) -> Any:
    """Value at a dotted path in nested dicts (MISSING when absent)."""
    node: Any = labels
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node


@dataclass
class RewardEvaluation:
    """Annotation quality against truth; None where the run had nothing to grade."""

    episodes: int = 0
    direction_agreement: float | None = None
    direction_n: int = 0
    distance_mae_mm: float | None = None
    distance_rel_error: float | None = None
    distance_n: int = 0
    voc_success: float | None = None
    voc_failure: float | None = None
    auc: float | None = None
    n_success: int = 0
    n_failure: int = 0
    per_episode: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> str:
        """Indented JSON of every figure."""
        return json.dumps(asdict(self), indent=2)


def truth_for_episodes(results: Sequence[EpisodeResult], marker_topic: str = DEFAULT_MARKER_TOPIC) -> None:
    """Attach each episode the labels of the marker span that holds its middle (read from its bag)."""
    by_bag: dict[str, list[EpisodeResult]] = {}
    for r in results:
        by_bag.setdefault(r.bag_path, []).append(r)
    for path, eps in by_bag.items():
        with Bag(path) as bag:
            markers = find_episodes(bag, eps[0].topic, Split("marker", topic=marker_topic))
        for r in eps:
            middle = (r.start_ns + r.end_ns) // 2
            span = next((m for m in markers if m.start_ns <= middle <= m.end_ns), None)
            if span is None:
                raise RewardError(f"bag {path}: no {marker_topic} marker covers episode {r.episode}")
            r.truth = dict(span.labels)


# A truth path the sim's pose topics can answer per step: truth.gripper.<cam>.<field> or
# truth.objects.<name>.<cam>.<field>.
_POSE_TRUTH = re.compile(r"^truth\.(?:gripper|objects\.(?P<object>[^.]+))\.(?P<camera>[^.]+)\."
                         r"(?P<field>direction|distance_mm|moved)$")


class PoseTruth:
    """Per-step truth from a sim bag's pose topics (gripper, objects, cameras; world frame).

    The /episode markers only hold first-to-last truth; a step (frame pair) is graded on how the entity
    moved between those two frames, seen from the camera at the first one (as the sim defines it).
    """

    def __init__(self, bag_path: str) -> None:
        self.bag_path = bag_path
        self._tracks: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        with Bag(bag_path) as bag:
            self._topics = bag.info().topics

    def _track(self, topic: str) -> tuple[np.ndarray, np.ndarray] | None:
        if topic not in self._topics:
            return None
        if topic not in self._tracks:
            from spatial_mllm_ros.sim.geometry import make_pose, quat_to_mat

            stamps, poses = [], []
            with Bag(self.bag_path) as bag:
                for _, t, raw in bag.reader.messages([c for c in bag.reader.connections if c.topic == topic]):
                    msg = bag.reader.deserialize(raw, "geometry_msgs/msg/PoseStamped")
                    p, q = msg.pose.position, msg.pose.orientation
                    stamps.append(t)
                    rotation = quat_to_mat(np.array([q.w, q.x, q.y, q.z]))
                    poses.append(make_pose(rotation, np.array([p.x, p.y, p.z])))
            self._tracks[topic] = (np.array(stamps), np.array(poses))
        return self._tracks[topic]

    def _pose(self, topic: str, stamp: int) -> np.ndarray | None:
        track = self._track(topic)
        if track is None or not len(track[0]):
            return None
        return track[1][int(np.argmin(np.abs(track[0] - stamp)))]

    def value(self, path: str, t0: int, t1: int) -> Any:
        """Look up the truth field `path` names between stamps t0 and t1 (MISSING: the bag cannot tell)."""
        from spatial_mllm_ros.sim.recorder import GRIPPER_POSE_TOPIC, camera_pose_topic, object_topic
        from spatial_mllm_ros.sim.truth import motion_truth

        m = _POSE_TRUTH.match(path)
        if m is None:
            return MISSING
        topic = object_topic(m["object"]) if m["object"] else GRIPPER_POSE_TOPIC
        a, b = self._pose(topic, t0), self._pose(topic, t1)
        cam = self._pose(camera_pose_topic(m["camera"]), t0)
        if a is None or b is None or cam is None:
            return MISSING
        return motion_truth(a, b, cam).to_json()[m["field"]]


def _truth_answer(check: Check, truth: dict[str, Any], value: Any = MISSING) -> str | None:
    value = lookup(truth, check.truth) if value is MISSING else value
    if value is MISSING:
        return None
    if check.truth_equals:  # "did X move left?": no when X moved elsewhere or not at all (None)
        return "yes" if str(value).strip().lower() == check.truth_equals else "no"
    return None if value is None else str(value).strip().lower()


def evaluate(
    results: Sequence[EpisodeResult], rubric: Rubric, success_key: str = "success",
    poses: dict[str, PoseTruth] | None = None,
) -> RewardEvaluation:
    """Grade labelled episodes whose `truth` holds the sim markers' labels.

    With `poses` (bag path -> PoseTruth) step labels are graded on each step's own motion; otherwise,
    and for paths the poses cannot answer, on the episode's first-to-last truth.
    """
    agree: list[bool] = []
    abs_err: list[float] = []
    rel_err: list[float] = []
    voc = {True: [], False: []}
    reward = {True: [], False: []}
    ev = RewardEvaluation(episodes=len(results))
    for r in results:
        if r.error:
            continue
        try:
            checks = {c.id: c for c in rubric.for_episode(r.truth).checks}
        except RubricError:  # the markers lack a label the rubric's placeholders need: nothing to grade
            continue
        for lab in r.labels:
            check = checks.get(lab.check)
            if check is None or not check.truth:
                continue
            value = json.loads(lab.value)
            step_value = MISSING
            if lab.span == "step" and poses and r.bag_path in poses:
                step_value = poses[r.bag_path].value(check.truth, lab.t_start_ns, lab.t_end_ns)
            if check.type in ("direction", "static"):
                truth = _truth_answer(check, r.truth, step_value)
                if truth is not None and value is not None:
                    agree.append(str(value).lower() == truth)
            elif check.type == "metric":
                truth_mm = lookup(r.truth, check.truth) if step_value is MISSING else step_value
                if isinstance(truth_mm, (int, float)) and isinstance(value, (int, float)):
                    abs_err.append(abs(value - truth_mm))
                    rel_err.append(abs(value - truth_mm) / max(abs(truth_mm), 1.0))
        success = lookup(r.truth, success_key)
        if isinstance(success, bool):
            reward[success].append(r.reward)
            if r.voc is not None:
                voc[success].append(r.voc)
        ev.per_episode.append({"bag": r.bag, "episode": r.episode, "reward": r.reward, "voc": r.voc,
                               "success": success if isinstance(success, bool) else None})
    ev.direction_n, ev.distance_n = len(agree), len(abs_err)
    ev.direction_agreement = float(np.mean(agree)) if agree else None
    ev.distance_mae_mm = float(np.mean(abs_err)) if abs_err else None
    ev.distance_rel_error = float(np.mean(rel_err)) if rel_err else None
    ev.voc_success = float(np.mean(voc[True])) if voc[True] else None
    ev.voc_failure = float(np.mean(voc[False])) if voc[False] else None
    ev.n_success, ev.n_failure = len(reward[True]), len(reward[False])
    ev.auc = auc(reward[True], reward[False])
    return ev


def evaluate_dir(
    out: str | Path, rubric: Rubric, marker_topic: str = DEFAULT_MARKER_TOPIC, success_key: str = "success",
) -> RewardEvaluation:
    """Grade an annotate output directory against the markers of the bags it labelled."""
    from spatial_mllm_ros.reward.manifest import MANIFEST_NAME, read_results

    out = Path(out)
    if not (out / MANIFEST_NAME).exists():
        raise RewardError(f"{out}: no {MANIFEST_NAME}; run spatial-mllm annotate --out {out} first")
    results = read_results(out)
    truth_for_episodes([r for r in results if not r.error], marker_topic)
    poses = {path: PoseTruth(path) for path in {r.bag_path for r in results if not r.error}}
    return evaluate(results, rubric, success_key, poses)


HELDOUT_SEED = 90_000  # far from the seeds the training streams use
HELDOUT_MOTIONS = ("push:direction=left", "failed_grasp")  # successes and failures, alternating


def heldout_sim_bags(root: str | Path, n: int, seed: int = HELDOUT_SEED, n_frames: int = 16) -> list[Path]:
    """Record n held-out sim episodes (pushes left / failed grasps) in an mcap-raw and a sqlite3-jpeg bag.

    The evaluation set of config/rubric_sim_push_left.yaml; rendered by the MuJoCo sim, front camera.
    """
    from spatial_mllm_ros.sim import SceneConfig, parse_motion, run_episode
    from spatial_mllm_ros.sim.recorder import record_episodes

    root = Path(root)
    episodes = [
        run_episode(SceneConfig(seed=seed + k // 2, n_objects=2, cameras=("front",), shadows=False),
                    parse_motion(HELDOUT_MOTIONS[k % 2]), n_frames=n_frames, depth=False, seg=False,
                    n_track_points=0)
        for k in range(n)
    ]
    half = max(1, n // 2)
    bags = [record_episodes(episodes[:half], root / "heldout_mcap_raw")]
    if episodes[half:]:
        jpeg = record_episodes(episodes[half:], root / "heldout_sqlite_jpeg", "sqlite3", compressed=True)
        bags.append(jpeg)
    return bags
