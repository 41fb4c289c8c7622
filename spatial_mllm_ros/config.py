"""Typed configuration: dataclasses are the one schema for YAML files, ROS parameters, the CLI and docs.

Declare fields with `option(default, help=..., choices=..., range=(lo, hi), read_only=...)` (or plain
`field(metadata={...})` with the same keys). `from_dict` / `from_yaml` check every key and type and
raise ConfigError naming the dotted key, the expected type and the allowed values. `parameter_rows`
flattens a config into rows the ROS node declares parameters from and the README table is built from.
"""

from __future__ import annotations

import collections.abc
import contextlib
import dataclasses
import difflib
import enum
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from spatial_mllm_ros.errors import ConfigError

T = TypeVar("T")

_SEQUENCES = (tuple, list, collections.abc.Sequence)

# Parameters every ROS node may carry in its ros__parameters; dropped unless the config declares them.
ROS_RESERVED_PARAMETERS = frozenset({"use_sim_time", "qos_overrides", "start_type_description_service"})


def option(
    default: Any = MISSING,
    *,
    default_factory: Any = MISSING,
    help: str = "",  # named like the metadata keys the docs and ROS descriptors read
    choices: Iterable[Any] | None = None,
    range: tuple[float | None, float | None] | None = None,
    read_only: bool = False,
) -> Any:
    """Make a dataclass field carrying its description and constraints (help, choices, range, read_only)."""
    metadata = {
        "help": help,
        "choices": tuple(choices) if choices is not None else None,
        "range": range,
        "read_only": read_only,
    }
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class ParameterRow:
    """One flattened config field: what a ROS parameter declaration or a README row needs."""

    name: str  # dotted path, e.g. "frames.max_frames"
    type: str  # readable type, e.g. "int", "list[str]", "str | None"
    default: Any  # plain YAML/ROS value (enums as values, tuples as lists)
    description: str = ""
    choices: tuple[Any, ...] | None = None
    range: tuple[float | None, float | None] | None = None
    read_only: bool = False

    @property
    def constraints(self) -> str:
        """Human-readable constraints, e.g. "one of: a, b", "0 <= x <= 1", "read-only"."""
        parts = []
        if self.choices:
            parts.append("one of: " + ", ".join(str(c) for c in self.choices))
        if self.range:
            lo, hi = self.range
            parts.append(" ".join(p for p in (f"{lo} <=" if lo is not None else "", "x",
                                               f"<= {hi}" if hi is not None else "") if p))
        if self.read_only:
            parts.append("read-only")
        return "; ".join(parts)


def _type_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return " | ".join(sorted({type(a).__name__ for a in args}))
    if origin in (Union, types.UnionType):
        return " | ".join("None" if a is type(None) else _type_name(a) for a in args)
    if origin is dict:
        return f"dict[{', '.join(_type_name(a) for a in args)}]"
    if origin in _SEQUENCES:
        inner = [a for a in args if a is not Ellipsis]
        return f"list[{' | '.join(sorted({_type_name(a) for a in inner}))}]"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "str"
    return getattr(tp, "__name__", str(tp))


def _fail(path: str, value: Any, tp: Any, allowed: Iterable[Any] | None = None) -> ConfigError:
    return ConfigError(
        path, f"wrong type {type(value).__name__} ({value!r})", expected=_type_name(tp), allowed=allowed
    )


