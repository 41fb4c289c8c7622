"""Bring up the spatial question node: `ros2 launch spatial_mllm_ros bringup.launch.py [args]`.

Arguments: params_file (default: the installed config/spatial_mllm.yaml), namespace, image_topic (what
the node's `image` input is remapped to), use_sim_time, log_level. Without `ros2 launch`, run the same
node with `spatial-mllm bringup --params-file FILE`.
"""

from __future__ import annotations

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription

PACKAGE = "spatial_mllm_ros"


def generate_launch_description() -> LaunchDescription:
    default_params = os.path.join(get_package_share_directory(PACKAGE), "config", "spatial_mllm.yaml")
    params_file = LaunchConfiguration("params_file")
    use_sim_time = LaunchConfiguration("use_sim_time")
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="YAML with /**: ros__parameters: for the node"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("image_topic", default_value="image",
                              description="camera topic the node's `image` input is remapped to"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock time"),
        DeclareLaunchArgument("log_level", default_value="info", description="debug, info, warn, error"),
        Node(
            package=PACKAGE,
            executable="spatial_mllm_node",
            name="spatial_mllm_node",
            namespace=LaunchConfiguration("namespace"),
            parameters=[params_file, {"use_sim_time": ParameterValue(use_sim_time, value_type=bool)}],
            remappings=[("image", LaunchConfiguration("image_topic"))],
            arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
            output="screen",
            emulate_tty=True,
        ),
    ])
