"""Camera movement (two images) from overlap-balanced image pairs.

Translation direction per axis, yaw/pitch direction, distance, angles and the translation vector.
"""

from __future__ import annotations

from spatial_mllm_ros.conventions import QuestionKind, format_value
from spatial_mllm_ros.multispa.format import Sample
from spatial_mllm_ros.multispa.geometry import CameraMotion, camera_motion
from spatial_mllm_ros.multispa.tasks.base import TaskContext, TaskSpec
from spatial_mllm_ros.multispa.templates import render


def _label(motion: CameraMotion, quantity: str) -> str | int | tuple[int, ...]:
    """Return the answer value of one quantity (paper conventions: truncated mm and degrees)."""
    return {
        "x": motion.x_label, "y": motion.y_label, "z": motion.z_label,
        "yaw": motion.yaw_label, "pitch": motion.pitch_label,
        "distance": motion.distance_mm, "vector": motion.vector_mm,
        "yaw_angle": motion.yaw_angle, "pitch_angle": motion.pitch_angle,
    }[quantity]


_GROUP = {"x": "camera_dir_x", "y": "camera_dir_y", "z": "camera_dir_z", "yaw": "camera_dir_yaw",
          "pitch": "camera_dir_pitch", "distance": "camera_distance", "vector": "camera_vector",
          "yaw_angle": "camera_yaw_angle", "pitch_angle": "camera_pitch_angle"}


def camera_movement(ctx: TaskContext, spec: TaskSpec, n: int) -> list[Sample]:
    """One camera quantity for each overlap-balanced pair (image order already randomised)."""
    quantity = spec.params["quantity"]
    out: list[Sample] = []
    for k1, k2, v1, v2 in ctx.view_pairs(n):
        motion = camera_motion(v1.c2w, v2.c2w, ctx.full_inverse)
        value = _label(motion, quantity)
        sid = ctx.next_id(spec.name)
        text = render(_GROUP[quantity], ctx.rng, format_value(spec.kind, value))
        meta = {"c2w_1": v1.c2w.tolist(), "c2w_2": v2.c2w.tolist(),
                "translation_m": list(motion.translation_m), "yaw_deg": motion.yaw_deg,
                "pitch_deg": motion.pitch_deg, "overlap": float(ctx.overlap()[k1, k2]), "quantity": quantity,
                "label": list(value) if isinstance(value, tuple) else value}
        out.append(ctx.sample(spec, sid, [ctx.images.frame(v1), ctx.images.frame(v2)], [v1, v2], text, meta))
    return out


def _spec(name: str, kind: QuestionKind, quantity: str, description: str) -> TaskSpec:
    return TaskSpec(name, "camera", kind, 2, "geometry", camera_movement, {"quantity": quantity},
                    description=description)


SPECS: tuple[TaskSpec, ...] = (
    _spec("camera_translation_x", QuestionKind.DIRECTION, "x", "left/right translation (camera-1 x)"),
    _spec("camera_translation_y", QuestionKind.DIRECTION, "y", "up/down translation (camera-1 y)"),
    _spec("camera_translation_z", QuestionKind.DIRECTION, "z", "forward/backward translation (camera-1 z)"),
    _spec("camera_yaw_direction", QuestionKind.DIRECTION, "yaw", "turned left/right (optical-axis heading)"),
    _spec("camera_pitch_direction", QuestionKind.DIRECTION, "pitch", "tilted up/down (axis elevation)"),
    _spec("camera_distance", QuestionKind.DISTANCE, "distance", "translation distance int(1000|d|) mm"),
    _spec("camera_yaw_angle", QuestionKind.ANGLE, "yaw_angle", "heading change int(|dyaw|) degrees"),
    _spec("camera_pitch_angle", QuestionKind.ANGLE, "pitch_angle", "elevation change int(|dpitch|) degrees"),
    _spec("camera_vector", QuestionKind.VECTOR, "vector", "translation vector in camera-1 axes, mm"),
)
