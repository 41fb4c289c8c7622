"""Multi-frame spatial question answering for robots (Multi-SpatialMLLM on ROS 2)."""

__version__ = "0.1.0"

__all__ = ["__version__"]
