"""Object movement (two frames of a video): how far a tracked point moved in the world.

Also its displacement vector in the first frame's camera axes; distance- and rigid-group-balanced.
"""

from __future__ import annotations

import numpy as np

from spatial_mllm_ros.conventions import (
    DID_NOT_MOVE,
    STATIC_THRESHOLD_M,
    QuestionKind,
    format_value,
    to_norm_coords,
)
from spatial_mllm_ros.multispa.format import Sample
from spatial_mllm_ros.multispa.geometry import invert_pose, project, quota_sample, rigid_groups
from spatial_mllm_ros.multispa.tasks.base import TaskContext, TaskSpec, coord_text, marker_radius
from spatial_mllm_ros.multispa.templates import point_ref, render, static_answer

DISTANCE_BINS = 10
MAX_GROUP_POINTS = 192  # tracks clustered per clip (average linkage is cubic in this)
MAX_GROUP_FRAMES = 24  # frames summed in the pairwise-distance change
CANDIDATES_PER_SAMPLE = 12


def point_groups(ctx: TaskContext) -> tuple[np.ndarray, np.ndarray]:
    """Subsampled track ids and their rigid-group ids (-1: no group), computed once per clip."""
    if "groups" in ctx.cache:
        return ctx.cache["groups"]
    video = ctx.scene.video
    assert video is not None
    n_frames, n_tracks = video.visible.shape
    seen = np.flatnonzero(video.visible.sum(axis=0) >= 2)
    ids = seen[np.unique(np.linspace(0, seen.size - 1, min(MAX_GROUP_POINTS, seen.size)).astype(int))]
    frames = np.unique(np.linspace(0, n_frames - 1, min(MAX_GROUP_FRAMES, n_frames)).astype(int))
    groups = (rigid_groups(video.tracks_world[frames][:, ids], video.visible[frames][:, ids])
              if ids.size else np.zeros(0, dtype=np.int64))
    ctx.cache["groups"] = (ids, groups)
    return ids, groups


def _candidates(ctx: TaskContext, n: int) -> list[tuple[int, int, int, int]]:
    """(t1, t2, track, group) draws, balanced over 10 distance bins, one rigid group at a time."""
    video = ctx.scene.video
    assert video is not None
    ids, groups = point_groups(ctx)
    if ids.size == 0:
        return []
    pool_groups = np.unique(groups[groups >= 0])
    n_frames = video.visible.shape[0]
    draws: list[tuple[int, int, int, int]] = []
    for _ in range(n * CANDIDATES_PER_SAMPLE):
        t1, t2 = sorted(ctx.rng.choice(n_frames, size=2, replace=False).tolist())
        if pool_groups.size:
            g = int(pool_groups[ctx.rng.integers(pool_groups.size)])
            members = ids[groups == g]
        else:
            g, members = -1, ids
        both = members[video.visible[t1, members] & video.visible[t2, members]]
        if both.size:
            draws.append((t1, t2, int(both[ctx.rng.integers(both.size)]), g))
    if not draws:
        return []
    arr = np.array(draws)
    dist = np.linalg.norm(video.tracks_world[arr[:, 1], arr[:, 2]] - video.tracks_world[arr[:, 0], arr[:, 2]],
                          axis=1)
    edges = np.linspace(0.0, max(float(dist.max()), 1e-6), DISTANCE_BINS + 1)
    picked = quota_sample(dist, edges, n, ctx.rng)
    return [draws[i] for i in picked]


def object_movement(ctx: TaskContext, spec: TaskSpec, n: int) -> list[Sample]:
    """Distance (mm) or camera-1 vector (mm) of a tracked point between two frames; static -> did not move."""
    quantity, marker = spec.params["quantity"], spec.params["marker"]
    video = ctx.scene.video
    assert video is not None
    out: list[Sample] = []
    for t1, t2, track, group in _candidates(ctx, n):
        v1, v2 = video.views[t1], video.views[t2]
        p1, p2 = video.tracks_world[t1, track], video.tracks_world[t2, track]
        proj = project(p1[None], v1.c2w, v1.intrinsics)
        (u, v), z = proj.uv[0], float(proj.z[0])
        m = marker_radius(v1.width)
        if not (z > 0 and m <= u < v1.width - m and m <= v < v1.height - m):
            continue
        dp = p2 - p1
        dist_m = float(np.linalg.norm(dp))
        vec_m = invert_pose(v1.c2w)[:3, :3] @ dp  # R_w2c of frame 1
        static = dist_m < STATIC_THRESHOLD_M
        xy = to_norm_coords(u, v, v1.width, v1.height)
        sid = ctx.next_id(spec.name)
        if quantity == "distance":
            value = 0 if static else int(round(1000.0 * dist_m))
            value_text = format_value(QuestionKind.DISTANCE, value)
            label: object = value
        else:
            vec_mm = [0, 0, 0] if static else [int(round(1000.0 * c)) for c in vec_m]
            value_text = format_value(QuestionKind.VECTOR, vec_mm)
            label = vec_mm
        group_name = "object_distance" if quantity == "distance" else "object_vector"
        answer = static_answer(ctx.rng, DID_NOT_MOVE) if static else None
        ref = point_ref(ctx.rng, marker, coord_text(xy))
        text = render(group_name, ctx.rng, value_text, answer=answer, ref=ref)
        img1 = ctx.images.marked(v1, marker, [(u, v, "")], f"{sid}-1")
        meta = {"track": track, "group": group, "t1": t1, "t2": t2, "point_world_1": p1.tolist(),
                "point_world_2": p2.tolist(), "displacement_world_m": dp.tolist(),
                "displacement_cam1_m": vec_m.tolist(), "distance_m": dist_m, "pixel_1": [float(u), float(v)],
                "coords_1": list(xy), "static": bool(static), "marker": marker, "label": label}
        out.append(ctx.sample(spec, sid, [img1, ctx.images.frame(v2)], [v1, v2], text, meta))
    return out


def _specs(subset: str, family: str, source: str) -> tuple[TaskSpec, ...]:
    out = []
    for quantity, kind in (("distance", QuestionKind.DISTANCE), ("vector", QuestionKind.VECTOR)):
        for marker in ("coord", "dot"):
            out.append(TaskSpec(
                f"object_{quantity}_{marker}_{subset}", family, kind, 2, "video", object_movement,
                {"quantity": quantity, "marker": marker}, subsets=(subset,), sources=(source,),
                description=f"{quantity} a tracked point moved ({marker}), {subset} clips",
            ))
    return tuple(out)


SPECS: tuple[TaskSpec, ...] = (_specs("adt", "object_movement", "tapvid3d")
                               + _specs("pstudio", "object_movement", "tapvid3d"))
SIM_SPECS: tuple[TaskSpec, ...] = _specs("sim", "robot", "sim")
