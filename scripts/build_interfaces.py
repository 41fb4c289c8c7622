"""Build the interface packages (msg/srv/action) from the PyPI ROS 2 wheels into a venv.

The packages: third_party/tf2_msgs (TFMessage, which a system ROS 2 always has and the wheels lack) and
spatial_mllm_interfaces.

scripts/setup-env.sh runs this with the venv's Python. CMake configures the ament_cmake package against the
venv (its rosidl generators and message packages are wheels), builds it with Ninja, installs it into a staging
tree, packs that as a wheel laid out like the ros-jazzy wheels and pip-installs it, so nothing needs a sourced
setup file at run time. Each build is cached: a hash of the package's sources, this script, the CMake fix,
the Python version and the installed ROS wheels is kept in the venv, and a re-run with the same hash and the
package installed does nothing. With a sourced system ROS 2, build the interfaces with colcon instead.

    .venv/bin/python scripts/build_interfaces.py
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import importlib.metadata
import io
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "spatial_mllm_interfaces"
# built in this order: later packages may depend on earlier ones
PACKAGES = (ROOT / "third_party" / "tf2_msgs", SOURCES)
INCLUDE_FIX = ROOT / "scripts" / "wheel-includes.cmake"
BUILD_ROOT = ROOT / "build"


def stamp_path(prefix: Path, sources: Path) -> Path:
    """Where the venv keeps the hash of the build of `sources`."""
    return prefix / f".{sources.name}-stamp"


def log(message: str) -> None:
    """Report a step on stderr, like setup-env.sh."""
    print(f"[build-interfaces] {message}", file=sys.stderr, flush=True)


def source_hash(sources: Path = SOURCES) -> str:
    """Hash what the built package depends on: its files, the build recipe, Python and the ROS wheels."""
    digest = hashlib.sha256()
    for path in sorted(p for p in sources.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(sources)}\0".encode() + path.read_bytes() + b"\0")
    for path in (Path(__file__).resolve(), INCLUDE_FIX):
        digest.update(path.read_bytes())
    ros_wheels = sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions()
                        if d.metadata["Name"].lower().startswith("ros-"))
    digest.update(f"{sys.version}\n{' '.join(ros_wheels)}".encode())
    return digest.hexdigest()


def package_version(sources: Path) -> str:
    """Read the version in package.xml."""
    return re.search(r"<version>([^<]+)</version>", (sources / "package.xml").read_text()).group(1)


def installed(name: str) -> bool:
    """Whether the package's wheel is installed in this environment."""
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def build(sources: Path, prefix: Path, stage: Path) -> None:
    """Configure, build and install the package at `sources` into `stage`, laid out for `prefix` (DESTDIR)."""
    env = dict(os.environ)
    for var in ("CMAKE_PREFIX_PATH", "AMENT_PREFIX_PATH"):
        env[var] = os.pathsep.join(p for p in (str(prefix), os.environ.get(var, "")) if p)
    build_dir = BUILD_ROOT / sources.name
    configure = ["cmake", "-S", str(sources), "-B", str(build_dir), "-G", "Ninja",
                 f"-DCMAKE_INSTALL_PREFIX={prefix}", f"-DPython3_EXECUTABLE={sys.executable}",
                 "-DBUILD_TESTING=OFF", f"-DCMAKE_PROJECT_INCLUDE={INCLUDE_FIX}"]
    shutil.rmtree(stage, ignore_errors=True)
    for step in (configure, ["cmake", "--build", str(build_dir)], ["cmake", "--install", str(build_dir)]):
        result = subprocess.run(step, env={**env, "DESTDIR": str(stage)}, capture_output=True, text=True)
        if result.returncode != 0:
            sys.stderr.write(result.stdout[-6000:] + result.stderr[-6000:])
            raise SystemExit(f"{' '.join(step[:2])} failed (exit {result.returncode})")


def wheel_files(tree: Path, sources: Path) -> dict[str, Path]:
    """Archive name -> file: site-packages at the wheel's root, the rest of the prefix as .data/data."""
    site = Path(sysconfig.get_path("platlib", vars={"platbase": "", "base": ""}).lstrip("/"))
    data = f"{sources.name}-{package_version(sources)}.data/data"
    files = {}
    for path in sorted(p for p in tree.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        relative = path.relative_to(tree)
        if relative.is_relative_to(site):
            inner = relative.relative_to(site)
            if not inner.parts[0].endswith(".egg-info"):  # pip would see the package twice
                files[inner.as_posix()] = path
        else:
            files[f"{data}/{relative.as_posix()}"] = path
    return files


def pack_wheel(tree: Path, out: Path, sources: Path) -> Path:
    """Pack an installed prefix tree as a platform wheel (RECORD with hashes, no build tools needed)."""
    name = sources.name
    version = package_version(sources)
    python = f"cp{sys.version_info.major}{sys.version_info.minor}"
    tag = f"{python}-{python}-{sysconfig.get_platform().replace('-', '_').replace('.', '_')}"
    dist_info = f"{name}-{version}.dist-info"
    meta = {
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                                 "Summary: ROS 2 interfaces for spatial_mllm_ros (built from source)\n",
        f"{dist_info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: build_interfaces.py\nRoot-Is-Purelib: false\n"
                              f"Tag: {tag}\n",
    }
    wheel = out / f"{name}-{version}-{tag}.whl"
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        entries = [(arc, path.read_bytes()) for arc, path in wheel_files(tree, sources).items()]
        for arc, data in entries + [(arc, text.encode()) for arc, text in meta.items()]:
            zf.writestr(arc, data)
            hashed = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            writer.writerow([arc, f"sha256={hashed}", len(data)])
        writer.writerow([f"{dist_info}/RECORD", "", ""])
        zf.writestr(f"{dist_info}/RECORD", record.getvalue())
    return wheel


def build_package(sources: Path, prefix: Path) -> None:
    """Build and install one package unless the installed one is current."""
    name = sources.name
    stamp = stamp_path(prefix, sources)
    wanted = source_hash(sources)
    if installed(name) and stamp.is_file() and stamp.read_text().strip() == wanted:
        log(f"{name} is up to date")
        return
    started = time.monotonic()
    log(f"building {name} (about a minute)")
    stage = BUILD_ROOT / f"{name}-stage"
    build(sources, prefix, stage)
    wheel = pack_wheel(stage / prefix.relative_to(prefix.anchor), BUILD_ROOT, sources)
    subprocess.run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-q", "--no-deps",
                    "--force-reinstall", str(wheel)], check=True)
    stamp.write_text(wanted + "\n")
    log(f"installed {wheel.name} in {time.monotonic() - started:.0f} s")


def main() -> int:
    """Build and install every interface package whose installed build is not current."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.parse_args()
    for sources in PACKAGES:
        build_package(sources, Path(sys.prefix))
    return 0


if __name__ == "__main__":
    sys.exit(main())
