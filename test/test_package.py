"""Package shape, CLI basics and lint: what a ROS engineer and CI check first."""

from __future__ import annotations

import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from spatial_mllm_ros import __version__
from spatial_mllm_ros.cli import main
from spatial_mllm_ros.cli.doctor import run_checks


def test_package_xml_is_format3_ament_python(repo_root: Path) -> None:
    root = ET.parse(repo_root / "package.xml").getroot()
    assert root.get("format") == "3"
    assert root.findtext("name") == "spatial_mllm_ros"
    assert root.findtext("version") == __version__
    assert root.find("export/build_type").text == "ament_python"
    deps = {e.text for e in root.iter("exec_depend")}
    assert {"rclpy", "sensor_msgs", "std_msgs", "std_srvs", "diagnostic_msgs"} <= deps
    assert "opencv2" not in deps


def test_ros_share_files_declared(repo_root: Path) -> None:
    assert (repo_root / "resource" / "spatial_mllm_ros").exists()
    cfg = (repo_root / "setup.cfg").read_text()
    assert "script_dir=$base/lib/spatial_mllm_ros" in cfg
    assert "install_scripts=$base/lib/spatial_mllm_ros" in cfg


def test_version_and_doctor(capsys) -> None:
    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert __version__ in capsys.readouterr().out
    names = {c.name: c for c in run_checks()}
    assert names["torch"].ok and names["python"].ok
    assert "rclpy" in names and "tensorrt" in names and "mujoco" in names
    assert main(["doctor", "--json"]) == 0
    assert '"name": "cuda"' in capsys.readouterr().out


def test_console_script_installed() -> None:
    exe = Path(sys.executable).with_name("spatial-mllm")
    assert exe.exists(), "run scripts/setup-env.sh: the package is installed editable with its entry points"
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"spatial-mllm {__version__}"


def test_ruff_clean(repo_root: Path) -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    assert ruff, "ruff is installed by scripts/setup-env.sh"
    res = subprocess.run([ruff, "check", "--no-cache", str(repo_root)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
