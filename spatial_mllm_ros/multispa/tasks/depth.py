"""Depth perception (one image): a point's depth in mm, and which of two points is closer/farther."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from spatial_mllm_ros.conventions import QuestionKind, format_value, to_norm_coords
from spatial_mllm_ros.multispa.format import Sample
from spatial_mllm_ros.multispa.geometry import back_project, depth_at
from spatial_mllm_ros.multispa.sources.base import View
from spatial_mllm_ros.multispa.tasks.base import TaskContext, TaskSpec, coord_text, marker_radius
from spatial_mllm_ros.multispa.templates import point_ref, render

PIXEL_STRIDE = 4  # grid step of the depth-map pixels a scene without vertices asks about


def depth_map_points(view: View, stride: int = PIXEL_STRIDE) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of a view with a depth reading, on a grid away from the border: (uv (M, 2), z (M,) metres).

    The points of a scene without vertices (a robot's log): a depth value is the sensor's reading at the
    pixel, so a moving gripper or object never leaves a stale point behind as vertices from other views
    would.
    """
    m = marker_radius(view.width)
    v, u = np.mgrid[m:view.height - m:stride, m:view.width - m:stride]
    uv = np.stack([u.ravel(), v.ravel()], axis=1).astype(np.float64)
    z = depth_at(view.depth(), uv, (view.width, view.height)).astype(np.float64)
    ok = np.isfinite(z) & (z > 0)
    return uv[ok], z[ok]


def _views_with_points(
    ctx: TaskContext, n: int, min_points: int
) -> Iterator[tuple[View, np.ndarray | None, np.ndarray, np.ndarray]]:
    """Up to n random views with at least min_points seen points: (view, vertex ids, uv, z).

    Vertex ids are None in a scene without vertices, whose points are depth-map pixels.
    """
    if ctx.scene.has_geometry:
        vis, idx = ctx.visibility()
        keys = [k for k in range(len(idx)) if vis[k].sum() >= min_points]
    else:
        keys = [k for k, view in enumerate(ctx.scene.views) if view.depth_source is not None]
    for _ in range(n if keys else 0):
        k = keys[int(ctx.rng.integers(len(keys)))]
        if ctx.scene.has_geometry:
            view = ctx.scene.views[idx[k]]
            ids, uv, z = ctx.seen_points(k)
            if ids.size >= min_points:
                yield view, ids, uv, z
        else:
            view = ctx.scene.views[k]
            if f"depth_points_{k}" not in ctx.cache:
                ctx.cache[f"depth_points_{k}"] = depth_map_points(view)
            uv, z = ctx.cache[f"depth_points_{k}"]
            if z.size >= min_points:
                yield view, None, uv, z


def depth_value(ctx: TaskContext, spec: TaskSpec, n: int) -> list[Sample]:
    """Depth = round(1000 * z_cam) mm of a visible vertex, marked by a dot or given as coordinates."""
    marker = spec.params["marker"]
    out: list[Sample] = []
    for view, ids, uv, z in _views_with_points(ctx, n, 1):
        p = int(ctx.rng.integers(z.size))
        # only the asked point is placed in the world (a depth map holds thousands)
        if ids is None:
            point = back_project(uv[p:p + 1], z[p:p + 1], view.intrinsics, view.c2w)[0]
        else:
            point = ctx.scene.points[ids[p]]
        depth_mm = int(round(1000.0 * z[p]))
        xy = to_norm_coords(uv[p, 0], uv[p, 1], view.width, view.height)
        sid = ctx.next_id(spec.name)
        image = ctx.images.marked(view, marker, [(uv[p, 0], uv[p, 1], "")], sid)
        text = render("depth_value", ctx.rng, format_value(QuestionKind.DEPTH, depth_mm),
                      ref=point_ref(ctx.rng, marker, coord_text(xy)))
        meta = {"vertex": None if ids is None else int(ids[p]), "point_world": point.tolist(),
                "pixel": [float(uv[p, 0]), float(uv[p, 1])], "coords": list(xy), "z_m": float(z[p]),
                "depth_mm": depth_mm, "marker": marker, "label": depth_mm}
        out.append(ctx.sample(spec, sid, [image], [view], text, meta))
    return out


def depth_compare(ctx: TaskContext, spec: TaskSpec, n: int) -> list[Sample]:
    """Which of two visible vertices (A, B) is closer or farther; the pair never shares a mm depth."""
    marker = spec.params["marker"]
    out: list[Sample] = []
    for view, ids, uv, z in _views_with_points(ctx, n, 2):
        a, b = ctx.rng.choice(z.size, size=2, replace=False)
        mm_a, mm_b = int(round(1000.0 * z[a])), int(round(1000.0 * z[b]))
        if mm_a == mm_b:
            continue
        ask = "closer" if ctx.rng.random() < 0.5 else "farther"
        answer = "A" if (mm_a < mm_b) == (ask == "closer") else "B"
        xy_a = to_norm_coords(uv[a, 0], uv[a, 1], view.width, view.height)
        xy_b = to_norm_coords(uv[b, 0], uv[b, 1], view.width, view.height)
        sid = ctx.next_id(spec.name)
        image = ctx.images.marked(view, marker, [(uv[a, 0], uv[a, 1], "A"), (uv[b, 0], uv[b, 1], "B")], sid)
        which = "closer to" if ask == "closer" else "farther from"
        text = render("depth_compare", ctx.rng, format_value(QuestionKind.CHOICE, answer), which=which,
                      ref_a=point_ref(ctx.rng, marker, coord_text(xy_a), "A"),
                      ref_b=point_ref(ctx.rng, marker, coord_text(xy_b), "B"))
        meta = {"vertices": None if ids is None else [int(ids[a]), int(ids[b])],
                "pixels": [uv[a].tolist(), uv[b].tolist()],
                "coords": [list(xy_a), list(xy_b)], "depth_mm": [mm_a, mm_b], "asked": ask,
                "marker": marker, "label": answer}
        out.append(ctx.sample(spec, sid, [image], [view], text, meta))
    return out


_SOURCES = ("scannet", "sim", "rosbag")
SPECS: tuple[TaskSpec, ...] = (
    TaskSpec("depth_value_dot", "depth", QuestionKind.DEPTH, 1, "depth", depth_value, {"marker": "dot"},
             description="depth in mm of a point drawn as a dot", sources=_SOURCES),
    TaskSpec("depth_value_coord", "depth", QuestionKind.DEPTH, 1, "depth", depth_value,
             {"marker": "coord"},
             description="depth in mm of a point given as [ x , y ]", sources=_SOURCES),
    TaskSpec("depth_compare_dot", "depth", QuestionKind.CHOICE, 1, "depth", depth_compare,
             {"marker": "dot"}, description="closer/farther of two dots A and B", sources=_SOURCES),
    TaskSpec("depth_compare_coord", "depth", QuestionKind.CHOICE, 1, "depth", depth_compare,
             {"marker": "coord"}, description="closer/farther of two points given as coordinates",
             sources=_SOURCES),
)
