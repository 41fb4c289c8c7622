"""The rosbag source: labels from a recorded sim bag equal the simulator's truth, skips are counted with
their reasons, a bag without what was named is a clear error, and the real bags with /tf are read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from spatial_mllm_ros.bags import Bag, BagFrameError, MissingTopicError, NoImageTopicError
from spatial_mllm_ros.cli import main
from spatial_mllm_ros.conventions import DIRECTIONS, STATIC_THRESHOLD_M, direction_of
from spatial_mllm_ros.frames import stamp_ns
from spatial_mllm_ros.multispa.format import sample_from_json
from spatial_mllm_ros.multispa.geometry import camera_motion
from spatial_mllm_ros.multispa.sources import RosbagConfig, RosbagSource
from spatial_mllm_ros.multispa.sources.rosbag import Recording
from spatial_mllm_ros.sim import Episode, PickPlace, SceneConfig, run_episode, translate
from spatial_mllm_ros.sim.recorder import EPISODE_GAP_NS, FIRST_STAMP_NS, EpisodeRecorder, record_episodes
from spatial_mllm_ros.sim.topics import object_frame

CAMERA = "wrist"  # moves with the gripper: camera movement, robot and depth tasks all apply
IMAGE = f"/camera/{CAMERA}/image_raw"
DEPTH = f"/camera/{CAMERA}/depth/image_raw"


@pytest.fixture(scope="module")
def episodes() -> list[Episode]:
    cfg = SceneConfig(seed=3, n_objects=2, width=160, height=120, cameras=("front", CAMERA))
    return [run_episode(cfg, translate("left", 0.1, "front"), n_frames=6, seg=False),
            run_episode(cfg, PickPlace(direction="right", distance_m=0.1), n_frames=6, seg=False)]


def _objects(episodes: list[Episode]) -> list[str]:
    return [object_frame(n) for n in episodes[0].object_names]


def _generate(bag: Path, out: Path, *extra: str, frames: list[str] | None = None) -> int:
    objects = ["--object-frames", *frames] if frames else []
    return main(["data", "generate", "--source", "rosbag", "--root", str(bag), "--image-topic", IMAGE,
                 "--base-frame", "world", "--gripper-frame", "gripper", "--split", "marker",
                 "--out", str(out), "--max-per-scene", "4", "--quiet", *objects, *extra])


def _samples(out: Path) -> list[Any]:
    return [sample_from_json(line) for line in (out / "samples.jsonl").read_text().splitlines()]


def _bag_stamps(episodes: list[Episode]) -> list[list[int]]:
    """The stamps the recorder gives each episode's frames in one bag."""
    out, start = [], FIRST_STAMP_NS
    for ep in episodes:
        out.append([start + int(t - ep.stamps_ns[0]) for t in ep.stamps_ns])
        start = out[-1][-1] + EPISODE_GAP_NS
    return out


