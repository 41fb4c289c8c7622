"""The MuJoCo world's live node plus the spatial node watching its front camera, in one launch.

`ros2 launch spatial_mllm_ros sim.launch.py [params_file:=FILE] [log_level:=info]`; without `ros2
launch`: `spatial-mllm bringup --params-file FILE --sim`. Both nodes run on the simulation's /clock.
"""

from __future__ import annotations

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

PACKAGE = "spatial_mllm_ros"
FRONT_CAMERA = "/camera/front/image_raw"


def generate_launch_description() -> LaunchDescription:
    default_params = os.path.join(get_package_share_directory(PACKAGE), "config", "spatial_mllm.yaml")
    params_file = LaunchConfiguration("params_file")
    log_args = ["--ros-args", "--log-level", LaunchConfiguration("log_level")]
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="YAML with /**: ros__parameters: for both nodes"),
        DeclareLaunchArgument("log_level", default_value="info", description="debug, info, warn, error"),
        Node(package=PACKAGE, executable="spatial_mllm_sim", name="spatial_mllm_sim",
             parameters=[params_file], arguments=log_args, output="screen"),
        Node(package=PACKAGE, executable="spatial_mllm_node", name="spatial_mllm_node",
             parameters=[params_file, {"use_sim_time": True}], remappings=[("image", FRONT_CAMERA)],
             arguments=log_args, output="screen"),
    ])
