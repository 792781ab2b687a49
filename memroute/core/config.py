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


def shipped_configs_dir() -> Path:
    """The configs shipped with memroute (`memroute/configs`, package data in a wheel; `configs/` in a checkout
    links to it)."""
    from importlib.resources import files

    return Path(str(files("memroute") / "configs"))


def resolve_config_path(path: str | Path) -> Path:
    """`path` if that file exists; else the shipped config of that name, so `configs/cpu_rl.yaml` (or just
    `cpu_rl.yaml`) works from any directory once memroute is installed. A user's own file always wins."""
    given = Path(path).expanduser()
    if given.is_file():
        return given
    shipped = shipped_configs_dir() / given.name
    if given.parent in (Path("."), Path("configs")) and shipped.is_file():
        return shipped
    names = ", ".join(sorted(p.name for p in shipped_configs_dir().glob("*.yaml")))
    raise ConfigError(f"config file not found: {path} (the shipped configs are: {names})")


def _read_tree(path: Path) -> dict:
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"config file {path}: expected a mapping of keys, got {type(tree).__name__}")
    return tree


def _merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def config_paths(spec: str | Path | Sequence[str | Path] | None) -> list[Path]:
    """The files of a `--config` value: one path, or several joined with commas (a base config, then presets
    such as configs/tiny_rl.yaml laid over it), each resolved with `resolve_config_path`."""
    if spec is None:
        return []
    parts = [spec] if isinstance(spec, Path) else str(spec).split(",") if isinstance(spec, str) else list(spec)
    return [resolve_config_path(p) for p in (str(q).strip() for q in parts) if p]


def load_config(cls: type[T], path: str | Path | Sequence[str | Path] | None = None,
                overrides: Sequence[str] = ()) -> T:
    """Defaults of `cls`, updated by the YAML file(s) at `path` (comma-joined: each laid over the one before),
    then by `key.sub=value` overrides."""
    tree: dict = {}
    for file in config_paths(path):
        tree = _merge(tree, _read_tree(file))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. optim.lr=1e-4)")
        key, raw = item.split("=", 1)
        _set_path(tree, key.strip(), yaml.safe_load(raw))
    return _build(cls, tree, "")


def preset_overrides(name: str) -> list[str]:
    """A shipped preset (`configs/<name>.yaml`, e.g. tiny_rl) as `key.sub=value` overrides, for commands that lay
    it over another config's overrides in order."""
    out: list[str] = []

    def walk(tree: dict, prefix: str) -> None:
        for key, value in tree.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                raw = value if isinstance(value, str) and yaml.safe_load(value) == value else \
                    yaml.safe_dump(value, default_flow_style=True, width=10**6).removesuffix("\n").removesuffix("\n...")
                out.append(f"{prefix}{key}={raw}")

    walk(_read_tree(resolve_config_path(f"{name}.yaml")), "")
    return out


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def dump_config(cfg) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