@pytest.mark.parametrize(("storage", "compressed"), [("mcap", False), ("sqlite3", True)])
def test_labels_from_a_sim_bag_equal_the_simulators_truth(
    tmp_path: Path, episodes: list[Episode], storage: str, compressed: bool
) -> None:
    bag = record_episodes(episodes, tmp_path / "bag", storage, compressed, depth=True)
    out = tmp_path / "out"
    tasks = "robot,camera,depth" if not compressed else "robot,camera"
    extra = ["--depth-topic", DEPTH] if not compressed else []
    assert _generate(bag, out, "--tasks", tasks, *extra, frames=_objects(episodes)) == 0
    index = {t: (k, i) for k, stamps in enumerate(_bag_stamps(episodes)) for i, t in enumerate(stamps)}
    samples = _samples(out)
    families = {s.task.split("_")[0] for s in samples}
    assert families == ({"robot", "camera", "depth"} if not compressed else {"robot", "camera"})
    for s in samples:
        meta = s.meta
        assert (meta["source"], meta["image_topic"], meta["camera_frame"]) == (
            "rosbag", IMAGE + ("/compressed" if compressed else ""), f"{CAMERA}_camera_optical_frame")
        frames = [index[int(f)] for f in meta["frames"]]
        ep = episodes[frames[0][0]]
        assert meta["scene"] == f"bag#{frames[0][0]}" and {k for k, _ in frames} == {frames[0][0]}
        poses = ep.cameras[CAMERA].T_world_cam
        if s.task.startswith("robot_"):
            t1, t2 = frames[0][1], frames[1][1]
            thing = meta["entity"]
            where = ep.gripper_poses if thing == "gripper" else ep.object_poses[thing]
            truth = poses[t1][:3, :3].T @ (where[t2, :3] - where[t1, :3])
            np.testing.assert_allclose(meta["vector_cam_m"], truth, atol=1e-9)
            moved = np.linalg.norm(truth) >= STATIC_THRESHOLD_M
            if s.task.endswith("_direction"):
                assert meta["label"] == direction_of(truth)
            elif s.task.endswith("_yes_no"):
                assert meta["asked"] in DIRECTIONS
                assert meta["label"] == ("yes" if moved and meta["asked"] == direction_of(truth) else "no")
            else:
                assert meta["label"] == (round(1000 * np.linalg.norm(truth)) if moved else 0)
        elif s.task.startswith("camera_"):
            truth = camera_motion(poses[frames[0][1]], poses[frames[1][1]])
            np.testing.assert_allclose(meta["translation_m"], truth.translation_m, atol=1e-9)
            expected = {"x": truth.x_label, "y": truth.y_label, "z": truth.z_label, "yaw": truth.yaw_label,
                        "pitch": truth.pitch_label, "distance": truth.distance_mm,
                        "vector": list(truth.vector_mm), "yaw_angle": truth.yaw_angle,
                        "pitch_angle": truth.pitch_angle}[meta["quantity"]]
            assert meta["label"] == expected and meta["overlap"] is None
        else:
            depth = ep.cameras[CAMERA].depth[frames[0][1]]
            pixels = [meta["pixel"]] if "pixel" in meta else meta["pixels"]
            mm = [round(1000 * float(depth[int(v), int(u)])) for u, v in pixels]
            assert mm == ([meta["depth_mm"]] if "pixel" in meta else meta["depth_mm"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scenes_done"] == 2 and summary["dropped_frames"] == {}


class _Faulty(EpisodeRecorder):
    """The sim recorder losing what real recordings lose: /tf messages, a late depth image, whole topics."""

    def __init__(self, path: Path, drop_tf: set[int] = frozenset(), late_depth: set[int] = frozenset(),
                 without: set[str] = frozenset(), drop_child: dict[int, str] | None = None,
                 **kw: Any) -> None:
        super().__init__(path, **kw)
        self.drop_tf, self.late_depth, self.without = drop_tf, late_depth, without
        self.drop_child = drop_child or {}

    def _write(self, topic: str, msgtype: str, stamp_ns: int, msg: Any) -> None:
        if topic in self.without or (topic == "/tf" and stamp_ns in self.drop_tf):
            return
        if topic == DEPTH and stamp_ns in self.late_depth:
            msg.header.stamp.nanosec += 50_000_000  # 50 ms after its colour image
        if topic == "/tf" and stamp_ns in self.drop_child:
            msg.transforms = [t for t in msg.transforms if t.child_frame_id != self.drop_child[stamp_ns]]
        super()._write(topic, msgtype, stamp_ns, msg)


def _record(path: Path, episodes: list[Episode], **kw: Any) -> Path:
    with _Faulty(path, depth=True, **kw) as rec:
        for ep in episodes:
            rec.write(ep)
    return path


def test_skipped_frames_and_episodes_are_counted_with_reasons(tmp_path: Path,
                                                              episodes: list[Episode]) -> None:
    ep0, ep1 = _bag_stamps(episodes)
    # Episode 0: no /tf for its first frame (before the buffer) nor its fourth (a gap); its third frame's
    # depth image is late. Episode 1 has no /tf at all: every frame is after the buffer, the episode skipped.
    bag = _record(tmp_path / "bag", episodes, drop_tf={ep0[0], ep0[3], *ep1}, late_depth={ep0[2]})
    out = tmp_path / "out"
    assert _generate(bag, out, "--tasks", "robot,camera,depth", "--depth-topic", DEPTH,
                     "--max-tf-gap", "0.15") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dropped_frames"] == {  # of the episodes used
        "camera pose: outside the buffer": 1,
        "camera pose: stale transform": 1,
        "depth: none within 0.02 s (frame kept without depth)": 1,
    }
    assert summary["skip_reasons"] == {"empty scene": 1}
    assert summary["skipped"][0]["scene"] == "bag#1"
    assert "0 of 6 frames could be posed in world (camera pose: outside the buffer x6)" in \
        summary["skipped"][0]["detail"]
    used = {int(f) for x in _samples(out) for f in x.meta["frames"]}
    assert used and not used & {ep0[0], ep0[3], *ep1}
    depth_frames = {int(f) for x in _samples(out) if x.task.startswith("depth") for f in x.meta["frames"]}
    assert depth_frames and ep0[2] not in depth_frames


def test_a_thing_without_transforms_is_left_out_not_the_frame(tmp_path: Path,
                                                              episodes: list[Episode]) -> None:
    first = FIRST_STAMP_NS
    bag = _record(tmp_path / "bag", episodes[:1], drop_child={first: "red_cube"})
    config = RosbagConfig((bag,), IMAGE, "world", "gripper", object_frames=("red_cube",))
    source = RosbagSource(config)
    assert source.list_scenes() == ["bag#0"]
    scene = source.load("bag#0")
    assert len(scene.views) == 6 and scene.dropped == {"red cube pose: outside the buffer": 1}
    where = scene.video.entities["red cube"]
    assert np.isnan(where[0]).all() and np.isfinite(where[1:]).all()
    assert np.isfinite(scene.video.entities["gripper"]).all()
    out = tmp_path / "out"
    assert _generate(bag, out, "--tasks", "robot_object_distance", "--max-per-scene", "20",
                     frames=["red_cube"]) == 0
    used = [x.meta["frames"] for x in _samples(out)]
    assert used and all(str(first) not in f for f in used)


def _error(capsys: pytest.CaptureFixture[str], bag: Path, out: Path, *extra: str) -> str:
    assert _generate(bag, out, *extra) == 1
    return capsys.readouterr().err


def test_a_bag_without_what_was_named_is_a_clear_error(
    tmp_path: Path, episodes: list[Episode], capsys: pytest.CaptureFixture[str]
) -> None:
    one = episodes[:1]
    no_info = _record(tmp_path / "no_info", one, without={f"/camera/{CAMERA}/camera_info"})
    err = _error(capsys, no_info, tmp_path / "o1")
    assert f"no sensor_msgs/CameraInfo on /camera/{CAMERA}/camera_info" in err
    assert "--camera-info-topic" in err
    assert "the bag's topics are: " in err and f"{IMAGE} [sensor_msgs/msg/Image]" in err

    no_tf = _record(tmp_path / "no_tf", one, without={"/tf"})
    err = _error(capsys, no_tf, tmp_path / "o2")
    assert "no tf2_msgs/TFMessage (nor on /tf_static) on /tf" in err and "/gripper/pose" in err

    good = _record(tmp_path / "good", one)
    err = _error(capsys, good, tmp_path / "o3", "--object-frames", "tool0")
    assert "no transform names frame 'tool0'; the frames are: " in err
    assert "gripper" in err and "purple_cube" in err and f"{CAMERA}_camera_optical_frame" in err
    with Bag(good) as reader, pytest.raises(BagFrameError):
        Recording.check(reader, RosbagConfig((good,), IMAGE, "base_link", "gripper"))

    err = _error(capsys, good, tmp_path / "o4", "--depth-topic", "/camera/front/depth")
    assert "no depth images (sensor_msgs/Image) on /camera/front/depth" in err
    err = _error(capsys, good, tmp_path / "o5", "--image-topic", "/camera/left/image_raw")
    assert "no image topic '/camera/left/image_raw'" in err


TF_FIXTURES = {"evo_nav2_turtlebot.mcap": ("map", "oakd_rgb_camera_optical_frame"),
               "evo_tf_example": ("odom", "base_link")}
NO_TF_FIXTURES = ("ait_images_bag", "ats_rosbags_joint_states")


@pytest.mark.parametrize("name", sorted(TF_FIXTURES))
def test_real_bags_with_tf_are_read(fixture_bags: Path, name: str) -> None:
    """evo_nav2_turtlebot.mcap (/tf + /tf_static, mcap) and evo_tf_example (rosbag2 v8, sqlite3) carry /tf;
    ait_images_bag and ats_rosbags_joint_states carry none."""
    target, source = TF_FIXTURES[name]
    with Bag(fixture_bags / name) as bag:
        transforms, refused = bag.transform_buffer(max_gap_s=3.0)  # amcl's map -> odom: up to 2.3 s apart
        info = bag.info()
        stamps = sorted(stamp_ns(t) for _, msg in bag.messages("/tf") for t in msg.transforms)
    assert not refused and target in transforms.frames and source in transforms.frames
    mid = stamps[len(stamps) // 2]  # header stamps: the turtlebot's are sim time, its receive times are not
    found = transforms.lookup_many(target, source, np.linspace(mid - 10**8, mid + 10**8, 5).astype(np.int64))
    assert found.ok.all(), found.errors
    rot = found.poses[:, :3, :3]
    np.testing.assert_allclose(rot @ np.swapaxes(rot, 1, 2), np.broadcast_to(np.eye(3), rot.shape), atol=1e-9)
    config = RosbagConfig((fixture_bags / name,), "/camera/image_raw", target, source)
    listing = "the bag's topics are: .*/tf \\[tf2_msgs/msg/TFMessage\\]"
    with pytest.raises(NoImageTopicError, match=listing), Bag(fixture_bags / name) as bag:
        Recording.check(bag, config)
    assert info.topics["/tf"] == "tf2_msgs/msg/TFMessage"


@pytest.mark.parametrize("name", NO_TF_FIXTURES)
def test_real_bags_without_tf_say_what_they_lack(fixture_bags: Path, name: str) -> None:
    with Bag(fixture_bags / name, typestore="humble") as bag:
        info = bag.info()
        assert not set(info.topics) & {"/tf", "/tf_static"}
        transforms, _ = bag.transform_buffer(max_gap_s=1.0)
        assert transforms.frames == ()
        if info.image_topics:  # ait_images_bag: /image, a Humble-era bag without CameraInfo or /tf
            config = RosbagConfig((fixture_bags / name,), "/image", "base_link", "gripper",
                                  typestore="humble")
            with pytest.raises(MissingTopicError, match="no sensor_msgs/CameraInfo on /camera_info"):
                Recording.check(bag, config)
