"""`spatial_mllm_sim`: the MuJoCo tabletop as a live ROS 2 camera + gripper, on simulated time.

Publishes /camera/<cam>/image_raw (or .../compressed), camera_info and pose, /gripper/pose,
/gripper/joint_states, /objects/<name>/pose, /tf (the same frames as recorded bags: world -> each camera's
optical frame, gripper, every object), /clock, /episode (scripted mode) and /diagnostics; follows
/gripper/cmd_vel (Twist, world frame), /gripper/target (PoseStamped in world or a camera's optical frame)
and /gripper/opening (Float64, metres).
"""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import (
    Point,
    Pose,
    PoseStamped,
    Quaternion,
    Transform,
    TransformStamped,
    Twist,
    Vector3,
)
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, JointState
from std_msgs.msg import Float64, Header, String

try:  # every ROS 2 install has tf2_msgs; the PyPI wheels do not (third_party/tf2_msgs builds it into a venv)
    from tf2_msgs.msg import TFMessage
except ImportError:
    TFMessage = None

from spatial_mllm_ros.ros.convert import ns_to_stamp, numpy_to_image
from spatial_mllm_ros.ros.params import declare_config
from spatial_mllm_ros.sim.errors import SimError
from spatial_mllm_ros.sim.geometry import make_pose, quat_to_mat
from spatial_mllm_ros.sim.motions import ScriptedEpisode, check_motion_spec, motion_from_spec
from spatial_mllm_ros.sim.node_config import SimNodeConfig
from spatial_mllm_ros.sim.topics import (
    CLOCK_TOPIC,
    EPISODE_TOPIC,
    GRIPPER_CMD_VEL_TOPIC,
    GRIPPER_JOINTS,
    GRIPPER_JOINTS_TOPIC,
    GRIPPER_OPENING_TOPIC,
    GRIPPER_POSE_TOPIC,
    GRIPPER_TARGET_TOPIC,
    TF_TOPIC,
    WORLD_FRAME,
    camera_info_topic,
    camera_info_values,
    camera_pose_topic,
    depth_topic,
    encode_compressed,
    episode_marker,
    image_topic,
    joint_positions,
    object_topic,
    optical_frame,
    pose7_of,
    pose_values,
    scene_summary,
    tf_poses,
    to_json,
)
from spatial_mllm_ros.sim.world import RenderedFrame, SimWorld

NODE_NAME = "spatial_mllm_sim"
QUEUE = 5
JPEG_QUALITY = 95  # OpenCV's and compressed_image_transport's default
# Episode markers are few and matter: late joiners (a recorder, the annotator) still get the recent ones.
MARKER_QOS = QoSProfile(
    depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)
TF_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)  # tf2_ros.TransformBroadcaster's


def _pose_msg(pose7: np.ndarray, stamp: Time) -> PoseStamped:
    v = pose_values(pose7)
    pose = Pose(position=Point(**v["position"]), orientation=Quaternion(**v["orientation"]))
    return PoseStamped(header=Header(stamp=stamp, frame_id=WORLD_FRAME), pose=pose)


def _transform_msg(child: str, pose7: np.ndarray, stamp: Time) -> TransformStamped:
    v = pose_values(pose7)
    transform = Transform(translation=Vector3(**v["position"]), rotation=Quaternion(**v["orientation"]))
    return TransformStamped(header=Header(stamp=stamp, frame_id=WORLD_FRAME), child_frame_id=child,
                            transform=transform)


