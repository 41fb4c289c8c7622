"""Meta's Multi-SpatialMLLM task names as aliases of ours, so --tasks takes the names of Meta's engine.

Taken from Meta's data-engine release: its spatial_engine/ folders (families), script and task names,
and the `question_type` field of its JSONL. Each alias expands to our family or sub-task names.
"""

from __future__ import annotations

from spatial_mllm_ros.multispa.geometry import SIZE_DIMENSIONS


def _movement(quantities: tuple[str, ...], markers: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"object_{q}_{m}_{d}" for q in quantities for m in markers for d in ("adt", "pstudio"))


META_ALIASES: dict[str, tuple[str, ...]] = {
    # spatial_engine/ folders
    "camera_movement": ("camera",),
    "depth_perception": ("depth",),
    "visual_correspondence": ("correspondence",),
    "object_perception": ("object_size",),
    # depth_perception engines and question types
    "depth_estimation_dot": ("depth_value_dot",),
    "depth_estimation_coor": ("depth_value_coord",),
    "depth_comparison_dot": ("depth_compare_dot",),
    "depth_comparison_annotated": ("depth_compare_dot",),
    "depth_comparison_coor": ("depth_compare_coord",),
    "depth_comparison_coordinate": ("depth_compare_coord",),
    # visual_correspondence engines and question types
    "visual_correspondence_coor_2_coor": ("correspondence_coord",),
    "visual_correspondence_dot_2_multichoice": ("correspondence_choice",),
    "visual_correspondence_multiple_choice": ("correspondence_choice",),
    # camera_movement question types
    "x_movement": ("camera_translation_x",),
    "y_movement": ("camera_translation_y",),
    "z_movement": ("camera_translation_z",),
    "yaw_movement": ("camera_yaw_direction",),
    "pitch_movement": ("camera_pitch_direction",),
    "yaw_angle": ("camera_yaw_angle",),
    "pitch_angle": ("camera_pitch_angle",),
    "total_distance": ("camera_distance",),
    "displacement_vector": ("camera_vector",),
    # object_movement engines and question types (TAPVid-3D ADT and Panoptic Studio)
    "object_movement_coord": _movement(("distance", "vector"), ("coord",)),
    "object_movement_dot": _movement(("distance", "vector"), ("dot",)),
    "tapvid3d_total_distance": _movement(("distance",), ("coord", "dot")),
    "tapvid3d_displacement_vector": _movement(("vector",), ("coord", "dot")),
    # object_perception question types
    **{f"object_perception_{d}_estimation": (f"object_size_{d}",) for d in SIZE_DIMENSIONS},
}
