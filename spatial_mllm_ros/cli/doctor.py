"""`spatial-mllm doctor`: what this machine can run (torch, CUDA, TensorRT, ROS 2, MuJoCo, ...)."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
from dataclasses import asdict, dataclass


@dataclass
class Check:
    """One capability: whether it is there, its version, and what it means when it is not."""

    name: str
    ok: bool
    version: str = ""
    detail: str = ""


def _module_version(module: str) -> tuple[bool, str, str]:
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # import failures of any kind mean "not available here"
        return False, "", f"{type(exc).__name__}: {exc}"
    return True, str(getattr(mod, "__version__", "")), ""


def run_checks() -> list[Check]:
    """Probe the optional stacks; never raises, so it works on a half-installed machine."""
    checks = [Check("python", True, platform.python_version(), platform.platform())]
    for name, module, hint in (
        ("torch", "torch", "pip install torch (scripts/setup-env.sh pins it)"),
        ("transformers", "transformers", ""),
        ("onnxruntime", "onnxruntime", ""),
        ("tensorrt", "tensorrt", "TensorRT ships with JetPack; on x86 install NVIDIA's wheels"),
        ("mujoco", "mujoco", "pip install mujoco; render off-screen with MUJOCO_GL=egl"),
        ("rosbags", "rosbags", ""),
        ("opencv", "cv2", ""),
        ("interfaces", "spatial_mllm_interfaces.msg",
         "scripts/setup-env.sh builds spatial_mllm_interfaces; with a system ROS 2, colcon (docs/node.md)"),
    ):
        ok, version, why = _module_version(module)
        checks.append(Check(name, ok, version, "" if ok else f"{why} {hint}".strip()))
    torch_ok = checks[1].ok
    if torch_ok:
        import torch

        cuda = torch.cuda.is_available()
        detail = torch.cuda.get_device_name(0) if cuda else "no CUDA device: CPU fallback"
        checks.append(Check("cuda", cuda, str(torch.version.cuda or ""), detail))
    ok, _, why = _module_version("rclpy")
    distro = os.environ.get("ROS_DISTRO", "")
    source = f"system ROS 2 {distro}" if distro else "PyPI wheels (ros-jazzy-*)"
    checks.append(Check("rclpy", ok, distro or "jazzy", source if ok else why))
    checks.append(Check("rmw", ok, os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp (default)")))
    checks.append(Check("mujoco_gl", True, os.environ.get("MUJOCO_GL", "(unset: egl is used)")))
    return checks


def _run(args: argparse.Namespace) -> int:
    checks = run_checks()
    if args.json:
        print(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        for c in checks:
            mark = "ok " if c.ok else "-- "
            print(f"{mark} {c.name:<13} {c.version:<24} {c.detail}")
    required = {"python", "torch", "transformers", "opencv"}
    return 0 if all(c.ok for c in checks if c.name in required) else 1


def register(sub: argparse._SubParsersAction) -> None:
    """Add `doctor` to the CLI."""
    p = sub.add_parser("doctor", help="report torch/CUDA/TensorRT/rclpy/ROS/MuJoCo availability")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_run)
