"""Grade annotations against simulation truth: the /episode markers the sim recorder writes.

Truth per check comes from the check's `truth` path (dotted keys into the marker labels, e.g.
"truth.gripper.front.direction"); with `truth_equals` a yes/no question is true when that value equals
it. Step labels of gripper/object paths are graded per step from the bag's pose topics.
Reported, each with its 95 % interval and the bar beside it: direction agreement (Wilson over labels;
bar: always the commonest true answer), distance error (bootstrap over labels; bar: always the median
true distance), VOC of successful and failed episodes and their gap (bootstrap over episodes; chance 0)
and the AUC of the episode reward separating successes from failures (bootstrap over episodes, each
class resampled apart; chance 0.5).

Why a bootstrap for the AUC rather than DeLong's variance: with 8 + 8 episodes DeLong's normal
approximation gives intervals past 1 that must be clipped, while the percentile bootstrap stays in
0..1 and is the same code as the other figures' intervals. Both collapse to a point at perfect
separation (every resample separates perfectly too), so the number of episodes is printed beside them.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spatial_mllm_ros.bags import Bag, Split, find_episodes
from spatial_mllm_ros.bags.episodes import DEFAULT_MARKER_TOPIC
from spatial_mllm_ros.intervals import bootstrap_interval, mean_interval, wilson_interval
from spatial_mllm_ros.reward.annotate import AnnotateConfig, AnnotateSummary, annotate_to_dir
from spatial_mllm_ros.reward.errors import RewardError, RubricError
from spatial_mllm_ros.reward.labels import EpisodeResult
from spatial_mllm_ros.reward.outputs import atomic_write_text
from spatial_mllm_ros.reward.rubric import Check, Rubric
from spatial_mllm_ros.reward.scores import auc

MISSING = object()
EVAL_NAME = "eval.json"  # the graded figures, written beside the labels they grade
AUC_CHANCE = 0.5  # a reward that ignores the episode separates nothing
VOC_CHANCE = 0.0  # progress that ignores the frame order (constant or shuffled)
Interval = tuple[float, float]


def lookup(labels: dict[str, Any], path: str) -> Any:
    """Value at a dotted path in nested dicts (MISSING when absent)."""
    node: Any = labels
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node


@dataclass(frozen=True)
class Figure:
    """One graded figure as reported: value, 95 % interval, the bar beside it and what it counts."""

    key: str  # its field in RewardEvaluation / eval.json
    name: str
    value: float | None
    ci95: Interval | None
    bar: float | None = None
    bar_name: str = ""
    n: str = ""
    digits: int = 3


@dataclass(frozen=True)
class Target:
    """A level a figure must reach, with its 95 % interval wholly above the figure's bar.

    The bar is chance or the best constant answer: a figure level with it is not a result, whatever its
    value (at the pick-and-place set always answering "no" agrees with 93 % of the direction labels).
    """

    minimum: float | None = None

    def met(self, figure: Figure) -> bool:
        """Whether the figure reaches it (a figure with nothing graded does not)."""
        if figure.value is None or (self.minimum is not None and figure.value < self.minimum):
            return False
        return figure.bar is None or (figure.ci95 is not None and figure.ci95[0] > figure.bar)

    def __str__(self) -> str:
        return "above bar" if self.minimum is None else f">= {self.minimum:g}, above bar"


# What rewards that tell success from failure must reach (docs/annotator.md, "Grading").
REWARD_TARGETS: dict[str, Target] = {
    "auc": Target(0.9),
    "voc_success": Target(0.8),
    "voc_gap": Target(),  # successes' VOC clearly above the failures'
    "direction_agreement": Target(0.9),
}


@dataclass
class RewardEvaluation:
    """Annotation quality against truth, each figure with its 95 % interval; None where nothing was graded.

    The bars beside the figures: chance for the AUC and VOC, and the best constant answer (always the
    commonest true answer; always the median true distance) for direction agreement and distance error.
    """

    episodes: int = 0
    direction_agreement: float | None = None
    direction_agreement_ci95: Interval | None = None
    direction_baseline: float | None = None
    direction_n: int = 0
    # true answer -> [labels agreeing, labels]: shows a model that gives the commonest answer to everything
    direction_by_truth: dict[str, list[int]] = field(default_factory=dict)
    distance_mae_mm: float | None = None
    distance_mae_mm_ci95: Interval | None = None
    distance_baseline_mae_mm: float | None = None
    distance_rel_error: float | None = None
    distance_rel_error_ci95: Interval | None = None
    distance_n: int = 0
    voc_success: float | None = None
    voc_success_ci95: Interval | None = None
    voc_failure: float | None = None
    voc_failure_ci95: Interval | None = None
    voc_gap: float | None = None  # successes' mean VOC minus the failures'
    voc_gap_ci95: Interval | None = None
    voc_chance: float = VOC_CHANCE
    auc: float | None = None
    auc_ci95: Interval | None = None
    auc_chance: float = AUC_CHANCE
    n_success: int = 0
    n_failure: int = 0
    per_episode: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> str:
        """Indented JSON of every figure."""
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RewardEvaluation:
        """Read to_json()'s figures back (an eval.json, a saved run) to print or compare them."""
        return cls(**{k: tuple(v) if k.endswith("_ci95") and v is not None else v for k, v in data.items()})

    def figures(self) -> list[Figure]:
        """List the figures in report order, each with its interval and bar."""
        episodes = f"{self.n_success}+{self.n_failure} episodes"
        return [
            Figure("auc", "success/failure AUC", self.auc, self.auc_ci95, self.auc_chance, "chance",
                   episodes),
            Figure("voc_success", "VOC, successes", self.voc_success, self.voc_success_ci95, self.voc_chance,
                   "chance", f"{self.n_success} episodes"),
            Figure("voc_failure", "VOC, failures", self.voc_failure, self.voc_failure_ci95, self.voc_chance,
                   "chance", f"{self.n_failure} episodes"),
            Figure("voc_gap", "VOC gap (successes - failures)", self.voc_gap, self.voc_gap_ci95,
                   self.voc_chance, "chance", episodes),
            Figure("direction_agreement", "direction agreement", self.direction_agreement,
                   self.direction_agreement_ci95, self.direction_baseline, "commonest truth",
                   f"{self.direction_n} labels"),
            Figure("distance_mae_mm", "distance error, mm", self.distance_mae_mm, self.distance_mae_mm_ci95,
                   self.distance_baseline_mae_mm, "median truth", f"{self.distance_n} labels", 1),
            Figure("distance_rel_error", "distance error, relative", self.distance_rel_error,
                   self.distance_rel_error_ci95, n=f"{self.distance_n} labels"),
        ]


