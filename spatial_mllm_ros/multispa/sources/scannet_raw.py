"""ScanNet's own annotation files -> mesh vertices with instance ids and labels.

Reads what the ScanNet download ships next to each scan, so no preprocessing step is needed:

    <scene>_vh_clean_2.ply                    mesh (binary little-endian or ASCII PLY; vertices used)
    <scene>_vh_clean_2.0.010000.segs.json     {"segIndices": [segment id per vertex]}
    <scene>.aggregation.json                  {"segGroups": [{"objectId", "label", "segments"}]}
                                              (or <scene>_vh_clean.aggregation.json)

Instance id = objectId + 1 (0 = vertex in no annotated object).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from spatial_mllm_ros.multispa.errors import CorruptFileError, MissingFileError

_PLY_TYPES: dict[str, str] = {
    "char": "i1", "uchar": "u1", "int8": "i1", "uint8": "u1", "short": "i2", "ushort": "u2", "int16": "i2",
    "uint16": "u2", "int": "i4", "uint": "u4", "int32": "i4", "uint32": "u4", "float": "f4", "float32": "f4",
    "double": "f8", "float64": "f8",
}
MAX_PLY_HEADER_LINES = 200


def raw_mesh_files(folder: Path, scene_id: str) -> tuple[Path, Path, Path] | None:
    """Find the (ply, segs, aggregation) files of a scan; None unless all three are there."""
    ply = folder / f"{scene_id}_vh_clean_2.ply"
    segs = folder / f"{scene_id}_vh_clean_2.0.010000.segs.json"
    aggs = [folder / f"{scene_id}.aggregation.json", folder / f"{scene_id}_vh_clean.aggregation.json"]
    agg = next((a for a in aggs if a.is_file()), None)
    if ply.is_file() and segs.is_file() and agg is not None:
        return ply, segs, agg
    return None


def read_ply_vertices(path: Path, scene_id: str = "") -> np.ndarray:
    """(N, 3) float64 vertex positions of a PLY file (binary little-endian or ASCII)."""
    try:
        with path.open("rb") as f:
            if f.readline().strip() != b"ply":
                raise CorruptFileError(scene_id, f"{path.name} is not a PLY file")
            fmt, count, props, in_vertex = "", 0, [], False
            for _ in range(MAX_PLY_HEADER_LINES):
                words = f.readline().decode("ascii", "replace").split()
                if not words:
                    continue
                if words[0] == "end_header":
                    break
                if words[0] == "format":
                    fmt = words[1]
                elif words[0] == "element":
                    in_vertex = words[1] == "vertex"
                    count = int(words[2]) if in_vertex else count
                elif words[0] == "property" and in_vertex:
                    if words[1] == "list":
                        raise CorruptFileError(scene_id, f"{path.name}: list property in vertex element")
                    props.append((words[2], _PLY_TYPES[words[1]]))
            else:
                raise CorruptFileError(scene_id, f"{path.name}: no end_header")
            names = [n for n, _ in props]
            if not {"x", "y", "z"} <= set(names):
                raise CorruptFileError(scene_id, f"{path.name}: vertices lack x/y/z")
            if fmt == "binary_little_endian":
                dtype = np.dtype([(n, "<" + t) for n, t in props])
                data = np.frombuffer(f.read(dtype.itemsize * count), dtype=dtype, count=count)
                return np.stack([data["x"], data["y"], data["z"]], axis=1).astype(np.float64)
            if fmt == "ascii":
                rows = np.loadtxt(f, max_rows=count, ndmin=2)
                return rows[:, [names.index("x"), names.index("y"), names.index("z")]].astype(np.float64)
            raise CorruptFileError(scene_id, f"{path.name}: unsupported PLY format {fmt!r}")
    except (ValueError, KeyError, OSError) as exc:
        raise CorruptFileError(scene_id, f"{path.name}: {exc}") from exc


def read_raw_mesh(folder: Path, scene_id: str) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """Vertices, instance id per vertex and instance labels from ScanNet's ply/segs/aggregation files."""
    files = raw_mesh_files(folder, scene_id)
    if files is None:
        raise MissingFileError(scene_id, "ScanNet's _vh_clean_2.ply + segs + aggregation files")
    ply, segs_path, agg_path = files
    points = read_ply_vertices(ply, scene_id)
    try:
        seg = np.asarray(json.loads(segs_path.read_text())["segIndices"], dtype=np.int64)
        groups = json.loads(agg_path.read_text())["segGroups"]
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptFileError(scene_id, f"annotations: {exc}") from exc
    if seg.shape != (len(points),):
        raise CorruptFileError(scene_id, f"{len(seg)} segment ids for {len(points)} vertices")
    inst = np.zeros(len(points), dtype=np.int64)
    labels: dict[int, str] = {}
    lookup: dict[int, int] = {}  # segment id -> instance id
    for group in groups:
        iid = int(group["objectId"]) + 1
        labels[iid] = str(group["label"])
        lookup.update({int(s): iid for s in group["segments"]})
    if lookup:
        keys = np.fromiter(lookup.keys(), dtype=np.int64)
        vals = np.fromiter(lookup.values(), dtype=np.int64)
        order = np.argsort(keys)
        pos = np.clip(np.searchsorted(keys[order], seg), 0, len(keys) - 1)
        hit = keys[order][pos] == seg
        inst[hit] = vals[order][pos[hit]]
    return points, inst, labels
