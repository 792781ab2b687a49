"""The frozen-trunk cache: the output of the layers below the adapter, computed once per example and stored.

With ``lora.top_layers=k`` on an N-layer model, ``layers[0:L]`` (``L = N - k``) never change during training, so
the input of layer L for every training token is a pure function of the base weights and the token ids. SFT then
runs only ``layers[L:N]`` each epoch (`learner.segment.prefix_answer_ce` with ``start=L``).

On disk, one folder per key, ``<cache_dir>/<key>/``:

    meta.json            what the key was made of: the trunk's weight digest, L, storage dtype, hidden size, the
                         shared prefix's token ids
    prefix.npy           ``[P, H]``: the layer-L input at the shared prefix (the same for every example)
    shard_NNNNN.npy      ``[T, H]``: the rest of a chunk of examples, rows of each example back to back
    shard_NNNNN.json     the shard's index, ``{example key: [offset, length]}``, written after its .npy

The key is a hash of everything the states depend on: the digest of the trunk's parameter tensors (embeddings
and ``layers[0:L]``, as loaded, so the model's dtype is in it), L, the storage dtype and the prefix ids. A
different model, depth or dtype is a different folder: a stale cache cannot be found, so it is never used. Within
a folder an example is found by the sha256 of its token ids, so changed data (other text, other tokenization,
another prompt) simply misses and is computed. Shards are written atomically (temp + rename, index last), so an
interrupted build keeps every finished shard and resumes with the rest, and runs with other data mixes share a
folder. A shard whose files do not agree (shape, index past its rows) is an error naming it, never read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from data.atomic import atomic_path, write_json_atomic
from learner.segment import common_prefix_len, embed, num_layers, run_layers

log = logging.getLogger(__name__)

FORMAT = 1
DTYPES = {"float16": (np.float16, torch.float16), "float32": (np.float32, torch.float32)}
SHARD_TOKENS = 1 << 16  # ~64k token rows per shard (~75 MB at H=576 in float16): a few minutes of build
BUILD_BATCH = 4  # examples per no-grad forward while building (right-padded, similar lengths)


class TrunkCacheError(RuntimeError):
    """A cache that cannot be used as asked; the message names the folder or file."""


def example_key(ids: Sequence[int]) -> str:
    return hashlib.sha256(np.asarray(ids, dtype=np.int64).tobytes()).hexdigest()[:32]


def trunk_digest(model, layer: int) -> str:
    """sha256 over the parameters the cached states depend on: the token embeddings and ``layers[0:layer]``."""
    from learner.segment import decoder_parts

    inner, _ = decoder_parts(model)
    h = hashlib.sha256()
    named = [("embed_tokens", inner.embed_tokens)] + [(f"layers.{i}", inner.layers[i]) for i in range(layer)]
    for prefix, module in named:
        for name, p in sorted(module.state_dict().items()):
            if "lora_" in name:
                raise TrunkCacheError(f"{prefix}.{name} is a LoRA weight below layer {layer}: the trunk is not "
                                      f"frozen, so it cannot be cached (lora.top_layers must leave it alone)")
            t = p.detach().to("cpu").contiguous()
            h.update(f"{prefix}.{name}:{t.dtype}:{tuple(t.shape)}\n".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes())
    return h.hexdigest()


@dataclass
class TrunkCache:
    """An opened cache folder: the prefix states and where each example's rest lives."""

    folder: Path
    layer: int
    prefix_len: int
    prefix: np.ndarray  # [P, H]
    entries: dict  # example key -> (shard array, offset, length)
    torch_dtype: torch.dtype

    def rest(self, ids: Sequence[int]) -> np.ndarray:
        """``[len(ids) - P, H]`` states of one example after the prefix."""
        hit = self.entries.get(example_key(ids))
        if hit is None:
            raise TrunkCacheError(f"trunk cache {self.folder} has no entry for an example of {len(ids)} tokens; "
                                  f"build it first (TrunkCache.open with the example)")
        arr, off, n = hit
        if n != len(ids) - self.prefix_len:
            raise TrunkCacheError(f"trunk cache {self.folder}: an entry of {n} rows for an example of "
                                  f"{len(ids)} tokens after a prefix of {self.prefix_len}")
        return arr[off: off + n]

    def tensors(self, ids_list: Sequence[Sequence[int]], dtype: torch.dtype, device) -> tuple:
        """(prefix ``[P, H]``, [rest ``[S_i, H]``]) as tensors of `dtype` on `device` for a micro-batch."""
        prefix = torch.from_numpy(np.array(self.prefix)).to(device=device, dtype=dtype)
        rows = [torch.from_numpy(np.array(self.rest(ids))).to(device=device, dtype=dtype)
                for ids in ids_list]
        return prefix, rows


