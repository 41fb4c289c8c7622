"""MuJoCo tabletop simulation: scenes, scripted motions, ground truth and rosbag2 recording."""

from spatial_mllm_ros.sim.appearance import AppearanceConfig
from spatial_mllm_ros.sim.episodes import generate_episodes
from spatial_mllm_ros.sim.errors import (
    MotionError,
    RecordError,
    RenderBackendError,
    SceneConfigError,
    SimError,
    UnknownCameraError,
    UnknownObjectError,
    UnreachableTargetError,
)
from spatial_mllm_ros.sim.motions import (
    MOTIONS,
    CameraDolly,
    CameraOrbit,
    CameraPan,
    FailedGrasp,
    Idle,
    Motion,
    PickPlace,
    Push,
    Rotate,
    ScriptedEpisode,
    Translate,
    motion_fps,
    parse_motion,
    random_motion,
    run_episode,
    translate,
)
from spatial_mllm_ros.sim.node_config import SimNodeConfig
from spatial_mllm_ros.sim.profiles import PROFILES, ShiftProfile, shift_profile
from spatial_mllm_ros.sim.recorder import EpisodeRecorder, record_episodes
from spatial_mllm_ros.sim.scene import (
    CAMERA_NAMES,
    COLOURS,
    SHAPES,
    ObjectSpec,
    Scene,
    SceneConfig,
    build_scene,
)
from spatial_mllm_ros.sim.sensor import SensorEffects
from spatial_mllm_ros.sim.truth import CameraFrame, CameraTrack, Episode, MotionTruth
from spatial_mllm_ros.sim.world import Pose, RenderedFrame, SimWorld

__all__ = [
    "CAMERA_NAMES",
    "COLOURS",
    "MOTIONS",
    "PROFILES",
    "SHAPES",
    "AppearanceConfig",
    "CameraDolly",
    "CameraFrame",
    "CameraOrbit",
    "CameraPan",
    "CameraTrack",
    "Episode",
    "EpisodeRecorder",
    "FailedGrasp",
    "Idle",
    "Motion",
    "MotionError",
    "MotionTruth",
    "ObjectSpec",
    "PickPlace",
    "Pose",
    "Push",
    "RecordError",
    "RenderBackendError",
    "RenderedFrame",
    "Rotate",
    "Scene",
    "ScriptedEpisode",
    "SceneConfig",
    "SceneConfigError",
    "SensorEffects",
    "ShiftProfile",
    "SimError",
    "SimNodeConfig",
    "SimWorld",
    "Translate",
    "UnknownCameraError",
    "UnknownObjectError",
    "UnreachableTargetError",
    "build_scene",
    "generate_episodes",
    "motion_fps",
    "parse_motion",
    "random_motion",
    "record_episodes",
    "run_episode",
    "shift_profile",
    "translate",
]
