"""Dataclass configs from YAML files plus `key.sub=value` command-line overrides.

Every run (SFT, RL, serving) is described by a dataclass whose defaults run on one CPU machine; a YAML file
(configs/*.yaml) and overrides change only what differs. Unknown keys are errors, so a typo never silently
falls back to a default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Sequence, TypeVar

import yaml

from memroute.core.errors import MemrouteError, UsageError

T = TypeVar("T")


class ConfigError(UsageError, ValueError):
    """A config that cannot run: an unknown key, a value of the wrong type or out of range, a missing file."""


# Every config checks its own values when it is built, in __post_init__ (a ValueError; `_build` reports it as a
# ConfigError naming the section), so a typo in a YAML file or an override fails before Ray, Train or vLLM start.
# Messages begin with the field's name: the loader prefixes the section ("learner.loss.kind must be ...").


def check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")


def check_min(name: str, value, low, inclusive: bool = True, optional: bool = False) -> None:
    if value is None and optional:
        return
    if value is None or (value < low if inclusive else value <= low):
        sign = ">=" if inclusive else ">"
        raise ValueError(f"{name} must be {sign} {low}{' (or null)' if optional else ''}, got {value!r}")


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _build(cls, values: dict, where: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(values).__name__}")
    types = _field_types(cls)
    unknown = sorted(set(values) - set(types))
    if unknown:
        raise ConfigError(f"unknown config key {where + '.' if where else ''}{unknown[0]}; "
                          f"known keys{' of ' + where if where else ''}: {', '.join(types)}")
    kwargs = {}
    for name, value in values.items():
        typ = types[name]
        key = f"{where}.{name}" if where else name
        kwargs[name] = _build(typ, value, key) if dataclasses.is_dataclass(typ) else _coerce(typ, value, key)
    try:
        return cls(**kwargs)
    except ValueError as e:  # a dataclass's own check (__post_init__) refused a value: a config error too
        if isinstance(e, MemrouteError):
            raise
        raise ConfigError(f"{where}.{e}" if where else str(e)) from e


def _coerce(typ, value, key):
    """Light type checks: YAML already types scalars; catch the common mistakes (a string for a number)."""
    origin = typing.get_origin(typ)
    allowed = typing.get_args(typ) if origin in (typing.Union, types.UnionType) else (typ,)
    if value is None and type(None) in allowed:
        return None
    for t in allowed:
        base = typing.get_origin(t) or t
        if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if base is float and isinstance(value, str):  # PyYAML reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(base, type) and isinstance(value, base) and not (base is int and isinstance(value, bool)):
            return value
        if base is tuple and isinstance(value, list):
            return tuple(value)
    raise ConfigError(f"config key {key}: expected {typ}, got {value!r}")


def _set_path(tree: dict, dotted: str, value) -> None:
    parts = dotted.split(".")
    for part in parts[:-1]:
        tree = tree.setdefault(part, {})
        if not isinstance(tree, dict):
            raise ConfigError(f"override {dotted}: {part} is not a section")
    tree[parts[-1]] = value


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Defaults of `cls`, updated by the YAML file at `path`, then by `key.sub=value` overrides."""
    tree: dict = {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"config file not found: {path}")
        try:
            tree = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. optim.lr=1e-4)")
        key, raw = item.split("=", 1)
        _set_path(tree, key.strip(), yaml.safe_load(raw))
    return _build(cls, tree, "")


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def dump_config(cfg) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
