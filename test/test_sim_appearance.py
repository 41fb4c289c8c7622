"""Appearance randomisation: plain by default, seeded, visibly varied, names stay true (real rendering)."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools

import cv2
import numpy as np
import pytest

from spatial_mllm_ros.cli import main
from spatial_mllm_ros.config import from_dict
from spatial_mllm_ros.errors import ConfigError
from spatial_mllm_ros.sim import (
    PROFILES,
    AppearanceConfig,
    Episode,
    SceneConfig,
    SceneConfigError,
    SensorEffects,
    SimNodeConfig,
    SimWorld,
    build_scene,
    generate_episodes,
    random_motion,
    run_episode,
    shift_profile,
    translate,
)
from spatial_mllm_ros.sim.appearance import (
    COLOUR_BANDS,
    LightAppearance,
    SensorAppearance,
    SurfaceAppearance,
    in_band,
)
from spatial_mllm_ros.sim.geometry import project, to_camera
from spatial_mllm_ros.sim.scene import COLOURS
from spatial_mllm_ros.sim.sensor import Sensor

SMALL = {"width": 160, "height": 120}
# Everything drawn in every scene: photo textures, walls, all sensor effects.
EVERYTHING = AppearanceConfig(
    randomize=True,
    surfaces=SurfaceAppearance(texture_share=1.0, photo_share=1.0, backdrop_share=1.0),
    sensor=SensorAppearance(share=1.0, jpeg_share=1.0, noise_std=(4.0, 6.0), blur_sigma=(0.5, 1.0)),
)
# sha256 of the MJCF the code built before appearance randomisation existed (commit 9f7f081).
PLAIN_XML_SHA256 = {
    SceneConfig(): "90d712c683268b29589edb988f8268d43f837fb3d52bfd37020088512910de9d",
    SceneConfig(seed=7, n_objects=4, randomize=False, shadows=True, cameras=("front", "wrist")): (
        "4e9b0168db633132fe999d3fba3f0293b1e79420de76fa68d444c07606ecbd3d"
    ),
}


def _rgb(config: SceneConfig, camera: str = "front", frames: int = 1) -> list[np.ndarray]:
    with SimWorld(config) as world:
        return [world.render(camera, depth=False, seg=False).rgb for _ in range(frames)]


def test_default_config_renders_the_plain_look_as_before() -> None:
    assert SceneConfig().appearance == AppearanceConfig() and not AppearanceConfig().randomize
    for config, digest in PLAIN_XML_SHA256.items():
        assert hashlib.sha256(build_scene(config).xml.encode()).hexdigest() == digest
    plain = SceneConfig(seed=3, **SMALL)
    nothing_drawn = dataclasses.replace(plain, appearance=AppearanceConfig().only())
    assert nothing_drawn.appearance.randomize and build_scene(nothing_drawn).xml == build_scene(plain).xml
    off = dataclasses.replace(plain, appearance=dataclasses.replace(EVERYTHING, randomize=False))
    assert build_scene(off).xml == build_scene(plain).xml
    np.testing.assert_array_equal(_rgb(plain)[0], _rgb(off)[0])


def test_same_seed_gives_identical_pixels() -> None:
    config = SceneConfig(seed=11, appearance=EVERYTHING, **SMALL)
    scene = build_scene(config)
    assert scene.assets and scene.sensor.active and "backdrop_north" in scene.xml  # photo, effects, walls
    for camera in ("front", "wrist"):
        first, second = _rgb(config, camera, 2), _rgb(config, camera, 2)
        np.testing.assert_array_equal(first[0], second[0])
        np.testing.assert_array_equal(first[1], second[1])
        assert not np.array_equal(first[0], first[1])  # sensor noise is drawn anew for every frame
    with SimWorld(config) as world:
        before = world.render("front", depth=False, seg=False).rgb
        world.reset()
        np.testing.assert_array_equal(world.render("front", depth=False, seg=False).rgb, before)


def test_looks_differ_visibly_across_seeds_with_the_layout_fixed() -> None:
    def stats(appearance: AppearanceConfig) -> np.ndarray:
        rows = []
        for seed in range(6):
            rgb = _rgb(SceneConfig(seed=seed, randomize=False, appearance=appearance, **SMALL))[0]
            rows.append([*rgb.reshape(-1, 3).mean(axis=0), rgb.std()])
        return np.array(rows)

    def closest_pair(s: np.ndarray) -> float:
        return min(float(np.linalg.norm(a - b)) for a, b in itertools.combinations(s, 2))

    assert closest_pair(stats(AppearanceConfig())) == 0.0  # the plain look ignores the seed
    randomized = stats(AppearanceConfig(randomize=True))
    assert closest_pair(randomized) > 8.0, randomized.round(1)  # mean colour and std, 8-bit levels
    assert randomized[:, :3].std(axis=0).mean() > 10.0


def test_named_colours_keep_their_hue_band() -> None:
    shades: dict[str, list[tuple[float, float, float]]] = {c: [] for c in COLOURS}
    shaded = AppearanceConfig().only("objects")
    for seed in range(60):
        for obj in build_scene(SceneConfig(seed=seed, n_objects=6, appearance=shaded)).objects:
            assert in_band(obj.colour, obj.rgb), (seed, obj.name, obj.rgb)
            shades[obj.colour].append(obj.rgb)
    for colour, rgbs in shades.items():
        assert len(rgbs) > 20 and np.ptp(np.array(rgbs), axis=0).max() > 0.1, colour  # visibly varied
        others = [c for c in COLOUR_BANDS if c != colour]
        assert not any(in_band(o, rgb) for o in others for rgb in rgbs), colour  # bands never overlap
    # In the image, under the plain lights: an object's median pixel hue is in its name's band.
    config = shift_profile("object_shades").scene_config(5, SceneConfig(n_objects=6, **SMALL))
    with SimWorld(config) as world:
        frame = world.render("overhead")
        for obj in world.scene.objects:
            pixels = frame.rgb[frame.seg == obj.seg_id].reshape(-1, 1, 3)
            hsv = cv2.cvtColor(pixels, cv2.COLOR_RGB2HSV_FULL).reshape(-1, 3).astype(float) / 255
            h, s, v = np.median(hsv, axis=0)
            if obj.colour in COLOUR_BANDS:
                lo, hi = COLOUR_BANDS[obj.colour]
                hue = (h * 360 + 180) % 360 - 180 if lo < 0 else h * 360
                assert lo - 4 <= hue <= hi + 4 and s > 0.3, (obj.name, hue, s)
            else:
                assert s < 0.2 and v > 0.6, (obj.name, s, v)


def test_sensor_effects_are_seeded_and_each_changes_the_image() -> None:
    rgb = _rgb(SceneConfig(seed=2, **SMALL))[0]
    assert Sensor(SensorEffects(), 0)(rgb) is rgb
    every = SensorEffects(
        blur_sigma=0.8, exposure=1.3, white_balance=(1.1, 1.0, 0.9), noise_std=5.0, jpeg_quality=40
    )
    a, b, other = Sensor(every, [1, 2]), Sensor(every, [1, 2]), Sensor(every, [1, 3])
    frames = [a(rgb) for _ in range(3)]
    np.testing.assert_array_equal(frames[0], b(rgb))
    assert not np.array_equal(frames[0], frames[1]) and not np.array_equal(frames[0], other(rgb))
    a.reset()
    np.testing.assert_array_equal(a(rgb), frames[0])
    assert frames[0].shape == rgb.shape and frames[0].dtype == np.uint8
    singles = {
        "blur": SensorEffects(blur_sigma=1.0),
        "exposure": SensorEffects(exposure=0.6),
        "white balance": SensorEffects(white_balance=(1.2, 1.0, 0.8)),
        "noise": SensorEffects(noise_std=4.0),
        "jpeg": SensorEffects(jpeg_quality=30),
    }
    for name, fx in singles.items():
        out = Sensor(fx, 0)(rgb)
        assert np.abs(out.astype(int) - rgb).mean() > 0.3, name
    dark = Sensor(singles["exposure"], 0)(rgb)
    assert dark.mean() < 0.7 * rgb.mean()
    warm = Sensor(singles["white balance"], 0)(rgb).reshape(-1, 3).mean(axis=0)
    assert warm[0] > rgb[..., 0].mean() and warm[2] < rgb[..., 2].mean()


def test_camera_optics_change_intrinsics_and_truth_follows() -> None:
    plain = SceneConfig(seed=4, n_objects=3, **SMALL)
    config = shift_profile("camera_optics").scene_config(4, plain)
    base, jittered = build_scene(plain), build_scene(config)
    assert base.objects == jittered.objects  # the layout is the plain scene's
    for cam in ("front", "side", "overhead", "wrist"):
        a, b = base.cameras[cam], jittered.cameras[cam]
        assert a.fovy_deg != b.fovy_deg and a.pos != b.pos, cam
    with SimWorld(config) as world:
        world.set_gripper_target((0.35, -0.3, 0.3))  # aside: in view, occluding no object
        world.step(400)
        for cam in ("front", "side", "overhead"):
            assert world.intrinsics(cam)[1, 1] == pytest.approx(
                0.5 * 120 / np.tan(np.radians(jittered.cameras[cam].fovy_deg) / 2), rel=1e-4
            )
            frame = world.render(cam)
            for obj in world.scene.objects:
                centre = to_camera(world.object_pose(obj.name).position, world.extrinsics(cam))
                u, v = np.round(project(centre, world.intrinsics(cam))).astype(int)
                assert frame.seg[v, u] == obj.seg_id, (cam, obj.name)


def test_profiles_change_one_thing_each() -> None:
    assert set(PROFILES) >= {"in_distribution", "randomized", "shadows", "dim_light", "coloured_light",
                             "surface_colours", "textures", "object_shades", "camera_optics", "wrist_camera",
                             "sensor_noise_jpeg"}
    with pytest.raises(SceneConfigError, match="known: in_distribution"):
        shift_profile("fog")
    base = SceneConfig(n_objects=4, **SMALL)
    plain = build_scene(shift_profile("in_distribution").scene_config(8, base))
    for name in PROFILES:
        scene = build_scene(shift_profile(name).scene_config(8, base))
        assert [o.xy for o in scene.objects] == [o.xy for o in plain.objects], name  # paired with the plain
        if name != "in_distribution":
            assert scene.xml != plain.xml or scene.sensor.active, name
        if name not in ("object_shades", "randomized"):
            assert [o.rgb for o in scene.objects] == [o.rgb for o in plain.objects], name
    dim = _rgb(shift_profile("dim_light").scene_config(8, base))[0]
    assert dim.mean() < 0.75 * _rgb(shift_profile("in_distribution").scene_config(8, base))[0].mean()
    assert shift_profile("shadows").scene_config(8, base).shadows
    assert build_scene(shift_profile("sensor_noise_jpeg").scene_config(8, base)).sensor.jpeg_quality > 0


def test_wrist_camera_can_be_the_question_camera() -> None:
    config = shift_profile("wrist_camera").scene_config(3, SceneConfig(**SMALL))
    assert config.cameras == ("wrist",)
    episodes = generate_episodes(config, 2, ("random:translate,push",), n_frames=3, depth=False, seg=False)
    assert all(ep.labels["camera"] == "wrist" for ep in episodes)
    ep = run_episode(config, translate("left", 0.08, "wrist"), n_frames=3)
    assert ep.gripper_motion(0, -1, "wrist").direction == "left"
    with SimWorld(SceneConfig(seed=3, **SMALL)) as world:  # all four cameras: ask about the wrist one
        rng = np.random.default_rng(0)
        motions = [random_motion(world, rng, ("translate",), cameras=("wrist",)) for _ in range(4)]
        assert {m.camera for m in motions} == {"wrist"}


def test_appearance_is_part_of_the_config_schema_and_saved_episodes(tmp_path) -> None:
    node = from_dict(SimNodeConfig, {"appearance.randomize": True, "appearance.lights.level": [0.2, 0.4]})
    scene = node.scene_config()
    assert scene.appearance.randomize and scene.appearance.lights.level == (0.2, 0.4)
    with pytest.raises(ConfigError, match="appearance.sensor.share"):
        from_dict(SimNodeConfig, {"appearance": {"sensor": {"share": 2.0}}})
    with pytest.raises(SceneConfigError, match="lowest, highest"):
        LightAppearance(level=(1.5, 0.5))
    config = SceneConfig(seed=6, cameras=("front",), appearance=EVERYTHING, width=64, height=48)
    ep = run_episode(config, translate("up", 0.05, "front"), n_frames=2)
    back = Episode.load(ep.save(tmp_path / "ep"))
    assert back.scene.config == config and back.scene.xml == ep.scene.xml


def test_preview_grid_draws_one_png_of_n_seeds(tmp_path) -> None:
    out = tmp_path / "grid.png"
    args = ["sim", "preview", "--grid", "5", "--appearance", "randomized", "--width", "64", "--height", "48",
            "--cameras", "side", "--out", str(out)]
    assert main(args) == 0
    grid = cv2.imread(str(out))
    assert grid.shape == (2 * 48, 3 * 64, 3)  # 5 tiles, 3 columns, the last one blank
    tiles = [grid[r * 48 : (r + 1) * 48, c * 64 : (c + 1) * 64] for r in range(2) for c in range(3)]
    assert tiles[-1].max() == 0 and all(t.std() > 5 for t in tiles[:5])
    assert len({round(float(t.mean()), 1) for t in tiles[:5]}) == 5
