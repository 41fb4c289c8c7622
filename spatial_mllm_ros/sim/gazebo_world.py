"""The same tabletop as an SDF world for Gazebo (gz sim): table, objects, gripper and camera sensors.

Gazebo is not installable on the project's machines: the SDF is checked as XML and against the MuJoCo
scene here, and runs where Gazebo is installed (see launch/gazebo_sim.launch.py).
"""

from __future__ import annotations

from pathlib import Path
from xml.dom import minidom

import numpy as np

from spatial_mllm_ros.sim.scene import (
    FINGER_HALF,
    GRIPPER_MAX_OPENING,
    TABLE_HALF,
    TABLE_LEG_HEIGHT,
    CameraSpec,
    ObjectSpec,
    Scene,
    SceneConfig,
    build_scene,
)
from spatial_mllm_ros.sim.topics import camera_info_topic, image_topic, optical_frame

SHIPPED_WORLD = Path(__file__).with_name("gazebo") / "tabletop.sdf"
DENSITY = 600.0  # kg/m^3, as in the MJCF
# Gazebo camera links look along +x with z up; columns: the link's axes in the optical frame.
_OPTICAL_TO_LINK = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])


def shipped_config() -> SceneConfig:
    """Return the scene config the shipped tabletop.sdf shows (no randomisation, three objects)."""
    return SceneConfig(seed=0, n_objects=3, randomize=False)


def rpy_of(r: np.ndarray) -> tuple[float, float, float]:
    """Roll, pitch, yaw (SDF pose convention R = Rz(yaw) Ry(pitch) Rx(roll)) of a rotation matrix."""
    pitch = float(np.arcsin(-np.clip(r[2, 0], -1.0, 1.0)))
    if abs(r[2, 0]) < 1 - 1e-9:
        return float(np.arctan2(r[2, 1], r[2, 2])), pitch, float(np.arctan2(r[1, 0], r[0, 0]))
    return 0.0, pitch, float(np.arctan2(-r[0, 1], r[1, 1]))


def link_rotation(r_world_optical: np.ndarray) -> np.ndarray:
    """Rotation of a Gazebo camera link (x forward, z up) with the given optical frame."""
    return r_world_optical @ _OPTICAL_TO_LINK


