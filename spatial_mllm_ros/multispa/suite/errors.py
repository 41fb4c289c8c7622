"""Typed errors of the benchmark suites."""

from __future__ import annotations

from spatial_mllm_ros.multispa.errors import MultispaError


class SuiteError(MultispaError, ValueError):
    """A suite request that cannot be written: unknown suite or set, seeds out of the suite's range."""
