"""The TF buffer against hand-computed cases: static, moving (interpolated), chained, out of its time."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spatial_mllm_ros.errors import (
    DisconnectedFramesError,
    ExtrapolationError,
    InvalidTransformError,
    StaleTransformError,
    UnknownFrameError,
)
from spatial_mllm_ros.transforms import TransformBuffer

S = 1_000_000_000  # one second in ns
C45 = math.sqrt(0.5)


def _yaw_q(deg: float) -> tuple[float, float, float, float]:
    """Quaternion (x, y, z, w) of a rotation by deg about z, written out by hand."""
    half = math.radians(deg) / 2
    return (0.0, 0.0, math.sin(half), math.cos(half))


def _pose(rot: list[list[float]], t: tuple[float, float, float]) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3], out[:3, 3] = rot, t
    return out


RZ90 = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
RZ45 = [[C45, -C45, 0], [C45, C45, 0], [0, 0, 1]]
RZ225 = [[math.cos(math.radians(22.5)), -math.sin(math.radians(22.5)), 0],
         [math.sin(math.radians(22.5)), math.cos(math.radians(22.5)), 0], [0, 0, 1]]


@pytest.fixture
def buffer() -> TransformBuffer:
    """world -> a static (90 deg about z, at (1, 2, 3)); a -> b moves from 0 to (2, 0, 0) turning 0 -> 90 deg
    from 1 s to 2 s; b -> c static (1 m along b's x)."""
    buf = TransformBuffer(max_gap_s=2.0)
    buf.set_transform("world", "a", 0, (1, 2, 3), _yaw_q(90), static=True)
    buf.set_transform("a", "b", 1 * S, (0, 0, 0), _yaw_q(0))
    buf.set_transform("a", "b", 2 * S, (2, 0, 0), _yaw_q(90))
    buf.set_transform("b", "c", 0, (1, 0, 0), _yaw_q(0), static=True)
    return buf


def test_static_transform_holds_at_any_time_and_inverts(buffer: TransformBuffer) -> None:
    for stamp in (0, 5 * S, 10**18):
        np.testing.assert_allclose(buffer.lookup("world", "a", stamp), _pose(RZ90, (1, 2, 3)), atol=1e-12)
    # a's pose inverted by hand: R^T = RZ(-90), -R^T t = -(2, -1, 3)
    inverse = _pose([[0, 1, 0], [-1, 0, 0], [0, 0, 1]], (-2, 1, -3))
    np.testing.assert_allclose(buffer.lookup("a", "world", 0), inverse, atol=1e-12)
    np.testing.assert_allclose(buffer.lookup("a", "a", 0), np.eye(4))


def test_moving_transform_is_interpolated(buffer: TransformBuffer) -> None:
    np.testing.assert_allclose(buffer.lookup("a", "b", 1 * S), np.eye(4), atol=1e-12)  # at a sample: exact
    np.testing.assert_allclose(buffer.lookup("a", "b", 2 * S), _pose(RZ90, (2, 0, 0)), atol=1e-12)
    # a quarter of the way: translation linear, rotation slerped (22.5 deg of 90)
    np.testing.assert_allclose(buffer.lookup("a", "b", S + S // 4), _pose(RZ225, (0.5, 0, 0)), atol=1e-12)
    np.testing.assert_allclose(buffer.lookup("a", "b", S + S // 2), _pose(RZ45, (1, 0, 0)), atol=1e-12)


def test_chained_frames_compose_through_the_common_ancestor(buffer: TransformBuffer) -> None:
    # c's origin at 1.5 s: (1, 0, 0) in b; b at (1, 0, 0) turned 45 deg in a -> (1 + c45, c45, 0) in a;
    # a turned 90 deg at (1, 2, 3) in world -> (1 - c45, 3 + c45, 3)
    world_c = buffer.lookup("world", "c", S + S // 2)
    np.testing.assert_allclose(world_c[:3, 3], (1 - C45, 3 + C45, 3), atol=1e-12)
    np.testing.assert_allclose(world_c[:3, :3], np.array(RZ90) @ np.array(RZ45), atol=1e-12)
    # from a sibling branch: the pose of `a` in `c` is the inverse of c in a
    c_a = buffer.lookup("c", "a", S + S // 2)
    np.testing.assert_allclose(c_a @ buffer.lookup("a", "c", S + S // 2), np.eye(4), atol=1e-12)
    buffer.set_transform("world", "d", 0, (0, 0, 1), _yaw_q(0), static=True)
    d_c = buffer.lookup("d", "c", S + S // 2)  # across the root: world -> d and world -> a -> b -> c
    np.testing.assert_allclose(d_c[:3, 3], (1 - C45, 3 + C45, 2), atol=1e-12)


def test_time_outside_the_buffer_is_a_clear_error(buffer: TransformBuffer) -> None:
    with pytest.raises(ExtrapolationError, match=r"0\.500 s is before the first transform; a -> b has 2 "
                                                 r"transforms from 1\.000 to 2\.000 s"):
        buffer.lookup("world", "c", S // 2)
    with pytest.raises(ExtrapolationError, match="after the last"):
        buffer.lookup("c", "world", 3 * S)
    found = buffer.lookup_many("world", "b", [S // 2, S, 3 * S // 2, 3 * S])
    assert found.ok.tolist() == [False, True, True, False]
    assert [type(e).__name__ if e else None for e in found.errors] == [
        "ExtrapolationError", None, None, "ExtrapolationError"]
    assert np.isnan(found.poses[0]).all() and np.isfinite(found.poses[1]).all()
    assert found.errors[0].reason == "outside the buffer"


def test_a_gap_longer_than_max_gap_is_stale() -> None:
    buf = TransformBuffer(max_gap_s=0.5)
    for t in (0, S // 4, S // 2, 2 * S):  # the publisher stalls between 0.5 s and 2 s
        buf.set_transform("base", "tool", t, (t / S, 0, 0), _yaw_q(0))
    np.testing.assert_allclose(buf.lookup("base", "tool", 3 * S // 8)[:3, 3], (0.375, 0, 0))
    with pytest.raises(StaleTransformError, match="gap longer than 0.5 s"):
        buf.lookup("base", "tool", S)
    np.testing.assert_allclose(buf.lookup("base", "tool", 2 * S)[:3, 3], (2, 0, 0))  # a sample itself is fine


def test_unknown_and_unconnected_frames() -> None:
    buf = TransformBuffer()
    buf.set_transform("/map", "odom", 0, (0, 0, 0), _yaw_q(0), static=True)  # ROS 1 style leading slash
    buf.set_transform("base_link", "camera", 0, (0, 0, 0), _yaw_q(0), static=True)
    assert buf.frames == ("base_link", "camera", "map", "odom")
    with pytest.raises(UnknownFrameError, match="'tool0'; the frames are: base_link, camera, map, odom"):
        buf.lookup("map", "tool0", 0)
    with pytest.raises(DisconnectedFramesError, match="not connected"):
        buf.lookup("map", "camera", 0)


def test_invalid_transforms_are_refused() -> None:
    buf = TransformBuffer()
    with pytest.raises(InvalidTransformError, match="quaternion"):
        buf.set_transform("a", "b", 0, (0, 0, 0), (0, 0, 0, 0))
    with pytest.raises(InvalidTransformError, match="not finite"):
        buf.set_transform("a", "b", 0, (np.nan, 0, 0), _yaw_q(0))
    buf.set_transform("a", "b", 0, (0, 0, 0), _yaw_q(0))
    with pytest.raises(InvalidTransformError, match="already has parent a"):
        buf.set_transform("x", "b", 0, (0, 0, 0), _yaw_q(0))
    assert buf.frames == ("a", "b")


def test_repeated_stamp_keeps_the_last_transform() -> None:
    buf = TransformBuffer(max_gap_s=2.0)
    buf.set_transform("a", "b", S, (1, 0, 0), _yaw_q(0))
    buf.set_transform("a", "b", S, (5, 0, 0), _yaw_q(0))
    buf.set_transform("a", "b", 0, (0, 0, 0), _yaw_q(0))  # out of order is fine
    np.testing.assert_allclose(buf.lookup("a", "b", S // 2)[:3, 3], (2.5, 0, 0))