def _pose(xyz: tuple[float, ...] | np.ndarray, rpy: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> str:
    return "<pose>" + " ".join(f"{float(v):.6g}" for v in (*xyz, *rpy)) + "</pose>"


def _material(rgb: tuple[float, float, float] | np.ndarray) -> str:
    c = " ".join(f"{float(v):.4g}" for v in rgb)
    specular = "<specular>0.1 0.1 0.1 1</specular>"
    return f"<material><ambient>{c} 1</ambient><diffuse>{c} 1</diffuse>{specular}</material>"


def _box(size: tuple[float, float, float]) -> str:
    return "<box><size>" + " ".join(f"{v:.6g}" for v in size) + "</size></box>"


def _shape(obj: ObjectSpec) -> tuple[str, float]:
    """SDF geometry and volume of an object."""
    if obj.shape == "cube":
        s = 2 * obj.size_m
        return _box((s, s, s)), s**3
    if obj.shape == "cylinder":
        length = 2 * obj.half_height_m
        geom = f"<cylinder><radius>{obj.size_m:.6g}</radius><length>{length:.6g}</length></cylinder>"
        return geom, np.pi * obj.size_m**2 * 2 * obj.half_height_m
    return f"<sphere><radius>{obj.size_m:.6g}</radius></sphere>", 4 / 3 * np.pi * obj.size_m**3


def _object(obj: ObjectSpec) -> str:
    geom, volume = _shape(obj)
    mass = DENSITY * volume
    inertia = mass * obj.size_m**2 * 0.4  # order of magnitude is what the solver needs
    name = obj.name.replace(" ", "_")
    return (
        f'<model name="{name}">{_pose((*obj.xy, obj.half_height_m), (0.0, 0.0, obj.yaw_rad))}'
        f'<link name="link"><inertial><mass>{mass:.6g}</mass>'
        f"<inertia><ixx>{inertia:.3g}</ixx><iyy>{inertia:.3g}"
        f"</iyy><izz>{inertia:.3g}</izz><ixy>0</ixy><ixz>0</ixz><iyz>0</iyz></inertia></inertial>"
        f'<collision name="collision"><geometry>{geom}</geometry></collision>'
        f'<visual name="visual"><geometry>{geom}</geometry>{_material(obj.rgb)}</visual></link></model>'
    )


def _camera_sensor(cam: CameraSpec, width: int, height: int, rate_hz: float) -> str:
    hfov = 2 * np.arctan(np.tan(np.radians(cam.fovy_deg) / 2) * width / height)
    return (
        f'<sensor name="{cam.name}" type="camera">{_pose(cam.pos, rpy_of(link_rotation(cam.rotation)))}'
        f"<always_on>true</always_on><update_rate>{rate_hz:g}</update_rate><visualize>true</visualize>"
        f"<topic>{image_topic(cam.name)}</topic>"
        f"<camera><horizontal_fov>{hfov:.6g}</horizontal_fov>"
        f"<image><width>{width}</width><height>{height}</height><format>R8G8B8</format></image>"
        f"<clip><near>0.01</near><far>50</far></clip>"
        f"<camera_info_topic>{camera_info_topic(cam.name)}</camera_info_topic>"
        f"<optical_frame_id>{optical_frame(cam.name)}</optical_frame_id></camera></sensor>"
    )


def _table() -> str:
    hx, hy = TABLE_HALF
    wood = (0.62, 0.48, 0.33)
    parts = [("top", (0.0, 0.0, -0.02), (2 * hx, 2 * hy, 0.04))]
    for i, (sx, sy) in enumerate(((-1, -1), (-1, 1), (1, -1), (1, 1))):
        parts.append(
            (
                f"leg{i}",
                (sx * (hx - 0.05), sy * (hy - 0.05), -TABLE_LEG_HEIGHT / 2 - 0.02),
                (0.05, 0.05, TABLE_LEG_HEIGHT),
            )
        )
    body = "".join(
        f'<collision name="{n}_collision">{_pose(p)}<geometry>{_box(s)}</geometry></collision>'
        f'<visual name="{n}_visual">{_pose(p)}<geometry>{_box(s)}</geometry>{_material(wood)}</visual>'
        for n, p, s in parts
    )
    return f'<model name="table"><static>true</static><link name="link">{body}</link></model>'


def _gripper(scene: Scene) -> str:
    """Build a static gripper (wrist, arm, open fingers) with the wrist camera; move it with gz set_pose."""
    cfg = scene.config
    fx, fy, fz = FINGER_HALF
    reach = GRIPPER_MAX_OPENING / 2
    grey, dark = (0.55, 0.57, 0.6), (0.25, 0.25, 0.28)
    parts = [
        ("wrist", (0.0, 0.0, 0.08), (2 * (reach + 2 * fx + 0.005), 0.044, 0.04), grey),
        ("finger_left", (-(reach + fx), 0.0, fz - 0.02), (2 * fx, 2 * fy, 2 * fz), dark),
        ("finger_right", (reach + fx, 0.0, fz - 0.02), (2 * fx, 2 * fy, 2 * fz), dark),
    ]
    body = "".join(
        f'<visual name="{n}">{_pose(p)}<geometry>{_box(s)}</geometry>{_material(c)}</visual>'
        for n, p, s, c in parts
    )
    body += (
        f'<visual name="arm">{_pose((0.0, 0.0, 0.3))}<geometry><cylinder><radius>0.018</radius>'
        f"<length>0.4</length></cylinder></geometry>{_material((0.85, 0.86, 0.88))}</visual>"
    )
    wrist = scene.cameras.get("wrist")
    if wrist:
        body += _camera_sensor(wrist, cfg.width, cfg.height, 10.0)
    return (
        f'<model name="gripper"><static>true</static>{_pose(cfg.gripper_start)}'
        f'<link name="link">{body}</link></model>'
    )


def scene_to_sdf(scene: Scene, rate_hz: float = 10.0) -> str:
    """Build the SDF 1.9 world of a scene: same table, objects, gripper, cameras (sim node's topic names)."""
    cfg = scene.config
    cameras = "".join(
        f'<model name="{c.name}_camera"><static>true</static><link name="link">'
        f"{_camera_sensor(c, cfg.width, cfg.height, rate_hz)}</link></model>"
        for c in scene.cameras.values()
        if c.mount == "world"
    )
    floor = -TABLE_LEG_HEIGHT - 0.02
    body = (
        f'<physics name="default" type="ignored"><max_step_size>{cfg.timestep_s:g}</max_step_size>'
        "<real_time_factor>1.0</real_time_factor></physics>"
        '<plugin filename="gz-sim-physics-system" name="gz::sim::systems::Physics"/>'
        '<plugin filename="gz-sim-user-commands-system" name="gz::sim::systems::UserCommands"/>'
        '<plugin filename="gz-sim-scene-broadcaster-system" name="gz::sim::systems::SceneBroadcaster"/>'
        '<plugin filename="gz-sim-sensors-system" name="gz::sim::systems::Sensors">'
        "<render_engine>ogre2</render_engine></plugin>"
        "<gravity>0 0 -9.81</gravity><scene><ambient>0.3 0.3 0.3 1</ambient>"
        "<background>0.75 0.8 0.88 1</background></scene>"
        '<light type="directional" name="key"><cast_shadows>false</cast_shadows>'
        "<diffuse>0.6 0.6 0.6 1</diffuse><specular>0.2 0.2 0.2 1</specular>"
        "<direction>0.3 0.2 -1</direction></light>"
        f'<model name="ground_plane"><static>true</static>{_pose((0.0, 0.0, floor))}<link name="link">'
        '<collision name="collision"><geometry><plane><normal>0 0 1</normal><size>8 8</size></plane>'
        "</geometry>"
        '</collision><visual name="visual"><geometry><plane><normal>0 0 1</normal><size>8 8</size></plane>'
        f"</geometry>{_material((0.35, 0.37, 0.4))}</visual></link></model>"
        f"{_table()}{_gripper(scene)}{''.join(_object(o) for o in scene.objects)}{cameras}"
    )
    text = (
        f"<!-- spatial_mllm_ros tabletop, seed {cfg.seed}: generated by "
        f"spatial_mllm_ros.sim.gazebo_world.scene_to_sdf -->"
        f'<sdf version="1.9"><world name="spatial_mllm_tabletop">{body}</world></sdf>'
    )
    return minidom.parseString(text).toprettyxml(indent="  ")


def write_sdf(config: SceneConfig, path: Path, rate_hz: float = 10.0) -> Path:
    """Write the SDF world of `config`'s scene to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(scene_to_sdf(build_scene(config), rate_hz))
    return path
