"""Greedy routing of a whole dataset on the vLLM `Engine`: in this process, or as Ray Data batch inference.

`route_local` runs one engine here (the default of `memroute eval`). `route_ray_data` is the cluster path:
`ray.data.read_parquet` over the dataset's Parquet shards, `map_batches` over `EngineRouter` (one engine per
Ray Data actor, `concurrency` of them, each on `num_cpus` CPUs or one GPU), the answers gathered back by id.
(`ray.data.llm` would do the same with its own vLLM processor; it is built around vLLM's OpenAI-style chat
templating and its own engine arguments, so our prompt function, stop rule, CPU KV-cache sizing and merged
adapter loading would live in two places. One engine class is the rule: see actors/engine.py.)
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from actors.engine import Engine, EngineConfig
from memroute.core.adapter import AdapterNotFoundError


def check_adapter(adapter: str | None) -> None:
    """Fail before an engine starts (~40 s) when the adapter folder is missing."""
    if adapter and not Path(adapter, "adapter_config.json").exists():
        raise AdapterNotFoundError(f"LoRA adapter not found: {adapter} (no adapter_config.json)")


def _load(cfg: EngineConfig, adapter: str | None) -> Engine:
    check_adapter(adapter)
    engine = Engine(cfg)
    if adapter:
        engine.load_adapter(adapter)
    return engine


def route_local(cfg: EngineConfig, adapter: str | None, conversations: Sequence[list[dict]], max_tokens: int = 48,
                chunk: int = 64, samples: int = 0) -> list[str]:
    """Answers, in order (`Engine.route`: greedy, or the most probable of greedy and `samples` sampled ones).
    Chunks only drive the progress bar: vLLM batches each chunk itself."""
    from tqdm import tqdm

    engine = _load(cfg, adapter)
    texts: list[str] = []
    try:
        with tqdm(total=len(conversations), desc="eval", unit="conv", file=sys.stderr) as bar:
            for i in range(0, len(conversations), chunk):
                part = conversations[i:i + chunk]
                texts.extend(engine.route(part, max_tokens, samples))
                bar.update(len(part))
    finally:
        engine.shutdown()
    return texts


class EngineRouter:
    """A Ray Data `map_batches` callable: one engine per actor; a batch of rows -> their ids and answers."""

    def __init__(self, engine_cfg: dict, adapter: str | None, max_tokens: int, samples: int = 0):
        self.engine = _load(EngineConfig(**engine_cfg), adapter)
        self.max_tokens, self.samples = max_tokens, samples

    def __call__(self, batch):  # batch: a pandas DataFrame with the schema's columns
        conversations = [[{"role": t["role"], "content": t["content"]} for t in conv] for conv in batch["conversation"]]
        return {"id": list(batch["id"]), "text": self.engine.route(conversations, self.max_tokens, self.samples)}


def route_ray_data(cfg: EngineConfig, adapter: str | None, parquet: str | list[str], max_tokens: int = 48,
                   concurrency: int = 1, num_cpus: float = 1, use_gpu: bool = False,
                   batch_size: int = 64, samples: int = 0) -> dict[str, str]:
    """{id: answer} (`Engine.route`: greedy, or the best of `samples`) for every row of the Parquet file(s) or
    folder, routed by `concurrency` engine actors."""
    import ray

    if not ray.is_initialized():
        ray.init()  # RAY_ADDRESS / `ray start` cluster when there is one, else a local instance
    ds = ray.data.read_parquet(parquet).select_columns(["id", "conversation"])
    routed = ds.map_batches(EngineRouter, fn_constructor_args=(asdict(cfg), adapter, max_tokens, samples),
                            batch_size=batch_size, batch_format="pandas", concurrency=concurrency,
                            num_cpus=0 if use_gpu else num_cpus, num_gpus=1 if use_gpu else 0)
    return {row["id"]: row["text"] for row in routed.iter_rows()}
