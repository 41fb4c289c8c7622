"""Parameters of the live simulation node: one schema for ROS parameters, YAML and the README."""

from __future__ import annotations

from dataclasses import dataclass

from spatial_mllm_ros.config import option
from spatial_mllm_ros.sim.appearance import AppearanceConfig
from spatial_mllm_ros.sim.scene import CAMERA_NAMES, MAX_OBJECTS, SceneConfig

TRANSPORTS = ("raw", "compressed", "both")


@dataclass
class SimNodeConfig:
    """Every parameter of `spatial_mllm_sim` (read at start)."""

    rate_hz: float = option(10.0, help="camera frames per second of simulated time", range=(0.5, 100.0))
    realtime_factor: float = option(
        1.0,
        help="simulated seconds per wall second to aim for (0: as fast as rendering allows)",
        range=(0.0, 100.0),
    )
    seed: int = option(
        0, help="scene seed (domain randomisation); scripted episode k uses seed + k", range=(0, None)
    )
    n_objects: int = option(3, help="objects on the table", range=(1, MAX_OBJECTS))
    width: int = option(320, help="image width in pixels", range=(16, 4096))
    height: int = option(240, help="image height in pixels", range=(16, 4096))
    cameras: list[str] = option(
        default_factory=lambda: list(CAMERA_NAMES), help="cameras to publish (front, side, overhead, wrist)"
    )
    shadows: bool = option(False, help="render shadows (about 10x slower without a GPU)")
    randomize: bool = option(
        True, help="randomise colours, sizes, placement, camera poses and lights by seed"
    )
    appearance: AppearanceConfig = option(default_factory=AppearanceConfig)
    image_transport: str = option(
        "raw",
        help="raw: sensor_msgs/Image on /camera/<cam>/image_raw; compressed: JPEG on .../compressed",
        choices=TRANSPORTS,
    )
    depth: bool = option(False, help="also publish /camera/<cam>/depth/image_raw (32FC1, metres)")
    script: str = option(
        "",
        help="scripted mode: a motion spec ('random', 'random:push,idle', 'translate:direction=left,"
        "distance=0.1'); empty: the gripper follows /gripper/cmd_vel and /gripper/target",
    )
    script_frames: int = option(30, help="frames per scripted episode", range=(2, 100000))
    script_loop: bool = option(
        True, help="after a scripted episode, start the next one (new scene, seed + 1)"
    )
    cmd_timeout_s: float = option(0.5, help="cmd_vel older than this stops the gripper", range=(0.01, 60.0))
    publish_clock: bool = option(True, help="publish /clock (simulated time) for use_sim_time")
    diagnostics_period_s: float = option(
        1.0, help="period of /diagnostics and the realtime-factor log", range=(0.1, 60.0)
    )

    def scene_config(self, seed_offset: int = 0) -> SceneConfig:
        """Build the SceneConfig these parameters describe (seed + seed_offset)."""
        return SceneConfig(
            seed=self.seed + seed_offset,
            n_objects=self.n_objects,
            width=self.width,
            height=self.height,
            cameras=tuple(self.cameras),
            shadows=self.shadows,
            randomize=self.randomize,
            appearance=self.appearance,
        )
