"""MuJoCo tabletop: scenes, rendering against truth, scripted motions and their labels (real rendering)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from spatial_mllm_ros.sim import (
    CameraDolly,
    CameraPan,
    Episode,
    FailedGrasp,
    MotionError,
    PickPlace,
    Push,
    RenderBackendError,
    SceneConfig,
    SceneConfigError,
    SimWorld,
    UnknownCameraError,
    UnknownObjectError,
    UnreachableTargetError,
    parse_motion,
    random_motion,
    run_episode,
    translate,
)
from spatial_mllm_ros.sim.geometry import project, to_camera
from spatial_mllm_ros.sim.topics import camera_frames

SMALL = {"width": 160, "height": 120}


@pytest.fixture(scope="module")
def world() -> SimWorld:
    with SimWorld(SceneConfig(seed=7, n_objects=4, **SMALL)) as w:
        yield w


def test_bad_scene_parameters_give_clear_errors() -> None:
    with pytest.raises(SceneConfigError, match="object_size_m"):
        SceneConfig(object_size_m=-0.02)
    with pytest.raises(SceneConfigError, match="n_objects"):
        SceneConfig(n_objects=7)
    with pytest.raises(UnknownObjectError, match="pink pyramid"):
        SceneConfig(objects=("red cube", "pink pyramid"))
    with pytest.raises(UnknownCameraError, match="ceiling"):
        SceneConfig(cameras=("front", "ceiling"))
    with pytest.raises(UnreachableTargetError, match="workspace"):
        SceneConfig(gripper_start=(0.0, 0.0, 2.0))
    with pytest.raises(MotionError, match="direction"):
        translate("sideways", 0.1)
    with pytest.raises(MotionError, match="unknown motion"):
        parse_motion("juggle")


def test_world_errors_name_the_bad_thing(world: SimWorld) -> None:
    with pytest.raises(UnreachableTargetError, match="outside the gripper workspace"):
        world.set_gripper_target((1.5, 0.0, 0.2))
    with pytest.raises(UnknownObjectError, match="it has"):
        world.object_pose("black cube")
    with pytest.raises(UnknownCameraError):
        world.render("ceiling")
    with pytest.raises(UnreachableTargetError, match="translate target"):
        run_episode(world, translate("up", 0.5, "front"), n_frames=2)


def test_truth_agrees_with_rendered_pixels(world: SimWorld) -> None:
    seg_ids = world.scene.seg_ids
    world.set_gripper_target((0.35, -0.3, 0.3))  # aside: in view, occluding no object
    world.step(400)
    for cam in ("front", "side", "overhead"):
        frame = world.render(cam)
        k, pose = world.intrinsics(cam), world.extrinsics(cam)
        assert frame.rgb.shape == (120, 160, 3) and frame.depth.dtype == np.float32
        for obj in world.scene.objects:
            centre = world.object_pose(obj.name).position
            p_cam = to_camera(centre, pose)
            u, v = np.round(project(p_cam, k)).astype(int)
            assert frame.seg[v, u] == seg_ids[obj.name], (cam, obj.name)
            # The surface facing the camera is at most one half-extent (diagonal) nearer than the centre.
            assert p_cam[2] - 1.8 * obj.size_m - 0.003 <= frame.depth[v, u] <= p_cam[2] + 0.003
            if cam == "overhead":  # the top face's centre: depth is exactly its optical z
                top = to_camera(centre + [0, 0, obj.half_height_m], pose)
                ut, vt = np.round(project(top, k)).astype(int)
                assert frame.seg[vt, ut] == seg_ids[obj.name]
                assert frame.depth[vt, ut] == pytest.approx(top[2], abs=0.004)
    wrist = world.gripper_pose().position + [0, 0, 0.08]  # the wrist block above the open fingers
    u, v = np.round(project(to_camera(wrist, world.extrinsics("front")), world.intrinsics("front"))).astype(
        int
    )
    assert world.render("front").seg[v, u] == seg_ids["gripper"]


def test_move_left_10cm_is_left_in_truth_and_in_pixels(tmp_path) -> None:
    cfg = SceneConfig(seed=1, cameras=("front", "side", "overhead"), **SMALL)
    ep = run_episode(cfg, translate("left", 0.10, "front"), n_frames=6, fps=10.0)
    truth = ep.gripper_motion(0, -1, "front")
    assert truth.direction == "left" and truth.moved
    assert truth.distance_mm == pytest.approx(100, abs=3)
    assert truth.vector_cam_mm[0] == pytest.approx(-100, abs=3)
    assert ep.labels == {
        "motion": "translate",
        "camera": "front",
        "direction": "left",
        "distance_mm": 100,
        "vector_cam_mm": [-100, 0, 0],
        "success": True,
    }
    gid = ep.seg_ids["gripper"]
    us = [np.nonzero(ep.frame("front", i).seg == gid)[1].mean() for i in range(ep.n_frames)]
    assert us[-1] < us[0] - 10 and all(b <= a + 0.5 for a, b in zip(us, us[1:]))
    assert ep.gripper_motion(0, -1, "side").direction != "left"  # the same motion, another camera
    assert not ep.object_motion(ep.object_names[0], 0, -1, "front").moved
    assert ep.stamps_ns.tolist() == [i * 100_000_000 for i in range(6)]
    assert ep.gripper_motion(0, 0, "front").direction is None
    frames = camera_frames(ep, "front")
    assert [f.stamp_ns for f in frames] == ep.stamps_ns.tolist()
    assert frames[0].topic == "/camera/front/image_raw" and frames[0].frame_id == "front_camera_optical_frame"
    back = Episode.load(ep.save(tmp_path / "ep"))
    np.testing.assert_array_equal(back.cameras["side"].seg, ep.cameras["side"].seg)
    np.testing.assert_array_equal(back.frame("overhead", 3).depth, ep.frame("overhead", 3).depth)
    assert back.labels == ep.labels and back.gripper_motion(0, -1, "front") == truth
    assert back.scene.objects == ep.scene.objects


def test_point_tracks_land_on_their_object() -> None:
    ep = run_episode(
        SceneConfig(seed=2, n_objects=2, cameras=("overhead",)),
        PickPlace(direction="right", distance_m=0.12, camera="overhead"),
        n_frames=6,
    )
    for name in ep.object_names:
        uv, visible = ep.track_pixels(name, "overhead")
        assert visible.any()
        px = np.round(uv[visible]).astype(int)
        frames = np.nonzero(visible)[0]
        hits = ep.cameras["overhead"].seg[frames, px[:, 1], px[:, 0]] == ep.seg_ids[name]
        assert hits.mean() > 0.85, name


def test_manipulation_motions_have_true_labels() -> None:
    cfg = SceneConfig(
        seed=4, objects=("red cube", "green sphere"), randomize=False, cameras=("front",), **SMALL
    )
    ep = run_episode(cfg, PickPlace("red cube", "right", 0.15, "front"), n_frames=12)
    moved = ep.object_motion("red cube", 0, -1, "front")
    assert (
        ep.labels["success"]
        and moved.direction == "right"
        and moved.distance_mm == pytest.approx(150, abs=25)
    )
    assert ep.gripper_opening.min() < 0.06 < ep.gripper_opening.max()
    assert ep.object_poses["red cube"][:, 2].max() > 0.06  # it was lifted
    ep = run_episode(cfg, FailedGrasp("red cube"), n_frames=12)
    assert ep.labels["success"] is False and ep.labels["failure"] == "slipped"
    assert (
        ep.object_poses["red cube"][:, 2].max() > 0.03
        and not ep.object_motion("red cube", 0, -1, "front").moved
    )
    ep = run_episode(cfg, Push("green sphere", "left", 0.1, "front"), n_frames=12)
    assert ep.labels["success"] and ep.object_motion("green sphere", 0, -1, "front").direction == "left"
    assert not ep.object_motion("red cube", 0, -1, "front").moved


def test_a_motion_paced_by_motion_fps_ends_the_same_with_few_frames() -> None:
    """Datasets keep 5 frames; played at 10 fps (0.4 s) a push leaves its object, paced it pushes it."""
    from spatial_mllm_ros.sim import motion_fps

    cfg = SceneConfig(seed=3, cameras=("front",), **SMALL)
    push = Push("green sphere", "left", 0.1, "front")
    full = run_episode(cfg, push, n_frames=16, fps=motion_fps(16), depth=False, seg=False)
    few = run_episode(cfg, push, n_frames=5, fps=motion_fps(5), depth=False, seg=False)
    rushed = run_episode(cfg, push, n_frames=5, depth=False, seg=False)
    assert motion_fps(16) == 10.0 and full.labels["success"] and few.labels["success"]
    end_full, end_few = (ep.object_poses["green sphere"][-1, :3] for ep in (full, few))
    assert np.linalg.norm(end_few - end_full) < 0.01
    assert not rushed.labels["success"]  # why datasets pace their frames: the gripper lags a rushed plan
    with pytest.raises(SceneConfigError):
        motion_fps(1)


def test_recording_rushed_motions_warns(caplog: pytest.LogCaptureFixture) -> None:
    from spatial_mllm_ros.sim import generate_episodes, motion_fps

    cfg = SceneConfig(seed=3, cameras=("front",), **SMALL)
    next(generate_episodes(cfg, 1, ("idle",), n_frames=3, fps=motion_fps(3), depth=False, seg=False))
    assert "simulated time" not in caplog.text
    next(generate_episodes(cfg, 1, ("idle",), n_frames=3, fps=10.0, depth=False, seg=False))
    assert "each motion lasts 0.20 s of simulated time" in caplog.text and "--fps 1.33" in caplog.text


def test_camera_motions() -> None:
    cfg = SceneConfig(seed=5, cameras=("front",), **SMALL)
    ep = run_episode(cfg, CameraPan("front", 15.0), n_frames=4)
    pan = ep.camera_motion(0, -1)
    assert not pan.moved and pan.rotation_deg == pytest.approx(15.0, abs=0.1)
    assert not ep.gripper_motion(0, -1, "front").moved
    assert not np.array_equal(ep.frame("front", 0).rgb, ep.frame("front", -1).rgb)
    ep = run_episode(cfg, CameraDolly("front", 0.12), n_frames=4)
    assert ep.camera_motion(0, -1).direction == "forward"
    assert ep.camera_motion(0, -1).distance_mm == 120


def test_random_motions_are_feasible_and_parse() -> None:
    with SimWorld(SceneConfig(seed=9, **SMALL)) as w:
        rng = np.random.default_rng(0)
        kinds = {type(random_motion(w, rng)).name for _ in range(12)}
        assert len(kinds) >= 4
    m = parse_motion("push:object=red cube,direction=left,distance_m=0.05")
    assert (m.object, m.direction, m.distance_m) == ("red cube", "left", 0.05)
    assert parse_motion("translate:direction=up,distance=0.05,camera=side").vector_cam == (0.0, -0.05, 0.0)


def test_missing_render_backend_says_what_to_install() -> None:
    code = (
        "import sys\nfrom spatial_mllm_ros.sim import SimWorld, RenderBackendError\n"
        "try:\n    SimWorld()\nexcept RenderBackendError as e:\n    print(e); sys.exit(3)\n"
    )
    env = {"MUJOCO_GL": "osmesa", "PYOPENGL_PLATFORM": "osmesa", "PATH": "/usr/bin:/bin"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    if res.returncode == 0:  # a machine with OSMesa installed renders fine: nothing to report then
        pytest.skip("OSMesa is installed here")
    assert res.returncode == 3, res.stderr
    assert "libosmesa6" in res.stdout and "libegl1" in res.stdout
    assert issubclass(RenderBackendError, RuntimeError)
