"""What every task shares: its registry entry, the per-scene context (rng, images, cached geometry)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from spatial_mllm_ros.conventions import STATIC_THRESHOLD_M, ZERO_TOLERANCE, QuestionKind, format_value
from spatial_mllm_ros.multispa.format import Sample, make_sample
from spatial_mllm_ros.multispa.geometry import (
    overlap_matrix,
    project,
    sample_motion_pairs,
    sample_overlap_pairs,
)
from spatial_mllm_ros.multispa.sources.base import Scene, View, visibility_matrix
from spatial_mllm_ros.multispa.templates import Rendered

JPEG_QUALITY = 92


@dataclass(frozen=True)
class TaskSpec:
    """One benchmark or robot sub-task: its name, family, answer kind and generator."""

    name: str
    family: str
    kind: QuestionKind
    n_images: int
    # "geometry" (posed views + vertices), "poses" (two posed views), "depth" (vertices or depth maps),
    # "video" (tracks) or "entities" (named things with positions: sim bodies, a bag's TF frames)
    needs: str
    generate: Callable[[TaskContext, TaskSpec, int], list[Sample]]
    params: dict[str, Any] = field(default_factory=dict)
    subsets: tuple[str, ...] = ()  # only scenes of these subsets (TAPVid-3D adt / pstudio), empty = any
    description: str = ""
    sources: tuple[str, ...] = ("scannet", "sim")  # sources whose scenes can feed this task

    def applies_to(self, scene: Scene) -> bool:
        """Whether this scene has what the task needs."""
        if self.subsets and scene.subset not in self.subsets:
            return False
        if self.needs == "geometry":
            return scene.has_geometry
        if self.needs == "poses":
            return scene.has_geometry or len(scene.views) >= 2
        if self.needs == "depth":
            return scene.has_geometry or scene.has_depth_maps
        if self.needs == "video":
            return scene.video is not None and scene.video.tracks_world.shape[1] > 0
        return scene.video is not None and bool(scene.video.entities)


class ImageStore:
    """Writes a scene's images under out/images/<scene>/ and returns paths relative to out.

    Unmarked frames are linked (or copied) once from their file; drawn images and in-memory frames
    are encoded as JPEG. Files are written to a temporary name and renamed, so none is ever partial.
    """

    def __init__(self, out_dir: Path, scene_id: str) -> None:
        self.out_dir = out_dir
        self.rel_dir = Path("images") / scene_id.replace("/", "__")
        (out_dir / self.rel_dir).mkdir(parents=True, exist_ok=True)
        self._frames: dict[str, str] = {}

    def frame(self, view: View) -> str:
        """Relative path of an unmarked frame, stored once per scene."""
        if view.frame_id in self._frames:
            return self._frames[view.frame_id]
        rel = self.rel_dir / f"frame_{view.frame_id}.jpg"
        dst = self.out_dir / rel
        if not dst.exists():
            tmp = dst.with_suffix(".tmp")
            if isinstance(view.image, Path) and view.image.suffix.lower() in (".jpg", ".jpeg"):
                try:
                    os.link(view.image, tmp)
                except OSError:
                    shutil.copyfile(view.image, tmp)
            elif isinstance(view.image, bytes):
                tmp.write_bytes(view.image)
            else:
                self._encode(view.rgb(), tmp)
            os.replace(tmp, dst)
        self._frames[view.frame_id] = rel.as_posix()
        return rel.as_posix()

    def drawn(self, rgb: np.ndarray, name: str) -> str:
        """Relative path of a drawn (marked) image."""
        rel = self.rel_dir / f"{name}.jpg"
        dst = self.out_dir / rel
        tmp = dst.with_suffix(".tmp")
        self._encode(rgb, tmp)
        os.replace(tmp, dst)
        return rel.as_posix()

    def marked(self, view: View, marker: str, dots: list[tuple[float, float, str]], name: str) -> str:
        """Relative path of the view with `dots` drawn (marker "dot"), else of its unmarked frame."""
        if marker == "dot":
            return self.drawn(draw_dots(view.rgb(), dots), name)
        return self.frame(view)

    @staticmethod
    def _encode(rgb: np.ndarray, path: Path) -> None:
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise OSError(f"JPEG encoding failed for {path}")
        path.write_bytes(buf.tobytes())


@dataclass
class TaskContext:
    """Per-scene state shared by the tasks: the scene, a seeded rng, the image store, cached geometry."""

    scene: Scene
    rng: np.random.Generator
    images: ImageStore
    tolerance_m: float | None = None
    full_inverse: bool = False  # invert poses with np.linalg.inv, as Meta's engine (--paper-exact)
    _vis: tuple[np.ndarray, list[int]] | None = None
    _overlap: np.ndarray | None = None
    cache: dict[str, Any] = field(default_factory=dict)  # per-scene results a family computes once
    _counter: dict[str, int] = field(default_factory=dict)
    _seen: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)

    def visibility(self) -> tuple[np.ndarray, list[int]]:
        """(F, N) vertex visibility over the usable views and their indices (computed once per scene)."""
        if self._vis is None:
            self._vis = visibility_matrix(self.scene, self.tolerance_m, self.full_inverse)
        return self._vis

    def overlap(self) -> np.ndarray:
        """Pairwise overlap (percent) of the usable views, in the order of visibility()'s indices."""
        if self._overlap is None:
            self._overlap = overlap_matrix(self.visibility()[0])
        return self._overlap

    def view_pairs(self, n: int) -> Iterator[tuple[int, int, View, View]]:
        """Up to n overlap-balanced pairs of usable views: (k1, k2, view 1, view 2); none below two views.

        A scene without vertices (a robot's log) has no overlap: its pairs are the views (k = index into
        scene.views) between which the camera moved at least the "did not move" thresholds.
        """
        if not self.scene.has_geometry:
            views = self.scene.views
            poses = np.stack([v.c2w for v in views]) if len(views) >= 2 else np.zeros((0, 4, 4))
            for k1, k2 in sample_motion_pairs(poses, n, self.rng, STATIC_THRESHOLD_M,
                                              ZERO_TOLERANCE[QuestionKind.ANGLE]):
                yield k1, k2, views[k1], views[k2]
            return
        _, idx = self.visibility()
        if len(idx) < 2:
            return
        for k1, k2 in sample_overlap_pairs(self.overlap(), n, self.rng):
            yield k1, k2, self.scene.views[idx[k1]], self.scene.views[idx[k2]]

    def seen_points(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Vertices visible in usable view k away from the border: (vertex ids, uv (M, 2), z (M,))."""
        if k not in self._seen:
            vis, idx = self.visibility()
            view = self.scene.views[idx[k]]
            ids = np.flatnonzero(vis[k])
            proj = project(self.scene.points[ids], view.c2w, view.intrinsics, self.full_inverse)
            m = marker_radius(view.width)
            keep = ((proj.uv[:, 0] >= m) & (proj.uv[:, 0] < view.width - m)
                    & (proj.uv[:, 1] >= m) & (proj.uv[:, 1] < view.height - m))
            self._seen[k] = (ids[keep], proj.uv[keep], proj.z[keep])
        return self._seen[k]

    def next_id(self, task: str) -> str:
        """Return a deterministic sample id: source-scene-task-counter."""
        k = self._counter.get(task, 0)
        self._counter[task] = k + 1
        return f"{self.scene.source}-{self.scene.scene_id.replace('/', '__')}-{task}-{k:05d}"

    def sample(
        self,
        spec: TaskSpec,
        sample_id: str,
        images: list[str],
        views: list[View],
        text: Rendered,
        meta: dict[str, Any],
    ) -> Sample:
        """Assemble a Sample; meta gets the scene, the frames and the sizes next to the task's own fields."""
        meta = {"scene": self.scene.scene_id, "source": self.scene.source,
                "frames": [v.frame_id for v in views], **self.scene.audit, **meta}
        return make_sample(
            sample_id, images, text.question, text.answer, kind=spec.kind, task=spec.name,
            sizes=[(v.width, v.height) for v in views], description=text.description, meta=meta,
        )


def marker_radius(width: int) -> int:
    """Dot radius: 10 px on ScanNet's 1296 px wide frames, scaled with the width (at least 4 px)."""
    return max(4, int(round(10 * width / 1296)))


_COLORS: dict[str, tuple[int, int, int]] = {
    "": (255, 0, 0), "A": (255, 0, 0), "B": (0, 90, 255), "C": (0, 190, 0), "D": (255, 170, 0),
}


def draw_dots(rgb: np.ndarray, dots: list[tuple[float, float, str]]) -> np.ndarray:
    """Draw filled dots on a copy of the image at (u, v), each with its letter beside it when given."""
    out = np.ascontiguousarray(rgb.copy())
    h, w = out.shape[:2]
    r = marker_radius(w)
    scale = max(0.4, r / 10 * 0.9)
    for u, v, letter in dots:
        center = (int(round(u)), int(round(v)))
        color = _COLORS.get(letter, (255, 0, 0))
        cv2.circle(out, center, r, color, thickness=-1, lineType=cv2.LINE_AA)
        cv2.circle(out, center, r, (255, 255, 255), thickness=max(1, r // 5), lineType=cv2.LINE_AA)
        if letter:
            tx = center[0] + r + 2 if center[0] + 3 * r < w else center[0] - 3 * r
            ty = center[1] - r if center[1] - 2 * r > 0 else center[1] + 2 * r
            cv2.putText(out, letter, (tx, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                        thickness=max(2, r // 3) + 2, lineType=cv2.LINE_AA)
            cv2.putText(out, letter, (tx, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, color,
                        thickness=max(1, r // 3), lineType=cv2.LINE_AA)
    return out


def coord_text(xy: tuple[int, int]) -> str:
    """Normalised coordinates as the answers write them, without the backticks: [ x , y ]."""
    return format_value(QuestionKind.COORDINATE, xy).strip("`")
