"""Typed configuration: dicts, YAML and ROS params files in; precise errors; rows for ROS and docs out."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from spatial_mllm_ros.config import (
    ParameterRow,
    from_dict,
    from_yaml,
    markdown_table,
    option,
    parameter_rows,
    parse_assignments,
    ros_parameters,
    to_dict,
    to_ros_yaml,
    validate,
)
from spatial_mllm_ros.errors import ConfigError


class Qos(str, enum.Enum):
    SENSOR_DATA = "sensor_data"
    RELIABLE = "reliable"


@dataclass
class Model:
    checkpoint: str = option("", help="model directory", read_only=True)
    dtype: Literal["auto", "float32", "bfloat16"] = option("auto", help="weights type")
    max_tiles: int = option(6, help="tiles per image", range=(1, 12))
    backends: tuple[str, ...] = option(("onnxruntime", "torch"), choices=("tensorrt", "onnxruntime", "torch"))


@dataclass
class Node:
    model: Model = field(default_factory=lambda: Model(max_tiles=4))
    qos: Qos = option(Qos.SENSOR_DATA, help="camera QoS")
    rate_hz: float = option(2.0, range=(0.0, None))
    questions: list[str] = option(default_factory=list, help="standing questions")
    roi: tuple[int, int] = (0, 0)
    path: Path | None = None
    verbose: bool = False


def test_defaults_nested_and_dotted() -> None:
    cfg = from_dict(Node, {"model": {"dtype": "bfloat16"}, "model.max_tiles": 8, "rate_hz": 5})
    assert cfg.model == Model(dtype="bfloat16", max_tiles=8)
    assert cfg.rate_hz == 5.0 and isinstance(cfg.rate_hz, float)  # YAML int for a float
    assert from_dict(Node, {}).model.max_tiles == 4  # a partial section keeps the field's own default
    assert from_dict(Node, {"model": {"dtype": "float32"}}).model.max_tiles == 4
    assert from_dict(Node, None) == Node()


def test_types_are_converted() -> None:
    cfg = from_dict(
        Node, {"qos": "reliable", "roi": [3, 4], "path": "/tmp/x", "model": {"backends": ["torch"]}}
    )
    assert cfg.qos is Qos.RELIABLE and cfg.roi == (3, 4) and cfg.path == Path("/tmp/x")
    assert cfg.model.backends == ("torch",)
    assert from_dict(Node, {"questions": ("a", "b")}).questions == ["a", "b"]


def test_base_overrides_keep_other_values() -> None:
    base = from_dict(Node, {"rate_hz": 7.0, "model": {"max_tiles": 2}})
    cfg = from_dict(Node, {"model.dtype": "float32"}, base=base)
    assert cfg.rate_hz == 7.0 and cfg.model.max_tiles == 2 and cfg.model.dtype == "float32"


def test_command_line_assignments() -> None:
    """`--set KEY=VALUE` items: YAML scalars (numbers YAML reads as strings too), dotted into sections."""
    items = ["rate_hz=1e-1", "model.max_tiles=8", "verbose=true", "qos=reliable", "roi=[1, 2]"]
    sets = parse_assignments(items)
    assert sets == {"rate_hz": 0.1, "model.max_tiles": 8, "verbose": True, "qos": "reliable", "roi": [1, 2]}
    cfg = from_dict(Node, sets, base=Node(rate_hz=9.0))
    assert (cfg.rate_hz, cfg.model.max_tiles, cfg.verbose, cfg.qos) == (0.1, 8, True, Qos.RELIABLE)
    assert cfg.roi == (1, 2)
    assert parse_assignments(["path="]) == {"path": ""}
    for bad in ("rate_hz", "=3", "roi=[1, 2"):
        with pytest.raises(ConfigError):
            parse_assignments([bad])
    with pytest.raises(ConfigError, match="rate_hz.*expected float"):
        from_dict(Node, parse_assignments(["rate_hz=fast"]))


@pytest.mark.parametrize(
    ("data", "key", "text"),
    [
        ({"rate": 1.0}, "rate", "unknown key (did you mean 'rate_hz'?)"),
        ({"model": {"max_tile": 3}}, "model.max_tile", "allowed: backends, checkpoint, dtype, max_tiles"),
        ({"model.nope": 1}, "model.nope", "unknown key"),
        ({"rate_hz": "fast"}, "rate_hz", "wrong type str ('fast') (expected float)"),
        ({"verbose": 1}, "verbose", "expected bool"),
        ({"model": {"max_tiles": True}}, "model.max_tiles", "wrong type bool"),
        ({"model": {"max_tiles": 2.5}}, "model.max_tiles", "expected int"),
        ({"model": {"max_tiles": 13}}, "model.max_tiles", "out of range (expected 1 <= x <= 12)"),
        ({"rate_hz": -1}, "rate_hz", "0.0 <= x"),
        ({"model": {"dtype": "fp8"}}, "model.dtype", "allowed: auto, float32, bfloat16"),
        ({"qos": "best"}, "qos", "allowed: sensor_data, reliable"),
        (
            {"model": {"backends": ["torch", "tvm"]}},
            "model.backends",
            "allowed: tensorrt, onnxruntime, torch",
        ),
        ({"model": {"backends": "torch"}}, "model.backends", "expected list[str]"),
        ({"roi": [1, 2, 3]}, "roi", "needs 2 items, got 3"),
        ({"questions": ["ok", 3]}, "questions[1]", "expected str"),
        ({"model": "big"}, "model", "expected a mapping of Model keys"),
        ({"path": 3}, "path", "expected Path | None"),
        ({"rate_hz": 1, "rate_hz.x": 2}, "rate_hz", "both as a value and as a section"),
    ],
)
def test_errors_name_the_key_and_allowed_values(data: dict, key: str, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_dict(Node, data)
    assert info.value.key == key
    assert text in str(info.value)
    assert str(info.value).startswith(f"{key}: ")


def test_missing_required_key() -> None:
    @dataclass
    class Needs:
        topic: str

    with pytest.raises(ConfigError, match="topic: missing required key"):
        from_dict(Needs, {})
    assert from_dict(Needs, {"topic": "/cam"}).topic == "/cam"


def test_post_init_errors_become_config_errors() -> None:
    @dataclass
    class Checked:
        lo: int = 0
        hi: int = 1

        def __post_init__(self) -> None:
            if self.lo > self.hi:
                raise ValueError("lo must not exceed hi")

    with pytest.raises(ConfigError, match="Checked: lo must not exceed hi"):
        from_dict(Checked, {"lo": 3})


def test_round_trip_through_dict_and_ros_yaml(tmp_path: Path) -> None:
    cfg = from_dict(Node, {"qos": "reliable", "questions": ["is the cup left of the robot?"], "path": "/a"})
    data = to_dict(cfg)
    assert data["qos"] == "reliable" and data["model"]["backends"] == ["onnxruntime", "torch"]
    assert data["path"] == "/a" and data["roi"] == [0, 0]
    assert from_dict(Node, data) == cfg
    path = tmp_path / "node.yaml"
    path.write_text(to_ros_yaml(cfg, "spatial_mllm_node"))
    assert from_yaml(Node, path) == cfg


ROS_FILE = """
/**:
  ros__parameters:
    use_sim_time: true
    rate_hz: 1.0
    model:
      max_tiles: 3
spatial_mllm_node:
  ros__parameters:
    rate_hz: 4.0
    model.dtype: float32
/robot/other_node:
  ros__parameters:
    rate_hz: 9.0
"""


def test_ros_params_file(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(ROS_FILE)
    cfg = from_yaml(Node, path, node_name="spatial_mllm_node")
    assert cfg.rate_hz == 4.0 and cfg.model.max_tiles == 3 and cfg.model.dtype == "float32"  # node over /**
    assert from_yaml(Node, path, node_name="/robot/other_node").rate_hz == 9.0
    assert from_yaml(Node, path, node_name="unlisted").rate_hz == 1.0  # wildcard only
    with pytest.raises(ConfigError, match="several nodes.*allowed: /robot/other_node, /spatial_mllm_node"):
        from_yaml(Node, path)


def test_wildcard_and_namespaced_sections() -> None:
    assert ros_parameters({"/**": {"ros__parameters": {"a": 1}}}) == {"a": 1}
    nested = {"robot": {"spatial_mllm_node": {"ros__parameters": {"rate_hz": 3.0}}}}
    assert ros_parameters(nested, "spatial_mllm_node") == {"rate_hz": 3.0}
    assert ros_parameters({"rate_hz": 2.0}) == {"rate_hz": 2.0}  # plain YAML passes through
    with pytest.raises(ConfigError, match="no ros__parameters section"):
        ros_parameters({"other": {"ros__parameters": {}}}, "mine")


def test_plain_yaml_and_file_errors(tmp_path: Path) -> None:
    plain = tmp_path / "plain.yaml"
    plain.write_text("model:\n  max_tiles: 2\nverbose: true\n")
    assert from_yaml(Node, plain).model.max_tiles == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        from_yaml(Node, bad)
    with pytest.raises(ConfigError, match="cannot read"):
        from_yaml(Node, tmp_path / "missing.yaml")
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        from_yaml(Node, listed)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("/**:\n  ros__parameters:\n    modle:\n      max_tiles: 2\n")
    with pytest.raises(ConfigError, match="modle: unknown key \\(did you mean 'model'\\?\\)"):
        from_yaml(Node, unknown)


def test_validate_existing_object() -> None:
    validate(Node())
    with pytest.raises(ConfigError, match="model.max_tiles"):
        validate(Node(model=Model(max_tiles=99)))


def test_parameter_rows_for_ros_and_docs() -> None:
    rows = {r.name: r for r in parameter_rows(Node)}
    assert list(rows)[:4] == ["model.checkpoint", "model.dtype", "model.max_tiles", "model.backends"]
    assert rows["model.checkpoint"].read_only and rows["model.checkpoint"].description == "model directory"
    assert rows["model.max_tiles"] == ParameterRow(
        "model.max_tiles", "int", 4, "tiles per image", None, (1, 12), False
    )  # the default comes from the field's default_factory
    assert rows["model.dtype"].choices == ("auto", "float32", "bfloat16")  # implied by Literal
    assert rows["qos"].choices == ("sensor_data", "reliable") and rows["qos"].default == "sensor_data"
    assert rows["qos"].type == "str" and rows["model.backends"].type == "list[str]"
    assert rows["model.backends"].default == ["onnxruntime", "torch"]
    assert rows["path"].type == "Path | None"
    assert rows["rate_hz"].constraints == "0.0 <= x"
    assert rows["model.checkpoint"].constraints == "read-only"
    current = from_dict(Node, {"rate_hz": 9.0})
    assert {r.name: r.default for r in parameter_rows(current)}["rate_hz"] == 9.0


def test_markdown_table() -> None:
    table = markdown_table(Node).splitlines()
    assert table[0] == "| Parameter | Type | Default | Description | Constraints |"
    assert "| `model.max_tiles` | int | `4` | tiles per image | 1 <= x <= 12 |" in table
    assert "| `model.dtype` | str | `auto` | weights type | one of: auto, float32, bfloat16 |" in table
    assert len(table) == 2 + len(parameter_rows(Node))
