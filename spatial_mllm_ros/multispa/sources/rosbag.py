"""A robot's own recordings (rosbag2) as scenes: camera frames posed by /tf, the gripper and objects tracked.

One scene per episode of a bag (the annotator's --split: whole, gap, marker or intervals; ids
"<bag>#<episode>"). Each image is posed at its header stamp: T_base_camera from /tf and /tf_static, looked
up and interpolated by spatial_mllm_ros.transforms, the camera's optical frame taken from the image header
(else its CameraInfo's); intrinsics come from CameraInfo and depth, when a topic is given, from a depth image
registered to the colour camera whose stamp is within the sync tolerance. The gripper frame and each object
frame become named things for the robot tasks (their motion in the first image's camera axes); the camera's
own motion relative to the base feeds the camera-movement tasks.

A frame whose camera cannot be posed is dropped ("camera pose: <why>"); a thing without a transform at a
frame is left out of the pairs with that frame ("<thing> pose: <why>"); a frame without a synchronised depth
image is kept for the pose tasks ("depth: ..."). All are counted in the run summary's dropped_frames.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spatial_mllm_ros.bags import Bag, BagError, Episode, Sampling, Split, find_bags, find_episodes
from spatial_mllm_ros.bags.errors import BagFrameError, BagReadError, MissingTopicError
from spatial_mllm_ros.bags.reader import CAMERA_INFO_MSGTYPE, IMAGE_MSGTYPES, TF_MSGTYPE, TF_TOPICS, bag_id
from spatial_mllm_ros.errors import TransformError
from spatial_mllm_ros.frames import Frame
from spatial_mllm_ros.multispa.errors import EmptySceneError, MissingFileError, MultispaError, RecordingError
from spatial_mllm_ros.multispa.sources.base import GRIPPER, Scene, Video, View, scalar_items
from spatial_mllm_ros.transforms import DEFAULT_MAX_GAP_S, TransformBuffer, normalize_frame

DEFAULT_MAX_FRAMES = 200  # frames per episode, spread evenly: bounds memory on long recordings
DEFAULT_SYNC_TOLERANCE_S = 0.02  # a depth image belongs to a colour image within this many seconds
# /tf (+ max_tf_gap_s) and depth images received this long around an episode's images are read for it
MARGIN_S = 2.0


_EPISODES: dict[tuple, list[Episode]] = {}


def bag_episodes(bag: Bag, topic: str, split: Split) -> list[Episode]:
    """find_episodes once per bag file, topic and split in this process.

    It reads every message of the image topic, and each scene of a bag (one per episode) is loaded on its
    own: without the memo a bag of E episodes is read E + 1 times. A bag changed on disk is read again.
    """
    stat = bag.path.stat()
    key = (str(bag.path.resolve()), stat.st_size, stat.st_mtime_ns, topic, split)
    if key not in _EPISODES:
        _EPISODES[key] = find_episodes(bag, topic, split)
    return _EPISODES[key]


@dataclass(frozen=True)
class RosbagConfig:
    """Which bags, topics and frames a rosbag source reads (the CLI's --image-topic, --base-frame, ...)."""

    bags: tuple[Path, ...]
    image_topic: str
    base_frame: str
    gripper_frame: str
    depth_topic: str = ""
    object_frames: tuple[str, ...] = ()
    camera_info_topic: str = ""  # default: camera_info beside the image topic (image_transport's layout)
    camera_frame: str = ""  # default: the images' header frame_id, else CameraInfo's
    split: Split = Split()
    sampling: Sampling = Sampling(count=DEFAULT_MAX_FRAMES)
    typestore: str = "jazzy"  # message types for bags without embedded definitions (Humble-era)
    max_tf_gap_s: float = DEFAULT_MAX_GAP_S
    sync_tolerance_s: float = DEFAULT_SYNC_TOLERANCE_S

    def __post_init__(self) -> None:
        object.__setattr__(self, "bags", tuple(Path(b) for b in self.bags))
        object.__setattr__(self, "object_frames", tuple(self.object_frames))
        if not self.bags:
            raise MultispaError("--source rosbag needs at least one bag (--root BAG...)")
        if not (self.image_topic and self.base_frame and self.gripper_frame):
            raise MultispaError("--source rosbag needs --image-topic, --base-frame and --gripper-frame")
        if self.max_tf_gap_s <= 0 or self.sync_tolerance_s < 0:
            raise MultispaError("--max-tf-gap must be > 0 and --sync-tolerance >= 0")

    def header(self) -> dict[str, Any]:
        """Return what a resumed run must share with this one (JSON-able)."""
        return {"bags": [str(b) for b in self.bags], "image_topic": self.image_topic,
                "base_frame": self.base_frame, "gripper_frame": self.gripper_frame,
                "depth_topic": self.depth_topic, "object_frames": list(self.object_frames),
                "camera_info_topic": self.camera_info_topic, "camera_frame": self.camera_frame,
                "split": [self.split.mode, self.split.gap_s, self.split.topic, self.split.file],
                "sampling": [self.sampling.every, self.sampling.count, self.sampling.step_s],
                "typestore": self.typestore, "max_tf_gap_s": self.max_tf_gap_s,
                "sync_tolerance_s": self.sync_tolerance_s}


def camera_info_topic_of(image_topic: str) -> str:
    """CameraInfo beside an image topic: /cam/image_raw[/compressed] -> /cam/camera_info."""
    base = image_topic.removesuffix("/compressed")
    return posixpath.join(posixpath.dirname(base), "camera_info")


def object_name(frame: str) -> str:
    """How questions name an object frame: "red_cube" -> "red cube" (as the simulation names it)."""
    return normalize_frame(frame).replace("_", " ")


@dataclass
class Recording:
    """One bag, checked: the topics it is read from, the camera's frame and intrinsics, its transforms."""

    path: Path
    image_topic: str
    camera_frame: str
    intrinsics: np.ndarray
    transforms: TransformBuffer
    refused_transforms: dict[str, int] = field(default_factory=dict)

    @classmethod
    def check(cls, bag: Bag, config: RosbagConfig, window: tuple[int, int] | None = None) -> Recording:
        """Check that the bag has every named topic and frame; the errors list what it has instead.

        window: receive times (ns) of the /tf to read (an episode's), else the whole bag's. An episode need
        not show every object frame (a scene may lack one); the camera's and the gripper's it must.
        """
        info = bag.info()
        name = str(bag.path)
        image_topic = bag.image_topic(config.image_topic)
        info_topic = config.camera_info_topic or camera_info_topic_of(image_topic)
        has_info = info.topics.get(info_topic) == CAMERA_INFO_MSGTYPE
        camera_info = bag.first_message(info_topic) if has_info else None
        if camera_info is None:
            raise MissingTopicError(name, info.topics, info_topic, "sensor_msgs/CameraInfo",
                                    "name it with --camera-info-topic")
        k = np.asarray(camera_info.k, dtype=np.float64).reshape(3, 3)
        if not (k[0, 0] > 0 and k[1, 1] > 0):
            raise BagReadError(name, f"CameraInfo on {info_topic} has no intrinsics (k[0] = {k[0, 0]}): "
                                     "calibrate the camera")
        image = bag.first_message(image_topic)
        camera_frame = normalize_frame(config.camera_frame or image.header.frame_id
                                       or camera_info.header.frame_id)
        if not camera_frame:
            raise BagReadError(name, f"images on {image_topic} and their CameraInfo carry no frame_id: name "
                                     "the camera's optical frame with --camera-frame")
        if not any(info.topics.get(t) == TF_MSGTYPE for t in TF_TOPICS):
            raise MissingTopicError(name, info.topics, "/tf", "tf2_msgs/TFMessage (nor on /tf_static)",
                                    "the camera and gripper are posed from /tf")
        if config.depth_topic:
            _check_depth(bag, config.depth_topic, camera_frame)
        transforms, refused = bag.transform_buffer(config.max_tf_gap_s, *(window or (None, None)))
        for frame in (camera_frame, config.gripper_frame, *(config.object_frames if window is None else ())):
            try:
                transforms.chain(config.base_frame, frame)
            except TransformError as exc:
                raise BagFrameError(name, str(exc)) from exc
        return cls(Path(bag.path), image_topic, camera_frame, k, transforms, dict(refused))


def _check_depth(bag: Bag, topic: str, camera_frame: str) -> None:
    """Check the depth topic holds depth images (16UC1 / 32FC1) registered to the colour camera's frame."""
    info = bag.info()
    if info.topics.get(topic) not in IMAGE_MSGTYPES or not info.counts.get(topic):
        raise MissingTopicError(str(bag.path), info.topics, topic, "depth images (sensor_msgs/Image)")
    msg = bag.first_message(topic)
    frame = bag.decode(msg, topic, 0)
    if frame.depth is None:
        kind = getattr(msg, "encoding", "compressed")
        raise BagReadError(str(bag.path), f"{topic} holds {kind} images, not depth (16UC1 mm or 32FC1 m)")
    if normalize_frame(frame.frame_id) not in ("", camera_frame):
        raise BagReadError(str(bag.path), f"depth on {topic} is in frame {frame.frame_id!r}, not the colour "
                                          f"camera's {camera_frame!r}: record depth registered to the colour "
                                          "image (e.g. aligned_depth_to_color)")


@dataclass
class RosbagSource:
    """Episodes of robot recordings (see the module docstring); scene ids "<bag>#<episode index>"."""

    config: RosbagConfig
    name: str = "rosbag"

    def _paths(self) -> dict[str, Path]:
        paths: dict[str, Path] = {}
        for path in find_bags(self.config.bags):
            key = bag_id(path)
            if key in paths:
                raise MultispaError(f"two bags are named {key} ({paths[key]}, {path}): scene ids need unique "
                                    "bag names")
            paths[key] = path
        return paths

    def list_scenes(self) -> list[str]:
        """Episode keys of every bag, after checking each bag has the named topics and frames."""
        ids: list[str] = []
        for path in self._paths().values():
            with Bag(path, self.config.typestore) as bag:
                recording = Recording.check(bag, self.config)
                ids += [e.key for e in bag_episodes(bag, recording.image_topic, self.config.split)]
        return ids

    def load(self, scene_id: str) -> Scene:
        """Read one episode into a Scene; a bag that fails to read becomes a RecordingError (a skip)."""
        bag_name, _, index = scene_id.rpartition("#")
        path = self._paths().get(bag_name)
        if path is None or not index.isdigit():
            given = ", ".join(map(str, self.config.bags))
            raise MissingFileError(scene_id, f"no bag {bag_name!r} among {given}")
        try:
            with Bag(path, self.config.typestore) as bag:
                episodes = bag_episodes(bag, bag.image_topic(self.config.image_topic), self.config.split)
                if int(index) >= len(episodes):
                    raise MissingFileError(scene_id, f"the bag has {len(episodes)} episodes")
                episode = episodes[int(index)]
                margin = round((MARGIN_S + self.config.max_tf_gap_s) * 1e9)
                window = (episode.start_ns - margin, episode.end_ns + margin)
                recording = Recording.check(bag, self.config, window)
                return self._scene(bag, recording, episode, scene_id)
        except (BagError, TransformError) as exc:
            raise RecordingError(scene_id, str(exc)) from exc

    def _scene(self, bag: Bag, recording: Recording, episode: Episode, scene_id: str) -> Scene:
        c = self.config
        scene = Scene(scene_id, self.name, subset=self.name)
        received = list(bag.frames(recording.image_topic, c.sampling.select(episode.times)))
        frames = [f for _, f in received]
        stamps = np.array([f.stamp_ns for f in frames], dtype=np.int64)
        cameras = recording.transforms.lookup_many(c.base_frame, recording.camera_frame, stamps)
        for error in cameras.errors:
            if error is not None:
                scene.drop(f"camera pose: {error.reason}")
        keep = np.flatnonzero(cameras.ok)
        if keep.size < 2:
            why = ", ".join(f"{reason} x{n}" for reason, n in scene.dropped.items()) or "no frames"
            raise EmptySceneError(scene_id, f"{keep.size} of {len(frames)} frames could be posed in "
                                            f"{c.base_frame} ({why})")
        depths = (self._depths(bag, [received[i][0] for i in keep], stamps[keep], scene)
                  if c.depth_topic else [None] * keep.size)
        views = []
        for i, depth in zip(keep, depths):
            frame = frames[i]
            h, w = frame.pixels.shape[:2]
            views.append(View(str(frame.stamp_ns), recording.intrinsics, cameras.poses[i], w, h, frame.pixels,
                              depth, stamp_s=frame.stamp_ns * 1e-9, scene_id=scene_id))
        things = {GRIPPER: c.gripper_frame, **{object_name(f): f for f in c.object_frames}}
        entities = {}
        for thing, frame_id in things.items():
            try:
                found = recording.transforms.lookup_many(c.base_frame, frame_id, stamps[keep])
            except TransformError as exc:  # an object this episode never shows
                scene.drop(f"{thing} pose: {exc.reason}", keep.size)
                entities[thing] = np.full((keep.size, 3), np.nan)
                continue
            for error in found.errors:
                if error is not None:
                    scene.drop(f"{thing} pose: {error.reason}")
            entities[thing] = found.poses[:, :3, 3]
        scene.views = views
        no_tracks = np.zeros((len(views), 0, 3))
        scene.video = Video(views, no_tracks, np.zeros((len(views), 0), dtype=bool), entities)
        scene.info["script"] = scalar_items(episode.labels)
        if recording.refused_transforms:
            scene.info["refused_transforms"] = recording.refused_transforms
        scene.audit = {"bag": str(recording.path), "episode": episode.index,
                       "image_topic": recording.image_topic, "camera_frame": recording.camera_frame,
                       "base_frame": c.base_frame, "gripper_frame": c.gripper_frame}
        return scene

    def _depths(self, bag: Bag, times: list[int], stamps: np.ndarray,
                scene: Scene) -> list[np.ndarray | None]:
        """Pick the depth map (metres, 0 = no reading) whose stamp is nearest each image's, within tolerance.

        `times` are the images' receive times: the candidates are the depth messages received just before
        and after each (only those are decoded), among those received within MARGIN_S of the episode, so
        each episode of a long bag reads its own stretch of the depth topic; a frame without one within the
        tolerance keeps no depth.
        """
        topic = self.config.depth_topic
        margin = round(MARGIN_S * 1e9)
        received = np.asarray(bag.timestamps(topic, min(times) - margin, max(times) + margin), dtype=np.int64)
        nearest = [received[max(i - 1, 0): i + 2] for i in np.searchsorted(received, times)]
        wanted = sorted({int(t) for group in nearest for t in group})
        decoded: dict[int, Frame] = dict(bag.frames(topic, wanted))
        limit = round(self.config.sync_tolerance_s * 1e9)
        out: list[np.ndarray | None] = []
        for group, stamp in zip(nearest, stamps):
            options = [decoded[int(t)] for t in group if int(t) in decoded]
            best = min(options, key=lambda f: abs(f.stamp_ns - stamp), default=None)
            if best is None or best.depth is None or abs(best.stamp_ns - stamp) > limit:
                tolerance = self.config.sync_tolerance_s
                scene.drop(f"depth: none within {tolerance:g} s (frame kept without depth)")
                out.append(None)
            else:
                out.append(np.where(np.isfinite(best.depth), best.depth, 0.0).astype(np.float32))
        return out
