"""Multi-view geometry of the data engine.

Poses, projection, depth-tested visibility, overlap, balanced pair sampling, camera-motion labels,
rigid groups of point tracks and minimal image sets.

Conventions (docs/multispa.md): camera optical frame x right, y down, z forward; poses are 4x4
camera-to-world matrices in a z-up world (ScanNet after its axis alignment); lengths in metres here,
millimetres only in answers.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spatial_mllm_ros.multispa.errors import GeometryError
from spatial_mllm_ros.transforms import invert_rigid

OVERLAP_RANGE: tuple[float, float] = (6.0, 35.0)  # percent, the paper's pair window
OVERLAP_BINS = 29  # one percent wide over OVERLAP_RANGE
RIGID_CHANGE_IGNORE_M = 0.01  # pairwise-distance changes up to this are noise
RIGID_THRESHOLD = 0.1  # average-linkage cut on summed distance changes (metres)
RIGID_MIN_POINTS = 5  # a rigid group needs more points than this
SIZE_VISIBLE_FRACTION = 0.05  # an object is visible in an image when this share of its vertices is
SIZE_COVER_TOLERANCE = 0.10  # a set of images covers a dimension when within 10% of the true size


def pose_is_valid(pose: np.ndarray) -> bool:
    """Check a 4x4 pose is usable: finite (ScanNet marks lost tracking with inf/NaN) and invertible."""
    pose = np.asarray(pose, dtype=np.float64)
    if pose.shape != (4, 4) or not np.isfinite(pose).all():
        return False
    return abs(np.linalg.det(pose[:3, :3])) > 1e-6


def align_poses(axis_alignment: np.ndarray, c2w: np.ndarray) -> np.ndarray:
    """Aligned camera-to-world pose(s) E = A @ E_c2w (A: ScanNet's axis-alignment matrix)."""
    return np.asarray(axis_alignment, dtype=np.float64) @ np.asarray(c2w, dtype=np.float64)


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 rigid transform to (N, 3) points."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def invert_pose(pose: np.ndarray, full: bool = False) -> np.ndarray:
    """Inverse of a rigid 4x4 transform: (R^T, -R^T t), or with full=True np.linalg.inv as Meta's engine.

    The two differ only where R is not exactly orthonormal: by ~1e-6 for ScanNet's 6-decimal pose files,
    enough to flip a label whose value is ~0 or to move a truncated millimetre.
    """
    pose = np.asarray(pose, dtype=np.float64)
    return np.linalg.inv(pose) if full else invert_rigid(pose)


@dataclass(frozen=True)
class Projection:
    """Points seen from one camera: pixel positions (N, 2) and optical-axis depth z (N,) in metres."""

    uv: np.ndarray
    z: np.ndarray


def project(points_world: np.ndarray, c2w: np.ndarray, intrinsics: np.ndarray,
            full_inverse: bool = False) -> Projection:
    """p_c = E^-1 [p; 1]; (u, v) = K p_c / z. Points behind the camera get z <= 0 (and junk uv)."""
    p_c = transform_points(invert_pose(np.asarray(c2w, dtype=np.float64), full_inverse), points_world)
    z = p_c[:, 2]
    safe = np.where(np.abs(z) > 1e-9, z, 1e-9)
    k = np.asarray(intrinsics, dtype=np.float64)
    u = k[0, 0] * p_c[:, 0] / safe + k[0, 1] * p_c[:, 1] / safe + k[0, 2]
    v = k[1, 1] * p_c[:, 1] / safe + k[1, 2]
    return Projection(np.stack([u, v], axis=1), z)


def visible_mask(
    proj: Projection,
    image_size: tuple[int, int],
    depth_m: np.ndarray,
    tolerance_m: float | None = None,
) -> np.ndarray:
    """Depth-tested visibility of projected points (the paper's test when tolerance_m is None).

    In frame (0 <= u < W, 0 <= v < H) and 0 < z < depth, the depth read at the depth-map pixel
    (round(u * Wd / W), round(v * Hd / H)) (clipped to the map); depth 0 means no reading -> invisible.
    The paper's test is strict (no tolerance), which on exact geometry rejects about half of the truly
    visible points; tolerance_m > 0 accepts z < depth + tolerance instead.
    """
    width, height = image_size
    u, v = proj.uv[:, 0], proj.uv[:, 1]
    inside = (u >= 0) & (u < width) & (v >= 0) & (v < height) & (proj.z > 0)
    mask = np.zeros(len(proj.z), dtype=bool)
    idx = np.flatnonzero(inside)
    if idx.size == 0:
        return mask
    d = depth_at(depth_m, proj.uv[idx], image_size)
    limit = d if not tolerance_m else d + tolerance_m
    mask[idx] = (d > 0) & (proj.z[idx] < limit)
    return mask


def depth_at(depth_m: np.ndarray, uv: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Depth read for image pixels uv (N, 2) at the depth-map pixel (round(u * Wd / W), round(v * Hd / H)).

    The map may have another resolution than the image (ScanNet: 640x480 depth under 1296x968 colour).
    """
    width, height = image_size
    d_h, d_w = depth_m.shape[:2]
    du = np.clip(np.round(uv[:, 0] * d_w / width).astype(np.int64), 0, d_w - 1)
    dv = np.clip(np.round(uv[:, 1] * d_h / height).astype(np.int64), 0, d_h - 1)
    return depth_m[dv, du]


def back_project(uv: np.ndarray, z: np.ndarray, intrinsics: np.ndarray, c2w: np.ndarray) -> np.ndarray:
    """World points (N, 3) of pixels uv (N, 2) at optical-axis depths z (N,): the inverse of project()."""
    rays = np.linalg.inv(np.asarray(intrinsics, dtype=np.float64)) @ np.vstack([uv.T, np.ones(len(z))])
    return transform_points(np.asarray(c2w, dtype=np.float64), (rays * z).T)


def overlap_matrix(visibility: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """Pairwise overlap 100 * |Vi & Vj| / |Vi | Vj| of a (F, N) boolean visibility matrix."""
    vis = np.asarray(visibility, dtype=bool)
    n_frames = vis.shape[0]
    inter = np.zeros((n_frames, n_frames), dtype=np.float64)
    for start in range(0, vis.shape[1], chunk):
        block = vis[:, start:start + chunk].astype(np.float32)
        inter += block @ block.T
    counts = np.diag(inter).copy()
    union = counts[:, None] + counts[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(union > 0, 100.0 * inter / union, 0.0)
    return out


def quota_sample(
    values: np.ndarray,
    edges: np.ndarray,
    n_total: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Draw indices of `values` with an equal quota per bin; a bin's unused quota moves to the next.

    Bins are [edges[k], edges[k+1]) with the last one closed; values outside are never drawn. The
    carry-over keeps the total near n_total when some bins are thin, while no bin gets more than its
    own quota plus what earlier bins left.
    """
    values = np.asarray(values, dtype=np.float64)
    n_bins = len(edges) - 1
    if n_bins <= 0 or n_total <= 0 or values.size == 0:
        return np.zeros(0, dtype=np.int64)
    bins = np.searchsorted(edges, values, side="right") - 1
    bins[values == edges[-1]] = n_bins - 1
    valid = (bins >= 0) & (bins < n_bins) & np.isfinite(values)
    base = n_total // n_bins
    extra = n_total - base * n_bins
    chosen: list[np.ndarray] = []
    carry = 0
    for k in range(n_bins):
        quota = base + (1 if k < extra else 0) + carry
        members = np.flatnonzero(valid & (bins == k))
        take = min(quota, members.size)
        if take:
            chosen.append(rng.choice(members, size=take, replace=False))
        carry = quota - take
    return np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)


def overlap_bin_edges(lo: float = OVERLAP_RANGE[0], hi: float = OVERLAP_RANGE[1],
                      n_bins: int = OVERLAP_BINS) -> np.ndarray:
    """Bin edges of the overlap-balanced pair sampling (29 one-percent bins over 6..35)."""
    return np.linspace(lo, hi, n_bins + 1)


def sample_overlap_pairs(
    overlap: np.ndarray,
    n_pairs: int,
    rng: np.random.Generator,
    edges: np.ndarray | None = None,
) -> list[tuple[int, int]]:
    """Overlap-balanced image pairs (i, j): equal quota per overlap bin, order swapped with p = 0.5."""
    edges = overlap_bin_edges() if edges is None else edges
    ii, jj = np.triu_indices(overlap.shape[0], k=1)
    picked = quota_sample(overlap[ii, jj], edges, n_pairs, rng)
    swap = rng.random(picked.size) < 0.5
    return [(int(jj[p]), int(ii[p])) if s else (int(ii[p]), int(jj[p])) for p, s in zip(picked, swap)]


def wrap_degrees(angle: np.ndarray | float) -> np.ndarray | float:
    """Wrap angles in degrees into (-180, 180]."""
    wrapped = -((-np.asarray(angle, dtype=np.float64) + 180.0) % 360.0 - 180.0)
    return float(wrapped) if np.ndim(wrapped) == 0 else wrapped


def heading_elevation(c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World heading (yaw) and elevation (pitch) in degrees of the optical axis f = R[:, 2], z up.

    Takes one pose (4, 4) or a stack (..., 4, 4); returns arrays of the stack's shape (0-d for one pose).
    """
    f = np.asarray(c2w, dtype=np.float64)[..., :3, 2]
    yaw = np.degrees(np.arctan2(f[..., 1], f[..., 0]))
    pitch = np.degrees(np.arcsin(np.clip(f[..., 2] / np.linalg.norm(f, axis=-1), -1.0, 1.0)))
    return yaw, pitch


def sample_motion_pairs(
    c2w: np.ndarray,
    n_pairs: int,
    rng: np.random.Generator,
    min_translation_m: float,
    min_rotation_deg: float,
    n_bins: int = 10,
) -> list[tuple[int, int]]:
    """Image pairs of posed views without scene vertices (no overlap to balance on), e.g. a robot's log.

    A pair qualifies when the camera moved at least min_translation_m or turned (heading or elevation) at
    least min_rotation_deg; pairs are balanced over n_bins translation-distance bins and their order is
    swapped with p = 0.5, as the overlap pairs are.
    """
    poses = np.asarray(c2w, dtype=np.float64)
    ii, jj = np.triu_indices(len(poses), k=1)
    dist = np.linalg.norm(poses[jj, :3, 3] - poses[ii, :3, 3], axis=1)
    yaw, pitch = heading_elevation(poses)
    turn = np.maximum(np.abs(wrap_degrees(yaw[jj] - yaw[ii])), np.abs(pitch[jj] - pitch[ii]))
    moved = np.flatnonzero((dist >= min_translation_m) | (turn >= min_rotation_deg))
    if not moved.size:
        return []
    edges = np.linspace(0.0, max(float(dist[moved].max()), 1e-6), n_bins + 1)
    picked = moved[quota_sample(dist[moved], edges, n_pairs, rng)]
    swap = rng.random(picked.size) < 0.5
    return [(int(jj[p]), int(ii[p])) if s else (int(ii[p]), int(jj[p])) for p, s in zip(picked, swap)]


@dataclass(frozen=True)
class CameraMotion:
    """How the camera moved from image 1 to image 2, with the paper's labels (no dead zone)."""

    translation_m: tuple[float, float, float]  # d in camera-1 axes (x right, y down, z forward)
    yaw_deg: float  # wrapped heading change of the optical axis (positive: turned left)
    pitch_deg: float  # elevation change (positive: tilted up)

    @property
    def x_label(self) -> str:
        """Sideways translation: d_x > 0 is right."""
        return "right" if self.translation_m[0] > 0 else "left"

    @property
    def y_label(self) -> str:
        """Vertical translation: d_y > 0 is down (image y points down)."""
        return "down" if self.translation_m[1] > 0 else "up"

    @property
    def z_label(self) -> str:
        """Along the optical axis: d_z > 0 is forward."""
        return "forward" if self.translation_m[2] > 0 else "backward"

    @property
    def yaw_label(self) -> str:
        """Heading change: positive (counter-clockwise seen from above) is a turn to the left."""
        return "left" if self.yaw_deg > 0 else "right"

    @property
    def pitch_label(self) -> str:
        """Elevation change: positive is up."""
        return "up" if self.pitch_deg > 0 else "down"

    @property
    def distance_mm(self) -> int:
        """int(1000 * |d|), truncated as in the paper."""
        return int(1000.0 * float(np.linalg.norm(self.translation_m)))

    @property
    def vector_mm(self) -> tuple[int, int, int]:
        """[int(1000 dx), int(1000 dy), int(1000 dz)], truncated toward zero as in the paper."""
        return tuple(int(1000.0 * c) for c in self.translation_m)  # type: ignore[return-value]

    @property
    def yaw_angle(self) -> int:
        """int(|dyaw|) degrees."""
        return int(abs(self.yaw_deg))

    @property
    def pitch_angle(self) -> int:
        """int(|dpitch|) degrees."""
        return int(abs(self.pitch_deg))


def camera_motion(c2w_1: np.ndarray, c2w_2: np.ndarray, full_inverse: bool = False) -> CameraMotion:
    """E_rel = E1^-1 E2; translation in camera-1 axes; yaw/pitch from the optical axes' world angles."""
    rel = invert_pose(np.asarray(c2w_1, dtype=np.float64), full_inverse) @ np.asarray(c2w_2, dtype=np.float64)
    yaw1, pitch1 = heading_elevation(c2w_1)
    yaw2, pitch2 = heading_elevation(c2w_2)
    d = rel[:3, 3]
    return CameraMotion(
        (float(d[0]), float(d[1]), float(d[2])),
        float(wrap_degrees(yaw2 - yaw1)),
        float(pitch2 - pitch1),
    )


def track_world_points(tracks_cam: np.ndarray, extrinsics_w2c: np.ndarray) -> np.ndarray:
    """Camera-frame tracks (T, N, 3) -> world (T, N, 3): p_w = inv(w2c_t) p_c per frame."""
    c2w = np.linalg.inv(np.asarray(extrinsics_w2c, dtype=np.float64))
    tracks = np.asarray(tracks_cam, dtype=np.float64)
    return np.einsum("tij,tnj->tni", c2w[:, :3, :3], tracks) + c2w[:, None, :3, 3]


def average_linkage(distances: np.ndarray, threshold: float) -> np.ndarray:
    """Cluster labels from average-linkage agglomeration cut where the linkage exceeds threshold."""
    d = np.array(distances, dtype=np.float64)
    n = d.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    np.fill_diagonal(d, np.inf)
    sizes = np.ones(n, dtype=np.float64)
    label = np.arange(n)
    for _ in range(n - 1):
        flat = int(np.argmin(d))
        a, b = divmod(flat, n)
        if not d[a, b] <= threshold:
            break
        # Lance-Williams update for average linkage: merge b into a.
        merged = (sizes[a] * d[a] + sizes[b] * d[b]) / (sizes[a] + sizes[b])
        d[a, :] = merged
        d[:, a] = merged
        d[a, a] = np.inf
        d[b, :] = np.inf
        d[:, b] = np.inf
        sizes[a] += sizes[b]
        label[label == b] = a
    _, compact = np.unique(label, return_inverse=True)
    return compact


def rigid_groups(
    tracks_world: np.ndarray,
    visibility: np.ndarray | None = None,
    change_ignore_m: float = RIGID_CHANGE_IGNORE_M,
    threshold: float = RIGID_THRESHOLD,
    min_points: int = RIGID_MIN_POINTS,
) -> np.ndarray:
    """Rigid-group id per track (-1: in no group of more than min_points points).

    Cost of a point pair: the sum over frames of |D_t - D_ref|, D_t their distance at frame t and D_ref
    the one at the first frame where both are visible, counted only where both are visible and when
    the change exceeds change_ignore_m. Pairs never seen together cannot be judged and never link.
    Groups come from average-linkage clustering of that cost, cut at threshold.
    """
    tracks = np.asarray(tracks_world, dtype=np.float64)
    n_frames, n_points = tracks.shape[:2]
    vis = np.ones((n_frames, n_points), dtype=bool) if visibility is None else np.asarray(visibility, bool)
    vis = vis & np.isfinite(tracks).all(axis=2)
    tracks = np.where(vis[..., None], tracks, 0.0)
    dist = np.linalg.norm(tracks[:, :, None] - tracks[:, None], axis=-1)  # (T, N, N)
    both = vis[:, :, None] & vis[:, None]
    seen = both.any(axis=0)
    ref = np.take_along_axis(dist, both.argmax(axis=0)[None], axis=0)[0]
    change = np.abs(dist - ref)
    cost = np.where(both & (change > change_ignore_m), change, 0.0).sum(axis=0)
    cost[~seen] = np.inf
    labels = average_linkage(cost, threshold)
    _, group, counts = np.unique(labels, return_inverse=True, return_counts=True)
    big = counts > min_points
    return np.where(big, np.cumsum(big) - 1, -1).astype(np.int64)[group]


def box_dimensions(extent: np.ndarray) -> np.ndarray:
    """(..., 3) axis-aligned extents -> (..., 3) [height = dz, length = max(dx, dy), width = min(dx, dy)]."""
    extent = np.asarray(extent, dtype=np.float64)
    return np.stack(
        [extent[..., 2], np.maximum(extent[..., 0], extent[..., 1]),
         np.minimum(extent[..., 0], extent[..., 1])],
        axis=-1,
    )


SIZE_DIMENSIONS: tuple[str, ...] = ("height", "length", "width")


def minimal_image_sets(
    points: np.ndarray,
    visibility: np.ndarray,
    dimension: str,
    max_images: int = 3,
    visible_fraction: float = SIZE_VISIBLE_FRACTION,
    tolerance: float = SIZE_COVER_TOLERANCE,
    max_candidates: int = 48,
) -> list[tuple[int, ...]]:
    """Minimal image sets whose visible vertices span the object's true size along one dimension.

    points: (N, 3) vertices of one object; visibility: (F, N) per image. An image counts when at least
    visible_fraction of the vertices are visible in it; a set covers the dimension when the extent of
    its visible vertices is within tolerance of the true extent; a set is returned only when no proper
    subset covers. Sets of 1 and 2 images are searched exhaustively (vectorised), sets of 3 among at
    most max_candidates images.
    """
    if dimension not in SIZE_DIMENSIONS:
        raise GeometryError(f"unknown size dimension {dimension!r}; expected one of {SIZE_DIMENSIONS}")
    axis = SIZE_DIMENSIONS.index(dimension)
    points = np.asarray(points, dtype=np.float64)
    vis = np.asarray(visibility, dtype=bool)
    if points.shape[0] == 0:
        return []
    true = box_dimensions(points.max(0) - points.min(0))[axis]
    if true <= 0:
        return []
    need = (1.0 - tolerance) * true
    frames = np.flatnonzero(vis.sum(axis=1) >= visible_fraction * points.shape[0])
    if frames.size == 0:
        return []
    lo = np.stack([points[vis[f]].min(0) for f in frames])
    hi = np.stack([points[vis[f]].max(0) for f in frames])
    single = box_dimensions(hi - lo)[:, axis] >= need
    sets: list[tuple[int, ...]] = [(int(f),) for f in frames[single]]
    rest = np.flatnonzero(~single)
    if max_images >= 2 and rest.size >= 2:
        a, b = np.triu_indices(rest.size, k=1)
        ext = np.maximum(hi[rest[a]], hi[rest[b]]) - np.minimum(lo[rest[a]], lo[rest[b]])
        ok = box_dimensions(ext)[:, axis] >= need
        sets += [(int(frames[rest[i]]), int(frames[rest[j]])) for i, j in zip(a[ok], b[ok])]
        pair_cover = np.zeros((rest.size, rest.size), dtype=bool)
        pair_cover[a[ok], b[ok]] = True
        pair_cover |= pair_cover.T
        if max_images >= 3 and rest.size >= 3:
            cand = rest[: max_candidates]
            tri = np.array(list(itertools.combinations(range(cand.size), 3)), dtype=np.int64)
            i, j, k = tri.T
            ext = (np.maximum(np.maximum(hi[cand[i]], hi[cand[j]]), hi[cand[k]])
                   - np.minimum(np.minimum(lo[cand[i]], lo[cand[j]]), lo[cand[k]]))
            ok = box_dimensions(ext)[:, axis] >= need
            ok &= ~(pair_cover[i, j] | pair_cover[i, k] | pair_cover[j, k])
            sets += [tuple(int(frames[cand[x]]) for x in row) for row in tri[ok]]
    return sets


def covers_dimension(points: np.ndarray, visibility: np.ndarray, frames: Sequence[int], dimension: str,
                     tolerance: float = SIZE_COVER_TOLERANCE) -> bool:
    """Whether the vertices visible in `frames` span the true size along `dimension` within tolerance."""
    axis = SIZE_DIMENSIONS.index(dimension)
    points = np.asarray(points, dtype=np.float64)
    seen = np.asarray(visibility, dtype=bool)[list(frames)].any(axis=0)
    if not seen.any():
        return False
    true = box_dimensions(points.max(0) - points.min(0))[axis]
    vis_ext = box_dimensions(points[seen].max(0) - points[seen].min(0))[axis]
    return bool(vis_ext >= (1.0 - tolerance) * true)
