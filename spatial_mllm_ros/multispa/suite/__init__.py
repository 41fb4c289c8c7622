"""Benchmark suites: named held-out sets from unseen seeds, one change each (`data benchmark --suite`)."""

from __future__ import annotations

from spatial_mllm_ros.multispa.suite.errors import SuiteError
from spatial_mllm_ros.multispa.suite.sets import SHIFT_SETS, SUITE_FIRST_SEED, SUITES, SuiteSet, set_seeds
from spatial_mllm_ros.multispa.suite.write import (
    MANIFEST_FILE,
    SetRecord,
    SuiteConfig,
    SuiteManifest,
    write_suite,
)

__all__ = [
    "MANIFEST_FILE",
    "SHIFT_SETS",
    "SUITES",
    "SUITE_FIRST_SEED",
    "SetRecord",
    "SuiteConfig",
    "SuiteError",
    "SuiteManifest",
    "SuiteSet",
    "set_seeds",
    "write_suite",
]
