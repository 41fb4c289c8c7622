"""Visual correspondence (two images): where a point of Image-1 appears in Image-2."""

from __future__ import annotations

import numpy as np

from spatial_mllm_ros.conventions import CHOICE_LETTERS, QuestionKind, format_value, to_norm_coords
from spatial_mllm_ros.multispa.format import Sample
from spatial_mllm_ros.multispa.tasks.base import TaskContext, TaskSpec, coord_text, draw_dots, marker_radius
from spatial_mllm_ros.multispa.templates import point_ref, render

DISTRACTOR_MIN_SEPARATION = 0.05  # of the image width: the benchmark's pixel tolerance


def _shared_points(ctx: TaskContext, k1: int, k2: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertices visible (away from the border) in both views: ids, uv in view 1, uv in view 2."""
    ids1, uv1, _ = ctx.seen_points(k1)
    ids2, uv2, _ = ctx.seen_points(k2)
    common, a, b = np.intersect1d(ids1, ids2, return_indices=True)
    return common, uv1[a], uv2[b]


def distractors(rng: np.random.Generator, true_uv: np.ndarray, width: int, height: int, n: int = 3,
                margin: int = 0) -> np.ndarray:
    """N uniformly random pixels, each at least 5% of the width from the true point and each other."""
    sep = DISTRACTOR_MIN_SEPARATION * width
    chosen = [np.asarray(true_uv, dtype=np.float64)]
    for _ in range(1000):
        if len(chosen) == n + 1:
            break
        cand = np.array([rng.uniform(margin, width - margin), rng.uniform(margin, height - margin)])
        if all(np.linalg.norm(cand - c) >= sep for c in chosen):
            chosen.append(cand)
    return np.array(chosen[1:])


def correspondence(ctx: TaskContext, spec: TaskSpec, n: int) -> list[Sample]:
    """Coordinate variant ([x1, y1] -> [x2, y2]) or multiple choice (dot -> one of A-D)."""
    variant = spec.params["variant"]
    out: list[Sample] = []
    for k1, k2, v1, v2 in ctx.view_pairs(n):
        common, uv1, uv2 = _shared_points(ctx, k1, k2)
        if common.size == 0:
            continue
        p = int(ctx.rng.integers(common.size))
        xy1 = to_norm_coords(uv1[p, 0], uv1[p, 1], v1.width, v1.height)
        xy2 = to_norm_coords(uv2[p, 0], uv2[p, 1], v2.width, v2.height)
        sid = ctx.next_id(spec.name)
        meta = {"vertex": int(common[p]), "point_world": ctx.scene.points[common[p]].tolist(),
                "pixel_1": uv1[p].tolist(), "pixel_2": uv2[p].tolist(), "coords_1": list(xy1),
                "coords_2": list(xy2), "overlap": float(ctx.overlap()[k1, k2])}
        if variant == "coord":
            images = [ctx.images.frame(v1), ctx.images.frame(v2)]
            text = render("correspondence_coord", ctx.rng, format_value(QuestionKind.COORDINATE, xy2),
                          ref=point_ref(ctx.rng, "coord", coord_text(xy1)))
            meta["label"] = list(xy2)
        else:
            others = distractors(ctx.rng, uv2[p], v2.width, v2.height, margin=marker_radius(v2.width))
            if len(others) < 3:
                continue
            slot = int(ctx.rng.integers(4))
            options = list(others)
            options.insert(slot, uv2[p])
            letter = CHOICE_LETTERS[slot]
            images = [
                ctx.images.drawn(draw_dots(v1.rgb(), [(uv1[p, 0], uv1[p, 1], "")]), f"{sid}-1"),
                ctx.images.drawn(draw_dots(v2.rgb(), [(o[0], o[1], CHOICE_LETTERS[i]) for i, o in
                                                      enumerate(options)]), f"{sid}-2"),
            ]
            text = render("correspondence_choice", ctx.rng, format_value(QuestionKind.CHOICE, letter))
            meta.update({"options": [np.asarray(o).tolist() for o in options], "label": letter})
        out.append(ctx.sample(spec, sid, images, [v1, v2], text, meta))
    return out


SPECS: tuple[TaskSpec, ...] = (
    TaskSpec("correspondence_coord", "correspondence", QuestionKind.COORDINATE, 2, "geometry", correspondence,
             {"variant": "coord"}, description="[ x , y ] in Image-1 -> [ x , y ] in Image-2"),
    TaskSpec("correspondence_choice", "correspondence", QuestionKind.CHOICE, 2, "geometry", correspondence,
             {"variant": "choice"}, description="dot in Image-1 -> one of four labelled dots A-D in Image-2"),
)
