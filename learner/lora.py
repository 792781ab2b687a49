"""The policy model: a base causal LM with a peft LoRA adapter.

The KL reference policy is the same module with the adapter disabled (`reference_mode`), not a second copy
of the base weights in memory.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from learner.config import LoraConfig, ModelConfig


def build_policy(model_cfg: ModelConfig, lora_cfg: LoraConfig, adapter: str | Path | None = None,
                 trainable: bool = True, seed: int = 0, widen: bool = False):
    """Load the base model and wrap it with a fresh LoRA adapter, or with the saved one at `adapter`.

    widen: start from `adapter` but adapt `lora_cfg.top_layers` layers, the adapter's own and new ones below them
    (`widen_adapter`)."""
    import torch
    from peft import LoraConfig as PeftLoraConfig
    from peft import PeftModel, get_peft_model

    from memroute.core.adapter import require_adapter
    from memroute.core.models import load_model, resolve_dtype, resolve_model

    base = load_model(resolve_model(model_cfg.name), dtype=resolve_dtype(model_cfg.dtype))
    if model_cfg.gradient_checkpointing:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        base.enable_input_require_grads()
    if adapter is not None and not widen:
        require_adapter(adapter)
        return PeftModel.from_pretrained(base, str(adapter), is_trainable=trainable)
    peft_cfg = PeftLoraConfig(r=lora_cfg.rank, lora_alpha=lora_cfg.alpha, lora_dropout=lora_cfg.dropout,
                              target_modules=list(lora_cfg.target_modules), task_type="CAUSAL_LM", bias="none",
                              layers_to_transform=adapted_layers(lora_cfg, base.config.num_hidden_layers))
    with torch.random.fork_rng():  # the A matrices are random: the same init on every DDP rank, every run
        torch.manual_seed(seed)
        policy = get_peft_model(base, peft_cfg)
    if adapter is not None:
        widen_adapter(policy, adapter, peft_cfg)
    return policy


def widen_adapter(policy, adapter: str | Path, peft_cfg) -> None:
    """Copy the saved adapter's tensors into `policy`, whose fresh adapter covers more layers.

    A fresh LoRA pair has B = 0, so the layers the saved adapter lacks start as the identity and the widened policy
    computes exactly what the saved one does; training then adapts the new layers too. The saved adapter must have
    the same rank, alpha and target modules, and its layers must be among the new ones."""
    from peft import set_peft_model_state_dict

    from memroute.core.adapter import read_adapter

    tensors, saved = read_adapter(adapter)
    mismatched = [f"{key} {saved.get(key)} != {want}" for key, want in
                  (("r", peft_cfg.r), ("lora_alpha", peft_cfg.lora_alpha),
                   ("target_modules", sorted(peft_cfg.target_modules)))
                  if (sorted(saved.get(key) or []) if key == "target_modules" else saved.get(key)) != want]
    saved_layers = saved.get("layers_to_transform")
    new_layers = peft_cfg.layers_to_transform
    if new_layers is not None and (saved_layers is None or not set(saved_layers) <= set(new_layers)):
        mismatched.append(f"its layers {saved_layers or 'all'} are not all among lora.top_layers' {new_layers}")
    if mismatched:
        raise ValueError(f"cannot widen adapter {adapter}: " + "; ".join(mismatched))
    result = set_peft_model_state_dict(policy, tensors)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    if unexpected:
        raise ValueError(f"cannot widen adapter {adapter}: tensors with no place in the widened adapter, "
                         f"e.g. {unexpected[:3]}")


def adapted_layers(lora_cfg: LoraConfig, num_layers: int) -> list[int] | None:
    """The decoder layer indices that get LoRA (None: all of them)."""
    top = lora_cfg.top_layers
    if top is None:
        return None
    if not 1 <= top <= num_layers:
        raise ValueError(f"lora.top_layers={top} is out of range: the model has {num_layers} decoder layers")
    return list(range(num_layers - top, num_layers))


REFERENCE_ADAPTER = "reference"  # the frozen copy of the starting adapter, when the KL reference is `start`


def add_reference_adapter(policy, adapter: str | Path) -> None:
    """Load `adapter` a second time, frozen, as the KL reference (`reference_mode` then runs it)."""
    policy.load_adapter(str(adapter), adapter_name=REFERENCE_ADAPTER, is_trainable=False)
    policy.set_adapter("default")  # the trained adapter stays active and trainable


@contextlib.contextmanager
def reference_mode(policy):
    """Run the KL reference for the duration: the frozen starting adapter if one was added
    (`add_reference_adapter`), else the base model (the adapter disabled). Use under no_grad."""
    if REFERENCE_ADAPTER in getattr(policy, "peft_config", {}):
        policy.set_adapter(REFERENCE_ADAPTER, inference_mode=True)
        try:
            yield policy
        finally:
            policy.set_adapter("default")  # makes the trained adapter trainable again
        return
    with policy.disable_adapter():
        yield policy


def lora_state(policy) -> dict:
    """The adapter's tensors (what the learner ships to rollout workers), detached on CPU."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().to("cpu").clone() for k, v in get_peft_model_state_dict(policy).items()}