def _convert(value: Any, tp: Any, path: str, base: Any = None) -> Any:
    """Check `value` against type `tp`; coerce only what YAML cannot express (int -> float, tuples)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(path, f"expected a mapping of {tp.__name__} keys, got {type(value).__name__}",
                              allowed=[f.name for f in dataclasses.fields(tp) if f.init])
        return _build(tp, value, path, base)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option_tp in (a for a in args if a is not type(None)):
            try:
                return _convert(value, option_tp, path)
            except ConfigError:
                continue
        raise _fail(path, value, tp)
    if origin is Literal:
        if value in args and type(value) in {type(a) for a in args}:
            return value
        raise ConfigError(path, f"invalid value {value!r}", allowed=args)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return value if isinstance(value, tp) else tp(value)
        except ValueError:
            raise ConfigError(path, f"invalid value {value!r}", allowed=[m.value for m in tp]) from None
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _fail(path, value, tp)
    if tp is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise _fail(path, value, tp)
    if origin in _SEQUENCES or tp in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise _fail(path, value, tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(path, f"needs {len(args)} items, got {len(value)}", expected=_type_name(tp))
            items = [_convert(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
        else:
            item_tp = args[0] if args else Any
            items = [_convert(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value)]
        return items if (origin or tp) is list else tuple(items)
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise _fail(path, value, tp)
        key_tp, val_tp = args if args else (Any, Any)
        return {_convert(k, key_tp, path): _convert(v, val_tp, f"{path}.{k}") for k, v in value.items()}
    if isinstance(tp, type):
        if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
            return value
        raise _fail(path, value, tp)
    return value


def _check_constraints(value: Any, meta: Mapping[str, Any], path: str) -> None:
    choices, bounds = meta.get("choices"), meta.get("range")
    items = value if isinstance(value, (list, tuple)) else (value,)
    for item in items:
        plain = item.value if isinstance(item, enum.Enum) else item
        if choices is not None and plain not in choices:
            raise ConfigError(path, f"invalid value {plain!r}", allowed=choices)
        if bounds is not None and isinstance(plain, (int, float)) and not isinstance(plain, bool):
            lo, hi = bounds
            if (lo is not None and plain < lo) or (hi is not None and plain > hi):
                raise ConfigError(path, f"value {plain!r} out of range",
                                  expected=ParameterRow("", "", None, range=bounds).constraints)


def _unflatten(data: Mapping[str, Any], path: str) -> dict[str, Any]:
    """Turn {"a.b": 1} into {"a": {"b": 1}} (ROS names are dotted, YAML nests); never mutates `data`."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str):
            raise ConfigError(f"{path}{key!r}", "keys must be strings")
        head, dot, rest = key.partition(".")
        if dot:
            value = {rest: value}
        if head in out and isinstance(value, Mapping) != isinstance(out[head], dict):
            raise ConfigError(f"{path}{head}", "given both as a value and as a section")
        if isinstance(value, Mapping):
            _merge_into(out.setdefault(head, {}), value)
        else:
            out[head] = value
    return {k: _unflatten(v, f"{path}{k}.") if isinstance(v, dict) else v for k, v in out.items()}


def _merge_into(target: dict[str, Any], source: Mapping[str, Any]) -> None:
    """Deep-merge copies of `source` into `target`: later sections override single keys, not subsections."""
    for key, value in source.items():
        if isinstance(value, Mapping):
            if not isinstance(target.get(key), dict):
                target[key] = {}
            _merge_into(target[key], value)
        else:
            target[key] = value


def _build(cls: type[T], data: Mapping[str, Any], prefix: str, base: Any) -> T:
    data = _unflatten(data, f"{prefix}." if prefix else "")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f"unknown key (did you mean {close[0]!r}?)" if close else "unknown key"
            raise ConfigError(f"{prefix}.{key}" if prefix else key, hint, allowed=sorted(fields))
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        path = f"{prefix}.{name}" if prefix else name
        current = getattr(base, name) if base is not None else _default(f)
        if name in data:
            value = _convert(data[name], hints[name], path, current)
            _check_constraints(value, f.metadata, path)
            kwargs[name] = value
        elif base is not None:
            kwargs[name] = current
        elif f.default is MISSING and f.default_factory is MISSING:
            raise ConfigError(path, "missing required key", expected=_type_name(hints[name]))
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(prefix or cls.__name__, str(exc)) from exc


def _default(f: dataclasses.Field[Any]) -> Any:
    """Return a field's default value (None when it has none): the base for a partially given section."""
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None if f.default is MISSING else f.default


def from_dict(cls: type[T], data: Mapping[str, Any] | None, *, base: T | None = None) -> T:
    """Build config `cls` from a (nested or dotted) mapping; keys not given come from `base` or defaults."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError("", f"expected a mapping, got {type(data).__name__}")
    return _build(cls, data, "", base)


def parse_assignments(items: Iterable[str]) -> dict[str, Any]:
    """Turn command-line `KEY=VALUE` items into a dotted mapping for `from_dict`; values are YAML scalars.

    YAML reads `1e-4` as a string, so a string that parses as a number becomes one; `from_dict` then
    checks every value against its field's type.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, eq, text = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(item, "expected KEY=VALUE (nested fields dotted, e.g. episode.grid=12)")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(key.strip(), f"invalid value {text!r}: {exc}") from exc
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = float(value)
        out[key.strip()] = value
    return out


