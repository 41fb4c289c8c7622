"""Recorded sim bags (mcap and sqlite3, raw and compressed) read back with the same frames and truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore

from spatial_mllm_ros.cli import main
from spatial_mllm_ros.images import decode
from spatial_mllm_ros.sim import Episode, PickPlace, RecordError, SceneConfig, run_episode, translate
from spatial_mllm_ros.sim.recorder import EpisodeRecorder, record_episodes
from spatial_mllm_ros.sim.topics import object_topic


@pytest.fixture(scope="module")
def episodes() -> list[Episode]:
    cfg = SceneConfig(seed=3, n_objects=2, width=160, height=120, cameras=("front", "overhead"))
    return [
        run_episode(cfg, translate("left", 0.1, "front"), n_frames=4),
        run_episode(cfg, PickPlace(direction="right", distance_m=0.1), n_frames=5),
    ]


def _read(path: Path) -> dict[str, list[tuple[int, object]]]:
    out: dict[str, list[tuple[int, object]]] = {}
    with AnyReader([path], default_typestore=get_typestore(Stores.ROS2_JAZZY)) as reader:
        for conn, t, raw in reader.messages():
            out.setdefault(conn.topic, []).append((t, reader.deserialize(raw, conn.msgtype)))
    return out


@pytest.mark.parametrize(
    ("storage", "compressed", "fmt"),
    [("mcap", False, "jpeg"), ("sqlite3", False, "jpeg"), ("mcap", True, "jpeg"), ("sqlite3", True, "png")],
)
def test_bag_reads_back_same_frames_and_truth(
    tmp_path: Path, episodes: list[Episode], storage: str, compressed: bool, fmt: str
) -> None:
    bag = record_episodes(episodes, tmp_path / "bag", storage, compressed, compressed_format=fmt, depth=True)
    assert (bag / "metadata.yaml").exists()
    assert any(p.suffix == (".mcap" if storage == "mcap" else ".db3") for p in bag.iterdir())
    msgs = _read(bag)
    suffix = "/compressed" if compressed else ""
    expected = {
        "/episode",
        "/gripper/pose",
        "/gripper/joint_states",
        "/tf",
        *(object_topic(n) for n in episodes[0].object_names),
    }
    for cam in ("front", "overhead"):
        expected |= {
            f"/camera/{cam}/image_raw{suffix}",
            f"/camera/{cam}/camera_info",
            f"/camera/{cam}/pose",
            f"/camera/{cam}/depth/image_raw",
        }
    assert set(msgs) == expected
    markers = [(t, json.loads(m.data)) for t, m in msgs["/episode"]]
    assert [(m["episode"], m["event"]) for _, m in markers] == [
        (0, "start"),
        (0, "end"),
        (1, "start"),
        (1, "end"),
    ]
    images = msgs[f"/camera/front/image_raw{suffix}"]
    frames = iter(images)
    for k, ep in enumerate(episodes):
        (t0, start), (t1, end) = markers[2 * k], markers[2 * k + 1]
        labels = start["labels"]
        assert labels["truth"] == json.loads(json.dumps(ep.truth_summary()))
        assert {k: v for k, v in labels.items() if k != "truth"} == json.loads(json.dumps(ep.labels))
        assert end["labels"] == labels
        offset = start["scene"]["stamp_offset_ns"]
        assert (t0, t1) == (offset + ep.stamps_ns[0], offset + ep.stamps_ns[-1])
        for i in range(ep.n_frames):
            t, msg = next(frames)
            assert t == offset + ep.stamps_ns[i]
            assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == t
            assert msg.header.frame_id == "front_camera_optical_frame"
            rgb = decode(msg).rgb
            want = ep.frame("front", i).rgb
            if compressed and fmt == "jpeg":
                assert np.abs(rgb.astype(int) - want).mean() < 3.0
            else:
                np.testing.assert_array_equal(rgb, want)
    assert [t for t, _ in msgs["/camera/front/camera_info"]] == [t for t, _ in images]
    info = msgs["/camera/front/camera_info"][0][1]
    np.testing.assert_allclose(info.k.reshape(3, 3), episodes[0].cameras["front"].K)
    assert (info.width, info.height) == (160, 120)
    pose = msgs["/gripper/pose"][-1][1].pose.position
    np.testing.assert_allclose([pose.x, pose.y, pose.z], episodes[1].gripper_poses[-1, :3])
    name = episodes[1].labels["object"]
    obj = msgs[object_topic(name)][-1][1].pose.position
    np.testing.assert_allclose([obj.x, obj.y, obj.z], episodes[1].object_poses[name][-1, :3])
    joints = msgs["/gripper/joint_states"][0][1]
    assert list(joints.name) == [
        "gripper_x",
        "gripper_y",
        "gripper_z",
        "gripper_yaw",
        "finger_left",
        "finger_right",
    ]
    depth = decode(msgs["/camera/front/depth/image_raw"][0][1]).depth
    np.testing.assert_allclose(depth, episodes[0].frame("front", 0).depth)


def test_recorder_refuses_bad_output(tmp_path: Path, episodes: list[Episode]) -> None:
    (tmp_path / "exists").mkdir()
    with pytest.raises(RecordError, match="already exists"):
        EpisodeRecorder(tmp_path / "exists")
    with pytest.raises(RecordError, match="storage"):
        EpisodeRecorder(tmp_path / "b", storage="rosbag1")
    with pytest.raises(RecordError, match="parent"):
        EpisodeRecorder(tmp_path / "missing" / "bag")


def test_cli_sim_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli_bag"
    code = main(
        [
            "sim",
            "record",
            "--episodes",
            "2",
            "--out",
            str(out),
            "--storage",
            "sqlite3",
            "--compressed",
            "--width",
            "160",
            "--height",
            "120",
            "--cameras",
            "front",
            "--frames",
            "3",
            "--motion",
            "idle",
            "--motion",
            "translate:direction=right,distance=0.05",
        ]
    )
    assert code == 0
    assert "wrote 2 episodes" in capsys.readouterr().out
    msgs = _read(out)
    markers = [json.loads(m.data) for _, m in msgs["/episode"]]
    assert [m["labels"]["motion"] for m in markers] == ["idle", "idle", "translate", "translate"]
    assert markers[2]["labels"]["truth"]["gripper"]["front"]["direction"] == "right"
    assert len(msgs["/camera/front/image_raw/compressed"]) == 6


def test_bag_carries_tf_like_a_robot(tmp_path: Path, episodes: list[Episode]) -> None:
    """/tf: world -> each camera's optical frame (the images' frame_id), the gripper and every object."""
    from spatial_mllm_ros.sim.topics import optical_frame, pose7_of

    path = record_episodes(episodes[:1], tmp_path / "bag")
    messages = _read(path)
    episode = episodes[0]
    tfs = messages["/tf"]
    assert len(tfs) == episode.n_frames
    frame_ids = {m.header.frame_id for _, m in messages["/camera/front/image_raw"]}
    for i, (_, tf) in enumerate(tfs):
        got = {t.child_frame_id: t for t in tf.transforms}
        assert {t.header.frame_id for t in tf.transforms} == {"world"}
        assert frame_ids <= set(got) and "gripper" in got
        expected = {optical_frame("front"): pose7_of(episode.cameras["front"].T_world_cam[i]),
                    "gripper": episode.gripper_poses[i],
                    **{n.replace(" ", "_"): p[i] for n, p in episode.object_poses.items()}}
        for child, pose7 in expected.items():
            tr = got[child].transform
            xyz = [tr.translation.x, tr.translation.y, tr.translation.z]
            q = [tr.rotation.w, tr.rotation.x, tr.rotation.y, tr.rotation.z]
            np.testing.assert_allclose(xyz, pose7[:3], atol=1e-9)
            assert abs(abs(np.dot(q, pose7[3:7])) - 1) < 1e-9  # the same rotation (q and -q alike)
