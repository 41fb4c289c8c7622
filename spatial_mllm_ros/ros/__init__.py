"""rclpy adapters: the only modules that import ROS 2 (import the submodules you need)."""

__all__ = ["bringup", "convert", "errors", "params", "spatial_node"]
