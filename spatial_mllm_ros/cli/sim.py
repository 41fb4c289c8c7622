"""`spatial-mllm sim`: record simulated episodes to rosbag2, preview a scene, or run the live sim node."""

from __future__ import annotations

import argparse
from pathlib import Path

from spatial_mllm_ros.sim.profiles import PROFILES, shift_profile
from spatial_mllm_ros.sim.scene import CAMERA_NAMES, SceneConfig


def _scene(args: argparse.Namespace) -> SceneConfig:
    base = SceneConfig(
        n_objects=args.objects,
        width=args.width,
        height=args.height,
        cameras=tuple(args.cameras.split(",")),
        shadows=args.shadows,
    )
    return shift_profile(args.appearance).scene_config(args.seed, base)


def _record(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from spatial_mllm_ros.sim.episodes import generate_episodes
    from spatial_mllm_ros.sim.recorder import EpisodeRecorder

    episodes = generate_episodes(
        _scene(args),
        args.episodes,
        args.motion or ["random"],
        args.frames,
        args.fps,
        depth=args.depth,
        seg=False,
    )
    with EpisodeRecorder(args.out, args.storage, args.compressed, depth=args.depth) as rec:
        for ep in tqdm(episodes, total=args.episodes, desc="episodes", unit="ep"):
            rec.write(ep)
    print(f"wrote {rec.n_episodes} episodes ({rec.n_messages} messages) to {rec.path} [{args.storage}]")
    return 0


def _preview(args: argparse.Namespace) -> int:
    from spatial_mllm_ros.sim.preview import save_grid, save_preview

    scene, out = _scene(args), Path(args.out)
    path = save_grid(scene, args.grid, out) if args.grid else save_preview(scene, out)
    print(f"wrote {path}")
    return 0


def _sdf(args: argparse.Namespace) -> int:
    from spatial_mllm_ros.sim.gazebo_world import write_sdf

    path = write_sdf(_scene(args), Path(args.out), args.rate)
    print(f"wrote {path} (Gazebo world of scene seed {args.seed})")
    return 0


def _run(args: argparse.Namespace) -> int:
    from spatial_mllm_ros.ros.sim_node import main as node_main

    ros_args = ["--ros-args"] + (["--params-file", args.params_file] if args.params_file else [])
    sets = list(args.set or []) + ([f"script:={args.script}"] if args.script is not None else [])
    for item in sets:
        ros_args += ["-p", item]
    return node_main(ros_args)


def _scene_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="scene seed (episode k uses seed + k)")
    p.add_argument("--objects", type=int, default=3, help="objects per scene (1-6)")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument(
        "--cameras", default=",".join(CAMERA_NAMES), help="comma-separated: front,side,overhead,wrist"
    )
    p.add_argument("--shadows", action="store_true", help="render shadows (about 10x slower on CPU)")
    p.add_argument(
        "--appearance",
        default="in_distribution",
        choices=list(PROFILES),
        help="named look: " + "; ".join(f"{p.name}: {p.description}" for p in PROFILES.values()),
    )


def register(sub: argparse._SubParsersAction) -> None:
    """Add `sim record`, `sim preview`, `sim sdf` and `sim run` to the CLI."""
    p = sub.add_parser("sim", help="MuJoCo tabletop simulation: record bags, preview, live ROS node")
    sim = p.add_subparsers(dest="sim_command", metavar="SIM_COMMAND", required=True)

    rec = sim.add_parser("record", help="record scripted episodes (images + truth) to a rosbag2")
    rec.add_argument("--episodes", type=int, default=10, help="number of episodes")
    rec.add_argument("--out", required=True, help="bag directory to create (must not exist)")
    rec.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    rec.add_argument("--compressed", action="store_true", help="sensor_msgs/CompressedImage (jpeg)")
    rec.add_argument("--depth", action="store_true", help="also record 32FC1 depth images")
    rec.add_argument("--frames", type=int, default=16, help="frames per episode")
    rec.add_argument("--fps", type=float, default=10.0, help="frame rate (simulated time)")
    rec.add_argument(
        "--motion",
        action="append",
        default=None,
        help='motion spec, repeatable, cycled: "random", "random:push,idle", '
        '"translate:direction=left,distance=0.1,camera=front", "pick_place:object=red cube"',
    )
    _scene_args(rec)
    rec.set_defaults(func=_record)

    prev = sim.add_parser(
        "preview", help="save a PNG with every camera's RGB, depth and segmentation, or a grid of seeds"
    )
    prev.add_argument("--out", default="sim_preview.png")
    prev.add_argument(
        "--grid",
        type=int,
        default=0,
        metavar="N",
        help="instead: seeds seed..seed+N-1 from the first camera, e.g. --grid 12 --appearance randomized",
    )
    _scene_args(prev)
    prev.set_defaults(func=_preview)

    sdf = sim.add_parser("sdf", help="write the Gazebo (SDF) world of a scene seed")
    sdf.add_argument("--out", default="tabletop.sdf")
    sdf.add_argument("--rate", type=float, default=10.0, help="camera sensor update rate (Hz)")
    _scene_args(sdf)
    sdf.set_defaults(func=_sdf)

    run = sim.add_parser("run", help="start the live spatial_mllm_sim ROS 2 node (Ctrl-C stops it)")
    run.add_argument("--params-file", default="", help="YAML with ros__parameters for spatial_mllm_sim")
    run.add_argument("--set", action="append", metavar="NAME:=VALUE", help="a parameter, e.g. rate_hz:=5.0")
    run.add_argument(
        "--script", default=None, help='scripted mode, e.g. "random" (see `sim record --motion`)'
    )
    run.set_defaults(func=_run)
