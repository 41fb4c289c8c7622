"""Suite-wide isolation: ROS traffic stays on loopback in a domain of this run, hubs stay offline."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Set before anything imports rclpy, also for the subprocesses tests start.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(os.getpid() % 100 + 1))
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def fixture_bags() -> Path:
    path = SHARED / "fixtures" / "rosbags"
    if not path.is_dir():
        pytest.skip(f"shared fixtures not found at {path}")
    return path


@pytest.fixture(scope="session")
def python_exe() -> str:
    return sys.executable
