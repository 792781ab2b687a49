"""A plain transformers generation backend.

It is the reference the vLLM engine is measured against (rollout and serving benchmarks), and the evaluation
backend where vLLM is not installed. It samples text only; it never computes gradients.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


def _merge_adapter(model, adapter: str):
    """Apply a peft LoRA adapter folder and merge it (plain matmuls are faster for inference)."""
    from peft import PeftModel

    from memroute.core.adapter import require_adapter

    require_adapter(adapter)
    return PeftModel.from_pretrained(model, adapter).merge_and_unload()


@dataclass
class Generation:
    text: str
    n_prompt_tokens: int
    n_completion_tokens: int


class HFEngine:
    """Batched generation with `model.generate`, optionally with a LoRA adapter applied."""

    def __init__(self, model: str = "smollm2-135m", adapter: str | None = None, dtype: str = "auto",
                 batch_size: int = 8):
        import torch

        from memroute.core.models import load_model, load_tokenizer, resolve_dtype, resolve_model

        self.model_path = resolve_model(model)
        self.tokenizer = load_tokenizer(self.model_path)
        self.tokenizer.padding_side = "left"  # generation continues from the right edge
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = load_model(self.model_path, dtype=resolve_dtype(dtype))
        if adapter:
            self.model = _merge_adapter(self.model, adapter)
        self.model.eval()
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model.to(self.device)
        self.batch_size = batch_size

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 48, temperature: float = 0.0,
                 progress=None) -> list[Generation]:
        """One completion per prompt (greedy when temperature is 0). Prompts are batched by length."""
        import torch

        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: list[Generation | None] = [None] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            enc = self.tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True,
                                 add_special_tokens=False).to(self.device)
            sample = temperature > 0
            with torch.inference_mode():
                out = self.model.generate(
                    **enc, max_new_tokens=max_new_tokens, do_sample=sample,
                    temperature=temperature if sample else None, top_p=None, top_k=None,
                    pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id)
            new = out[:, enc["input_ids"].shape[1]:]
            for row, i in enumerate(idx):
                tokens = [t for t in new[row].tolist() if t != self.tokenizer.pad_token_id]
                results[i] = Generation(self.tokenizer.decode(tokens, skip_special_tokens=True).strip(),
                                        int(enc["attention_mask"][row].sum()), len(tokens))
            if progress is not None:
                progress.update(len(idx))
        return results  # type: ignore[return-value]
