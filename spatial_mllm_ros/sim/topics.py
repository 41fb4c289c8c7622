"""What the simulation publishes and records: topic names, frame ids, message values (ROS-free)."""

from __future__ import annotations

import json
import re
from typing import Any

import cv2
import numpy as np

from spatial_mllm_ros.frames import Frame
from spatial_mllm_ros.sim.errors import RecordError
from spatial_mllm_ros.sim.geometry import mat_to_quat
from spatial_mllm_ros.sim.scene import Scene
from spatial_mllm_ros.sim.truth import Episode

EPISODE_TOPIC = "/episode"
CLOCK_TOPIC = "/clock"
GRIPPER_POSE_TOPIC = "/gripper/pose"
GRIPPER_JOINTS_TOPIC = "/gripper/joint_states"
GRIPPER_CMD_VEL_TOPIC = "/gripper/cmd_vel"
GRIPPER_TARGET_TOPIC = "/gripper/target"
GRIPPER_OPENING_TOPIC = "/gripper/opening"
WORLD_FRAME = "world"
GRIPPER_FRAME = "gripper"
TF_TOPIC = "/tf"  # tf2_msgs/TFMessage: world -> each camera's optical frame, the gripper, every object
# JointState of the gripper: TCP position (m), yaw (rad), each finger's inner face from the centre (m).
GRIPPER_JOINTS = ("gripper_x", "gripper_y", "gripper_z", "gripper_yaw", "finger_left", "finger_right")


def image_topic(camera: str, compressed: bool = False) -> str:
    """Topic of a camera's colour image (raw sensor_msgs/Image or its /compressed sibling)."""
    return f"/camera/{camera}/image_raw" + ("/compressed" if compressed else "")


def depth_topic(camera: str) -> str:
    """Topic of a camera's depth image (32FC1, metres)."""
    return f"/camera/{camera}/depth/image_raw"


def camera_info_topic(camera: str) -> str:
    """Topic of a camera's sensor_msgs/CameraInfo."""
    return f"/camera/{camera}/camera_info"


def camera_pose_topic(camera: str) -> str:
    """Topic of a camera's optical-frame pose in the world (geometry_msgs/PoseStamped)."""
    return f"/camera/{camera}/pose"


def object_frame(name: str) -> str:
    """TF frame of an object: "red cube" -> red_cube (ROS names have no spaces)."""
    return re.sub(r"[^0-9A-Za-z_]", "_", name.strip())


def object_topic(name: str) -> str:
    """Topic of an object's pose: "red cube" -> /objects/red_cube/pose."""
    return f"/objects/{object_frame(name)}/pose"


def optical_frame(camera: str) -> str:
    """Name the optical frame (x right, y down, z forward) of a camera, for header.frame_id."""
    return f"{camera}_camera_optical_frame"


def camera_frames(episode: Episode, camera: str) -> list[Frame]:
    """Return a camera's images as core Frames, with the topic and frame_id the sim node publishes them on."""
    frames = [episode.frame(camera, i) for i in range(episode.n_frames)]
    return [Frame(f.rgb, f.stamp_ns, optical_frame(camera), image_topic(camera), f.depth) for f in frames]


def camera_info_values(k: np.ndarray, width: int, height: int) -> dict[str, Any]:
    """CameraInfo fields of an undistorted pinhole camera (d, k, r, p as flat float lists)."""
    p = np.hstack([k, np.zeros((3, 1))])
    return {
        "width": int(width),
        "height": int(height),
        "distortion_model": "plumb_bob",
        "d": [0.0] * 5,
        "k": [float(v) for v in k.reshape(-1)],
        "r": [float(v) for v in np.eye(3).reshape(-1)],
        "p": [float(v) for v in p.reshape(-1)],
    }


def pose7_of(t_world: np.ndarray) -> np.ndarray:
    """[x, y, z, qw, qx, qy, qz] of a 4x4 pose."""
    return np.concatenate([t_world[:3, 3], mat_to_quat(t_world[:3, :3])])


def tf_poses(cameras: dict[str, np.ndarray], gripper7: np.ndarray,
             objects: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Give /tf at one instant, as a robot has it: child frame -> [x, y, z, qw, qx, qy, qz] in world.

    cameras: name -> 4x4 optical-frame pose (its frame is the images' frame_id); the gripper's TCP pose;
    objects: name -> pose ("red cube" -> frame red_cube). Cameras can move, so none of it is static.
    """
    frames = {optical_frame(cam): pose7_of(pose) for cam, pose in cameras.items()}
    frames[GRIPPER_FRAME] = gripper7
    frames.update({object_frame(name): pose7 for name, pose7 in objects.items()})
    return frames


def pose_values(pose7: np.ndarray) -> dict[str, dict[str, float]]:
    """geometry_msgs/Pose fields of [x, y, z, qw, qx, qy, qz]: {"position": {...}, "orientation": {...}}."""
    x, y, z, qw, qx, qy, qz = (float(v) for v in pose7[:7])
    return {"position": {"x": x, "y": y, "z": z}, "orientation": {"x": qx, "y": qy, "z": qz, "w": qw}}


def encode_compressed(rgb: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> tuple[str, np.ndarray]:
    """sensor_msgs/CompressedImage `format` and data for an RGB image (as image_transport writes them)."""
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if fmt == "jpeg":
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    else:
        ok, buf = cv2.imencode(".png", bgr)
    if not ok:
        raise RecordError(f"OpenCV could not encode a {rgb.shape} image as {fmt}")
    return f"rgb8; {fmt} compressed bgr8", buf.reshape(-1)


def joint_positions(gripper7: np.ndarray, opening_m: float) -> list[float]:
    """JointState positions in GRIPPER_JOINTS order from the TCP pose and the finger opening."""
    w, x, y, z = (float(v) for v in gripper7[3:7])
    yaw = float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))
    return [*(float(v) for v in gripper7[:3]), yaw, opening_m / 2, opening_m / 2]


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def to_json(payload: dict[str, Any]) -> str:
    """JSON text of a marker payload (numpy scalars and arrays become plain numbers and lists)."""
    return json.dumps(payload, default=_json_default)


def scene_summary(scene: Scene, cameras: list[str], fps: float, n_frames: int, stamp_offset_ns: int) -> dict:
    """Describe the scene for an /episode marker: seed, timing, cameras, objects and their pose topics."""
    return {
        "seed": scene.config.seed,
        "fps": fps,
        "n_frames": n_frames,
        "stamp_offset_ns": stamp_offset_ns,
        "cameras": list(cameras),
        "objects": {
            o.name: {
                "shape": o.shape,
                "colour": o.colour,
                "size_m": round(o.size_m, 5),
                "half_height_m": round(o.half_height_m, 5),
                "seg_id": o.seg_id,
                "topic": object_topic(o.name),
            }
            for o in scene.objects
        },
    }


def episode_marker(episode: Episode, index: int, event: str, stamp_offset_ns: int) -> dict[str, Any]:
    """Build an /episode marker: {"episode", "event", "labels": script labels + "truth", "scene"}.

    Bag stamps are episode.stamps_ns + stamp_offset_ns.
    """
    return {
        "episode": index,
        "event": event,
        "labels": {**episode.labels, "truth": episode.truth_summary()},
        "scene": scene_summary(
            episode.scene, list(episode.cameras), episode.fps, episode.n_frames, stamp_offset_ns
        ),
    }
