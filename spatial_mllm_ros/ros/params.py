"""ROS parameters declared from a typed config dataclass: one schema for YAML, ROS and the README.

Each config field becomes a parameter (dotted for sections, e.g. `model.checkpoint`) with a descriptor:
description, constraints text, read-only flag, integer/float ranges. Sets are validated against the
config schema (types, choices, ranges) before rclpy applies them.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, TypeVar

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter

from spatial_mllm_ros.config import ParameterRow, from_dict, parameter_rows
from spatial_mllm_ros.errors import ConfigError

T = TypeVar("T")

INT64 = (-(2**63), 2**63 - 1)
_ROS_TYPES = {
    "bool": ParameterType.PARAMETER_BOOL,
    "int": ParameterType.PARAMETER_INTEGER,
    "float": ParameterType.PARAMETER_DOUBLE,
    "str": ParameterType.PARAMETER_STRING,
    "Path": ParameterType.PARAMETER_STRING,
    "list[str]": ParameterType.PARAMETER_STRING_ARRAY,
    "list[int]": ParameterType.PARAMETER_INTEGER_ARRAY,
    "list[float]": ParameterType.PARAMETER_DOUBLE_ARRAY,
    "list[bool]": ParameterType.PARAMETER_BOOL_ARRAY,
}
_EMPTY_ARRAY = {
    ParameterType.PARAMETER_STRING_ARRAY: Parameter.Type.STRING_ARRAY,
    ParameterType.PARAMETER_INTEGER_ARRAY: Parameter.Type.INTEGER_ARRAY,
    ParameterType.PARAMETER_DOUBLE_ARRAY: Parameter.Type.DOUBLE_ARRAY,
    ParameterType.PARAMETER_BOOL_ARRAY: Parameter.Type.BOOL_ARRAY,
}


def descriptor(row: ParameterRow, read_only: bool = False) -> ParameterDescriptor:
    """Build the ParameterDescriptor of one config row (type, description, constraints, range, read-only)."""
    ros_type = _ROS_TYPES.get(row.type)
    if ros_type is None:
        raise ConfigError(row.name, f"type {row.type} has no ROS parameter type", allowed=sorted(_ROS_TYPES))
    desc = ParameterDescriptor(name=row.name, type=ros_type, description=row.description,
                               additional_constraints=row.constraints, read_only=row.read_only or read_only)
    if row.range is not None and row.type in ("int", "float"):
        lo, hi = row.range
        if row.type == "int":
            desc.integer_range = [IntegerRange(from_value=int(lo if lo is not None else INT64[0]),
                                               to_value=int(hi if hi is not None else INT64[1]), step=0)]
        else:
            desc.floating_point_range = [FloatingPointRange(
                from_value=float(lo if lo is not None else -1e308),
                to_value=float(hi if hi is not None else 1e308), step=0.0)]
    return desc


def declare_config(node: Node, config: T, read_only: Collection[str] = ()) -> T:
    """Declare every field of `config` as a parameter (params-file overrides apply); return the result.

    `read_only` names more parameters to make read-only (e.g. model paths of a section owned elsewhere).
    """
    for row in parameter_rows(config):
        desc = descriptor(row, row.name in read_only)
        value: Any = row.default
        if isinstance(value, list) and not value:  # rclpy cannot infer the type of []: declare it typed
            value = _EMPTY_ARRAY[desc.type]
        node.declare_parameter(row.name, value, desc)
    return read_config(node, type(config))


def _values(node: Node, rows: list[ParameterRow]) -> dict[str, Any]:
    values = {}
    for row in rows:
        try:
            values[row.name] = node.get_parameter(row.name).value
        except ParameterUninitializedException:  # an empty list declared typed and never set
            values[row.name] = []
    return values


def read_config(node: Node, cls: type[T]) -> T:
    """Read the node's current parameters as a validated `cls` instance."""
    return from_dict(cls, _values(node, parameter_rows(cls)))


def validate_parameters(node: Node, cls: type[Any], params: list[Parameter]) -> str | None:
    """Say why setting `params` would make an invalid `cls` config (None: valid); for set callbacks."""
    rows = parameter_rows(cls)
    values = _values(node, rows)
    known = set(values)
    for p in params:
        if p.name in known:
            values[p.name] = p.value
    try:
        from_dict(cls, values)
    except ConfigError as exc:
        return str(exc)
    return None
