"""The end-to-end demo: the live simulation and the spatial node on DDS, answers beside the truth.

Scripted gripper moves, questions over each move's frames beside the simulation's truth; then recorded
bags, reward labels of a gripper rubric and an object rubric, and their grades
(spatial_mllm_ros.demo.offline).

The live stage runs in one process under executors, as `spatial-mllm bringup --sim` does, in its own DDS
domain on loopback. The simulation spins in this thread (its GL context belongs here) and only while a
move plays: while questions are answered it is paused, so every question's frames end right after its
move and span it, with still frames on both sides.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import rclpy
from rclpy.context import Context
from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.logging import LoggingSeverity, set_logger_level
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import Image
from std_msgs.msg import String

from spatial_mllm_ros.demo.errors import LiveStageError
from spatial_mllm_ros.demo.offline import EXAMPLE_RUBRIC, OfflineResult, run_object_offline, run_offline
from spatial_mllm_ros.demo.script import (
    DEMO_CAMERA,
    LiveRow,
    Move,
    check_moves,
    demo_moves,
    find_demo_seed,
    format_header,
    format_move,
    format_row,
    question_json,
    resolve_checkpoint,
    row_from_answer,
    summarize,
)
from spatial_mllm_ros.images import image_to_numpy
from spatial_mllm_ros.ros.bringup import default_params_file
from spatial_mllm_ros.ros.sim_node import MARKER_QOS, SimNode
from spatial_mllm_ros.ros.sim_node import NODE_NAME as SIM_NODE_NAME
from spatial_mllm_ros.ros.spatial_node import NODE_NAME, TEXT_QOS, SpatialNode
from spatial_mllm_ros.sim.node_config import SimNodeConfig
from spatial_mllm_ros.sim.topics import EPISODE_TOPIC, image_topic

RATE_HZ = 10.0
MOVE_FRAMES = 16  # frames per scripted move (1.5 s of sim time at 10 Hz)
PAD_FRAMES = 3  # still frames published after a move before its questions
QUESTION_FRAMES = 2
START_TIMEOUT_S = 120.0
MOVE_TIMEOUT_S = 120.0
ANSWER_TIMEOUT_S = 300.0


def move_span_s(frames: int = MOVE_FRAMES, pad: int = PAD_FRAMES, rate_hz: float = RATE_HZ) -> float:
    """span_s of a move's questions: from the move's first frame to the newest (padded) one."""
    return (frames - 1 + pad) / rate_hz


@dataclass
class DemoOptions:
    """What the demo runs and where it writes; the defaults are `make demo`'s."""

    out: Path = Path("demo_out")
    checkpoint: str = ""  # "": the shipped SpatialMLLM-tiny (model.default_checkpoint())
    device: str = "auto"
    domain_id: int | None = None  # None: a domain of this process (pid based), never the user's default
    rubric: Path = EXAMPLE_RUBRIC
    realtime_factor: float = 2.0
    width: int = 320
    height: int = 240
    moves: tuple[Move, ...] | None = None  # None: demo_moves() for the chosen scene
    offline: bool = True  # also record a bag, annotate and grade it
    object_rubric: bool = True  # with offline: also label pushes and failed grasps with an object rubric
    progress: bool = True
    answer_images: bool = True  # save the node's ~/answer_image per question under out/answers/


@dataclass
class DemoResult:
    """Everything the demo measured, and where its outputs are."""

    seed: int
    rows: list[LiveRow]
    summary: dict[str, Any]
    out: Path
    live_wall_s: float
    offline: OfflineResult | None = None
    offline_wall_s: float = 0.0
    files: dict[str, Path] = field(default_factory=dict)
    object_offline: OfflineResult | None = None
    object_wall_s: float = 0.0