def validate(config: Any) -> None:
    """Re-check an existing config object (types, choices, ranges), e.g. after construction in code."""
    from_dict(type(config), to_dict(config))


def ros_parameters(document: Mapping[str, Any], node_name: str | None = None) -> dict[str, Any]:
    """Pick the parameters of one node from a ROS params document; return a plain mapping as is.

    Accepts `/**: ros__parameters:`, `node: ros__parameters:`, `/ns/node:` and nested namespaces;
    wildcard sections apply first, then the section of `node_name` overrides them.
    """
    sections: dict[str, Mapping[str, Any]] = {}

    def collect(doc: Mapping[str, Any], prefix: str) -> None:
        for key, value in doc.items():
            if not isinstance(value, Mapping):
                continue
            name = f"{prefix}/{str(key).strip('/')}"
            if "ros__parameters" in value:
                sections[name] = value["ros__parameters"] or {}
            else:
                collect(value, name)

    collect(document, "")
    if not sections:
        return dict(document)
    wildcard = [k for k in sections if k.endswith("/**") or k == "/*"]
    named = [k for k in sections if k not in wildcard]
    if node_name is not None:
        short = node_name.strip("/")
        named = [k for k in named if k.strip("/") == short or k.endswith("/" + short.rsplit("/", 1)[-1])]
    elif len(named) > 1:
        raise ConfigError("", "several nodes in this parameters file: pass node_name", allowed=sorted(named))
    if not wildcard and not named:
        raise ConfigError(
            node_name or "", "no ros__parameters section for this node", allowed=sorted(sections)
        )
    merged: dict[str, Any] = {}
    for key in wildcard + named:
        _merge_into(merged, _unflatten(sections[key], ""))
    return merged


def from_yaml(cls: type[T], path: str | Path, *, node_name: str | None = None, base: T | None = None) -> T:
    """Load `cls` from a YAML file: a plain mapping or a ROS params file (`ros__parameters`)."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), f"invalid YAML: {exc}") from exc
    if not isinstance(document, Mapping):
        raise ConfigError(str(path), f"top level must be a mapping, got {type(document).__name__}")
    params = ros_parameters(document, node_name)
    declared = {f.name for f in dataclasses.fields(cls)}
    for key in ROS_RESERVED_PARAMETERS - declared:
        params.pop(key, None)
    return from_dict(cls, params, base=base)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_dict(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def to_dict(config: Any) -> dict[str, Any]:
    """Return a config as plain nested YAML/JSON data (enums as values, tuples as lists, paths as str)."""
    return {f.name: _plain(getattr(config, f.name)) for f in dataclasses.fields(config) if f.init}


def to_ros_yaml(config: Any, node_name: str = "/**") -> str:
    """Render a ROS params file (`node: ros__parameters:`) holding this config."""
    return yaml.safe_dump({node_name: {"ros__parameters": to_dict(config)}}, sort_keys=False)


def parameter_rows(config: Any, prefix: str = "") -> list[ParameterRow]:
    """Flatten a config (instance, or class with all defaults) into dotted rows for ROS and docs."""
    if isinstance(config, type):
        config = config()
    hints = typing.get_type_hints(type(config))
    rows: list[ParameterRow] = []
    for f in dataclasses.fields(config):
        if not f.init:
            continue
        value, name = getattr(config, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            rows.extend(parameter_rows(value, f"{name}."))
            continue
        meta = f.metadata
        rows.append(ParameterRow(
            name=name,
            type=_type_name(hints[f.name]),
            default=_plain(value),
            description=meta.get("help", ""),
            choices=meta.get("choices") or _implied_choices(hints[f.name]),
            range=meta.get("range"),
            read_only=bool(meta.get("read_only", False)),
        ))
    return rows


def _implied_choices(tp: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(tp) is Literal:
        return typing.get_args(tp)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tuple(m.value for m in tp)
    return None


def markdown_table(config: Any, prefix: str = "") -> str:
    """Render a README table of every parameter: name, type, default, description, constraints."""
    lines = ["| Parameter | Type | Default | Description | Constraints |", "|---|---|---|---|---|"]
    for row in parameter_rows(config, prefix):
        dumped = yaml.safe_dump(row.default, default_flow_style=True).strip().removesuffix("...").strip()
        default = f"`{dumped}`"
        cells = [f"`{row.name}`", row.type, default, row.description, row.constraints]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)
