"""The policy model: a base causal LM with a peft LoRA adapter.

The KL reference policy is the same module with the adapter disabled (`reference_mode`), not a second copy
of the base weights in memory.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from learner.config import LoraConfig, ModelConfig


def build_policy(model_cfg: ModelConfig, lora_cfg: LoraConfig, adapter: str | Path | None = None,
                 trainable: bool = True, seed: int = 0):
    """Load the base model and wrap it with a fresh LoRA adapter, or with the saved one at `adapter`."""
    import torch
    from peft import LoraConfig as PeftLoraConfig
    from peft import PeftModel, get_peft_model

    from memroute.core.adapter import require_adapter
    from memroute.core.models import load_model, resolve_dtype, resolve_model

    base = load_model(resolve_model(model_cfg.name), dtype=resolve_dtype(model_cfg.dtype))
    if model_cfg.gradient_checkpointing:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        base.enable_input_require_grads()
    if adapter is not None:
        require_adapter(adapter)
        return PeftModel.from_pretrained(base, str(adapter), is_trainable=trainable)
    peft_cfg = PeftLoraConfig(r=lora_cfg.rank, lora_alpha=lora_cfg.alpha, lora_dropout=lora_cfg.dropout,
                              target_modules=list(lora_cfg.target_modules), task_type="CAUSAL_LM", bias="none",
                              layers_to_transform=adapted_layers(lora_cfg, base.config.num_hidden_layers))
    with torch.random.fork_rng():  # the A matrices are random: the same init on every DDP rank, every run
        torch.manual_seed(seed)
        return get_peft_model(base, peft_cfg)


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
