"""The running MuJoCo world: physics, a kinematic gripper, cameras and off-screen rendering."""

from __future__ import annotations

import os
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from spatial_mllm_ros.sim.appearance import stream_seed
from spatial_mllm_ros.sim.errors import (
    RenderBackendError,
    SceneConfigError,
    UnknownCameraError,
    UnknownObjectError,
)
from spatial_mllm_ros.sim.geometry import (
    MUJOCO_TO_OPTICAL,
    intrinsics,
    make_pose,
    mat_to_quat,
    quat_to_mat,
    yaw_quat,
)
from spatial_mllm_ros.sim.scene import (
    GRIPPER_ID,
    GRIPPER_MAX_OPENING,
    TABLE_ID,
    WORKSPACE_MAX,
    WORKSPACE_MIN,
    Scene,
    SceneConfig,
    build_scene,
    check_reachable,
)
from spatial_mllm_ros.sim.sensor import Sensor

if TYPE_CHECKING:
    import mujoco

INSTALL_HINT = (
    "install an off-screen OpenGL backend: EGL (Debian/Ubuntu: apt install libegl1 libgl1-mesa-dri; "
    "then MUJOCO_GL=egl) or OSMesa (apt install libosmesa6; then MUJOCO_GL=osmesa)"
)
MAX_SPEED_M_S = 1.5  # the gripper follows its target at most this fast
MAX_YAW_RATE = 6.0  # rad/s
FINGER_SPEED_M_S = 0.25
SETTLE_S = 0.3  # physics time objects get to come to rest after a reset


def load_mujoco() -> ModuleType:
    """Import MuJoCo with an off-screen GL backend (default EGL); RenderBackendError says what to install."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        import mujoco
    except Exception as exc:  # a missing GL library surfaces as any of several errors at import
        raise RenderBackendError(
            f"MuJoCo cannot load its GL backend MUJOCO_GL={os.environ['MUJOCO_GL']} "
            f"({type(exc).__name__}: {exc}); {INSTALL_HINT}"
        ) from exc
    return mujoco


class RenderedFrame(NamedTuple):
    """One camera image: RGB uint8 HxWx3, depth float32 metres HxW (optical z), segmentation uint8 ids.

    Segmentation ids are Scene.seg_ids (0 background, 1 table, 2 gripper, 3+ objects); background pixels
    (the sky) have the far-plane depth, 50 m, or the distance of the walls a randomised look may add.
    """

    rgb: np.ndarray
    depth: np.ndarray | None
    seg: np.ndarray | None


@dataclass(frozen=True)
class Pose:
    """A rigid pose in the world: position (m) and unit quaternion (w, x, y, z)."""

    position: np.ndarray
    quaternion: np.ndarray

    def matrix(self) -> np.ndarray:
        """4x4 homogeneous transform T_world_body."""
        return make_pose(quat_to_mat(self.quaternion), self.position)

    def as_array(self) -> np.ndarray:
        """[x, y, z, qw, qx, qy, qz]."""
        return np.concatenate([self.position, self.quaternion])

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Body-frame points (N, 3) -> world frame."""
        return points @ quat_to_mat(self.quaternion).T + self.position


