"""Episodes to rosbag2 (mcap or sqlite3) through rosbags: images, camera info, poses, joints, markers."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from spatial_mllm_ros.images import fill_image
from spatial_mllm_ros.sim.errors import RecordError
from spatial_mllm_ros.sim.topics import (
    EPISODE_TOPIC,
    GRIPPER_JOINTS,
    GRIPPER_JOINTS_TOPIC,
    GRIPPER_POSE_TOPIC,
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
    tf_poses,
    to_json,
)
from spatial_mllm_ros.sim.truth import Episode

STORAGES: dict[str, StoragePlugin] = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
COMPRESSED_FORMATS = ("jpeg", "png")
FIRST_STAMP_NS = 1_000_000_000  # bags start at 1 s: some tools treat a zero stamp as "unset"
EPISODE_GAP_NS = 1_000_000_000  # quiet time between episodes in one bag


class EpisodeRecorder:
    """Writes episodes one after another into one rosbag2; use as a context manager."""

    def __init__(
        self,
        path: str | Path,
        storage: str = "mcap",
        compressed: bool = False,
        compressed_format: str = "jpeg",
        jpeg_quality: int = 90,
        depth: bool = False,
    ) -> None:
        self.path = Path(path)
        if storage not in STORAGES:
            raise RecordError(f"unknown storage {storage!r}; choose one of {', '.join(STORAGES)}")
        if compressed_format not in COMPRESSED_FORMATS:
            raise RecordError(f"unknown compressed format {compressed_format!r}; choose {COMPRESSED_FORMATS}")
        if self.path.exists():
            raise RecordError(f"{self.path} already exists: rosbag2 writes a new directory")
        if not self.path.parent.is_dir():
            raise RecordError(f"parent directory {self.path.parent} does not exist")
        self.storage, self.compressed, self.depth = storage, compressed, depth
        self.compressed_format, self.jpeg_quality = compressed_format, jpeg_quality
        self.typestore = get_typestore(Stores.ROS2_JAZZY)
        self._writer: Writer | None = None
        self._connections: dict[str, Any] = {}
        self._next_ns = FIRST_STAMP_NS
        self.n_episodes = 0
        self.n_messages = 0

    def __enter__(self) -> EpisodeRecorder:
        self._writer = Writer(self.path, version=9, storage_plugin=STORAGES[self.storage])
        self._writer.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Finish the bag (writes metadata.yaml); safe to call twice."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # --- messages ------------------------------------------------------------------------------------
    def _msg(self, msgtype: str, /, **fields: Any) -> Any:
        return self.typestore.types[msgtype](**fields)

    def _header(self, stamp_ns: int, frame_id: str) -> Any:
        stamp = self._msg("builtin_interfaces/msg/Time", sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
        return self._msg("std_msgs/msg/Header", stamp=stamp, frame_id=frame_id)

    def _write(self, topic: str, msgtype: str, stamp_ns: int, msg: Any) -> None:
        if self._writer is None:
            raise RecordError("the recorder is not open: use it as a context manager")
        conn = self._connections.get(topic)
        if conn is None:
            conn = self._connections[topic] = self._writer.add_connection(
                topic, msgtype, typestore=self.typestore
            )
        self._writer.write(conn, stamp_ns, self.typestore.serialize_cdr(msg, msgtype))
        self.n_messages += 1

    def _pose(self, pose7: np.ndarray, stamp_ns: int) -> Any:
        v = pose_values(pose7)
        p = self._msg("geometry_msgs/msg/Point", **v["position"])
        q = self._msg("geometry_msgs/msg/Quaternion", **v["orientation"])
        return self._msg(
            "geometry_msgs/msg/PoseStamped",
            header=self._header(stamp_ns, WORLD_FRAME),
            pose=self._msg("geometry_msgs/msg/Pose", position=p, orientation=q),
        )

    def _tf(self, frames: dict[str, np.ndarray], stamp_ns: int) -> Any:
        """One TFMessage: world -> each frame at this instant ([x, y, z, qw, qx, qy, qz] poses)."""
        transforms = []
        for child, pose7 in frames.items():
            v = pose_values(pose7)
            transforms.append(self._msg(
                "geometry_msgs/msg/TransformStamped",
                header=self._header(stamp_ns, WORLD_FRAME),
                child_frame_id=child,
                transform=self._msg(
                    "geometry_msgs/msg/Transform",
                    translation=self._msg("geometry_msgs/msg/Vector3", **v["position"]),
                    rotation=self._msg("geometry_msgs/msg/Quaternion", **v["orientation"]),
                ),
            ))
        return self._msg("tf2_msgs/msg/TFMessage", transforms=transforms)

    def _camera_info(self, k: np.ndarray, width: int, height: int, stamp_ns: int, frame_id: str) -> Any:
        v = camera_info_values(k, width, height)
        roi = self._msg(
            "sensor_msgs/msg/RegionOfInterest", x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
        )
        arrays = {key: np.array(v[key], float) for key in ("d", "k", "r", "p")}
        return self._msg(
            "sensor_msgs/msg/CameraInfo",
            header=self._header(stamp_ns, frame_id),
            height=v["height"],
            width=v["width"],
            distortion_model=v["distortion_model"],
            binning_x=0,
            binning_y=0,
            roi=roi,
            **arrays,
        )

    def _image(self, pixels: np.ndarray, encoding: str, stamp_ns: int, frame_id: str) -> Any:
        msg = self._msg(
            "sensor_msgs/msg/Image",
            header=self._header(stamp_ns, frame_id),
            height=0,
            width=0,
            encoding="",
            is_bigendian=0,
            step=0,
            data=np.zeros(0, np.uint8),
        )
        return fill_image(msg, pixels, encoding)

    def _joints(self, gripper7: np.ndarray, opening: float, stamp_ns: int) -> Any:
        return self._msg(
            "sensor_msgs/msg/JointState",
            header=self._header(stamp_ns, WORLD_FRAME),
            name=list(GRIPPER_JOINTS),
            position=np.array(joint_positions(gripper7, opening)),
            velocity=np.zeros(0),
            effort=np.zeros(0),
        )

    def _marker(self, payload: dict[str, Any], stamp_ns: int) -> None:
        self._write(
            EPISODE_TOPIC,
            "std_msgs/msg/String",
            stamp_ns,
            self._msg("std_msgs/msg/String", data=to_json(payload)),
        )

    # --- episodes ------------------------------------------------------------------------------------
    def write(self, episode: Episode) -> int:
        """Append one episode (stamps continue after the previous one); returns its index in the bag."""
        index = self.n_episodes
        offset = self._next_ns - int(episode.stamps_ns[0])
        stamps = [int(s) + offset for s in episode.stamps_ns]
        self._marker(episode_marker(episode, index, "start", offset), stamps[0])
        for i, stamp in enumerate(stamps):
            self._write_frame(episode, i, stamp)
        self._marker(episode_marker(episode, index, "end", offset), stamps[-1])
        self._next_ns = stamps[-1] + EPISODE_GAP_NS
        self.n_episodes += 1
        return index

    def _write_frame(self, episode: Episode, i: int, stamp: int) -> None:
        for cam, track in episode.cameras.items():
            frame_id = optical_frame(cam)
            h, w = track.rgb.shape[1:3]
            if self.compressed:
                fmt, data = encode_compressed(track.rgb[i], self.compressed_format, self.jpeg_quality)
                msg = self._msg(
                    "sensor_msgs/msg/CompressedImage",
                    header=self._header(stamp, frame_id),
                    format=fmt,
                    data=data,
                )
                self._write(image_topic(cam, True), "sensor_msgs/msg/CompressedImage", stamp, msg)
            else:
                self._write(
                    image_topic(cam),
                    "sensor_msgs/msg/Image",
                    stamp,
                    self._image(track.rgb[i], "rgb8", stamp, frame_id),
                )
            if self.depth and track.depth is not None:
                self._write(
                    depth_topic(cam),
                    "sensor_msgs/msg/Image",
                    stamp,
                    self._image(track.depth[i], "32FC1", stamp, frame_id),
                )
            self._write(
                camera_info_topic(cam),
                "sensor_msgs/msg/CameraInfo",
                stamp,
                self._camera_info(track.K, w, h, stamp, frame_id),
            )
            t = track.T_world_cam[i]
            self._write(
                camera_pose_topic(cam),
                "geometry_msgs/msg/PoseStamped",
                stamp,
                self._pose(pose7_of(t), stamp),
            )
        self._write(
            GRIPPER_POSE_TOPIC,
            "geometry_msgs/msg/PoseStamped",
            stamp,
            self._pose(episode.gripper_poses[i], stamp),
        )
        self._write(
            GRIPPER_JOINTS_TOPIC,
            "sensor_msgs/msg/JointState",
            stamp,
            self._joints(episode.gripper_poses[i], float(episode.gripper_opening[i]), stamp),
        )
        for name, poses in episode.object_poses.items():
            self._write(
                object_topic(name), "geometry_msgs/msg/PoseStamped", stamp, self._pose(poses[i], stamp)
            )
        cameras = {c: track.T_world_cam[i] for c, track in episode.cameras.items()}
        objects = {n: poses[i] for n, poses in episode.object_poses.items()}
        frames = tf_poses(cameras, episode.gripper_poses[i], objects)
        self._write(TF_TOPIC, "tf2_msgs/msg/TFMessage", stamp, self._tf(frames, stamp))


def record_episodes(
    episodes: Iterable[Episode],
    out_dir: str | Path,
    storage: str = "mcap",
    compressed: bool = False,
    **options: Any,
) -> Path:
    """Write episodes into a new rosbag2 directory `out_dir`; returns its path.

    Options: compressed_format ("jpeg" | "png"), jpeg_quality, depth (also write 32FC1 depth images).
    """
    with EpisodeRecorder(out_dir, storage, compressed, **options) as rec:
        for episode in episodes:
            rec.write(episode)
    return rec.path
