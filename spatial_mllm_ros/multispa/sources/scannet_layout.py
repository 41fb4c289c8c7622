"""Where a ScanNet scan's files live: the SensReader export layout or Meta's posed_images/ + scans/ layout.

Export layout (ScanNet's SensReader; one folder per scan, see scannet.py):

    <root>/<scene>/color/<frame>.jpg, depth/<frame>.png, pose/<frame>.txt
    <root>/<scene>/intrinsic_color.txt (or intrinsic/intrinsic_color.txt), <scene>.txt, mesh files

Meta's layout (Multi-SpatialMLLM's extract_posed_images.py run in ScanNet's download folder, which
holds scans/):

    <root>/posed_images/<scene>/<NNNNN>.jpg     colour frame, number zero-padded to 5 digits
    <root>/posed_images/<scene>/<NNNNN>.png     uint16 depth in millimetres
    <root>/posed_images/<scene>/<NNNNN>.txt     4x4 camera-to-world pose, 6 decimals
    <root>/posed_images/<scene>/intrinsic.txt   4x4 colour intrinsics
    <root>/scans/<scene>/                       ScanNet's download: <scene>.txt (axisAlignment),
                                                _vh_clean_2.ply, segs and aggregation files

A root holding posed_images/ is read as Meta's layout, any other as the export layout. Meta's README asks
for --frame_skip 1 at extraction, so file numbers are frame numbers and every 5th frame is kept as usual.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from spatial_mllm_ros.multispa.errors import NoScenesError


@dataclass(frozen=True)
class ScanFiles:
    """The folders and files of one scan, whichever layout holds it."""

    color: Path  # <frame>.jpg
    depth: Path  # <frame>.png
    pose: Path  # <frame>.txt
    intrinsics: tuple[Path, ...]  # candidates; the first that exists is read
    annotations: Path  # <scene>.txt or axis_align.txt, and the mesh files

    def intrinsics_file(self) -> Path:
        """Return the first intrinsics candidate that exists (else the first, for the missing-file error)."""
        return next((p for p in self.intrinsics if p.is_file()), self.intrinsics[0])


@dataclass(frozen=True)
class ScanNetLayout:
    """One way of laying out exported scans under a root (paths relative to it; "{scene}" is the scan id)."""

    name: str
    scans: str  # folder whose subfolders are the scans ("" = the root itself)
    color: str  # frame folders relative to a scan folder ("" = the scan folder itself)
    depth: str
    pose: str
    intrinsics: tuple[str, ...]
    annotations: str
    description: str

    def files(self, root: Path, scene_id: str) -> ScanFiles:
        """Where scan `scene_id` keeps each kind of file in this layout."""
        scan = root / self.scans / scene_id
        return ScanFiles(scan / self.color, scan / self.depth, scan / self.pose,
                         tuple(scan / name for name in self.intrinsics),
                         root / self.annotations.format(scene=scene_id))

    def list_scenes(self, root: Path) -> list[str]:
        """Scan folders that have a colour-frame folder, sorted."""
        folder = root / self.scans
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and (p / self.color).is_dir())


EXPORT = ScanNetLayout(
    "export", "", "color", "depth", "pose", ("intrinsic_color.txt", "intrinsic/intrinsic_color.txt"),
    "{scene}",
    "<root>/<scene>/color/*.jpg + depth/*.png + pose/*.txt + intrinsic_color.txt (ScanNet SensReader export)")
META = ScanNetLayout(
    "meta", "posed_images", "", "", "", ("intrinsic.txt",), "scans/{scene}",
    "<root>/posed_images/<scene>/NNNNN.{jpg,png,txt} + intrinsic.txt, and <root>/scans/<scene>/ "
    "(Meta's Multi-SpatialMLLM extract_posed_images.py)")
LAYOUTS: tuple[ScanNetLayout, ...] = (EXPORT, META)


def detect_layout(root: Path) -> ScanNetLayout:
    """Meta's layout when root holds posed_images/, else the export layout."""
    return META if (root / META.scans).is_dir() else EXPORT


def no_scenes_error(root: Path) -> NoScenesError:
    """Say which layouts were looked for under root and, where the root gives it away, what to change."""
    looked = "; ".join(f"{layout.name}: {layout.description}" for layout in LAYOUTS)
    hint = ""
    if root.name == META.scans:
        hint = (f" --root points inside Meta's layout: use its parent {root.parent} "
                "(the folder holding posed_images/ and scans/).")
    elif (root / EXPORT.color).is_dir() or (root / META.intrinsics[0]).is_file():
        hint = f" --root is a single scan: use its parent {root.parent}."
    elif (root / "scans").is_dir() and not (root / META.scans).is_dir():
        hint = (" scans/ is there but no exported frames: run Meta's extract_posed_images.py --frame_skip 1 "
                "(writes posed_images/) or ScanNet's SensReader.")
    return NoScenesError(f"no ScanNet scans under {root} (read as the {detect_layout(root).name} layout). "
                         f"Accepted layouts: {looked}.{hint}")
