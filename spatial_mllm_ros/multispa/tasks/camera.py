"""Camera movement (two images) from overlap-balanced image pairs (motion-gated pairs for robot logs).

Translation direction per axis, yaw/pitch direction, distance, angles and the translation vector.
"""

from __future__ import annotations

import numpy as np

from spatial_mllm_ros.conventions import STATIC_THRESHOLD_M, ZERO_TOLERANCE, QuestionKind, format_value
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


CANDIDATES_PER_SAMPLE = 8  # motion-gated pairs drawn per wanted sample (some show too little of a quantity)


def shows(motion: CameraMotion, quantity: str) -> bool:
    """Whether a pair shows the asked quantity at least at the "did not move" thresholds (1 cm, 1 degree).

    Overlap-balanced pairs take the paper's labels without a dead zone; a robot's log has no overlap to
    balance on, and a wrist camera that only slides would otherwise give yaw labels from noise.
    """
    if quantity in ("yaw", "yaw_angle"):
        return abs(motion.yaw_deg) >= ZERO_TOLERANCE[QuestionKind.ANGLE]
    if quantity in ("pitch", "pitch_angle"):
        return abs(motion.pitch_deg) >= ZERO_TOLERANCE[QuestionKind.ANGLE]
    d = np.asarray(motion.translation_m)
    return bool((abs(d["xyz".index(quantity)]) if quantity in ("x", "y", "z") else np.linalg.norm(d))
                >= STATIC_THRESHOLD_M)


_GROUP = {"x": "camera_dir_x", "y": "camera_dir_y", "z": "camera_dir_z", "yaw": "camera_dir_yaw",
          "pitch": "camera_dir_pitch", "distance": "camera_distance", "vector": "camera_vector",
          "yaw_angle": "camera_yaw_angle", "pitch_angle": "camera_pitch_angle"}


def camera_movement(ctx: TaskContext, spec: TaskSpec, n: int) -> list[Sample]:
    """One camera quantity for each overlap-balanced pair (image order already randomised).

    Without scene vertices (a robot's log) the pairs are motion-gated and must show the quantity asked.
    """
    quantity = spec.params["quantity"]
    gated = not ctx.scene.has_geometry
    out: list[Sample] = []
    for k1, k2, v1, v2 in ctx.view_pairs(n * CANDIDATES_PER_SAMPLE if gated else n):
        motion = camera_motion(v1.c2w, v2.c2w, ctx.full_inverse)
        if gated and not shows(motion, quantity):
            continue
        value = _label(motion, quantity)
        sid = ctx.next_id(spec.name)
        text = render(_GROUP[quantity], ctx.rng, format_value(spec.kind, value))
        meta = {"c2w_1": v1.c2w.tolist(), "c2w_2": v2.c2w.tolist(),
                "translation_m": list(motion.translation_m), "yaw_deg": motion.yaw_deg,
                "pitch_deg": motion.pitch_deg, "quantity": quantity,
                "overlap": None if gated else float(ctx.overlap()[k1, k2]),
                "label": list(value) if isinstance(value, tuple) else value}
        out.append(ctx.sample(spec, sid, [ctx.images.frame(v1), ctx.images.frame(v2)], [v1, v2], text, meta))
        if len(out) == n:
            break
    return out


def _spec(name: str, kind: QuestionKind, quantity: str, description: str) -> TaskSpec:
    return TaskSpec(name, "camera", kind, 2, "poses", camera_movement, {"quantity": quantity},
                    description=description, sources=("scannet", "sim", "rosbag"))


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