class SimNode(Node):
    """Steps the world on a timer, publishes what its cameras see and its truth, follows gripper commands."""

    def __init__(self, config: SimNodeConfig | None = None, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.config = declare_config(
            self,
            config or SimNodeConfig(),
            read_only=[f.name for f in dataclasses.fields(SimNodeConfig)],  # read at start
        )
        c = self.config
        self._period_ns = round(1e9 / c.rate_hz)
        self._sim_ns = 0
        self._episode_index = 0
        self._script: ScriptedEpisode | None = None
        self._rng = np.random.default_rng(c.seed)
        self._last_cmd_ns = 0
        self._pubs: dict[str, Any] = {}
        self.frames_published = 0
        self._render_s = 0.0
        self._rtf_window = (time.monotonic(), 0)
        self.realtime_factor = 0.0
        self.world = SimWorld(c.scene_config())
        self.create_subscription(Twist, GRIPPER_CMD_VEL_TOPIC, self._on_cmd_vel, 10)
        self.create_subscription(PoseStamped, GRIPPER_TARGET_TOPIC, self._on_target, 10)
        self.create_subscription(Float64, GRIPPER_OPENING_TOPIC, self._on_opening, 10)
        self._diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        wall_period = 1.0 / (c.rate_hz * c.realtime_factor) if c.realtime_factor > 0 else 0.0
        self._timer = self.create_timer(wall_period, self._tick)
        self._diag_timer = self.create_timer(c.diagnostics_period_s, self._report)
        if TFMessage is None:
            self.get_logger().warning("tf2_msgs is not installed: /tf is not published (a ROS 2 install has "
                                      "it; in a venv, build third_party/tf2_msgs)")
        mode = f"script {c.script!r}" if c.script else "command (cmd_vel / target)"
        self.get_logger().info(
            f"{len(c.cameras)} cameras at {c.rate_hz:g} Hz, {c.width}x{c.height}, realtime factor target "
            f"{c.realtime_factor:g}, mode: {mode}"
        )

    @property
    def sim_time_s(self) -> float:
        """Simulated seconds published so far (the /clock time)."""
        return self._sim_ns * 1e-9

    # --- publishers --------------------------------------------------------------------------------
    def _pub(self, msg_type: type, topic: str, qos: QoSProfile | int = QUEUE) -> Any:
        pub = self._pubs.get(topic)
        if pub is None:
            pub = self._pubs[topic] = self.create_publisher(msg_type, topic, qos)
        return pub

    # --- commands ----------------------------------------------------------------------------------
    def _on_cmd_vel(self, msg: Twist) -> None:
        if self.config.script:
            return
        self._last_cmd_ns = self._sim_ns
        self.world.set_gripper_velocity((msg.linear.x, msg.linear.y, msg.linear.z), msg.angular.z)

    def _on_target(self, msg: PoseStamped) -> None:
        if self.config.script:
            return
        frame = msg.header.frame_id or WORLD_FRAME
        q = msg.pose.orientation
        pose = make_pose(
            quat_to_mat((q.w, q.x, q.y, q.z)) if (q.w or q.x or q.y or q.z) else np.eye(3),
            (msg.pose.position.x, msg.pose.position.y, msg.pose.position.z),
        )
        cams = {optical_frame(cam): cam for cam in self.config.cameras}
        if frame in cams:
            pose = self.world.extrinsics(cams[frame]) @ pose
        elif frame != WORLD_FRAME:
            self.get_logger().warning(
                f"ignored /gripper/target in frame {frame!r}: use {WORLD_FRAME!r} or one of {sorted(cams)}"
            )
            return
        yaw = float(np.arctan2(pose[1, 0], pose[0, 0]))
        try:
            self.world.set_gripper_velocity((0.0, 0.0, 0.0))
            self.world.set_gripper_target(pose[:3, 3], yaw)
        except SimError as exc:
            self.get_logger().warning(f"ignored /gripper/target: {exc}")

    def _on_opening(self, msg: Float64) -> None:
        try:
            self.world.set_gripper_opening(float(msg.data))
        except SimError as exc:
            self.get_logger().warning(f"ignored /gripper/opening: {exc}")

    # --- stepping ----------------------------------------------------------------------------------
    def play_script(self, spec: str) -> None:
        """Play one scripted motion (the `script` parameter's syntax) from the next tick.

        Without `script_loop` the node returns to command mode when it ends, with the gripper left where
        the script put it; the /episode end marker says when. Raises SimError for a bad spec or while
        another script runs.
        """
        if self.config.script or self._script is not None:
            raise SimError(f"a scripted episode is running ({self.config.script!r}); wait for its end marker")
        check_motion_spec(spec)  # a bad spec fails here, not in a timer callback
        self.config.script = spec

    def _start_script(self) -> None:
        c = self.config
        if self._episode_index and c.script_loop:
            self.world.close()
            self.world = SimWorld(c.scene_config(seed_offset=self._episode_index))
        motion = motion_from_spec(c.script, self.world, self._rng)
        self._script = ScriptedEpisode(
            self.world, motion, c.script_frames, c.rate_hz, depth=c.depth, seg=False, start_ns=self._sim_ns
        )
        self._publish_marker(
            {
                "episode": self._episode_index,
                "event": "start",
                "labels": self._script.plan.labels,
                "scene": scene_summary(self.world.scene, list(c.cameras), c.rate_hz, c.script_frames, 0),
            }
        )

    def _step(self) -> dict[str, RenderedFrame]:
        c = self.config
        if c.script:
            if self._script is None:
                self._start_script()
            return self._script.step()
        if self._sim_ns - self._last_cmd_ns > c.cmd_timeout_s * 1e9:
            self.world.set_gripper_velocity((0.0, 0.0, 0.0))
        self.world.step(max(1, round(self._period_ns * 1e-9 / self.world.dt)))
        return {cam: self.world.render(cam, depth=c.depth, seg=False) for cam in c.cameras}

    def _finish_script(self) -> None:
        if self._script is None or not self._script.done:
            return
        episode = self._script.episode()
        self._publish_marker(episode_marker(episode, self._episode_index, "end", 0))
        self._episode_index += 1
        self._script = None
        if not self.config.script_loop:
            self.config.script = ""  # back to command mode, the gripper stays where the script left it

    def _tick(self) -> None:
        t0 = time.perf_counter()
        try:
            frames = self._step()
        except SimError as exc:
            self.get_logger().error(f"simulation step failed: {exc}")
            self._script = None
            return
        self._render_s += time.perf_counter() - t0
        stamp = ns_to_stamp(self._sim_ns)
        if self.config.publish_clock:
            self._pub(Clock, CLOCK_TOPIC).publish(Clock(clock=stamp))
        self._publish_frames(frames, stamp)
        self._publish_state(stamp)
        self._finish_script()
        self._sim_ns += self._period_ns
        self.frames_published += 1

    def _publish_frames(self, frames: dict[str, RenderedFrame], stamp: Time) -> None:
        c = self.config
        for cam, out in frames.items():
            frame_id = optical_frame(cam)
            header = Header(stamp=stamp, frame_id=frame_id)
            if c.image_transport in ("raw", "both"):
                msg = numpy_to_image(out.rgb, 0, frame_id)
                msg.header = header
                self._pub(Image, image_topic(cam)).publish(msg)
            if c.image_transport in ("compressed", "both"):
                fmt, data = encode_compressed(out.rgb, "jpeg", JPEG_QUALITY)
                self._pub(CompressedImage, image_topic(cam, True)).publish(
                    CompressedImage(header=header, format=fmt, data=data.tobytes())
                )
            if out.depth is not None:
                msg = numpy_to_image(out.depth, 0, frame_id, encoding="32FC1")
                msg.header = header
                self._pub(Image, depth_topic(cam)).publish(msg)
            info = camera_info_values(self.world.intrinsics(cam), c.width, c.height)
            self._pub(CameraInfo, camera_info_topic(cam)).publish(CameraInfo(header=header, **info))
            self._pub(PoseStamped, camera_pose_topic(cam)).publish(
                _pose_msg(pose7_of(self.world.extrinsics(cam)), stamp)
            )

    def _publish_state(self, stamp: Time) -> None:
        gripper = self.world.gripper_pose().as_array()
        objects = {name: self.world.object_pose(name).as_array() for name in self.world.scene.object_names}
        self._pub(PoseStamped, GRIPPER_POSE_TOPIC).publish(_pose_msg(gripper, stamp))
        self._pub(JointState, GRIPPER_JOINTS_TOPIC).publish(
            JointState(
                header=Header(stamp=stamp, frame_id=WORLD_FRAME),
                name=list(GRIPPER_JOINTS),
                position=joint_positions(gripper, self.world.gripper_opening),
            )
        )
        for name, pose7 in objects.items():
            self._pub(PoseStamped, object_topic(name)).publish(_pose_msg(pose7, stamp))
        if TFMessage is not None:  # the same frames as recorded bags (sim.topics.tf_poses)
            cameras = {cam: self.world.extrinsics(cam) for cam in self.config.cameras}
            frames = tf_poses(cameras, gripper, objects)
            transforms = [_transform_msg(child, pose7, stamp) for child, pose7 in frames.items()]
            self._pub(TFMessage, TF_TOPIC, TF_QOS).publish(TFMessage(transforms=transforms))

    def _publish_marker(self, payload: dict[str, Any]) -> None:
        self._pub(String, EPISODE_TOPIC, MARKER_QOS).publish(String(data=to_json(payload)))

    # --- health ------------------------------------------------------------------------------------
    def _report(self) -> None:
        now = time.monotonic()
        start, frames = self._rtf_window
        elapsed = now - start
        sim_s = (self.frames_published - frames) * self._period_ns * 1e-9
        self.realtime_factor = sim_s / elapsed if elapsed > 0 else 0.0
        per_frame_ms = 1000 * self._render_s / max(1, self.frames_published - frames)
        self._rtf_window, self._render_s = (now, self.frames_published), 0.0
        c = self.config
        behind = c.realtime_factor > 0 and self.realtime_factor < 0.8 * c.realtime_factor
        status = DiagnosticStatus(
            level=DiagnosticStatus.WARN if behind else DiagnosticStatus.OK,
            name=f"{NODE_NAME}: simulation",
            message=("slower than the target realtime factor" if behind else "running"),
            hardware_id="mujoco",
            values=[
                KeyValue(key=k, value=str(v))
                for k, v in (
                    ("realtime_factor", f"{self.realtime_factor:.3f}"),
                    ("target_realtime_factor", c.realtime_factor),
                    ("sim_time_s", f"{self._sim_ns * 1e-9:.3f}"),
                    ("frames_published", self.frames_published),
                    ("step_render_ms", f"{per_frame_ms:.1f}"),
                    ("mode", "script" if c.script else "command"),
                    ("episode", self._episode_index),
                    ("cameras", ",".join(c.cameras)),
                )
            ],
        )
        self._diag.publish(DiagnosticArray(header=Header(stamp=ns_to_stamp(self._sim_ns)), status=[status]))
        self.get_logger().info(
            f"realtime factor {self.realtime_factor:.2f} (target {c.realtime_factor:g}), "
            f"sim time {self._sim_ns * 1e-9:.1f} s, {per_frame_ms:.1f} ms per frame",
            throttle_duration_sec=5.0,
        )

    def close(self) -> None:
        """Free the renderer (the GL context); also done by destroy_node."""
        self.world.close()

    def destroy_node(self) -> None:
        """Close the renderer, then destroy the node (launchers that only destroy nodes still free GL)."""
        self.close()
        super().destroy_node()


def main(args: Sequence[str] | None = None) -> int:
    """Entry point `spatial_mllm_sim`: run until SIGINT/SIGTERM, then shut down cleanly (exit code 0)."""
    rclpy.init(
        args=list(args) if args is not None else None,
        signal_handler_options=rclpy.signals.SignalHandlerOptions.NO,
    )
    stop: list[bool] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.append(True))
    try:
        node = SimNode()
    except Exception as exc:  # bad parameters or no GL backend: one clear line, not a traceback
        print(f"{NODE_NAME}: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 1
    try:
        while not stop and rclpy.ok():
            rclpy.spin_once(node, timeout_sec=0.05)
    finally:
        print(
            json.dumps({"frames_published": node.frames_published, "sim_time_s": round(node.sim_time_s, 3)}),
            flush=True,
        )
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