class DemoClient(Node):
    """Asks the spatial node over DDS, collects its answers, answer images and the sim's /episode markers."""

    def __init__(self, context: Context, node: str = NODE_NAME) -> None:
        super().__init__("spatial_mllm_demo", context=context)
        self._cond = threading.Condition()
        self.answers: dict[str, dict[str, Any]] = {}
        self.markers: list[dict[str, Any]] = []
        self.answer_images: list[Image] = []
        self._images_taken = 0
        self.questions = self.create_publisher(String, f"/{node}/question", TEXT_QOS)
        self.create_subscription(String, f"/{node}/answer", self._on_answer, TEXT_QOS)
        self.create_subscription(Image, f"/{node}/answer_image", self._on_answer_image, 10)
        self.create_subscription(String, EPISODE_TOPIC, self._on_marker, MARKER_QOS)

    def _on_answer(self, msg: String) -> None:
        answer = json.loads(msg.data)
        with self._cond:
            self.answers[str(answer.get("id"))] = answer
            self._cond.notify_all()

    def _on_answer_image(self, msg: Image) -> None:
        with self._cond:
            self.answer_images.append(msg)
            self._cond.notify_all()

    def _on_marker(self, msg: String) -> None:
        with self._cond:
            self.markers.append(json.loads(msg.data))
            self._cond.notify_all()

    def end_marker(self, episode: int) -> dict[str, Any] | None:
        """Return the /episode end marker of episode `episode` once it arrived (else None)."""
        with self._cond:
            ends = (m for m in self.markers if m.get("event") == "end")
            return next((m for m in ends if m.get("episode") == episode), None)

    def ask(self, text: str, qid: str, timeout_s: float) -> dict[str, Any]:
        """Publish one question and wait for its answer (LiveStageError when none comes)."""
        self.questions.publish(String(data=text))
        with self._cond:
            if not self._cond.wait_for(lambda: qid in self.answers, timeout=timeout_s):
                raise LiveStageError(f"no answer to question {qid} within {timeout_s:g} s")
            return self.answers[qid]

    def next_image(self, timeout_s: float) -> Image | None:
        """Take the next answer image (they come in answer order), or None after the timeout."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.answer_images) > self._images_taken, timeout_s):
                return None
            self._images_taken += 1
            return self.answer_images[self._images_taken - 1]


def _pump(executor: SingleThreadedExecutor, until: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Spin the simulation until `until()` holds; LiveStageError naming `what` after the timeout."""
    deadline = time.monotonic() + timeout_s
    while not until():
        if time.monotonic() > deadline:
            raise LiveStageError(f"timed out after {timeout_s:g} s waiting for {what}")
        executor.spin_once(timeout_sec=0.02)


