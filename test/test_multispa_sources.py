"""MultiSPA sources: a ScanNet-layout scene and TAPVid-3D clips built here go through the real loaders;
bad input (missing/corrupt files, NaN poses, empty scenes, no extrinsics) raises the typed skip reasons."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from spatial_mllm_ros.multispa.errors import (
    CorruptFileError,
    EmptySceneError,
    InvalidPoseError,
    MissingExtrinsicsError,
    MissingFileError,
    UnknownSourceError,
)
from spatial_mllm_ros.multispa.sources import ScanNetSource, TapVid3DSource, make_source
from spatial_mllm_ros.multispa.sources.base import visibility_matrix
from spatial_mllm_ros.multispa.sources.synthetic import (
    ROOM,
    write_ply,
    write_scannet_scene,
    write_tapvid3d_clip,
)


@pytest.fixture(scope="module")
def scannet_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scannet")
    write_scannet_scene(root, n_frames=12, n_vertices=3000, seed=1, bad_pose_every=5)
    return root


def test_scannet_loader_aligns_drops_bad_poses_and_keeps_every_fifth_frame(scannet_root: Path) -> None:
    folder = scannet_root / "scene0000_00"
    shutil.copy(folder / "color" / "5.jpg", folder / "color" / "7.jpg")  # not a multiple of 5: ignored
    src = ScanNetSource(scannet_root)
    assert src.list_scenes() == ["scene0000_00"]
    scene = src.load("scene0000_00")
    assert scene.dropped == {"invalid pose": 2}
    assert [v.frame_id for v in scene.views] == [str(5 * i) for i in range(12) if i % 5 != 4]
    # vertices come back in the aligned room frame, whatever rotation the raw export had
    lo, hi = scene.points.min(0), scene.points.max(0)
    assert np.allclose(lo, ROOM.lo, atol=1e-4) and np.allclose(hi, ROOM.hi, atol=1e-4)
    view = scene.views[0]
    assert (view.width, view.height) == (320, 240) and view.rgb().shape == (240, 320, 3)
    assert view.depth().shape == (120, 160) and view.depth().max() < 10
    assert set(scene.instance_labels.values()) >= {"wall", "floor", "table", "chair"}


def test_scannet_bad_input_is_typed(tmp_path: Path, scannet_root: Path) -> None:
    src_dir = scannet_root / "scene0000_00"
    for name in ("no_mesh", "nan_poses", "empty", "bad_depth"):
        shutil.copytree(src_dir, tmp_path / name)
    (tmp_path / "no_mesh" / "mesh_vertices.npy").unlink()
    for pose in (tmp_path / "nan_poses" / "pose").glob("*.txt"):
        np.savetxt(pose, np.full((4, 4), np.nan))
    for jpg in (tmp_path / "empty" / "color").glob("*.jpg"):
        jpg.unlink()
    (tmp_path / "bad_depth" / "depth" / "0.png").write_bytes(b"not a png")
    (tmp_path / "bad_depth" / "color" / "10.jpg").write_bytes(b"\xff\xd8 truncated")
    src = ScanNetSource(tmp_path)
    with pytest.raises(MissingFileError, match="mesh_vertices"):
        src.load("no_mesh")
    with pytest.raises(InvalidPoseError):
        src.load("nan_poses")
    with pytest.raises(EmptySceneError):
        src.load("empty")
    scene = src.load("bad_depth")
    vis, kept = visibility_matrix(scene)
    assert "10" not in [v.frame_id for v in scene.views]  # unreadable JPEG header: frame dropped
    assert 0 not in kept and scene.dropped["corrupt file"] == 2 and vis.shape[0] == len(scene.views) - 1
    (tmp_path / "bad_depth" / "instance_ids.npy").write_bytes(b"garbage")
    with pytest.raises(CorruptFileError):
        src.load("bad_depth")
    with pytest.raises(MissingFileError):
        ScanNetSource(tmp_path / "nowhere").list_scenes()
    with pytest.raises(UnknownSourceError):
        make_source("kitti", tmp_path)


def test_tapvid3d_loader_recovers_world_tracks(tmp_path: Path) -> None:
    write_tapvid3d_clip(tmp_path, "adt/a", n_frames=10)
    write_tapvid3d_clip(tmp_path, "pstudio/b", n_frames=8, frames_in_npz=True, seed=2)
    src = TapVid3DSource(tmp_path)
    assert src.list_scenes() == ["adt/a", "pstudio/b"]
    for clip, n in (("adt/a", 10), ("pstudio/b", 8)):
        scene = src.load(clip)
        video = scene.video
        assert scene.subset == clip.split("/")[0] and len(video.views) == n
        # the first 80 tracks are static in the world although the camera moves
        static = video.tracks_world[:, :80]
        assert np.abs(static - static[0]).max() < 1e-4
        moving = video.tracks_world[:, 80:]
        assert np.linalg.norm(moving[-1] - moving[0], axis=1).min() > 0.3
        assert video.views[0].rgb().shape == (120, 160, 3)
        # camera-frame tracks are the world points seen through the view pose
        raw = np.load(tmp_path / f"{clip}.npz")
        c2w = video.views[3].c2w
        back = (raw["tracks_XYZ"][3] @ c2w[:3, :3].T) + c2w[:3, 3]
        assert np.allclose(back, video.tracks_world[3], atol=1e-4)


def test_tapvid3d_bad_input_is_typed(tmp_path: Path) -> None:
    write_tapvid3d_clip(tmp_path, "adt/noext", with_extrinsics=False)
    with pytest.raises(MissingExtrinsicsError):
        TapVid3DSource(tmp_path).load("adt/noext")
    (tmp_path / "adt" / "broken.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CorruptFileError):
        TapVid3DSource(tmp_path).load("adt/broken")
    # official files keep the JPEG bytes in a pickled object array: refused unless allowed
    path = write_tapvid3d_clip(tmp_path, "adt/pickled", frames_in_npz=True)
    shutil.rmtree(path.with_suffix(""), ignore_errors=True)
    data = dict(np.load(path))
    data["images_jpeg_bytes"] = np.array([bytes(x) for x in data["images_jpeg_bytes"]], dtype=object)
    np.savez(path, **data)
    with pytest.raises(CorruptFileError, match="pickled"):
        TapVid3DSource(tmp_path).load("adt/pickled")
    scene = TapVid3DSource(tmp_path, allow_pickle=True).load("adt/pickled")
    assert scene.video.views[0].rgb().shape == (120, 160, 3)
    bad = dict(np.load(tmp_path / "adt" / "noext.npz"))
    bad["extrinsics_w2c"] = np.full((20, 4, 4), np.inf, np.float32)
    np.savez(tmp_path / "adt" / "infpose.npz", **bad)
    shutil.copytree(tmp_path / "adt" / "noext", tmp_path / "adt" / "infpose")
    with pytest.raises(InvalidPoseError):
        TapVid3DSource(tmp_path).load("adt/infpose")


@pytest.mark.parametrize("binary", [True, False])
def test_scannet_reads_the_raw_annotation_files(tmp_path: Path, scannet_root: Path, binary: bool) -> None:
    scene_dir = tmp_path / "scene0000_00"
    shutil.copytree(scannet_root / "scene0000_00", scene_dir)
    reference = ScanNetSource(tmp_path).load("scene0000_00")
    pts = np.load(scene_dir / "mesh_vertices.npy")
    inst = np.load(scene_dir / "instance_ids.npy")
    labels = json.loads((scene_dir / "instance_labels.json").read_text())
    for name in ("mesh_vertices.npy", "instance_ids.npy", "instance_labels.json"):
        (scene_dir / name).unlink()
    with pytest.raises(MissingFileError, match="mesh_vertices"):
        ScanNetSource(tmp_path).load("scene0000_00")
    # ScanNet's layout: over-segments of vertices grouped into annotated objects (objectId = id - 1)
    seg = np.arange(len(pts)) // 7 + 1000
    groups = [{"objectId": int(i) - 1, "label": labels[str(i)],
               "segments": sorted(set(seg[inst == i].tolist()))} for i in np.unique(inst) if i > 0]
    write_ply(scene_dir / "scene0000_00_vh_clean_2.ply", pts, binary)
    segs = json.dumps({"segIndices": seg.tolist()})
    (scene_dir / "scene0000_00_vh_clean_2.0.010000.segs.json").write_text(segs)
    (scene_dir / "scene0000_00.aggregation.json").write_text(json.dumps({"segGroups": groups}))
    (scene_dir / "intrinsic").mkdir()
    (scene_dir / "intrinsic_color.txt").rename(scene_dir / "intrinsic" / "intrinsic_color.txt")
    scene = ScanNetSource(tmp_path).load("scene0000_00")
    assert np.allclose(scene.points, reference.points, atol=1e-4)
    # a segment straddling two objects goes to one of them: compare on whole segments only
    whole = np.array([len(set(inst[seg == s])) == 1 for s in seg])
    assert (scene.instance_ids[whole] == reference.instance_ids[whole]).all()
    assert scene.instance_labels == reference.instance_labels