def cache_key(digest: str, layer: int, dtype: str, prefix_ids: Sequence[int]) -> str:
    blob = json.dumps({"format": FORMAT, "trunk": digest, "layer": layer, "dtype": dtype,
                       "prefix": list(prefix_ids)})
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _read_shards(folder: Path, hidden: int) -> dict:
    entries = {}
    for index in sorted(folder.glob("shard_*.json")):
        npy = index.with_suffix(".npy")
        try:
            rows = json.loads(index.read_text(encoding="utf-8"))
            arr = np.load(npy, mmap_mode="r")
        except (OSError, ValueError) as e:
            raise TrunkCacheError(f"trunk cache shard {index} is unreadable ({e}); delete {index} and {npy} to "
                                  f"rebuild them") from None
        if arr.ndim != 2 or arr.shape[1] != hidden:
            raise TrunkCacheError(f"trunk cache shard {npy} has shape {arr.shape}, expected [*, {hidden}]; delete "
                                  f"it and {index} to rebuild them")
        for key, (off, n) in rows.items():
            if off < 0 or off + n > arr.shape[0]:
                raise TrunkCacheError(f"trunk cache shard {index} indexes rows {off}..{off + n} past the "
                                      f"{arr.shape[0]} rows of {npy}; delete both to rebuild them")
            entries[key] = (arr, off, n)
    return entries


@torch.no_grad()
def _states(model, rests: Sequence[Sequence[int]], prefix_len: int, layer: int, prefix_cache,
            device) -> list[torch.Tensor]:
    """Layer-`layer` input at positions prefix_len.. of a few examples (their tokens after the prefix), as one
    right-padded batch on top of the prefix's trunk KV cache (broadcast, never copied); one tensor per example."""
    import copy

    from learner.logprobs import _expand_cache

    n, P = len(rests), prefix_len
    S = max(len(r) for r in rests)
    cache = copy.copy(prefix_cache)  # shallow: each layer's tensors are re-bound by update, never written in place
    cache.layers = [copy.copy(lay) for lay in prefix_cache.layers]
    _expand_cache(cache, n)
    ids = torch.zeros((n, S), dtype=torch.long, device=device)
    attention = torch.zeros((n, P + S), dtype=torch.long, device=device)
    attention[:, :P] = 1
    for i, r in enumerate(rests):
        ids[i, : len(r)] = torch.tensor(list(r), dtype=torch.long)
        attention[i, P: P + len(r)] = 1
    pos = (P + torch.arange(S, device=device)).unsqueeze(0).expand(n, -1)
    out = run_layers(model, embed(model, ids), 0, layer, pos, attention, cache)
    return [out[i, : len(r)] for i, r in enumerate(rests)]


