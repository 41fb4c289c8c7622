"""Scene sources: ScanNet (export or Meta's layout), TAPVid-3D clips, the MuJoCo simulation, robot rosbags."""

from __future__ import annotations

from pathlib import Path

from spatial_mllm_ros.multispa.errors import MissingFileError, MultispaError, UnknownSourceError
from spatial_mllm_ros.multispa.sources.base import Scene, SceneSource, Video, View
from spatial_mllm_ros.multispa.sources.rosbag import RosbagConfig, RosbagSource
from spatial_mllm_ros.multispa.sources.scannet import ScanNetSource
from spatial_mllm_ros.multispa.sources.sim import SimSource
from spatial_mllm_ros.multispa.sources.tapvid3d import TapVid3DSource

SOURCES: tuple[str, ...] = ("scannet", "tapvid3d", "sim", "rosbag")


def make_source(name: str, root: Path | None = None, *, allow_pickle: bool = False, sim_scenes: int = 8,
                sim_first_seed: int = 0, rosbag: RosbagConfig | None = None) -> SceneSource:
    """Open the source called `name` over `root` (simulation needs no root: its scenes come from seeds).

    The rosbag source reads the bags, topics and frames its RosbagConfig names instead of a root.
    """
    if name == "sim":
        return SimSource(n_scenes=sim_scenes, first_seed=sim_first_seed)
    if name == "rosbag":
        if rosbag is None:
            raise MultispaError("--source rosbag needs bags, --image-topic, --base-frame and --gripper-frame")
        return RosbagSource(rosbag)
    if name not in SOURCES:
        raise UnknownSourceError(f"unknown source {name!r}; known: {', '.join(SOURCES)}")
    if root is None:
        raise MissingFileError(name, "--root is required for this source")
    if name == "scannet":
        return ScanNetSource(Path(root))
    return TapVid3DSource(Path(root), allow_pickle=allow_pickle)


__all__ = ["SOURCES", "RosbagConfig", "RosbagSource", "ScanNetSource", "Scene", "SceneSource", "SimSource",
           "TapVid3DSource", "Video", "View", "make_source"]
