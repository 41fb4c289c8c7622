"""MultiSPA geometry checked against independent maths.

Projection and the paper's strict depth test, overlap, quota sampling with carry-over, camera-motion
labels (swap flips them), rigid groups, minimal image sets.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from spatial_mllm_ros.multispa.errors import GeometryError
from spatial_mllm_ros.multispa.geometry import (
    average_linkage,
    box_dimensions,
    camera_motion,
    covers_dimension,
    minimal_image_sets,
    overlap_bin_edges,
    overlap_matrix,
    project,
    quota_sample,
    rigid_groups,
    sample_overlap_pairs,
    visible_mask,
    wrap_degrees,
)
from spatial_mllm_ros.multispa.sources import ScanNetSource
from spatial_mllm_ros.multispa.sources.base import visibility_matrix
from spatial_mllm_ros.multispa.sources.synthetic import look_pose, write_scannet_scene


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("scannet")
    write_scannet_scene(root, n_frames=30, n_vertices=5000, seed=3)
    return ScanNetSource(Path(root)).load("scene0000_00")


def _rot_z(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])


def test_project_matches_pinhole_and_depth_test_is_strict_with_rounded_lookup() -> None:
    k = np.array([[100.0, 0, 50], [0, 100.0, 40], [0, 0, 1]])
    pose = look_pose(np.zeros(3), 0.0, 0.0)  # looking along world +x; camera x = world -y, y = world -z
    pts = np.array([[2.0, 0.0, 0.0], [2.0, -0.5, 0.2], [-1.0, 0.0, 0.0], [2.0, -5.0, 0.0]])
    proj = project(pts, pose, k)
    assert np.allclose(proj.uv[0], [50, 40]) and proj.z[0] == pytest.approx(2.0)
    assert np.allclose(proj.uv[1], [50 + 100 * 0.5 / 2, 40 - 100 * 0.2 / 2])
    # depth map at half resolution: the lookup is round(u * Wd / W)
    depth = np.full((40, 50), 2.0, np.float32)
    vis = visible_mask(proj, (100, 80), depth)
    assert not vis[0], "z == depth is not visible under the strict test"
    assert visible_mask(proj, (100, 80), depth, tolerance_m=0.01)[0]
    assert not vis[2] and not vis[3], "behind the camera / outside the frame"
    depth[20, 25] = 2.5  # the pixel round(50 * 50/100), round(40 * 40/80)
    assert visible_mask(proj, (100, 80), depth)[0]
    depth[20, 25] = 0.0  # no reading
    assert not visible_mask(proj, (100, 80), depth, tolerance_m=1.0)[0]


def test_strict_test_halves_visibility_and_overlap(scene) -> None:
    strict, _ = visibility_matrix(scene)
    tol, _ = visibility_matrix(scene, 0.05)
    assert (strict <= tol).all()
    ratio = strict.sum() / tol.sum()
    assert 0.35 < ratio < 0.65, ratio  # docs: about half of truly visible vertices pass
    ov_s, ov_t = overlap_matrix(strict), overlap_matrix(tol)
    iu = np.triu_indices(len(ov_s), 1)
    assert ov_s[iu].max() < 40 < ov_t[iu].max()
    # overlap = 100 |A & B| / |A | B|, recomputed with sets
    a, b = np.flatnonzero(strict[0]), np.flatnonzero(strict[1])
    expect = 100 * len(set(a) & set(b)) / len(set(a) | set(b))
    assert ov_s[0, 1] == pytest.approx(expect)


def _reference_quota(values: np.ndarray, edges: np.ndarray, n: int) -> list[int]:
    """Per-bin take with equal quotas and carry-over, computed the slow way."""
    n_bins = len(edges) - 1
    takes, carry = [], 0
    for k in range(n_bins):
        hi_ok = values <= edges[k + 1] if k == n_bins - 1 else values < edges[k + 1]
        avail = int(((values >= edges[k]) & hi_ok).sum())
        quota = n // n_bins + (1 if k < n % n_bins else 0) + carry
        takes.append(min(avail, quota))
        carry = quota - takes[-1]
    return takes


def test_quota_sampling_holds_per_bin_quotas_with_carry_over() -> None:
    rng = np.random.default_rng(0)
    edges = overlap_bin_edges()
    assert len(edges) == 30 and edges[0] == 6 and edges[-1] == 35
    values = np.concatenate([rng.uniform(6, 10, 200), rng.uniform(20, 21, 3), rng.uniform(30, 35, 50),
                             rng.uniform(0, 6, 100), rng.uniform(36, 90, 100)])
    picked = quota_sample(values, edges, 145, rng)
    assert len(set(picked.tolist())) == len(picked)
    got = np.histogram(values[picked], bins=edges)[0].tolist()
    assert got == _reference_quota(values, edges, 145)
    assert ((values[picked] >= 6) & (values[picked] <= 35)).all()


def test_overlap_pairs_are_in_window_and_swapped_half_the_time(scene) -> None:
    vis, _ = visibility_matrix(scene)
    ov = overlap_matrix(vis)
    pairs = sample_overlap_pairs(ov, 200, np.random.default_rng(1))
    assert pairs and all(6 <= ov[i, j] <= 35 for i, j in pairs)
    swapped = np.mean([i > j for i, j in pairs])
    assert 0.3 < swapped < 0.7


def test_camera_motion_labels_follow_the_paper() -> None:
    base = look_pose(np.array([1.0, 2.0, 1.5]), 30.0, -10.0)
    right = base.copy()
    right[:3, 3] += base[:3, 0] * 0.5  # along camera x
    m = camera_motion(base, right)
    assert m.x_label == "right" and m.distance_mm == 500 and m.vector_mm == (500, 0, 0)
    fwd_up = base.copy()
    fwd_up[:3, 3] += base[:3, 2] * 0.3 - base[:3, 1] * 0.2  # forward and up (-y)
    m = camera_motion(base, fwd_up)
    assert (m.z_label, m.y_label) == ("forward", "up")
    assert m.vector_mm == tuple(int(1000 * c) for c in m.translation_m)  # truncated, as the paper
    assert np.abs(np.array(m.vector_mm) - [0, -200, 300]).max() <= 1
    turn = look_pose(np.array([1.0, 2.0, 1.5]), 50.0, 5.0)
    m = camera_motion(base, turn)
    assert m.yaw_label == "left" and m.yaw_angle == 20 and m.pitch_label == "up" and m.pitch_angle == 15
    wrap = camera_motion(look_pose(np.zeros(3), 170, 0), look_pose(np.zeros(3), -170, 0))
    assert wrap.yaw_deg == pytest.approx(20.0) and wrap.yaw_label == "left"
    assert wrap_degrees(-180.0) == 180.0


def test_swapping_images_flips_every_camera_label() -> None:
    rng = np.random.default_rng(7)
    flips = {"x": 0, "y": 0, "z": 0, "yaw": 0, "pitch": 0}
    n = 200
    for _ in range(n):
        p1 = rng.uniform(0, 3, 3)
        yaw, pitch = rng.uniform(-180, 180), rng.uniform(-40, 20)
        e1 = look_pose(p1, yaw, pitch)
        # small rotation, real translation: the regime of overlapping views
        e2 = look_pose(p1 + rng.normal(0, 0.4, 3), yaw + rng.normal(0, 8), pitch + rng.normal(0, 4))
        a, b = camera_motion(e1, e2), camera_motion(e2, e1)
        assert a.yaw_label != b.yaw_label and a.pitch_label != b.pitch_label
        assert a.distance_mm == pytest.approx(b.distance_mm, abs=1) and a.yaw_angle == b.yaw_angle
        pairs = (("x", a.x_label, b.x_label), ("y", a.y_label, b.y_label), ("z", a.z_label, b.z_label))
        for key, la, lb in pairs:
            flips[key] += la != lb
    assert flips["yaw"] == 0 and flips["pitch"] == 0
    for key in ("x", "y", "z"):
        assert flips[key] >= 0.9 * n, flips  # a rotation can mix axes on a few pairs
    pure = look_pose(np.array([1.0, 1.0, 1.0]), 10, 0)
    moved = pure.copy()
    moved[:3, 3] += [0.2, -0.3, 0.1]
    a, b = camera_motion(pure, moved), camera_motion(moved, pure)
    assert (a.x_label, a.y_label, a.z_label) != (b.x_label, b.y_label, b.z_label)
    assert all(x != y for x, y in zip((a.x_label, a.y_label, a.z_label), (b.x_label, b.y_label, b.z_label)))


def test_direction_labels_are_balanced_on_random_pairs(scene) -> None:
    vis, idx = visibility_matrix(scene)
    pairs = sample_overlap_pairs(overlap_matrix(vis), 300, np.random.default_rng(2))
    labels = {"x": [], "yaw": [], "z": []}
    for i, j in pairs:
        m = camera_motion(scene.views[idx[i]].c2w, scene.views[idx[j]].c2w)
        labels["x"].append(m.x_label == "left")
        labels["yaw"].append(m.yaw_label == "left")
        labels["z"].append(m.z_label == "forward")
    for key, vals in labels.items():
        assert 0.3 < np.mean(vals) < 0.7, (key, np.mean(vals))


def _naive_average_linkage(d: np.ndarray, threshold: float) -> list[set[int]]:
    clusters = [{i} for i in range(len(d))]
    while len(clusters) > 1:
        best, pair = np.inf, None
        for a, b in itertools.combinations(range(len(clusters)), 2):
            link = np.mean([d[i, j] for i in clusters[a] for j in clusters[b]])
            if link < best:
                best, pair = link, (a, b)
        if best > threshold:
            break
        a, b = pair
        clusters[a] |= clusters[b]
        del clusters[b]
    return clusters


def test_average_linkage_matches_the_definition() -> None:
    rng = np.random.default_rng(4)
    pts = np.concatenate([rng.normal(0, 0.05, (8, 2)), rng.normal(1, 0.05, (7, 2)),
                          rng.normal([0, 3], 0.3, (6, 2))])
    d = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    labels = average_linkage(d, 0.4)
    ours = sorted(sorted(np.flatnonzero(labels == g).tolist()) for g in np.unique(labels))
    ref = sorted(sorted(c) for c in _naive_average_linkage(d, 0.4))
    assert ours == ref


def test_rigid_groups_separate_independently_moving_bodies() -> None:
    rng = np.random.default_rng(5)
    t = np.arange(10)[:, None, None]
    static = np.broadcast_to(rng.uniform(0, 2, (12, 3)), (10, 12, 3))
    body = rng.uniform(-0.2, 0.2, (9, 3))
    ang = np.radians(5 * np.arange(10))
    rot = np.stack([[[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]] for a in ang])
    moving = np.einsum("tij,nj->tni", rot, body) + np.array([3.0, 0, 0]) + 0.05 * t * np.array([1.0, 0, 0])
    jitter = rng.uniform(0, 2, (10, 4, 3))  # points that move on their own
    tracks = np.concatenate([static, moving, jitter], axis=1)
    vis = np.ones(tracks.shape[:2], bool)
    vis[:4, :3] = False  # three static points appear late: still judged from their first shared frame
    vis[:, 20] = False  # never seen: cannot be grouped
    groups = rigid_groups(tracks, vis)
    assert groups[20] == -1
    groups[20] = groups[12]
    assert len(set(groups[:12])) == 1 and groups[0] >= 0
    assert len(set(groups[12:21])) == 1 and groups[12] >= 0 and groups[12] != groups[0]
    assert (groups[21:] == -1).all(), "lone movers form no group of more than 5 points"


def test_minimal_image_sets_cover_and_are_minimal(scene) -> None:
    vis, _ = visibility_matrix(scene)
    found = 0
    for inst in (5, 6, 7, 8):
        members = scene.instance_ids == inst
        pts, v = scene.points[members], vis[:, members]
        for dim in ("height", "length", "width"):
            sets = minimal_image_sets(pts, v, dim)
            for s in sets:
                found += 1
                assert all(v[f].mean() >= 0.05 for f in s), "every image shows >= 5% of the object"
                assert covers_dimension(pts, v, s, dim)
                for k in range(1, len(s)):
                    for sub in itertools.combinations(s, k):
                        assert not covers_dimension(pts, v, sub, dim), (s, sub)
    assert found > 10
    with pytest.raises(GeometryError):
        minimal_image_sets(scene.points[:10], vis[:, :10], "depth")
    assert box_dimensions(np.array([0.5, 2.0, 1.0])).tolist() == [1.0, 2.0, 0.5]
