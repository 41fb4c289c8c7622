"""Helpers for the reward tests: small rosbag2 recordings written with rosbags, shaped like the sim's;
whether a process of a run has ended."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

TS = get_typestore(Stores.ROS2_JAZZY)
TOPIC = "/camera/front/image_raw"


def scene(step: int, n: int, direction: int, size: tuple[int, int] = (64, 48)) -> np.ndarray:
    """A red square sliding left (-1), right (+1) or staying (0) on grey."""
    w, h = size
    img = np.full((h, w, 3), 90, np.uint8)
    x = int(w / 2 + direction * (w / 3) * (step / max(1, n - 1) - 0.5))
    img[h // 3: h // 3 + 10, max(0, x - 5): x + 5] = (220, 30, 30)
    return img


def write_bag(
    path: Path, episodes: list[dict], storage: str = "mcap", compressed: bool = False, frames: int = 5,
    fps: float = 10.0, gap_s: float = 2.0, markers: bool = True, plain_markers: bool = False,
    zstd: str = "",
) -> Path:
    """Episodes of `frames` images each, separated by `gap_s`, with /episode start/end JSON markers."""
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    msgtype = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
    topic = TOPIC + ("/compressed" if compressed else "")
    image, cimage = TS.types["sensor_msgs/msg/Image"], TS.types["sensor_msgs/msg/CompressedImage"]
    header_t, time_t = TS.types["std_msgs/msg/Header"], TS.types["builtin_interfaces/msg/Time"]
    string = TS.types["std_msgs/msg/String"]
    t = 1_700_000_000_000_000_000
    writer = Writer(path, version=9, storage_plugin=plugin)
    if zstd:  # rosbag2 compression: "file" or "message"
        writer.set_compression(CompressionMode[zstd.upper()], CompressionFormat.ZSTD)
    with writer:
        img_conn = writer.add_connection(topic, msgtype, typestore=TS)
        ep_conn = writer.add_connection("/episode", "std_msgs/msg/String", typestore=TS) if markers else None
        for k, labels in enumerate(episodes):
            if ep_conn is not None:
                event = {"episode": k, "event": "start", "labels": labels}
                start = "start" if plain_markers else json.dumps(event)
                writer.write(ep_conn, t, TS.serialize_cdr(string(data=start), "std_msgs/msg/String"))
            for i in range(frames):
                rgb = scene(i, frames, labels.get("dx", 0))
                header = header_t(stamp=time_t(sec=t // 10**9, nanosec=t % 10**9), frame_id="front")
                if compressed:
                    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                    msg = cimage(header=header, format="png", data=np.frombuffer(buf.tobytes(), np.uint8))
                else:
                    h, w = rgb.shape[:2]
                    msg = image(header=header, height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3,
                                data=rgb.reshape(-1))
                writer.write(img_conn, t, TS.serialize_cdr(msg, msgtype))
                t += int(1e9 / fps)
            if ep_conn is not None:
                end = "end" if plain_markers else json.dumps({"episode": k, "event": "end", "labels": labels})
                writer.write(ep_conn, t, TS.serialize_cdr(string(data=end), "std_msgs/msg/String"))
            t += int(gap_s * 1e9)
    return path


def running(proc: Any) -> bool:
    """A psutil.Process still runs: exists, is not a zombie waiting to be reaped, pid not reused."""
    import psutil

    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
