"""The tabletop in Gazebo (gz sim) bridged to the topics of the MuJoCo sim node, plus the spatial node.

`ros2 launch spatial_mllm_ros gazebo_sim.launch.py [world:=FILE.sdf] [headless:=true]
[spatial_node:=false] [params_file:=FILE]`. Needs Gazebo (Harmonic or newer) with ros_gz_sim and
ros_gz_bridge. Untested on the project's machines: Gazebo cannot be installed there (the SDF and this
file's structure are checked by test/test_sim_gazebo.py). `spatial-mllm sim sdf --seed N` writes the
world of any MuJoCo scene seed.
"""

from __future__ import annotations

import os
from importlib.resources import files

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node

from launch import LaunchDescription

PACKAGE = "spatial_mllm_ros"
CAMERAS = ("front", "side", "overhead", "wrist")
FRONT_CAMERA = "/camera/front/image_raw"


def bridge_arguments() -> list[str]:
    """ros_gz_bridge specs: gz -> ROS for every camera image and camera_info, and /clock."""
    specs = ["/clock@rosgraph_msgs/msg/Clock[gz.msgs.Clock"]
    for cam in CAMERAS:
        specs.append(f"/camera/{cam}/image_raw@sensor_msgs/msg/Image[gz.msgs.Image")
        specs.append(f"/camera/{cam}/camera_info@sensor_msgs/msg/CameraInfo[gz.msgs.CameraInfo")
    return specs


def generate_launch_description() -> LaunchDescription:
    default_world = str(files("spatial_mllm_ros.sim") / "gazebo" / "tabletop.sdf")
    default_params = os.path.join(get_package_share_directory(PACKAGE), "config", "spatial_mllm.yaml")
    world = LaunchConfiguration("world")
    headless = LaunchConfiguration("headless")
    gz_sim = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            os.path.join(get_package_share_directory("ros_gz_sim"), "launch", "gz_sim.launch.py")
        ),
        launch_arguments={
            "gz_args": [PythonExpression(["'-r -s ' if '", headless, "' == 'true' else '-r '"]), world],
            "on_exit_shutdown": "true",
        }.items(),
    )
    bridge = Node(
        package="ros_gz_bridge",
        executable="parameter_bridge",
        name="spatial_mllm_gz_bridge",
        arguments=bridge_arguments(),
        parameters=[{"use_sim_time": True}],
        output="screen",
    )
    spatial = Node(
        package=PACKAGE,
        executable="spatial_mllm_node",
        name="spatial_mllm_node",
        parameters=[LaunchConfiguration("params_file"), {"use_sim_time": True}],
        remappings=[("image", FRONT_CAMERA)],
        condition=IfCondition(LaunchConfiguration("spatial_node")),
        output="screen",
    )
    return LaunchDescription(
        [
            DeclareLaunchArgument("world", default_value=default_world, description="SDF world to load"),
            DeclareLaunchArgument("headless", default_value="false", description="true: server only, no GUI"),
            DeclareLaunchArgument(
                "spatial_node", default_value="true", description="also start spatial_mllm_node"
            ),
            DeclareLaunchArgument(
                "params_file", default_value=default_params, description="spatial node YAML"
            ),
            gz_sim,
            bridge,
            spatial,
        ]
    )
