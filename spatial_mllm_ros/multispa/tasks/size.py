"""Object size (several images): an instance's height, length or width from a minimal image set."""

from __future__ import annotations

import numpy as np

from spatial_mllm_ros.conventions import QuestionKind, format_value
from spatial_mllm_ros.multispa.format import Sample
from spatial_mllm_ros.multispa.geometry import SIZE_DIMENSIONS, box_dimensions, minimal_image_sets
from spatial_mllm_ros.multispa.tasks.base import TaskContext, TaskSpec
from spatial_mllm_ros.multispa.templates import render

EXCLUDED_LABELS: frozenset[str] = frozenset({"wall", "object", "floor", "ceiling", "window"})
MIN_INSTANCE_VERTICES = 20
MAX_IMAGES = 3
_ADJECTIVE = {"height": "tall", "length": "long", "width": "wide"}


def object_size(ctx: TaskContext, spec: TaskSpec, n: int) -> list[Sample]:
    """int(round(1000 * size)) mm of an instance seen in a minimal covering image set."""
    dimension = spec.params["dimension"]
    axis = SIZE_DIMENSIONS.index(dimension)
    scene = ctx.scene
    assert scene.points is not None and scene.instance_ids is not None
    vis, idx = ctx.visibility()
    if not idx:
        return []
    pool: list[tuple[int, tuple[int, ...]]] = []
    for inst in np.unique(scene.instance_ids):
        label = scene.instance_labels.get(int(inst), "")
        members = scene.instance_ids == inst
        if (inst == 0 or not label or label.lower() in EXCLUDED_LABELS
                or members.sum() < MIN_INSTANCE_VERTICES):
            continue
        sets = minimal_image_sets(scene.points[members], vis[:, members], dimension, MAX_IMAGES)
        pool += [(int(inst), s) for s in sets]
    out: list[Sample] = []
    if not pool:
        return out
    for i in ctx.rng.permutation(len(pool))[:n]:
        inst, frame_set = pool[int(i)]
        order = [frame_set[j] for j in ctx.rng.permutation(len(frame_set))]
        members = scene.instance_ids == inst
        pts = scene.points[members]
        dims = box_dimensions(pts.max(0) - pts.min(0))
        size_mm = int(round(1000.0 * dims[axis]))
        label = scene.instance_labels[inst]
        views = [scene.views[idx[k]] for k in order]
        sid = ctx.next_id(spec.name)
        text = render("object_size", ctx.rng, format_value(QuestionKind.DISTANCE, size_mm),
                      dimension=dimension, adjective=_ADJECTIVE[dimension], object=label)
        meta = {"instance": inst, "object": label, "box_m": dims.tolist(), "size_m": float(dims[axis]),
                "size_mm": size_mm, "dimension": dimension, "visible_fraction":
                [float(vis[k, members].mean()) for k in order], "label": size_mm}
        out.append(ctx.sample(spec, sid, [ctx.images.frame(v) for v in views], views, text, meta))
    return out


SPECS: tuple[TaskSpec, ...] = tuple(
    TaskSpec(f"object_size_{d}", "object_size", QuestionKind.DISTANCE, 2, "geometry", object_size,
             {"dimension": d}, description=f"{d} of an object in mm from a minimal image set")
    for d in SIZE_DIMENSIONS
)
