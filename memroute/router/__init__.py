"""The trained default router shipped with memroute: a LoRA adapter for the default model (SmolLM2-135M-Instruct).

Once shipped, this folder holds the adapter (adapter_config.json + adapter_model.safetensors, float16), its model
card (README.md: data, recipe, metrics, limits) and its evaluation (metrics.json). `memroute eval` and `memroute
serve` use it when no adapter / checkpoint is given and the model is the default one (the base model in a
checkout without an adapter here); `none` asks for the base model. The shipped one and its limits: README.md here.
`python -m memroute.router.ship` (re)builds the folder from a trained adapter and its evaluation.
"""

from __future__ import annotations

import os
from pathlib import Path

ROUTER_DIR = Path(__file__).resolve().parent
DEFAULT = "default"  # the adapter / checkpoint value that means "the shipped router" (also what None-by-CLI becomes)
BASE = "none"  # ... and the value that means "no adapter: the base model"


def is_default_model(model: str | os.PathLike) -> bool:
    from memroute.core.models import DEFAULT_NAMES, default_model_dir

    return str(model) in DEFAULT_NAMES or Path(model).expanduser().resolve() == default_model_dir().resolve()


def shipped_adapter() -> Path | None:
    """The shipped adapter folder, or None in a checkout that has none yet."""
    return ROUTER_DIR if (ROUTER_DIR / "adapter_model.safetensors").exists() else None


def choose_adapter(adapter: str | os.PathLike | None, model: str | os.PathLike) -> str | None:
    """An adapter argument as the user gave it -> the adapter to load. `default`: the shipped router for the
    default model (the base model for any other model: the router was trained for SmolLM2-135M only); `none` or
    None: the base model; anything else: that path."""
    if adapter is None or str(adapter).lower() == BASE:
        return None
    if str(adapter) != DEFAULT:
        return str(adapter)
    if not is_default_model(model):
        return None
    found = shipped_adapter()
    return str(found) if found else None
