"""Run what the launch files start, in one process under one MultiThreadedExecutor (no `ros2 launch`)."""

from __future__ import annotations

import importlib
from pathlib import Path

import rclpy
from rclpy.executors import Executor, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.logging import LoggingSeverity, set_logger_level
from rclpy.node import Node
from rclpy.parameter import Parameter

from spatial_mllm_ros.ros.errors import BringupError
from spatial_mllm_ros.ros.spatial_node import SpatialNode, spin

FRONT_CAMERA = "/camera/front/image_raw"  # what sim.launch.py remaps `image` to
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")


def default_params_file() -> Path:
    """Find the installed config/spatial_mllm.yaml, or the source tree's when running from a checkout."""
    try:
        from ament_index_python.packages import get_package_share_directory

        installed = Path(get_package_share_directory("spatial_mllm_ros")) / "config" / "spatial_mllm.yaml"
        if installed.is_file():
            return installed
    except Exception:  # not installed through ament: fall back to the checkout
        pass
    return Path(__file__).resolve().parents[2] / "config" / "spatial_mllm.yaml"


def _sim_node(cli_args: list[str]) -> Node:
    try:
        module = importlib.import_module("spatial_mllm_ros.ros.sim_node")
    except ImportError as exc:
        raise BringupError(f"--sim needs spatial_mllm_ros.ros.sim_node: {exc}") from exc
    cls = getattr(module, "SimNode", None)
    if cls is None:
        raise BringupError("spatial_mllm_ros.ros.sim_node defines no SimNode class")
    return cls(cli_args=cli_args)


def bringup(params_file: str | Path, sim: bool = False, namespace: str = "", image_topic: str = "",
            use_sim_time: bool = False, log_level: str = "info") -> int:
    """Start the spatial node (plus the simulation node with `sim`) and spin until SIGINT/SIGTERM."""
    params = Path(params_file)
    if not params.is_file():
        raise BringupError(f"params file not found: {params}")
    if log_level not in LOG_LEVELS:
        raise BringupError(f"log level {log_level!r} not in {LOG_LEVELS}")
    image_topic = FRONT_CAMERA if sim and not image_topic else image_topic
    args = ["--ros-args", "--params-file", str(params)]
    node_args = args + (["-r", f"image:={image_topic}"] if image_topic else [])
    rclpy.init()
    sim_node: Node | None = None
    try:
        sim_node = _sim_node(args) if sim else None
        spatial = SpatialNode(namespace=namespace, cli_args=node_args, parameter_overrides=(
            [Parameter("use_sim_time", value=True)] if (sim or use_sim_time) else []))
    except BaseException:
        if sim_node is not None:
            sim_node.close()
            sim_node.destroy_node()
        rclpy.try_shutdown()
        raise
    for node in (sim_node, spatial):
        if node is not None:
            set_logger_level(node.get_logger().name, LoggingSeverity[log_level.upper()])
    spatial.autostart()
    groups: list[tuple[Executor, list[Node]]] = [(MultiThreadedExecutor(num_threads=4), [spatial])]
    if sim_node is not None:  # the simulation's GL context belongs to the thread that created it: this one
        groups.insert(0, (SingleThreadedExecutor(), [sim_node]))
    spin(groups)
    return 0
