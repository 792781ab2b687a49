"""The LoRA adapter format, one definition for every layer: the peft `adapter_config.json` dict, the adapter
folder on disk (`adapter_model.safetensors` + `adapter_config.json`), and the tensors as the vLLM engine merges them.

Adapters on disk are peft's own format (the learner writes them with `save_pretrained`); the vLLM engine turns a
pushed `(tensors, config)` into an adapter folder or a merge, and Serve reads folders back, through these helpers.
torch / safetensors are imported inside the functions that need them.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from memroute.core.errors import InputError, InputNotFoundError

_PEFT_PREFIX = "base_model.model."


class AdapterNotFoundError(InputNotFoundError):
    """No LoRA adapter (a folder with adapter_config.json) where one was named."""


def require_adapter(folder: str | os.PathLike) -> Path:
    """`folder` as a Path if it holds a peft adapter (adapter_config.json); else `AdapterNotFoundError`."""
    if not (Path(folder) / "adapter_config.json").exists():
        raise AdapterNotFoundError(f"LoRA adapter not found: {folder} (expected a folder with adapter_config.json)")
    return Path(folder)


def peft_adapter_config(lora_config: dict | Any) -> dict:
    """A peft `adapter_config.json` dict from a peft-style dict (r, lora_alpha, target_modules, ...), a
    memroute `learner.config.LoraConfig` (or its asdict: rank, alpha, target_modules, dropout) or a peft
    LoraConfig object."""
    if not isinstance(lora_config, dict):
        if hasattr(lora_config, "to_dict"):
            lora_config = lora_config.to_dict()
        else:
            lora_config = asdict(lora_config)
    cfg = dict(lora_config)
    if "r" not in cfg and "rank" in cfg:  # memroute's LoraConfig
        cfg = {"r": cfg["rank"], "lora_alpha": cfg.get("alpha", cfg["rank"]), "lora_dropout": cfg.get("dropout", 0.0),
               "target_modules": list(cfg["target_modules"])}
    if "r" not in cfg or "target_modules" not in cfg:
        raise InputError(f"lora_config needs r (or rank) and target_modules, got keys {sorted(cfg)}")
    out = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "bias": "none", "fan_in_fan_out": False,
        "lora_alpha": cfg.get("lora_alpha", cfg["r"]), "lora_dropout": 0.0, "modules_to_save": None,
        "rank_pattern": {}, "alpha_pattern": {}, "use_rslora": False, "use_dora": False,
    }
    for key, value in cfg.items():
        if key in out or key in ("r", "target_modules", "base_model_name_or_path", "inference_mode",
                                 "layers_to_transform", "layers_pattern"):
            out[key] = value
    out["target_modules"] = sorted(cfg["target_modules"]) if not isinstance(cfg["target_modules"], str) \
        else cfg["target_modules"]
    if out.get("use_dora"):
        raise InputError("DoRA adapters are not supported by the engine")
    if out.get("modules_to_save"):
        raise InputError(f"modules_to_save={out['modules_to_save']} is not supported (LoRA tensors only)")
    return out


def lora_scaling(adapter_cfg: dict) -> float:
    r, alpha = adapter_cfg["r"], adapter_cfg["lora_alpha"]
    return alpha / math.sqrt(r) if adapter_cfg.get("use_rslora") else alpha / r


def lora_pairs(tensors: dict) -> dict[str, tuple[Any, Any]]:
    """peft state-dict tensors -> {checkpoint weight name: (A [r, in], B [out, r])}.

    `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight` -> `model.layers.0.self_attn.q_proj.weight`.
    """
    pairs: dict[str, dict[str, Any]] = {}
    for key, value in tensors.items():
        name = key[len(_PEFT_PREFIX):] if key.startswith(_PEFT_PREFIX) else key
        for which in ("lora_A", "lora_B"):
            marker = f".{which}."
            if marker in name:
                module = name.split(marker)[0]
                module = module.replace(".base_layer", "")
                pairs.setdefault(f"{module}.weight", {})[which] = value
                break
        else:
            raise InputError(f"unexpected tensor {key!r} in the LoRA state dict (only lora_A / lora_B are supported)")
    out = {}
    for name, ab in pairs.items():
        if set(ab) != {"lora_A", "lora_B"}:
            raise InputError(f"{name}: the LoRA state dict has {sorted(ab)} but needs both lora_A and lora_B")
        out[name] = (ab["lora_A"], ab["lora_B"])
    return out


def write_adapter(folder: str | os.PathLike, tensors: dict, adapter_cfg: dict) -> Path:
    """Write a peft adapter folder (adapter_model.safetensors + adapter_config.json)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()},
              str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps(adapter_cfg, indent=2), encoding="utf-8")
    return folder


def read_adapter(folder: str | os.PathLike) -> tuple[dict, dict]:
    """(tensors, adapter_config) of a peft adapter folder."""
    from safetensors.torch import load_file

    folder = require_adapter(folder)
    cfg_path = folder / "adapter_config.json"
    return load_file(str(folder / "adapter_model.safetensors")), json.loads(cfg_path.read_text(encoding="utf-8"))