class SimWorld:
    """A tabletop scene running in MuJoCo; the gripper is kinematic, objects are simulated."""

    def __init__(self, config: SceneConfig | None = None, scene: Scene | None = None) -> None:
        self.scene = scene or build_scene(config or SceneConfig())
        self.config = self.scene.config
        self._mj = load_mujoco()
        mj = self._mj
        self.model: mujoco.MjModel = mj.MjModel.from_xml_string(self.scene.xml, self.scene.assets)
        self.data: mujoco.MjData = mj.MjData(self.model)
        self._renderer: mujoco.Renderer | None = None
        self._cam_ids = {c: mj.mj_name2id(self.model, mj.mjtObj.mjOBJ_CAMERA, c) for c in self.scene.cameras}
        self._cam_home = (self.model.cam_pos.copy(), self.model.cam_quat.copy())
        self._gripper_body = mj.mj_name2id(self.model, mj.mjtObj.mjOBJ_BODY, "gripper")
        self._mocap = int(self.model.body_mocapid[self._gripper_body])
        joint = mj.mjtObj.mjOBJ_JOINT
        fingers = [mj.mj_name2id(self.model, joint, f) for f in ("finger_left", "finger_right")]
        self._fingers = [int(self.model.jnt_qposadr[j]) for j in fingers]
        self._finger_dofs = [int(self.model.jnt_dofadr[j]) for j in fingers]
        self._bodies = {
            o.name: mj.mj_name2id(self.model, mj.mjtObj.mjOBJ_BODY, o.body) for o in self.scene.objects
        }
        self._qpos = {
            n: int(self.model.jnt_qposadr[self.model.body_jntadr[b]]) for n, b in self._bodies.items()
        }
        self._qvel = {
            n: int(self.model.jnt_dofadr[self.model.body_jntadr[b]]) for n, b in self._bodies.items()
        }
        self._seg_lut = self._segmentation_lut()
        self._sensor = Sensor(self.scene.sensor, stream_seed(self.config.seed, "sensor_frames"))
        self.reset()

    # --- lifecycle -------------------------------------------------------------------------------
    def reset(self) -> None:
        """Put everything back where the scene places it and let the objects settle; time restarts at 0."""
        mj = self._mj
        mj.mj_resetData(self.model, self.data)
        self.model.cam_pos[:], self.model.cam_quat[:] = self._cam_home
        self._pos = np.array(self.config.gripper_start, float)
        self._target = self._pos.copy()
        self._yaw = self._target_yaw = 0.0
        self._opening = self._target_opening = GRIPPER_MAX_OPENING
        self._velocity = np.zeros(3)
        self._yaw_rate = 0.0
        self._attached: tuple[str, np.ndarray] | None = None
        self._sensor.reset()
        self.step(max(1, round(SETTLE_S / self.model.opt.timestep)))
        self.data.time = 0.0

    def close(self) -> None:
        """Free the GL context; the world can still step but renders again only after a new context."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self) -> SimWorld:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def time(self) -> float:
        """Simulated seconds since the last reset."""
        return float(self.data.time)

    @property
    def dt(self) -> float:
        """Physics time step (s)."""
        return float(self.model.opt.timestep)

    # --- gripper control ---------------------------------------------------------------------------
    def set_gripper_target(
        self, position: np.ndarray | tuple[float, float, float] | None = None, yaw_rad: float | None = None
    ) -> None:
        """Move the gripper's tool centre point towards `position` (world m) and `yaw_rad`."""
        if position is not None:
            check_reachable(position, what="gripper target")
            self._target = np.asarray(position, float).copy()
        if yaw_rad is not None:
            self._target_yaw = float(yaw_rad)

    def set_gripper_velocity(
        self, linear: np.ndarray | tuple[float, float, float], yaw_rate: float = 0.0
    ) -> None:
        """Drive the gripper target at a velocity (world m/s, rad/s), clipped to the workspace."""
        v = np.asarray(linear, float)
        speed = float(np.linalg.norm(v))
        self._velocity = v if speed <= MAX_SPEED_M_S else v * (MAX_SPEED_M_S / speed)
        self._yaw_rate = float(np.clip(yaw_rate, -MAX_YAW_RATE, MAX_YAW_RATE))

    def set_gripper_opening(self, opening_m: float) -> None:
        """Target distance between the fingers (0 closed .. GRIPPER_MAX_OPENING)."""
        if not 0.0 <= opening_m <= GRIPPER_MAX_OPENING + 1e-9:
            raise SceneConfigError(f"gripper opening must be 0..{GRIPPER_MAX_OPENING} m, got {opening_m}")
        self._target_opening = float(opening_m)

    def open_gripper(self) -> None:
        """Open the fingers fully."""
        self.set_gripper_opening(GRIPPER_MAX_OPENING)

    def close_gripper(self) -> None:
        """Close the fingers (they stop on an object only through contact)."""
        self.set_gripper_opening(0.0)

    def grasp(self, name: str) -> None:
        """Hold object `name` rigidly at its current pose relative to the gripper (a successful grasp)."""
        body = self._body(name)
        rel = np.linalg.inv(self.gripper_pose().matrix()) @ self._body_pose(body).matrix()
        self._attached = (name, rel)

    def release(self) -> None:
        """Let go of the held object (it falls under physics)."""
        self._attached = None

    @property
    def held_object(self) -> str | None:
        """Name of the object the gripper holds, if any."""
        return self._attached[0] if self._attached else None

    @property
    def gripper_target(self) -> tuple[np.ndarray, float]:
        """Current position target (world m) and yaw target (rad)."""
        return self._target.copy(), self._target_yaw

    # --- stepping ----------------------------------------------------------------------------------
    def step(self, n: int = 1) -> None:
        """Advance physics by `n` steps, moving the gripper towards its target."""
        dt = self.dt
        for _ in range(n):
            self._advance_gripper(dt)
            self._apply_kinematics()
            self._mj.mj_step(self.model, self.data)
        self._apply_kinematics()
        self._mj.mj_forward(self.model, self.data)

    def _advance_gripper(self, dt: float) -> None:
        if np.any(self._velocity) or self._yaw_rate:
            self._target = np.clip(self._target + self._velocity * dt, WORKSPACE_MIN, WORKSPACE_MAX)
            self._target_yaw += self._yaw_rate * dt
        delta = self._target - self._pos
        dist = float(np.linalg.norm(delta))
        step = MAX_SPEED_M_S * dt
        self._pos = self._target.copy() if dist <= step else self._pos + delta * (step / dist)
        self._yaw += float(np.clip(self._target_yaw - self._yaw, -MAX_YAW_RATE * dt, MAX_YAW_RATE * dt))
        self._opening += float(
            np.clip(self._target_opening - self._opening, -FINGER_SPEED_M_S * dt, FINGER_SPEED_M_S * dt)
        )

    def _apply_kinematics(self) -> None:
        d = self.data
        d.mocap_pos[self._mocap] = self._pos
        d.mocap_quat[self._mocap] = yaw_quat(self._yaw)
        travel = GRIPPER_MAX_OPENING / 2 - self._opening / 2
        for qadr, dadr in zip(self._fingers, self._finger_dofs):
            d.qpos[qadr] = travel
            d.qvel[dadr] = 0.0
        if self._attached:
            name, rel = self._attached
            pose = make_pose(quat_to_mat(yaw_quat(self._yaw)), self._pos) @ rel
            q = self._qpos[name]
            d.qpos[q : q + 3] = pose[:3, 3]
            d.qpos[q + 3 : q + 7] = mat_to_quat(pose[:3, :3])
            d.qvel[self._qvel[name] : self._qvel[name] + 6] = 0.0

    # --- state -------------------------------------------------------------------------------------
    def gripper_pose(self) -> Pose:
        """Pose of the gripper's tool centre point (between the fingertips)."""
        return Pose(self._pos.copy(), yaw_quat(self._yaw))

    @property
    def gripper_yaw(self) -> float:
        """Gripper yaw about world z (rad)."""
        return self._yaw

    @property
    def gripper_opening(self) -> float:
        """Distance between the fingers' inner faces (m)."""
        travel = float(np.mean([self.data.qpos[q] for q in self._fingers]))
        return GRIPPER_MAX_OPENING - 2 * travel

    def object_pose(self, name: str) -> Pose:
        """World pose of object `name` ("red cube")."""
        return self._body_pose(self._body(name))

    def _body(self, name: str) -> int:
        if name not in self._bodies:
            raise UnknownObjectError(
                f"no object {name!r} in the scene; it has: {', '.join(self.scene.object_names)}"
            )
        return self._bodies[name]

    def _body_pose(self, body: int) -> Pose:
        return Pose(self.data.xpos[body].copy(), self.data.xquat[body].copy())

    # --- cameras -----------------------------------------------------------------------------------
    def _cam(self, camera: str) -> int:
        if camera not in self._cam_ids:
            raise UnknownCameraError(f"unknown camera {camera!r}; this scene has: {', '.join(self._cam_ids)}")
        return self._cam_ids[camera]

    def intrinsics(self, camera: str) -> np.ndarray:
        """3x3 pinhole matrix K of `camera` at the configured resolution."""
        return intrinsics(
            float(self.model.cam_fovy[self._cam(camera)]), self.config.width, self.config.height
        )

    def extrinsics(self, camera: str) -> np.ndarray:
        """4x4 T_world_cam of the camera's optical frame (x right, y down, z forward)."""
        cid = self._cam(camera)
        r = self.data.cam_xmat[cid].reshape(3, 3) @ MUJOCO_TO_OPTICAL
        return make_pose(r, self.data.cam_xpos[cid].copy())

    def set_camera_pose(self, camera: str, t_world_cam: np.ndarray) -> None:
        """Move a fixed (world-mounted) camera to the optical pose `t_world_cam`."""
        cid = self._cam(camera)
        if self.scene.cameras[camera].mount != "world":
            raise SceneConfigError(f"camera {camera!r} is mounted on the gripper and moves with it")
        self.model.cam_pos[cid] = t_world_cam[:3, 3]
        self.model.cam_quat[cid] = mat_to_quat(t_world_cam[:3, :3] @ MUJOCO_TO_OPTICAL)
        self._mj.mj_forward(self.model, self.data)

    # --- rendering ---------------------------------------------------------------------------------
    def _segmentation_lut(self) -> np.ndarray:
        mj = self._mj
        lut = np.zeros(self.model.ngeom + 1, np.uint8)  # index 0 is "no geom" (-1)
        for g in range(self.model.ngeom):
            name = mj.mj_id2name(self.model, mj.mjtObj.mjOBJ_GEOM, g) or ""
            if name.startswith("table"):
                lut[g + 1] = TABLE_ID
            elif name.startswith(("gripper", "finger")):
                lut[g + 1] = GRIPPER_ID
        for obj in self.scene.objects:
            lut[mj.mj_name2id(self.model, mj.mjtObj.mjOBJ_GEOM, obj.body) + 1] = obj.seg_id
        return lut

    def _get_renderer(self) -> mujoco.Renderer:
        if self._renderer is None:
            try:
                self._renderer = self._mj.Renderer(self.model, self.config.height, self.config.width)
            except Exception as exc:  # MuJoCo raises FatalError or RuntimeError without a GL context
                raise RenderBackendError(
                    f"MuJoCo cannot create an off-screen GL context "
                    f"(MUJOCO_GL={os.environ.get('MUJOCO_GL')}: "
                    f"{exc}); {INSTALL_HINT}"
                ) from exc
        return self._renderer

    def render(self, camera: str, depth: bool = True, seg: bool = True) -> RenderedFrame:
        """Render `camera`: RGB as its sensor delivers it, optionally depth (m, optical z) and seg ids."""
        cid = self._cam(camera)
        r = self._get_renderer()
        r.update_scene(self.data, camera=cid)
        rgb = r.render()
        depth_img = seg_img = None
        if depth:
            r.enable_depth_rendering()
            depth_img = r.render().astype(np.float32, copy=True)
            r.disable_depth_rendering()
        if seg:
            r.enable_segmentation_rendering()
            raw = r.render()
            r.disable_segmentation_rendering()
            ids = np.where(raw[..., 1] == int(self._mj.mjtObj.mjOBJ_GEOM), raw[..., 0], -1)
            seg_img = self._seg_lut[ids + 1]
        return RenderedFrame(self._sensor(rgb.copy()), depth_img, seg_img)