class LiveDemo:
    """The live stage: both nodes and the client in one DDS domain; plays moves and asks about them."""

    def __init__(self, options: DemoOptions, checkpoint: Path, sim_config: SimNodeConfig) -> None:
        self.options = options
        os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # read when DDS starts
        domain = options.domain_id if options.domain_id is not None else os.getpid() % 100 + 1
        self.context = Context()
        # Ctrl-C stays a KeyboardInterrupt in this thread, so the nodes are closed on the way out
        rclpy.init(context=self.context, domain_id=domain, signal_handler_options=SignalHandlerOptions.NO)
        self.sim: SimNode | None = None
        self.sim_executor: SingleThreadedExecutor | None = None
        self.spatial: SpatialNode | None = None
        self.client: DemoClient | None = None
        self._nodes_executor: MultiThreadedExecutor | None = None
        self._thread: threading.Thread | None = None
        try:
            self._start(checkpoint, sim_config)
        except BaseException:
            self.close()
            raise

    def _start(self, checkpoint: Path, sim_config: SimNodeConfig) -> None:
        ctx = self.context
        for name, level in ((SIM_NODE_NAME, LoggingSeverity.WARN), (NODE_NAME, LoggingSeverity.ERROR)):
            set_logger_level(name, level)  # the table is the output; the nodes speak up only when it matters
        self.sim = SimNode(sim_config, context=ctx)
        self.sim_executor = SingleThreadedExecutor(context=ctx)
        self.sim_executor.add_node(self.sim)
        args = ["--ros-args", "--params-file", str(default_params_file()),
                "-r", f"image:={image_topic(DEMO_CAMERA)}"]
        self.spatial = SpatialNode(context=ctx, cli_args=args, parameter_overrides=[
            Parameter("use_sim_time", value=True),
            Parameter("model.checkpoint", value=str(checkpoint)),
            Parameter("model.device", value=self.options.device),
            Parameter("frames", value=QUESTION_FRAMES),
            Parameter("publish_answer_image", value=self.options.answer_images),
        ])
        self.spatial.autostart()  # loads the model (blocking)
        if self.spatial.model is None:
            raise LiveStageError(f"the spatial node could not load {checkpoint}: "
                                 f"{self.spatial.service.stats().model_state}")
        self.client = DemoClient(ctx)
        self._nodes_executor = MultiThreadedExecutor(num_threads=4, context=ctx)
        self._nodes_executor.add_node(self.spatial)
        self._nodes_executor.add_node(self.client)
        self._thread = threading.Thread(target=self._nodes_executor.spin, name="demo-nodes", daemon=True)
        self._thread.start()
        camera = image_topic(DEMO_CAMERA)
        _pump(self.sim_executor, lambda: (self.spatial.service.buffer.latest(camera) is not None
                                          and self.client.questions.get_subscription_count() > 0
                                          and self.sim.frames_published > PAD_FRAMES),
              START_TIMEOUT_S, f"the spatial node to receive {camera} and the question topic to connect")

    def _frames_delivered(self) -> bool:
        """Whether the spatial node holds the newest frame the (paused) simulation published."""
        newest = self.spatial.service.buffer.latest(image_topic(DEMO_CAMERA))
        last_ns = round((self.sim.sim_time_s - 1.0 / self.sim.config.rate_hz) * 1e9)
        return newest is not None and abs(newest.stamp_ns - last_ns) < 1e6

    def play(self, index: int, move: Move) -> dict[str, Any]:
        """Play `move` as scripted episode `index`, pad with still frames, pause; return its marker labels."""
        self.sim.play_script(move.script)  # one scripted episode, then the gripper holds still
        _pump(self.sim_executor, lambda: self.client.end_marker(index) is not None, MOVE_TIMEOUT_S,
              f"move {move.label!r} ({move.script}) to finish: see the simulation's log")
        target = self.sim.frames_published + PAD_FRAMES
        _pump(self.sim_executor, lambda: self.sim.frames_published >= target, MOVE_TIMEOUT_S, "still frames")
        deadline = time.monotonic() + 2.0  # padding covers a frame lost on the way; do not wait for ever
        while not self._frames_delivered() and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.client.end_marker(index)["labels"]

    def ask(self, index: int, move: Move, labels: dict[str, Any], images: Path | None) -> list[LiveRow]:
        """Ask every probe of `move` (one at a time: latency without queueing) and judge the answers."""
        rows = []
        for j, probe in enumerate(move.probes):
            qid = f"move{index}-q{j}"
            answer = self.client.ask(question_json(probe, qid, QUESTION_FRAMES, move_span_s()), qid,
                                     ANSWER_TIMEOUT_S)
            rows.append(row_from_answer(move, probe, answer, labels))
            if images is not None and answer.get("frame_stamps"):  # the frames used, drawn by the node
                msg = self.client.next_image(2.0)
                if msg is not None:
                    rgb = image_to_numpy(msg).rgb
                    cv2.imwrite(str(images / f"{qid}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        return rows

    def close(self) -> None:
        """Stop the worker, free the model and the renderer, destroy the nodes, leave the DDS domain."""
        if self.spatial is not None:
            self.spatial.close()
        if self._nodes_executor is not None:
            self._nodes_executor.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.sim_executor is not None:
            self.sim_executor.shutdown()
        for node in (self.client, self.spatial, self.sim):
            if node is not None:
                node.destroy_node()
        self.client = self.spatial = self.sim = None
        rclpy.try_shutdown(context=self.context)


def run_demo(options: DemoOptions, say: Callable[[str], None] = print) -> DemoResult:
    """Run the whole demo; `say` prints table rows and stage lines (the progress bar stays below them)."""
    from tqdm import tqdm

    started = time.monotonic()
    checkpoint = resolve_checkpoint(options.checkpoint)
    out = Path(options.out)
    images = out / "answers" if options.answer_images else None
    for d in (out, images):
        if d is not None:
            d.mkdir(parents=True, exist_ok=True)
    sim_config = SimNodeConfig(rate_hz=RATE_HZ, realtime_factor=options.realtime_factor, n_objects=3,
                               width=options.width, height=options.height, cameras=[DEMO_CAMERA],
                               script="", script_loop=False, script_frames=MOVE_FRAMES)
    seed, push_direction = find_demo_seed(sim_config)
    sim_config.seed = seed
    moves = options.moves if options.moves is not None else demo_moves(push_direction)
    check_moves(moves)
    steps = len(moves) + 2 + (2 + options.object_rubric if options.offline else 0)
    bar = tqdm(total=steps, desc="demo: starting the nodes", unit="step",
               disable=None if options.progress else True,  # None: only on a terminal
               bar_format="{desc} |{bar}| {n_fmt}/{total_fmt} [{elapsed}]")
    rows: list[LiveRow] = []
    try:
        live = LiveDemo(options, checkpoint, sim_config)
        bar.update(1)
        try:
            model = live.spatial.model
            expert = f" + shift expert for unfamiliar frames ({model.expert.name})" if model.expert else ""
            say(f"scene seed {seed}; model {model.name} ({model.backend}, {model.device}){expert}; "
                f"{QUESTION_FRAMES} frames per question over "
                f"{move_span_s():.1f} s of sim time, camera '{DEMO_CAMERA}'")
            say(format_header())
            for k, move in enumerate(moves):
                bar.set_description(f"demo: move {k + 1}/{len(moves)} {move.label}")
                say(format_move(k, len(moves), move))
                labels = live.play(k, move)
                for row in live.ask(k, move, labels, images):
                    rows.append(row)
                    say(format_row(row))
                bar.update(1)
        finally:
            bar.set_description("demo: stopping the nodes")
            live.close()
        bar.update(1)
        live_wall = time.monotonic() - started
        summary = summarize(rows)
        files = {"answers (jsonl)": out / "live_answers.jsonl"}
        files["answers (jsonl)"].write_text("".join(r.to_json() + "\n" for r in rows))
        if images is not None:
            files["answer images"] = images
        offline = object_offline = None
        offline_started = object_started = time.monotonic()
        show = options.progress and sys.stderr.isatty()
        if options.offline:
            bar.set_description("demo: recording the bag and annotating it")
            bar.update(1)
            offline = run_offline(out, checkpoint, options.rubric, seed=seed, fps=RATE_HZ,
                                  device=options.device, show_progress=show)
            bar.update(1)
            files.update(offline.outputs)
            object_started = time.monotonic()
            if options.object_rubric:
                bar.set_description("demo: labelling pushes and failed grasps with the object rubric")
                object_offline = run_object_offline(out, checkpoint, options.device, show_progress=show)
                bar.update(1)
                files.update(object_offline.outputs)
        bar.set_description("demo: done")
    finally:
        bar.close()
    object_wall = time.monotonic() - object_started
    result = DemoResult(seed, rows, summary, out, live_wall, offline, object_started - offline_started, files,
                        object_offline, object_wall)
    (out / "summary.json").write_text(json.dumps({
        "seed": seed, "live": summary, "live_wall_s": round(live_wall, 1),
        "offline_wall_s": round(result.offline_wall_s, 1),
        "annotator": json.loads(offline.evaluation.to_json()) if offline else None,
        "object_wall_s": round(result.object_wall_s, 1),
        "object_annotator": json.loads(object_offline.evaluation.to_json()) if object_offline else None,
        "files": {k: str(v) for k, v in files.items()},
    }, indent=2))
    return result
