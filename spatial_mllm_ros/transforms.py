"""A TF buffer without ROS: /tf and /tf_static transforms looked up at any stamp, interpolated.

It follows tf2's BufferCore: every frame has one parent; a lookup walks both frames up to their common
ancestor and composes the edges, each evaluated at the stamp (translation linearly, rotation by scipy's
Slerp). A stamp before an edge's first or after its last transform is an ExtrapolationError (tf2 does not
extrapolate either); a stamp between two transforms further apart than max_gap_s is a StaleTransformError,
so a robot whose tf publisher stalled does not get poses invented across the gap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from spatial_mllm_ros.errors import (
    DisconnectedFramesError,
    ExtrapolationError,
    InvalidTransformError,
    StaleTransformError,
    TransformError,
    UnknownFrameError,
)

DEFAULT_MAX_GAP_S = 0.5
_OK, _BEFORE, _AFTER, _STALE = 0, 1, 2, 3


def normalize_frame(frame: str) -> str:
    """Frame id as tf2 stores it: without the leading slash ROS 1 habits leave."""
    return frame.lstrip("/")


def _matrices(translations: np.ndarray, rotations: Rotation) -> np.ndarray:
    """(N, 4, 4) rigid transforms from (N, 3) translations and N rotations."""
    out = np.zeros((len(translations), 4, 4))
    out[:, :3, :3] = rotations.as_matrix()
    out[:, :3, 3] = translations
    out[:, 3, 3] = 1.0
    return out


def invert_rigid(poses: np.ndarray) -> np.ndarray:
    """Inverse of (..., 4, 4) rigid transforms: (R^T, -R^T t)."""
    rt = np.swapaxes(poses[..., :3, :3], -1, -2)
    out = np.zeros_like(poses)
    out[..., :3, :3] = rt
    out[..., :3, 3] = -np.einsum("...ij,...j->...i", rt, poses[..., :3, 3])
    out[..., 3, 3] = 1.0
    return out


@dataclass
class _Edge:
    """The transforms of one child in its parent over time (a static edge holds one, valid always)."""

    parent: str
    static: bool
    stamps: list[int] = field(default_factory=list)
    translations: list[Sequence[float]] = field(default_factory=list)
    quaternions: list[Sequence[float]] = field(default_factory=list)  # x, y, z, w
    _compiled: tuple[np.ndarray, np.ndarray, Rotation, Slerp | None] | None = None

    def add(self, stamp_ns: int, translation: Sequence[float], quaternion: Sequence[float]) -> None:
        if self.static:  # the latest static transform wins, as in tf2
            self.stamps, self.translations, self.quaternions = [stamp_ns], [translation], [quaternion]
        else:
            self.stamps.append(stamp_ns)
            self.translations.append(translation)
            self.quaternions.append(quaternion)
        self._compiled = None

    def compiled(self) -> tuple[np.ndarray, np.ndarray, Rotation, Slerp | None]:
        """Stamps (sorted, unique: the last transform of a stamp wins), translations, rotations, Slerp."""
        if self._compiled is None:
            stamps = np.asarray(self.stamps, dtype=np.int64)
            order = np.argsort(stamps, kind="stable")
            last = np.r_[stamps[order][1:] != stamps[order][:-1], True]
            keep = order[last]
            t = stamps[keep]
            rot = Rotation.from_quat(np.asarray(self.quaternions, dtype=np.float64)[keep])
            slerp = Slerp((t - t[0]) * 1e-9, rot) if len(t) > 1 else None
            self._compiled = (t, np.asarray(self.translations, dtype=np.float64)[keep], rot, slerp)
        return self._compiled

    def at(self, stamps: np.ndarray, max_gap_ns: int) -> tuple[np.ndarray, np.ndarray]:
        """T_parent_child at each stamp (N, 4, 4) and a status code per stamp (_OK, _BEFORE, ...)."""
        t, trans, rot, slerp = self.compiled()
        n = len(stamps)
        if self.static:
            return np.broadcast_to(_matrices(trans, rot), (n, 4, 4)).copy(), np.zeros(n, dtype=np.int8)
        code = np.where(stamps < t[0], _BEFORE, np.where(stamps > t[-1], _AFTER, _OK)).astype(np.int8)
        out = np.full((n, 4, 4), np.nan)
        inside = np.flatnonzero(code == _OK)
        if not inside.size:
            return out, code
        s = stamps[inside]
        if slerp is None:  # one transform: valid at its own stamp only (s == t[0] here)
            out[inside] = _matrices(trans, rot)[0]
            return out, code
        hi = np.clip(np.searchsorted(t, s, side="left"), 1, len(t) - 1)
        lo = hi - 1
        exact = (t[lo] == s) | (t[hi] == s)
        stale = ~exact & (t[hi] - t[lo] > max_gap_ns)
        code[inside[stale]] = _STALE
        good = ~stale
        s, lo, hi = s[good], lo[good], hi[good]
        frac = ((s - t[lo]) / (t[hi] - t[lo]))[:, None]
        out[inside[good]] = _matrices((1.0 - frac) * trans[lo] + frac * trans[hi], slerp((s - t[0]) * 1e-9))
        return out, code


@dataclass(frozen=True)
class Lookups:
    """Poses of one frame in another at many stamps: (N, 4, 4), NaN where errors[i] says why not."""

    poses: np.ndarray
    errors: tuple[TransformError | None, ...]

    @property
    def ok(self) -> np.ndarray:
        """Which stamps have a pose."""
        return np.array([e is None for e in self.errors], dtype=bool)


class TransformBuffer:
    """Transforms between named frames over time, fed from tf2_msgs/TFMessage (or by hand)."""

    def __init__(self, max_gap_s: float = DEFAULT_MAX_GAP_S) -> None:
        if not max_gap_s > 0:
            raise ValueError(f"max_gap_s must be > 0, got {max_gap_s}")
        self.max_gap_ns = round(max_gap_s * 1e9)
        self._edges: dict[str, _Edge] = {}

    def set_transform(self, parent: str, child: str, stamp_ns: int, translation: Sequence[float],
                      quaternion_xyzw: Sequence[float], static: bool = False) -> None:
        """Add T_parent_child at a stamp; an invalid transform raises InvalidTransformError (not stored)."""
        parent, child = normalize_frame(parent), normalize_frame(child)
        t = tuple(float(v) for v in translation)
        q = tuple(float(v) for v in quaternion_xyzw)
        if not parent or not child or parent == child:
            raise InvalidTransformError(f"transform {parent!r} -> {child!r} needs two different frame ids")
        # plain floats, not numpy: a bag's /tf holds hundreds of thousands of these
        if not (all(math.isfinite(v) for v in t + q) and sum(v * v for v in q) > 1e-18):
            raise InvalidTransformError(f"transform {parent} -> {child} is not finite or its quaternion is 0")
        edge = self._edges.get(child)
        if edge is None:
            edge = self._edges[child] = _Edge(parent, static)
        elif edge.parent != parent or edge.static != static:
            kind = "static" if static else "dynamic"
            raise InvalidTransformError(
                f"frame {child} already has parent {edge.parent} ({'static' if edge.static else 'dynamic'}); "
                f"a {kind} transform from {parent} was ignored (a frame has one parent)")
        edge.add(int(stamp_ns), t, q)

    @property
    def frames(self) -> tuple[str, ...]:
        """Every frame a transform names, sorted."""
        return tuple(sorted(set(self._edges) | {e.parent for e in self._edges.values()}))

    def _ancestry(self, frame: str) -> list[str]:
        """List the frame, its parent, ... up to its tree's root."""
        chain = [frame]
        while chain[-1] in self._edges:
            parent = self._edges[chain[-1]].parent
            if parent in chain:
                raise InvalidTransformError(f"the transforms form a loop: {' -> '.join([*chain, parent])}")
            chain.append(parent)
        return chain

    def chain(self, target: str, source: str) -> tuple[list[str], list[str]]:
        """Children on each side of the common ancestor: (from source up, from target up).

        Raises UnknownFrameError (listing the known frames) or DisconnectedFramesError.
        """
        target, source = normalize_frame(target), normalize_frame(source)
        known = set(self.frames)
        missing = [f for f in (target, source) if f not in known]
        if missing:
            listing = ", ".join(self.frames) or "(none)"
            raise UnknownFrameError(f"no transform names frame {missing[0]!r}; the frames are: {listing}")
        up, down = self._ancestry(source), self._ancestry(target)
        common = next((f for f in up if f in set(down)), None)
        if common is None:
            raise DisconnectedFramesError(
                f"{source} (tree of {up[-1]}) and {target} (tree of {down[-1]}) are not connected")
        return up[: up.index(common)], down[: down.index(common)]

    def _from_ancestor(self, children: list[str], stamps: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
        """T_ancestor_frame along a chain (frame first), the first failing code and its edge per stamp."""
        pose = np.broadcast_to(np.eye(4), (len(stamps), 4, 4)).copy()
        code = np.zeros(len(stamps), dtype=np.int8)
        culprit = np.full(len(stamps), "", dtype=object)
        for child in children:
            edge_pose, edge_code = self._edges[child].at(stamps, self.max_gap_ns)
            pose = edge_pose @ pose
            first = (code == _OK) & (edge_code != _OK)
            code[first], culprit[first] = edge_code[first], child
        return pose, code, culprit

    def _error(self, code: int, child: str, stamp_ns: int) -> TransformError:
        edge = self._edges[child]
        t = edge.compiled()[0]
        span = (f"{edge.parent} -> {child} has {len(t)} transforms from {t[0] * 1e-9:.3f} to "
                f"{t[-1] * 1e-9:.3f} s")
        at = f"{stamp_ns * 1e-9:.3f} s"
        if code == _STALE:
            return StaleTransformError(
                f"{at} falls in a gap longer than {self.max_gap_ns * 1e-9:g} s between transforms; {span}")
        side = "before the first" if code == _BEFORE else "after the last"
        return ExtrapolationError(f"{at} is {side} transform; {span}")

    def lookup_many(self, target: str, source: str, stamps_ns: Sequence[int] | np.ndarray) -> Lookups:
        """T_target_source (maps points in `source` into `target`) at each stamp, with per-stamp errors.

        Unknown or disconnected frames raise (they fail at every stamp); time-dependent failures are
        per stamp in Lookups.errors.
        """
        stamps = np.asarray(stamps_ns, dtype=np.int64).reshape(-1)
        up, down = self.chain(target, source)
        anc_source, code_s, edge_s = self._from_ancestor(up, stamps)
        anc_target, code_t, edge_t = self._from_ancestor(down, stamps)
        poses = invert_rigid(anc_target) @ anc_source
        errors: list[TransformError | None] = []
        for i, stamp in enumerate(stamps):
            if code_s[i] != _OK:
                errors.append(self._error(int(code_s[i]), str(edge_s[i]), int(stamp)))
            elif code_t[i] != _OK:
                errors.append(self._error(int(code_t[i]), str(edge_t[i]), int(stamp)))
            else:
                errors.append(None)
        poses[[e is not None for e in errors]] = np.nan
        return Lookups(poses, tuple(errors))

    def lookup(self, target: str, source: str, stamp_ns: int) -> np.ndarray:
        """T_target_source at one stamp (4x4); raises the TransformError that says why it cannot."""
        found = self.lookup_many(target, source, [stamp_ns])
        if found.errors[0] is not None:
            raise found.errors[0]
        return found.poses[0]
