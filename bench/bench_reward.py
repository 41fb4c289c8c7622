"""Reward annotator throughput: frames/s end to end vs bag decoding alone and model alone (same run).

Usage: .venv/bin/python bench/bench_reward.py [--quick|--full] [--checkpoint DIR] [--rubric FILE]
Bags come from the sim recorder when it is installed (spatial_mllm_ros.sim), else from a synthetic
generator; the model is the given checkpoint or a tiny random one (throughput only, not quality).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from spatial_mllm_ros.reward import (
    AnnotateConfig,
    Bag,
    EpisodeScorer,
    Sampling,
    Split,
    annotate_to_dir,
    find_episodes,
    load_rubric,
    run_batch,
)
from spatial_mllm_ros.reward.labels import EpisodeResult

ROOT = Path(__file__).resolve().parents[1]


def synthetic_bag(path: Path, episodes: int, frames: int, size: tuple[int, int]) -> Path:
    """Episodes of a square sliding across noise, with /episode markers (rosbags writer, mcap)."""
    import json

    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_JAZZY)
    image, header, stamp = (ts.types[n] for n in ("sensor_msgs/msg/Image", "std_msgs/msg/Header",
                                                  "builtin_interfaces/msg/Time"))
    string = ts.types["std_msgs/msg/String"]
    rng = np.random.default_rng(0)
    w, h = size
    t = 1_700_000_000_000_000_000
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        cam = writer.add_connection("/camera/front/image_raw", "sensor_msgs/msg/Image", typestore=ts)
        ep = writer.add_connection("/episode", "std_msgs/msg/String", typestore=ts)
        for k in range(episodes):
            labels = {"episode": k, "direction": "left" if k % 2 == 0 else "right", "success": k % 2 == 0}
            start = string(data=json.dumps({"episode": k, "event": "start", "labels": labels}))
            writer.write(ep, t, ts.serialize_cdr(start, "std_msgs/msg/String"))
            for i in range(frames):
                rgb = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
                x = int(w * (0.2 + 0.6 * i / max(1, frames - 1)))
                rgb[h // 3: h // 3 + 20, x: x + 20] = (220, 30, 30)
                head = header(stamp=stamp(sec=t // 10**9, nanosec=t % 10**9), frame_id="front")
                msg = image(header=head, height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3,
                            data=rgb.reshape(-1))
                writer.write(cam, t, ts.serialize_cdr(msg, "sensor_msgs/msg/Image"))
                t += 100_000_000
            end = string(data=json.dumps({"episode": k, "event": "end", "labels": labels}))
            writer.write(ep, t, ts.serialize_cdr(end, "std_msgs/msg/String"))
            t += 2_000_000_000
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="2 bags x 2 episodes x 8 frames")
    mode.add_argument("--full", action="store_true", help="4 bags x 6 episodes x 24 frames")
    parser.add_argument("--checkpoint", default="", help="model directory (default: tiny random model)")
    parser.add_argument("--rubric", default=str(ROOT / "config" / "rubric_move_left.yaml"))
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    n_bags, n_eps, n_frames = (2, 2, 8) if args.quick else (4, 6, 24) if args.full else (3, 4, 12)

    from spatial_mllm_ros.model.config import ModelConfig
    from spatial_mllm_ros.model.runtime import SpatialModel

    tmp = Path(tempfile.mkdtemp(prefix="bench_reward_"))
    checkpoint = args.checkpoint
    if not checkpoint:
        from spatial_mllm_ros.model.factory import make_tiny_model

        checkpoint = str(make_tiny_model(tmp / "tiny"))
    bags = [synthetic_bag(tmp / f"bag{i}", n_eps, n_frames, (320, 240)) for i in range(n_bags)]
    rubric = load_rubric(args.rubric)
    config = AnnotateConfig(rubric=rubric, model=ModelConfig(checkpoint=checkpoint, device=args.device),
                            split=Split("marker"), sampling=Sampling())

    # 1. decoding alone: every sampled frame of every episode, as the annotator reads them
    t0 = time.perf_counter()
    decoded: list[tuple[object, list]] = []
    for path in bags:
        with Bag(path) as bag:
            topic = bag.image_topic(rubric.image_topic)
            for ep in find_episodes(bag, topic, config.split):
                decoded.append((ep, [f for _, f in bag.frames(topic, config.sampling.select(ep.times))]))
    t_decode = time.perf_counter() - t0
    n = sum(len(fr) for _, fr in decoded)

    # 2. the model alone on the decoded frames (fresh model: empty embedding cache)
    model = SpatialModel.load(config.model)
    scorer = EpisodeScorer(model, rubric, thumbnails=0)
    t0 = time.perf_counter()
    for ep, frames in decoded:
        scorer.score(ep, frames, EpisodeResult("b", "b", ep.index, "k", "t", 0, 0))
    t_model = time.perf_counter() - t0
    model.close()

    # 3. the pipeline (prefetch thread overlapping decode and model), then with all outputs written
    from spatial_mllm_ros.reward import annotate as annotate_mod

    annotate_mod._MODELS.clear()
    annotate_mod._MODELS[repr(config.model)] = SpatialModel.load(config.model)
    t0 = time.perf_counter()
    run_batch(bags, config)
    t_pipe = time.perf_counter() - t0
    annotate_mod._MODELS[repr(config.model)] = SpatialModel.load(config.model)
    t0 = time.perf_counter()
    annotate_to_dir(bags, config, tmp / "out", show_progress=False)
    t_e2e = time.perf_counter() - t0

    def fps(t: float) -> str:
        return f"{n / t:8.1f} frames/s ({t:6.2f} s)"

    print(f"{n_bags} bags x {n_eps} episodes x {n_frames} frames 320x240, {len(rubric.checks)} step checks, "
          f"model {Path(checkpoint).name} on {model.device}")
    print(f"decode only            {fps(t_decode)}")
    print(f"model only             {fps(t_model)}")
    print(f"pipeline (overlapped)  {fps(t_pipe)}")
    print(f"end to end + outputs   {fps(t_e2e)}")
    print(f"pipeline / model-only throughput ratio  {t_model / t_pipe:.2f}x")
    print(f"pipeline / decode-only throughput ratio {t_decode / t_pipe:.3f}x")
    print(f"overlap gain vs serial decode+model     {(t_decode + t_model) / t_pipe:.2f}x")


if __name__ == "__main__":
    main()
