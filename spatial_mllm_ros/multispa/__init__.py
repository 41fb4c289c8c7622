"""MultiSPA: the sample format, the multi-frame spatial data engine, training and evaluation.

The conversation format and answer conventions it follows live in spatial_mllm_ros.conventions.
"""

__all__ = ["format"]
