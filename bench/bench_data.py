"""Data-engine throughput: samples/s per core for each task family, on a ScanNet-sized synthetic scene
(1296x968 colour, 640x480 depth, ~50k mesh vertices; 60 frames by default, 500 with --full), on
simulated scenes and from a recorded robot bag (rosbag -> JSONL, with the /tf lookup cost per sample),
plus how a run scales with 1, 2 and 4 scenes over a process pool.

Ratios against baselines measured in the same run:
- camera family vs the original engine's habit of decoding each JPEG to learn the image size
  (docs: 92% of its camera stage); ours reads sizes from headers once per scene;
- rosbag: TF lookups of all frames at once (lookup_many) vs one lookup() per frame, and the TF share of
  the bag -> JSONL time;
- n-scene runs vs the 1-scene run (scaling; this machine has 2 cores shared with other work).

Synthetic scenes are cached under --cache so later runs skip the ray casting.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from spatial_mllm_ros.bags import Bag, Split
from spatial_mllm_ros.multispa.engine import GenerateConfig, generate
from spatial_mllm_ros.multispa.geometry import camera_motion, sample_overlap_pairs
from spatial_mllm_ros.multispa.sources import RosbagConfig, ScanNetSource, SimSource, TapVid3DSource
from spatial_mllm_ros.multispa.sources.base import visibility_matrix
from spatial_mllm_ros.multispa.sources.synthetic import (
    COLOUR_SIZE,
    DEPTH_SIZE,
    write_scannet_scene,
    write_tapvid3d_clip,
)
from spatial_mllm_ros.multispa.tasks import FAMILIES, TASKS
from spatial_mllm_ros.multispa.tasks.base import ImageStore, TaskContext
from spatial_mllm_ros.sim import PickPlace, SceneConfig, run_episode, translate
from spatial_mllm_ros.sim.recorder import record_episodes
from spatial_mllm_ros.sim.topics import object_frame


class Clock:
    """Wall and CPU seconds of a block of work done in this process."""

    def __enter__(self) -> Clock:
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0


def build_scene(cache: Path, frames: int, vertices: int) -> Path:
    root = cache / f"scannet_{frames}f_{vertices}v"
    if not (root / "scene0000_00" / "done").exists():
        shutil.rmtree(root, ignore_errors=True)
        t = time.perf_counter()
        write_scannet_scene(root, n_frames=frames, n_vertices=vertices, seed=0, colour_size=COLOUR_SIZE,
                            depth_size=DEPTH_SIZE)
        (root / "scene0000_00" / "done").write_text("ok")
        dt = time.perf_counter() - t
        print(f"built ScanNet-sized scene: {frames} frames, {vertices} vertices in {dt:.1f} s")
    return root


def families_on(scene, out: Path, per_task: int, label: str) -> None:
    ctx = TaskContext(scene, np.random.default_rng(0), ImageStore(out, scene.scene_id))
    if scene.has_geometry:
        with Clock() as c:
            vis, _ = ctx.visibility()
            ctx.overlap()
        print(f"[{label}] visibility + overlap of {vis.shape[0]} views x {vis.shape[1]} vertices: "
              f"{c.wall:.2f} s wall, {c.cpu:.2f} s CPU")
    print(f"[{label}] {'family':<16} {'samples':>8} {'wall s':>8} {'CPU s':>8} {'samples/s/core':>15}")
    for family, names in FAMILIES.items():
        specs = [TASKS[n] for n in names if TASKS[n].applies_to(scene)]
        if not specs:
            continue
        n = 0
        with Clock() as c:
            for spec in specs:
                ctx.rng = np.random.default_rng(len(spec.name))
                n += len(spec.generate(ctx, spec, per_task))
        print(f"[{label}] {family:<16} {n:>8} {c.wall:>8.2f} {c.cpu:>8.2f} {n / c.cpu:>15.1f}")


def camera_vs_decode_baseline(scene, per_task: int) -> None:
    vis, idx = visibility_matrix(scene)
    from spatial_mllm_ros.multispa.geometry import overlap_matrix

    pairs = sample_overlap_pairs(overlap_matrix(vis), per_task * 9, np.random.default_rng(0))
    views = [(scene.views[idx[i]], scene.views[idx[j]]) for i, j in pairs]
    with Clock() as ours:
        for v1, v2 in views:
            m = camera_motion(v1.c2w, v2.c2w)
            _ = (m.x_label, m.distance_mm, (v1.width, v1.height), (v2.width, v2.height))
    with Clock() as base:
        for v1, v2 in views:
            m = camera_motion(v1.c2w, v2.c2w)
            sizes = [cv2.imread(str(v.image)).shape[:2] for v in (v1, v2)]  # the baseline's size lookup
            _ = (m.x_label, m.distance_mm, sizes)
    n = len(views)
    print(f"[camera labels, CPU time] ours {n / ours.cpu:,.0f} samples/s vs decode-to-size baseline "
          f"{n / base.cpu:,.1f} samples/s -> {base.cpu / ours.cpu:,.0f}x")


def rosbag_to_jsonl(tmp: Path, per_task: int, frames: int) -> None:
    """A recorded sim bag (wrist camera + depth, 320x240) through the rosbag source, and its TF cost."""
    t = time.perf_counter()
    cfg = SceneConfig(seed=1, n_objects=2, width=320, height=240, cameras=("wrist",))
    motions = (translate("left", 0.15, "wrist"), PickPlace(direction="right", distance_m=0.1, camera="wrist"))
    episodes = [run_episode(cfg, motion, n_frames=frames, seg=False) for motion in motions]
    bag = record_episodes(episodes, tmp / "robot_bag", depth=True)
    dt = time.perf_counter() - t
    print(f"[rosbag] simulate + record {len(episodes)} episodes x {frames} frames: {dt:.1f} s")
    config = RosbagConfig((bag,), "/camera/wrist/image_raw", "world", "gripper",
                          depth_topic="/camera/wrist/depth/image_raw",
                          object_frames=tuple(object_frame(n) for n in episodes[0].object_names),
                          split=Split("marker"))
    with Clock() as c:
        summary = generate(GenerateConfig("rosbag", tmp / "rosbag_out", tasks=("robot,camera,depth",),
                                          max_per_scene=per_task, rosbag=config, progress=False))
    print(f"[rosbag] bag -> JSONL: {summary.samples} samples from {summary.scenes_done} episodes in "
          f"{c.wall:.2f} s wall, {c.cpu:.2f} s CPU = {summary.samples / c.cpu:.0f} samples per CPU-s")
    with Bag(bag) as reader:
        reader.info()
        with Clock() as read:
            transforms, _ = reader.transform_buffer(config.max_tf_gap_s)
        stamps = np.array(reader.timestamps("/camera/wrist/image_raw"), dtype=np.int64)
    things = ("wrist_camera_optical_frame", "gripper", *config.object_frames)
    with Clock() as batched:
        for thing in things:
            transforms.lookup_many("world", thing, stamps)
    with Clock() as single:
        for thing in things:
            for stamp in stamps:
                transforms.lookup("world", thing, int(stamp))
    lookups = len(things) * len(stamps)
    # CPU time (the machine is shared): the source reads the bag's /tf to check it and each episode's own
    # /tf to load it, and looks up every frame of every thing once
    tf_cpu = 2 * read.cpu + batched.cpu
    print(f"[rosbag] TF, CPU time: read /tf ({len(stamps)} messages) {1000 * read.cpu:.1f} ms; lookup_many "
          f"{1e6 * batched.cpu / lookups:.1f} us per frame-lookup vs lookup() "
          f"{1e6 * single.cpu / lookups:.1f} us -> {single.cpu / batched.cpu:.1f}x")
    print(f"[rosbag] TF cost per sample: {1e6 * tf_cpu / summary.samples:.0f} us of "
          f"{1e6 * c.cpu / summary.samples:.0f} us CPU ({100 * tf_cpu / c.cpu:.1f}% of bag -> JSONL)")


def scaling(source: str, root: Path | None, counts: list[int], per_task: int, tmp: Path, tasks: str) -> None:
    base_rate = base_cpu_rate = None
    cores = os.cpu_count() or 1
    for n in counts:
        if source == "scannet":
            src_root = tmp / f"scale_root_{n}"
            src_root.mkdir(exist_ok=True)
            for k in range(n):
                link = src_root / f"scene{k:04d}_00"
                if not link.exists():
                    link.symlink_to(root / "scene0000_00")
            cfg = GenerateConfig("scannet", tmp / f"scale_out_{source}_{n}", src_root, tasks=(tasks,),
                                 workers=min(n, cores), max_per_scene=per_task, progress=False)
        else:
            cfg = GenerateConfig("sim", tmp / f"scale_out_{source}_{n}", tasks=(tasks,),
                                 workers=min(n, cores), max_per_scene=per_task, sim_scenes=n, progress=False)
        with Clock() as c:
            summary = generate(cfg)
        rate, cpu_rate = summary.samples / c.wall, summary.samples / summary.cpu_seconds
        base_rate, base_cpu_rate = base_rate or rate, base_cpu_rate or cpu_rate
        print(f"[scaling {source}] {n} scene(s), {cfg.workers} worker(s): {summary.samples} samples, "
              f"{c.wall:.1f} s wall = {rate:.1f} samples/s ({rate / base_rate:.2f}x the 1-scene run); "
              f"{cpu_rate:.1f} samples per worker CPU-s ({cpu_rate / base_cpu_rate:.2f}x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true", help="500 frames (the ScanNet-sized scene of the issue)")
    ap.add_argument("--frames", type=int, default=None)
    ap.add_argument("--vertices", type=int, default=50_000)
    ap.add_argument("--per-task", type=int, default=40, help="samples requested per sub-task")
    ap.add_argument("--no-sim", action="store_true")
    ap.add_argument("--no-scaling", action="store_true")
    ap.add_argument("--no-rosbag", action="store_true")
    ap.add_argument("--rosbag-only", action="store_true", help="only the rosbag -> JSONL section")
    ap.add_argument("--bag-frames", type=int, default=24, help="frames per recorded episode (rosbag section)")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "spatial_mllm_bench_data")
    args = ap.parse_args()
    frames = args.frames or (500 if args.full else 60)
    if args.rosbag_only:
        with tempfile.TemporaryDirectory() as tmp_str:
            rosbag_to_jsonl(Path(tmp_str), args.per_task, args.bag_frames)
        return
    args.cache.mkdir(parents=True, exist_ok=True)
    root = build_scene(args.cache, frames, args.vertices)
    with tempfile.TemporaryDirectory() as tmp_str:
        tmp = Path(tmp_str)
        t = time.perf_counter()
        scene = ScanNetSource(root).load("scene0000_00")
        print(f"[scannet] load ({len(scene.views)} views, {len(scene.points)} vertices): "
              f"{time.perf_counter() - t:.2f} s")
        families_on(scene, tmp / "scannet", args.per_task, "scannet")
        camera_vs_decode_baseline(scene, args.per_task)
        t = time.perf_counter()
        write_tapvid3d_clip(tmp / "tap", "adt/clip", n_frames=150, size=(512, 384), scale=8)
        clip = TapVid3DSource(tmp / "tap").load("adt/clip")
        print(f"[tapvid3d] write + load a clip ({len(clip.video.views)} frames, "
              f"{clip.video.tracks_world.shape[1]} tracks): {time.perf_counter() - t:.2f} s")
        families_on(clip, tmp / "tapvid3d", args.per_task, "tapvid3d")
        if not args.no_sim:
            t = time.perf_counter()
            sim_scene = SimSource(n_scenes=1).load("sim-000000")
            print(f"[sim] simulate + render one scene ({len(sim_scene.views)} static views, "
                  f"{len(sim_scene.video.views)} clip frames): {time.perf_counter() - t:.2f} s")
            families_on(sim_scene, tmp / "sim", args.per_task, "sim")
        if not args.no_rosbag:
            rosbag_to_jsonl(tmp, args.per_task, args.bag_frames)
        if not args.no_scaling:
            scaling("scannet", root, [1, 2, 4], args.per_task, tmp,
                    "depth,correspondence,camera,object_size")
            if not args.no_sim:
                scaling("sim", None, [1, 2, 4], args.per_task, tmp, "all")


if __name__ == "__main__":
    main()
