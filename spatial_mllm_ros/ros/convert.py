"""Small numpy -> sensor_msgs helpers over images.py (decoding lives in frames.frame_from_msg)."""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from spatial_mllm_ros.images import numpy_to_image_fields


def ns_to_stamp(ns: int) -> Time:
    """Integer nanoseconds (ROS time) -> builtin_interfaces/Time."""
    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def numpy_to_image(pixels: np.ndarray, stamp_ns: int, frame_id: str = "", encoding: str = "rgb8") -> Image:
    """Convert an array (RGB uint8 HxWx3 for colour encodings) to a sensor_msgs/Image with this stamp."""
    return Image(header=Header(stamp=ns_to_stamp(stamp_ns), frame_id=frame_id),
                 **numpy_to_image_fields(pixels, encoding=encoding))
