"""Bag reading and episode finding on real third-party bags and on bags written here with rosbags."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from test_reward_support import TOPIC, TS, write_bag

from spatial_mllm_ros.bags import (
    AmbiguousImageTopicError,
    Bag,
    BagReadError,
    EmptyImageTopicError,
    EpisodeSplitError,
    NoImageTopicError,
    Sampling,
    Split,
    find_episodes,
)

FIXTURES = ("ait_images_bag", "ats_rosbags_joint_states", "evo_nav2_turtlebot.mcap", "evo_tf_example",
            "evo_tf_example/tf_example.db3", "ait_images_bag/images.bag_0.db3")


@pytest.mark.parametrize("name", FIXTURES)
def test_real_bags_read_or_say_no_image_topic(fixture_bags: Path, name: str) -> None:
    with Bag(fixture_bags / name) as bag:
        info = bag.info()
        assert info.topics and sum(info.counts.values()) > 0
        if not info.image_topics:
            with pytest.raises(NoImageTopicError) as err:
                bag.image_topic()
            message = str(err.value)
            assert "no image topic" in message and name.split("/")[0] in message
            assert all(topic in message for topic in info.topics)  # lists what the bag does hold
            return
        topic = bag.image_topic()
        episodes = find_episodes(bag, topic, Split())
        frames = [f for _, f in bag.frames(topic, episodes[0].times)]
    # Humble-era v5 sqlite3 without type definitions: 3 mono8 2x2 images, header stamps all zero
    assert info.version in (0, 5) and info.storage == "sqlite3"
    assert len(frames) == 3 and frames[0].pixels.shape == (2, 2, 3)
    assert len({f.stamp_ns for f in frames}) == 3  # zero header stamps fall back to receive times


def test_humble_typestore_reads_the_same(fixture_bags: Path) -> None:
    with Bag(fixture_bags / "ait_images_bag", typestore="humble") as bag:
        assert bag.timestamps("/image") == [0, 1_000_000_000, 2_000_000_000]
        # a window [start, stop) reads only its stretch (the rosbag source reads an episode's depth so)
        assert bag.timestamps("/image", 1, 2_000_000_000) == [1_000_000_000]
        assert bag.timestamps("/image", 0, 1) == [0] and bag.timestamps("/image", 3_000_000_000) == []


@pytest.mark.parametrize(("storage", "compressed"), [("mcap", False), ("sqlite3", True)])
def test_written_bags_split_and_sample(tmp_path: Path, storage: str, compressed: bool) -> None:
    eps = [{"dx": -1, "direction": "left", "success": True},
           {"dx": 1, "direction": "right", "success": False}]
    path = write_bag(tmp_path / "b", eps, storage=storage, compressed=compressed, frames=6)
    with Bag(path) as bag:
        topic = bag.image_topic()
        assert topic == TOPIC + ("/compressed" if compressed else "")
        whole = find_episodes(bag, topic, Split.parse("whole"))
        gaps = find_episodes(bag, topic, Split.parse("gap:1.0"))
        marks = find_episodes(bag, topic, Split.parse("marker"))
        assert [len(e.times) for e in whole] == [12]
        assert [len(e.times) for e in gaps] == [6, 6] == [len(e.times) for e in marks]
        assert [m.labels["direction"] for m in marks] == ["left", "right"]
        frames = [f for _, f in bag.frames(topic, marks[0].times)]
    xs = [np.where(f.pixels[f.pixels.shape[0] // 3 + 2, :, 0] > 200)[0].mean() for f in frames]
    assert all(a > b for a, b in zip(xs, xs[1:]))  # the square slides left, decoded exactly (png / raw)
    times = tuple(range(0, 100))
    assert Sampling(every=10).select(times) == tuple(range(0, 100, 10))
    assert Sampling(count=3).select(times) == (0, 50, 99)
    assert len(Sampling(step_s=2e-9).select(times)) == 50


@pytest.mark.parametrize(("storage", "zstd"), [("sqlite3", "file"), ("sqlite3", "message"), ("mcap", "file")])
def test_zstd_compressed_bags(tmp_path: Path, storage: str, zstd: str) -> None:
    path = write_bag(tmp_path / "z", [{"dx": 1}], storage=storage, frames=3, zstd=zstd)
    with Bag(path) as bag:
        topic = bag.image_topic()
        frames = [f for _, f in bag.frames(topic, bag.timestamps(topic))]
    assert len(frames) == 3 and frames[0].pixels.shape == (48, 64, 3)


def test_single_file_bags_and_intervals(tmp_path: Path) -> None:
    path = write_bag(tmp_path / "b", [{"dx": 1}, {"dx": -1}], storage="sqlite3", frames=4, gap_s=2.0)
    single = next(path.glob("*.db3"))
    intervals = tmp_path / "iv.csv"
    intervals.write_text("# first and second half\nstart_s,end_s,name\n0,0.35,first\n2.3,2.7,second\n")
    with Bag(single) as bag:  # a lone .db3 without metadata.yaml
        eps = find_episodes(bag, bag.image_topic(), Split.parse(f"intervals:{intervals}"))
    assert [(e.name, len(e.times)) for e in eps] == [("first", 4), ("second", 4)]


def test_plain_text_markers_and_bad_splits(tmp_path: Path) -> None:
    plain = write_bag(tmp_path / "plain", [{"dx": 1}, {"dx": -1}], frames=3, plain_markers=True)
    with Bag(plain) as bag:
        eps = find_episodes(bag, bag.image_topic(), Split.parse("marker:/episode"))
    assert [len(e.times) for e in eps] == [3, 3]
    path = write_bag(tmp_path / "b", [{"dx": 1}], frames=3, markers=False)
    with Bag(path) as bag, pytest.raises(EpisodeSplitError, match="marker topic '/episode' not found"):
        find_episodes(bag, bag.image_topic(), Split.parse("marker"))
    for bad in ("halves", "gap:x", "gap:-1", "intervals:/nonexistent.csv"):
        with pytest.raises(EpisodeSplitError, match="--split"):
            Split.parse(bad)


def test_bad_bags_name_themselves(tmp_path: Path) -> None:
    good = write_bag(tmp_path / "good", [{"dx": 1}], frames=3)
    broken = tmp_path / "broken"
    shutil.copytree(good, broken)
    mcap = next(broken.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[:200])  # truncated mid-chunk
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(b"not a bag at all" * 10)
    for path in (broken, junk, tmp_path / "missing"):
        with pytest.raises(BagReadError) as err, Bag(path) as bag:
            bag.timestamps(bag.image_topic())
        assert str(path) in str(err.value)
    with Bag(good) as bag, pytest.raises(NoImageTopicError, match="/camera/side"):
        bag.image_topic("/camera/side")


def _one_pixel_bag(
    path: Path, topics: tuple[str, ...], encoding: str = "rgb8", silent: tuple[str, ...] = (),
) -> Path:
    """One 1x1 image on each of `topics`; `silent` String topics are recorded but never sent to."""
    from rosbags.rosbag2 import Writer

    with Writer(path, version=9) as w:
        for topic in silent:
            w.add_connection(topic, "std_msgs/msg/String", typestore=TS)
        for topic in topics:
            conn = w.add_connection(topic, "sensor_msgs/msg/Image", typestore=TS)
            stamp = TS.types["builtin_interfaces/msg/Time"](sec=1, nanosec=0)
            msg = TS.types["sensor_msgs/msg/Image"](
                header=TS.types["std_msgs/msg/Header"](stamp=stamp, frame_id=""),
                height=1, width=1, encoding=encoding, is_bigendian=0, step=3, data=np.zeros(3, np.uint8))
            w.write(conn, 1, TS.serialize_cdr(msg, "sensor_msgs/msg/Image"))
    return path


def test_two_image_topics_need_a_choice(tmp_path: Path) -> None:
    path = _one_pixel_bag(tmp_path / "two", ("/a/image", "/b/image"))
    with Bag(path) as bag, pytest.raises(AmbiguousImageTopicError, match="--image-topic"):
        bag.image_topic()


def test_unsupported_encoding_names_bag_and_topic(tmp_path: Path) -> None:
    path = _one_pixel_bag(tmp_path / "odd", ("/cam/image",), encoding="weird42")
    with Bag(path) as bag, pytest.raises(BagReadError) as err:
        list(bag.frames("/cam/image", bag.timestamps("/cam/image")))
    assert str(path) in str(err.value) and "/cam/image" in str(err.value) and "weird42" in str(err.value)



def test_empty_recordings_say_why(tmp_path: Path) -> None:
    empty = write_bag(tmp_path / "empty", [])  # the image and marker topics exist, with 0 messages
    with Bag(empty) as bag:
        for wanted in (None, TOPIC):
            with pytest.raises(EmptyImageTopicError) as err:
                bag.image_topic(wanted)
            assert f"image topic {TOPIC} has 0 messages" in str(err.value)
            assert "no image topic" not in str(err.value) and str(empty) in str(err.value)
        with pytest.raises(EmptyImageTopicError, match="0 messages"):
            find_episodes(bag, TOPIC, Split.parse("whole"))


def test_no_episode_boundaries_say_why(tmp_path: Path) -> None:
    path = _one_pixel_bag(tmp_path / "silent_markers", ("/cam/image",), silent=("/episode",))
    intervals = tmp_path / "iv.csv"
    intervals.write_text("bag,start_s,end_s\nanother_bag,0,1\n")
    with Bag(path) as bag:
        with pytest.raises(EpisodeSplitError, match=r"/episode \(0 messages\).*no episode boundaries"):
            find_episodes(bag, bag.image_topic(), Split.parse("marker"))
        with pytest.raises(EpisodeSplitError, match="no row for silent_markers"):
            find_episodes(bag, bag.image_topic(), Split.parse(f"intervals:{intervals}"))