def open_cache(model, examples_ids: Sequence[Sequence[int]], layer: int, cache_dir: str | os.PathLike,
               prefix_len: int, dtype: str = "float16",
               progress: Callable[[int, int], None] | None = None) -> TrunkCache:
    """Open (building what is missing) the cache of `examples_ids` for the input of ``layers[layer]``.

    `model` is the policy (its trunk is what is cached; it runs in eval mode, no grad). Examples already in the
    folder are reused; the rest are computed in shards, each committed as it finishes. `progress(done, total)`
    is called with token counts as the build goes.
    """
    from transformers.cache_utils import DynamicCache

    from learner.segment import decoder_parts

    if dtype not in DTYPES:
        raise TrunkCacheError(f"trunk cache dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    n_layers = num_layers(model)
    if not 1 <= layer < n_layers:
        raise TrunkCacheError(f"trunk cache layer {layer} is out of range for a model of {n_layers} layers")
    np_dtype, torch_dtype = DTYPES[dtype]
    inner, _ = decoder_parts(model)
    hidden = inner.config.hidden_size
    device = inner.embed_tokens.weight.device

    # the shared prefix (`prefix_len` tokens, stored once); every example must have tokens after it
    if prefix_len < 1 or common_prefix_len(examples_ids, cap=prefix_len) != prefix_len:
        raise TrunkCacheError(f"the examples do not share a prefix of {prefix_len} tokens (the trunk cache stores "
                              f"one shared prefix, at least the chat template's first token)")
    if any(len(x) <= prefix_len for x in examples_ids):
        raise TrunkCacheError(f"an example has no tokens after the shared prefix of {prefix_len}")
    prefix_ids = list(examples_ids[0][:prefix_len])
    digest = trunk_digest(model, layer)
    folder = Path(cache_dir) / cache_key(digest, layer, dtype, prefix_ids)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "trunk_digest": digest, "layer": layer, "dtype": dtype, "hidden_size": hidden,
            "prefix_ids": prefix_ids}
    meta_path = folder / "meta.json"
    if meta_path.exists():
        try:
            old = json.loads(meta_path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise TrunkCacheError(f"trunk cache {meta_path} is unreadable ({e}); delete {folder} to rebuild") from None
        if old != meta:
            raise TrunkCacheError(f"trunk cache {folder} was made for another trunk, layer, dtype or prefix than "
                                  f"its name says (meta.json differs); delete {folder} to rebuild it")
    else:
        write_json_atomic(meta_path, meta)

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            P = prefix_len
            prefix_cache = DynamicCache(config=inner.config)
            prefix_states = run_layers(model, embed(model, torch.tensor([prefix_ids], device=device)), 0, layer,
                                       torch.arange(P, device=device).unsqueeze(0),
                                       torch.ones((1, P), dtype=torch.long, device=device), prefix_cache)[0]
            prefix_path = folder / "prefix.npy"
            if not prefix_path.exists():
                with atomic_path(prefix_path) as tmp, open(tmp, "wb") as f:
                    np.save(f, prefix_states.to(torch_dtype).cpu().numpy().astype(np_dtype))
            prefix = np.load(prefix_path, mmap_mode="r")
            if prefix.shape != (P, hidden):
                raise TrunkCacheError(f"trunk cache {prefix_path} has shape {prefix.shape}, expected {(P, hidden)}; "
                                      f"delete {folder} to rebuild")

            entries = _read_shards(folder, hidden)
            todo, seen = [], set(entries)
            for ids in examples_ids:
                key = example_key(ids)
                if key not in seen:
                    seen.add(key)
                    todo.append((key, ids))
            total = sum(len(ids) - P for _, ids in todo)
            if todo:
                log.info("trunk cache %s: computing %d of %d examples (%d tokens) below layer %d", folder, len(todo),
                         len(examples_ids), total, layer)
            done, t0 = 0, time.time()
            next_shard = 1 + max((int(p.stem.split("_")[1]) for p in folder.glob("shard_*.json")), default=-1)
            chunk: list[tuple[str, np.ndarray]] = []
            chunk_rows = 0

            def commit() -> None:
                nonlocal next_shard, chunk, chunk_rows
                stem = folder / f"shard_{next_shard:05d}"
                data = np.concatenate([a for _, a in chunk], axis=0)
                index, off = {}, 0
                for key, a in chunk:
                    index[key] = [off, a.shape[0]]
                    off += a.shape[0]
                with atomic_path(stem.with_suffix(".npy")) as tmp, open(tmp, "wb") as f:
                    np.save(f, data)
                write_json_atomic(stem.with_suffix(".json"), index)
                arr = np.load(stem.with_suffix(".npy"), mmap_mode="r")
                for key, (o, n) in index.items():
                    entries[key] = (arr, o, n)
                next_shard += 1
                chunk, chunk_rows = [], 0

            todo.sort(key=lambda kv: len(kv[1]))  # batches of similar lengths: little padding
            for start in range(0, len(todo), BUILD_BATCH):
                group = todo[start:start + BUILD_BATCH]
                states = _states(model, [ids[P:] for _, ids in group], P, layer, prefix_cache, device)
                for (key, _), st in zip(group, states):
                    chunk.append((key, st.to(torch_dtype).cpu().numpy().astype(np_dtype)))
                    chunk_rows += st.shape[0]
                    done += st.shape[0]
                if progress is not None:
                    progress(done, total)
                if chunk_rows >= SHARD_TOKENS:
                    commit()
            if chunk:
                commit()
            if todo:
                log.info("trunk cache %s: %d tokens in %.0f s", folder, total, time.time() - t0)
    finally:
        model.train(was_training)
    return TrunkCache(folder, layer, P, prefix, entries, torch_dtype)
