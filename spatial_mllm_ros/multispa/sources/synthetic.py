"""Synthetic scenes with known geometry, written in the real layouts (ScanNet export and Meta's, TAPVid-3D).

So tests and benchmarks run the real loaders: a box room with box furniture, ray-cast depth; a clip with a
moving rigid box in front of a static wall, seen by a moving camera.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from spatial_mllm_ros.multispa.geometry import invert_pose


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in the aligned (z-up) world, with an instance id and a category label."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    instance: int
    label: str


ROOM = Box((0.0, 0.0, 0.0), (5.0, 4.0, 2.6), 0, "room")
FURNITURE: tuple[Box, ...] = (
    Box((0.6, 0.5, 0.0), (1.8, 1.3, 0.75), 5, "table"),
    Box((3.6, 0.3, 0.0), (4.7, 0.9, 1.9), 6, "cabinet"),
    Box((2.4, 2.9, 0.0), (2.9, 3.4, 0.9), 7, "chair"),
    Box((0.4, 3.0, 0.0), (2.0, 3.8, 0.8), 8, "sofa"),
    Box((3.9, 2.6, 0.0), (4.4, 3.1, 0.45), 9, "box"),
)
# Room faces: (axis, side 0=lo/1=hi, instance, label)
ROOM_FACES: tuple[tuple[int, int, int, str], ...] = (
    (0, 0, 1, "wall"), (0, 1, 1, "wall"), (1, 0, 2, "wall"), (1, 1, 2, "wall"),
    (2, 0, 3, "floor"), (2, 1, 4, "ceiling"),
)
COLOUR_SIZE = (1296, 968)
DEPTH_SIZE = (640, 480)
COLOUR_K = np.array([[1170.0, 0.0, 647.5], [0.0, 1170.0, 483.5], [0.0, 0.0, 1.0]])


def look_pose(position: np.ndarray, yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """Camera-to-world pose (x right, y down, z forward) at position, heading yaw, elevation pitch (z up)."""
    y, p = np.radians(yaw_deg), np.radians(pitch_deg)
    f = np.array([np.cos(p) * np.cos(y), np.cos(p) * np.sin(y), np.sin(p)])
    right = np.cross(f, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(f, right)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([right, down, f], axis=1)
    pose[:3, 3] = position
    return pose


def _face_points(box: Box, axis: int, side: int, n: int, rng: np.random.Generator) -> np.ndarray:
    lo, hi = np.array(box.lo), np.array(box.hi)
    pts = rng.uniform(lo, hi, size=(n, 3))
    pts[:, axis] = hi[axis] if side else lo[axis]
    return pts


def _area(box: Box, axis: int) -> float:
    ext = np.array(box.hi) - np.array(box.lo)
    return float(np.prod(np.delete(ext, axis)))


def room_vertices(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """About n surface samples of the room and furniture (no box bottoms): points, instance ids, labels."""
    faces = [(ROOM, a, s, i, lab) for a, s, i, lab in ROOM_FACES]
    faces += [(b, a, s, b.instance, b.label)
              for b in FURNITURE for a in range(3) for s in (0, 1) if (a, s) != (2, 0)]
    areas = np.array([_area(f[0], f[1]) for f in faces])
    counts = np.maximum(8, np.round(n * areas / areas.sum()).astype(int))
    pts, ids = [], []
    for (box, axis, side, inst, _), c in zip(faces, counts):
        pts.append(_face_points(box, axis, side, int(c), rng))
        ids.append(np.full(int(c), inst))
    labels = {1: "wall", 2: "wall", 3: "floor", 4: "ceiling"} | {b.instance: b.label for b in FURNITURE}
    return np.concatenate(pts), np.concatenate(ids), labels


def raycast(c2w: np.ndarray, k: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Optical-axis depth (m) and hit instance id per pixel of a camera inside the room."""
    w, h = size
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    rays_c = np.stack([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], np.ones_like(u)], axis=-1)
    d = rays_c @ c2w[:3, :3].T  # world directions with camera z = 1: the hit t is the depth
    o = c2w[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        lo, hi = np.array(ROOM.lo), np.array(ROOM.hi)
        t_axes = np.where(d > 0, (hi - o) * inv, (lo - o) * inv)
        t_axes = np.where(np.isfinite(t_axes), t_axes, np.inf)
        best = t_axes.min(axis=-1)
        axis = t_axes.argmin(axis=-1)
        side = np.take_along_axis(d > 0, axis[..., None], -1)[..., 0]
        face_ids = np.array([[1, 1], [2, 2], [3, 4]])
        hit = face_ids[axis, side.astype(int)]
        for box in FURNITURE:
            t1 = (np.array(box.lo) - o) * inv
            t2 = (np.array(box.hi) - o) * inv
            near = np.nanmax(np.minimum(t1, t2), axis=-1)
            far = np.nanmin(np.maximum(t1, t2), axis=-1)
            ok = (near <= far) & (near > 0) & (near < best)
            best = np.where(ok, near, best)
            hit = np.where(ok, box.instance, hit)
    return best, hit


_PALETTE = np.array([[128, 128, 128], [200, 190, 170], [180, 200, 190], [120, 90, 60], [240, 240, 240],
                     [150, 60, 40], [60, 90, 160], [60, 140, 60], [160, 150, 60], [140, 60, 140]],
                    dtype=np.float64)


def render_colour(c2w: np.ndarray, size: tuple[int, int], k: np.ndarray) -> np.ndarray:
    """Render a simple shaded, textured RGB image (ray cast at a quarter of the size, then upscaled)."""
    w, h = size
    small = (w // 4, h // 4)
    ks = np.diag([small[0] / w, small[1] / h, 1.0]) @ k
    depth, hit = raycast(c2w, ks, small)
    u, v = np.meshgrid(np.arange(small[0]), np.arange(small[1]))
    rays = np.stack([(u - ks[0, 2]) / ks[0, 0], (v - ks[1, 2]) / ks[1, 1], np.ones(u.shape)], -1)
    rays = rays * depth[..., None]
    world = rays @ c2w[:3, :3].T + c2w[:3, 3]
    checker = (np.floor(world / 0.25).astype(int).sum(-1) % 2) * 0.25 + 0.75
    rgb = _PALETTE[hit % len(_PALETTE)] * checker[..., None] / (1.0 + 0.08 * depth[..., None])
    return cv2.resize(np.clip(rgb, 0, 255).astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)


def trajectory(n_frames: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Walk around the room: position on an ellipse, heading sweeping, pitch wobbling (aligned poses)."""
    poses = []
    phase = rng.uniform(0, 2 * np.pi)
    for i in range(n_frames):
        s = phase + 2 * np.pi * i / max(n_frames, 1) * 1.3
        r = 1.0 + 0.3 * i / max(n_frames, 1)  # a widening loop: no two frames share a pose
        pos = np.array([2.5 + 1.1 * r * np.cos(s), 2.0 + 0.7 * r * np.sin(s), 1.4 + 0.15 * np.sin(3 * s)])
        yaw = np.degrees(s) + 150 + 25 * np.sin(2.3 * s)
        pitch = -15 + 10 * np.sin(1.7 * s)
        poses.append(look_pose(pos, yaw, pitch))
    return poses


def write_scannet_scene(root: Path, scene_id: str = "scene0000_00", n_frames: int = 24,
                        n_vertices: int = 6000, seed: int = 0, colour_size: tuple[int, int] = (320, 240),
                        depth_size: tuple[int, int] = (160, 120), bad_pose_every: int = 0) -> Path:
    """Write one synthetic scan in the ScanNet export layout; returns its folder.

    The raw (unaligned) world is the aligned one turned about z and shifted; the axis-alignment matrix
    in <scene>.txt undoes that. Frames are numbered 0, 5, 10, ...; every bad_pose_every-th pose is NaN.
    """
    rng = np.random.default_rng(seed)
    folder = root / scene_id
    for sub in ("color", "depth", "pose"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    theta = rng.uniform(-np.pi, np.pi)
    align = np.eye(4)
    align[:3, :3] = [[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]]
    align[:3, 3] = rng.uniform(-2, 2, 3) * [1, 1, 0]
    raw_from_aligned = invert_pose(align)
    k = np.diag([colour_size[0] / COLOUR_SIZE[0], colour_size[1] / COLOUR_SIZE[1], 1.0]) @ COLOUR_K
    full = np.eye(4)
    full[:3, :3] = k
    np.savetxt(folder / "intrinsic_color.txt", full)
    (folder / f"{scene_id}.txt").write_text(
        "sceneType = synthetic\naxisAlignment = " + " ".join(f"{x:.9f}" for x in align.ravel()) + "\n")
    pts, ids, labels = room_vertices(n_vertices, rng)
    raw = pts @ raw_from_aligned[:3, :3].T + raw_from_aligned[:3, 3]
    np.save(folder / "mesh_vertices.npy", raw.astype(np.float32))
    np.save(folder / "instance_ids.npy", ids.astype(np.int32))
    (folder / "instance_labels.json").write_text(json.dumps({str(i): lab for i, lab in labels.items()}))
    kd = np.diag([depth_size[0] / colour_size[0], depth_size[1] / colour_size[1], 1.0]) @ k
    for i, pose in enumerate(trajectory(n_frames, rng)):
        stem = f"{5 * i}"
        depth, _ = raycast(pose, kd, depth_size)
        cv2.imwrite(str(folder / "depth" / f"{stem}.png"), np.round(depth * 1000).astype(np.uint16))
        rgb = render_colour(pose, colour_size, k)
        cv2.imwrite(str(folder / "color" / f"{stem}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
        raw_pose = raw_from_aligned @ pose
        if bad_pose_every and i % bad_pose_every == bad_pose_every - 1:
            raw_pose = np.full((4, 4), -np.inf)
        np.savetxt(folder / "pose" / f"{stem}.txt", raw_pose)
    return folder


def write_ply(path: Path, points: np.ndarray, binary: bool = True) -> None:
    """Write vertices as a ScanNet-style PLY (xyz float, rgba uchar, no faces), binary or ASCII."""
    header = ("ply\nformat {} 1.0\nelement vertex {}\nproperty float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\nproperty uchar alpha\n"
              "element face 0\nproperty list uchar int vertex_indices\nend_header\n")
    if binary:
        rec = np.zeros(len(points), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"),
                                           ("b", "u1"), ("a", "u1")])
        rec["x"], rec["y"], rec["z"] = np.asarray(points).T
        path.write_bytes(header.format("binary_little_endian", len(points)).encode() + rec.tobytes())
    else:
        rows = "".join(f"{x} {y} {z} 1 2 3 255\n" for x, y, z in points)
        path.write_text(header.format("ascii", len(points)) + rows)


def write_scannet_annotations(folder: Path, scene_id: str, points: np.ndarray, instance_ids: np.ndarray,
                              labels: dict[int, str]) -> None:
    """Write vertices and instances as ScanNet's download has them: ply, segs and aggregation files.

    Segments of 7 vertices never straddle two instances; objectId = instance id - 1 (0 = no object).
    """
    seg = instance_ids.astype(np.int64) * 1_000_000 + np.arange(len(points)) // 7
    groups = [{"objectId": int(i) - 1, "label": labels[int(i)],
               "segments": sorted(set(seg[instance_ids == i].tolist()))}
              for i in np.unique(instance_ids) if i > 0]
    write_ply(folder / f"{scene_id}_vh_clean_2.ply", points)
    segs = json.dumps({"segIndices": seg.tolist()})
    (folder / f"{scene_id}_vh_clean_2.0.010000.segs.json").write_text(segs)
    (folder / f"{scene_id}.aggregation.json").write_text(json.dumps({"segGroups": groups}))


def _save_meta_matrix(path: Path, matrix: np.ndarray) -> None:
    """Write a 4x4 matrix as Meta's extract_posed_images.py does: float32, one row a line, 6 decimals."""
    np.savetxt(path, np.asarray(matrix, dtype=np.float32), fmt="%f")


def write_meta_scene(root: Path, scene_id: str = "scene0000_00", **scene: Any) -> Path:
    """Write one synthetic scan in Meta's layout (posed_images/<scene>/ + scans/<scene>/); returns root.

    The scan is write_scannet_scene's (same keyword arguments), re-laid out as Meta's extract_posed_images.py
    leaves ScanNet's download: frames NNNNN.jpg/.png/.txt (poses and intrinsic.txt in float32 with 6
    decimals), and in scans/ the <scene>.txt meta with the axis alignment and the raw mesh files. Only
    every 5th frame is written, the frames both engines read.
    """
    frames = root / "posed_images" / scene_id
    scan = root / "scans" / scene_id
    frames.mkdir(parents=True, exist_ok=True)
    scan.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        export = write_scannet_scene(Path(tmp), scene_id, **scene)
        for jpg in (export / "color").glob("*.jpg"):
            stem = f"{int(jpg.stem):05d}"
            shutil.copyfile(jpg, frames / f"{stem}.jpg")
            shutil.copyfile(export / "depth" / f"{jpg.stem}.png", frames / f"{stem}.png")
            _save_meta_matrix(frames / f"{stem}.txt", np.loadtxt(export / "pose" / f"{jpg.stem}.txt"))
        _save_meta_matrix(frames / "intrinsic.txt", np.loadtxt(export / "intrinsic_color.txt"))
        shutil.copyfile(export / f"{scene_id}.txt", scan / f"{scene_id}.txt")
        labels = {int(k): v for k, v in json.loads((export / "instance_labels.json").read_text()).items()}
        write_scannet_annotations(scan, scene_id, np.load(export / "mesh_vertices.npy"),
                                  np.load(export / "instance_ids.npy"), labels)
    return root


def write_tapvid3d_clip(root: Path, clip: str = "adt/clip_000", n_frames: int = 20, seed: int = 0,
                        size: tuple[int, int] = (160, 120), frames_in_npz: bool = False,
                        with_extrinsics: bool = True, scale: int = 1) -> Path:
    """Write one synthetic TAPVid-3D clip and return the npz path.

    A static wall (60 x scale tracks, first), a static block (20 x scale) and a box that translates
    about 0.4 m and turns (40 x scale, last), seen from a camera that slides and pans.
    """
    rng = np.random.default_rng(seed)
    path = root / f"{clip}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    f = 0.9 * w
    n_wall, n_block, n_cube = 60 * scale, 20 * scale, 40 * scale
    wall = np.stack([np.full(n_wall, 4.0), rng.uniform(-1.5, 1.5, n_wall), rng.uniform(0.0, 2.0, n_wall)],
                    axis=1)
    block = np.array([2.5, -0.8, 0.3]) + rng.uniform(-0.15, 0.15, (n_block, 3))
    cube_local = rng.uniform(-0.12, 0.12, (n_cube, 3))
    velocity = np.array([0.0, 0.4, 0.1]) / max(n_frames - 1, 1)
    world = np.zeros((n_frames, n_wall + n_block + n_cube, 3))
    w2c = np.zeros((n_frames, 4, 4))
    for t in range(n_frames):
        ang = 0.6 * t / max(n_frames - 1, 1)
        rot = np.array([[np.cos(ang), -np.sin(ang), 0], [np.sin(ang), np.cos(ang), 0], [0, 0, 1]])
        cube = cube_local @ rot.T + np.array([2.2, 0.2, 0.6]) + velocity * t
        world[t] = np.concatenate([wall, block, cube])
        c2w = look_pose(np.array([0.0, -0.3 + 0.02 * t, 1.0]), 4.0 * t / max(n_frames - 1, 1), -5.0)
        w2c[t] = invert_pose(c2w)
    cam = np.einsum("tij,tnj->tni", w2c[:, :3, :3], world) + w2c[:, None, :3, 3]
    u = f * cam[..., 0] / cam[..., 2] + w / 2
    v = f * cam[..., 1] / cam[..., 2] + h / 2
    visible = (cam[..., 2] > 0) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    jpegs = []
    for t in range(n_frames):
        img = np.full((h, w, 3), 90, np.uint8)
        for n in np.flatnonzero(visible[t]):
            colour = (220, 80, 60) if n >= n_wall + n_block else (80, 160, 220)
            cv2.circle(img, (int(u[t, n]), int(v[t, n])), 2, colour, -1)
        jpegs.append(cv2.imencode(".jpg", img)[1].tobytes())
    arrays = {"tracks_XYZ": cam.astype(np.float32), "visibility": visible,
              "fx_fy_cx_cy": np.array([f, f, w / 2, h / 2], dtype=np.float32)}
    if with_extrinsics:
        arrays["extrinsics_w2c"] = w2c.astype(np.float32)
    if frames_in_npz:
        arrays["images_jpeg_bytes"] = np.array(jpegs, dtype=np.bytes_)
    else:
        folder = path.with_suffix("")
        folder.mkdir(parents=True, exist_ok=True)
        for t, data in enumerate(jpegs):
            (folder / f"{t:05d}.jpg").write_bytes(data)
    np.savez(path, **arrays)
    return path
