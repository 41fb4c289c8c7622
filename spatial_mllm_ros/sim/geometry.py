"""Rigid-body maths of the simulator: optical camera frames, quaternions (w, x, y, z), projection."""

from __future__ import annotations

import numpy as np

# MuJoCo cameras look along their -z with y up; the optical frame (Contract 4) has y down and z forward.
MUJOCO_TO_OPTICAL = np.diag([1.0, -1.0, -1.0])


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray | None = None) -> np.ndarray:
    """Rotation R_world_optical of a camera at `eye` looking at `target` (x right, y down, z forward)."""
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    forward = target - eye
    forward /= np.linalg.norm(forward)
    up = np.array([0.0, 0.0, 1.0]) if up is None else np.asarray(up, float)
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-9:  # looking straight along `up`: any horizontal right will do
        right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    return np.stack([right, down, forward], axis=1)


def make_pose(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """4x4 homogeneous transform from a rotation matrix and a translation."""
    pose = np.eye(4)
    pose[:3, :3] = rotation
    pose[:3, 3] = translation
    return pose


def quat_to_mat(q: np.ndarray) -> np.ndarray:
    """Rotation matrix of a unit quaternion (w, x, y, z)."""
    w, x, y, z = np.asarray(q, float) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def mat_to_quat(m: np.ndarray) -> np.ndarray:
    """Convert a rotation matrix to a unit quaternion (w, x, y, z) with w >= 0."""
    m = np.asarray(m, float)
    trace = np.trace(m)
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    q = np.array(q)
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q


def yaw_quat(yaw_rad: float) -> np.ndarray:
    """Quaternion (w, x, y, z) of a rotation by `yaw_rad` about the world z axis."""
    return np.array([np.cos(yaw_rad / 2), 0.0, 0.0, np.sin(yaw_rad / 2)])


def rot_z(angle_rad: float) -> np.ndarray:
    """Rotation matrix about z."""
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def axis_angle(axis: np.ndarray, angle_rad: float) -> np.ndarray:
    """Rotation matrix about a unit `axis` (Rodrigues)."""
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]])
    return np.eye(3) + np.sin(angle_rad) * k + (1 - np.cos(angle_rad)) * k @ k


def rotation_angle_deg(r: np.ndarray) -> float:
    """Angle of a rotation matrix in degrees (0..180)."""
    return float(np.degrees(np.arccos(np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0))))


def smoothstep(s: np.ndarray | float) -> np.ndarray | float:
    """Ease in and out on [0, 1] (3s^2 - 2s^3): scripted motions start and stop at rest, like a robot's."""
    return s * s * (3 - 2 * s)


def intrinsics(fovy_deg: float, width: int, height: int) -> np.ndarray:
    """Pinhole K of a MuJoCo camera (square pixels, pixel centres at integer coordinates)."""
    f = 0.5 * height / np.tan(np.radians(fovy_deg) / 2)
    return np.array([[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]])


def to_camera(points_world: np.ndarray, t_world_cam: np.ndarray) -> np.ndarray:
    """Points (..., 3) in world coordinates expressed in the camera's optical frame."""
    r, t = t_world_cam[:3, :3], t_world_cam[:3, 3]
    return (np.asarray(points_world, float) - t) @ r


def project(points_cam: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Pixel coordinates (..., 2) of optical-frame points (z must be > 0)."""
    p = np.asarray(points_cam, float)
    uv = p[..., :2] / p[..., 2:3]
    return uv * np.array([k[0, 0], k[1, 1]]) + np.array([k[0, 2], k[1, 2]])