def _number(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_figures(ev: RewardEvaluation, targets: Mapping[str, Target] | None = None) -> str:
    """Format the figures as a table: value, 95 % interval, chance or baseline, n (and targets, misses)."""
    head = f"{'figure':<32}{'value':>8}  {'95 % interval':<18}{'chance / baseline':<24}{'n':<17}"
    lines = [head + ("target" if targets else "")]
    for f in ev.figures():
        interval = "n/a" if f.ci95 is None else "[{}, {}]".format(*(_number(v, f.digits) for v in f.ci95))
        bar = "" if f.bar is None else f"{_number(f.bar, f.digits)} {f.bar_name}"
        line = f"{f.name:<32}{_number(f.value, f.digits):>8}  {interval:<18}{bar:<24}{f.n:<17}"
        if targets and f.key in targets:
            line += f"{targets[f.key]}  {'met' if targets[f.key].met(f) else 'MISSED'}"
        lines.append(line.rstrip())
    if ev.direction_by_truth:
        split = ", ".join(f"{truth} {got}/{n}" for truth, (got, n) in sorted(ev.direction_by_truth.items()))
        lines.append(f"direction agreement by true answer: {split}")
    if targets:
        short = missed(ev, targets)
        lines.append(f"MISSED: {', '.join(short)}" if short else "every target met")
    return "\n".join(lines)


def missed(ev: RewardEvaluation, targets: Mapping[str, Target] = REWARD_TARGETS) -> list[str]:
    """Names of the figures that do not reach their target."""
    return [f.name for f in ev.figures() if f.key in targets and not targets[f.key].met(f)]


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
    truth_answers: list[str] = []
    abs_err: list[float] = []
    rel_err: list[float] = []
    truth_mm: list[float] = []
    voc: dict[bool, list[float]] = {True: [], False: []}
    reward: dict[bool, list[float]] = {True: [], False: []}
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
                    truth_answers.append(truth)
            elif check.type == "metric":
                true_mm = lookup(r.truth, check.truth) if step_value is MISSING else step_value
                if isinstance(true_mm, (int, float)) and isinstance(value, (int, float)):
                    abs_err.append(abs(value - true_mm))
                    rel_err.append(abs(value - true_mm) / max(abs(true_mm), 1.0))
                    truth_mm.append(float(true_mm))
        success = lookup(r.truth, success_key)
        if isinstance(success, bool):
            reward[success].append(r.reward)
            if r.voc is not None:
                voc[success].append(r.voc)
        ev.per_episode.append({"bag": r.bag, "episode": r.episode, "reward": r.reward, "voc": r.voc,
                               "success": success if isinstance(success, bool) else None})
    _direction(ev, agree, truth_answers)
    _distance(ev, abs_err, rel_err, truth_mm)
    _separation(ev, voc, reward)
    return ev


def _direction(ev: RewardEvaluation, agree: list[bool], truths: list[str]) -> None:
    """Agreement with its Wilson interval; bar: always giving the commonest true answer."""
    ev.direction_n = len(agree)
    if not agree:
        return
    ev.direction_agreement = float(np.mean(agree))
    low, high = wilson_interval(sum(agree), len(agree))
    ev.direction_agreement_ci95 = (low / 100, high / 100)
    ev.direction_baseline = Counter(truths).most_common(1)[0][1] / len(truths)
    for truth, right in zip(truths, agree):
        counts = ev.direction_by_truth.setdefault(truth, [0, 0])
        counts[0] += int(right)
        counts[1] += 1


def _distance(
    ev: RewardEvaluation, abs_err: list[float], rel_err: list[float], truth_mm: list[float],
) -> None:
    """Mean absolute and relative error with bootstrap intervals; bar: always the median true distance."""
    ev.distance_n = len(abs_err)
    if not abs_err:
        return
    ev.distance_mae_mm, ev.distance_mae_mm_ci95 = float(np.mean(abs_err)), mean_interval(abs_err)
    ev.distance_rel_error, ev.distance_rel_error_ci95 = float(np.mean(rel_err)), mean_interval(rel_err)
    ev.distance_baseline_mae_mm = float(np.mean(np.abs(np.asarray(truth_mm) - np.median(truth_mm))))


def _separation(ev: RewardEvaluation, voc: dict[bool, list[float]], reward: dict[bool, list[float]]) -> None:
    """VOC of successes and failures, their gap, and the AUC, with intervals bootstrapped over episodes."""
    ev.n_success, ev.n_failure = len(reward[True]), len(reward[False])
    if voc[True]:
        ev.voc_success, ev.voc_success_ci95 = float(np.mean(voc[True])), mean_interval(voc[True])
    if voc[False]:
        ev.voc_failure, ev.voc_failure_ci95 = float(np.mean(voc[False])), mean_interval(voc[False])
    if voc[True] and voc[False]:
        ev.voc_gap = float(np.mean(voc[True]) - np.mean(voc[False]))
        ev.voc_gap_ci95 = bootstrap_interval(lambda s, f: float(s.mean() - f.mean()), voc[True], voc[False])
    ev.auc = auc(reward[True], reward[False])
    if ev.auc is not None:
        ev.auc_ci95 = bootstrap_interval(auc, reward[True], reward[False])


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


def annotate_and_grade(
    bags: Sequence[str | Path], config: AnnotateConfig, out: str | Path, show_progress: bool = False,
) -> tuple[AnnotateSummary, RewardEvaluation]:
    """Annotate sim bags into `out` and grade the labels against their markers (eval.json beside them).

    A bag that fails to annotate is an error here: its episodes would otherwise drop out of the grade.
    """
    out = Path(out)
    summary = annotate_to_dir(bags, config, out, show_progress=show_progress)
    if summary.failed:
        raise RewardError(f"annotating {summary.failed[0].bag} failed: {summary.failed[0].error}")
    evaluation = evaluate_dir(out, config.rubric)
    atomic_write_text(out / EVAL_NAME, evaluation.to_json())
    return summary, evaluation
