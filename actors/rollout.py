"""Rollout workers: an `Engine` that turns examples into scored groups of completions for the learner.

`RolloutWorker` is a plain class (usable and testable without Ray); `make_rollout_workers` starts N of them as
Ray actors with `max_restarts=-1`, so Ray restarts a worker whose process dies. A restarted worker starts from
the base weights at version 0 (its `__init__` runs again): the driver compares `version()` with the learner's
and pushes the weights again before using it.

A rollout: render each example's conversation with the one prompt function -> sample n completions per prompt
(one request per prompt, prompt prefilled once) -> reward every completion with `data.reward.reward_from_text`
against the gold categories -> GRPO advantages per group (`memroute.core.exchange.group_advantages`) -> one
`memroute.core.exchange.Group` per example. Groups whose rewards are all equal (advantage 0 everywhere) are returned
too: the driver drops them and counts them.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

from actors.engine import Engine, EngineConfig

log = logging.getLogger(__name__)


@dataclass
class RolloutConfig:
    engine: EngineConfig = field(default_factory=EngineConfig)
    n: int = 8  # samples per prompt (the GRPO group size)
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 48
    num_workers: int = 1
    cpus_per_worker: int = 1
    use_gpu: bool = False
    reward: str = "routing"  # routing: data.reward | toy_low_ids: share of token ids in the lower half of the
    # vocabulary, a dense and trivially learnable signal for checking that the loop learns at all
    normalize_std: bool = True  # GRPO (divide by the group's std) vs Dr. GRPO (mean-centred only)

    def __post_init__(self):
        from memroute.core.config import check_choice, check_min

        for name in ("n", "max_tokens", "num_workers"):
            check_min(name, getattr(self, name), 1)
        check_min("cpus_per_worker", self.cpus_per_worker, 0, inclusive=False)
        check_min("temperature", self.temperature, 0)
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        check_choice("reward", self.reward, ("routing", "toy_low_ids"))


def _as_dict(example) -> dict:
    if isinstance(example, dict):
        return example
    if hasattr(example, "to_dict"):  # data.schema.Example
        return example.to_dict()
    raise TypeError(f"an example must be a dict (id, conversation, categories) or an Example, got {type(example)}")


class RolloutWorker:
    def __init__(self, cfg: RolloutConfig | None = None):
        self.cfg = cfg or RolloutConfig()
        self.engine = Engine(self.cfg.engine)

    def ready(self) -> bool:
        return True

    def version(self) -> int:
        return self.engine.version

    def pid(self) -> int:
        return os.getpid()

    def rollout(self, examples: list, n: int | None = None) -> list:
        from data.parser import parse_answer
        from data.reward import reward_from_text
        from memroute.core.exchange import Group, group_advantages

        n = n or self.cfg.n
        examples = [_as_dict(ex) for ex in examples]
        if not examples:
            return []
        for ex in examples:
            missing = [k for k in ("id", "conversation", "categories") if k not in ex]
            if missing:
                raise ValueError(f"example {ex.get('id', '?')!r} lacks {', '.join(missing)}")
        start = time.perf_counter()
        prompts = self.engine.render([ex["conversation"] for ex in examples])
        sampled = self.engine.sample(prompts, n, temperature=self.cfg.temperature, top_p=self.cfg.top_p,
                                     max_tokens=self.cfg.max_tokens)
        seconds = time.perf_counter() - start
        groups = []
        for ex, samples in zip(examples, sampled):
            breakdowns = [self._reward(s, ex["categories"], reward_from_text) for s in samples]
            rewards = [b.total for b in breakdowns]
            advantages = group_advantages(rewards, len(samples), normalize_std=self.cfg.normalize_std).tolist()
            versions = {s.version for s in samples}
            if len(versions) != 1:  # cannot happen: a request is sampled under one weight version
                raise RuntimeError(f"samples of one prompt carry versions {sorted(versions)}")
            groups.append(Group(
                prompt_ids=list(samples[0].prompt_token_ids),
                completion_ids=[list(s.token_ids) for s in samples],
                sampler_logprobs=[list(s.logprobs) for s in samples],
                advantages=advantages,
                policy_version=samples[0].version,
                meta={
                    "id": ex["id"],
                    "rewards": rewards,
                    "reward_components": [b.as_dict() for b in breakdowns],
                    "texts": [s.text for s in samples],
                    "parsed": [parse_answer(s.text).labels for s in samples],
                    "finish_reasons": [s.finish_reason for s in samples],
                    "sample_seconds": seconds,
                },
            ))
        return groups

    def _reward(self, sample, gold, reward_from_text):
        from data.reward import RewardBreakdown

        if self.cfg.reward == "routing":
            return reward_from_text(sample.text, gold)
        if self.cfg.reward == "toy_low_ids":
            half = len(self.engine.tokenizer) // 2
            share = sum(t < half for t in sample.token_ids) / max(len(sample.token_ids), 1)
            return RewardBreakdown(share, 0.0, 0.0, 0.0, 0.0, True, 0)
        raise ValueError(f"unknown reward {self.cfg.reward!r}: use routing or toy_low_ids")

    def greedy(self, examples: list, max_tokens: int | None = None) -> list[str]:
        """Greedy answers for evaluation, under the current weights."""
        return self.engine.route([_as_dict(ex)["conversation"] for ex in examples], max_tokens or self.cfg.max_tokens)

    def update_weights(self, version: int, tensors: dict, lora_config) -> float:
        """Load the learner's LoRA tensors as `version`; returns the seconds the push took in the engine."""
        return self.engine.load_weights(version, tensors, lora_config)

    def probe(self, prompt_ids: list[int], completion_ids: list[int]) -> list[float]:
        """The engine's logprobs of a completion (to check a weight push against the learner)."""
        return self.engine.score(prompt_ids, completion_ids)

    def shutdown(self) -> None:
        self.engine.shutdown()


def make_rollout_workers(cfg: RolloutConfig, name: str | None = None, placement_group=None,
                         first_bundle: int = 0) -> list:
    """`cfg.num_workers` RolloutWorker Ray actors (restarted by Ray if their process dies). With `name`, worker i
    is the named actor `<name>-<i>` (how it shows in the dashboard; `ray.get_actor` finds it); with a placement
    group, worker i runs (and restarts) in bundle `first_bundle + i`."""
    import ray

    from memroute.core.placement import in_bundle

    actor_cls = ray.remote(RolloutWorker)
    # on GPUs a worker holds its engine's whole tensor-parallel group (vLLM's multiprocessing executor then
    # spreads the shards over the GPUs Ray made visible to the actor)
    gpus = cfg.engine.tensor_parallel_size if cfg.use_gpu else 0
    options = dict(num_cpus=cfg.cpus_per_worker, num_gpus=gpus, max_restarts=-1)
    return [actor_cls.options(**options, **in_bundle(placement_group, first_bundle + i),
                              name=f"{name}-{i}" if name else None).remote(cfg)
            for i in range(cfg.num_workers)]


class Rollouts:
    """The rollout workers, with weight pushes and restart handling.

    Any call to a worker whose process died (a rollout, a push, a probe) waits for Ray to restart it, gives it
    the current weights again (a restarted worker is back on the base weights at version 0) and repeats the call,
    up to `max_retries` times. Results come only from calls that returned, so nothing is lost or duplicated."""

    def __init__(self, cfg: RolloutConfig, max_retries: int = 3, name: str | None = None, placement_group=None,
                 first_bundle: int = 0):
        import ray

        self.cfg, self.max_retries = cfg, max_retries
        self.workers = make_rollout_workers(cfg, name, placement_group, first_bundle)
        ray.get([w.ready.remote() for w in self.workers])
        self.weights: tuple | None = None  # (version, ObjectRef of the tensors, lora_config)
        self.version = 0
        self.restarts = 0  # worker restarts seen by this driver

    def _get(self, i: int, future, method: str, *args):
        """ray.get(future) of worker i's `method(*args)`; after a worker death, revive it and call again."""
        import ray
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

        for attempt in range(self.max_retries + 1):
            try:
                return ray.get(future)
            except (RayActorError, ActorDiedError, ActorUnavailableError) as e:
                if attempt == self.max_retries:
                    raise RuntimeError(f"rollout worker {i} failed {attempt + 1} times in {method}; "
                                       f"last error: {e}") from e
                log.warning("rollout worker %d died during %s (%s); waiting for its restart and retrying", i, method, e)
                self._revive(i)
                future = getattr(self.workers[i], method).remote(*args)

    def _revive(self, i: int, timeout_s: float = 600) -> None:
        """Wait until Ray has restarted worker i, then give it the current weights."""
        import ray
        from ray.exceptions import RayActorError

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                ray.get(self.workers[i].ready.remote(), timeout=60)
                break
            except (RayActorError, ray.exceptions.GetTimeoutError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"rollout worker {i} did not come back within {timeout_s:.0f}s") from None
                time.sleep(2)
        self.restarts += 1
        if self.weights is not None:
            ray.get(self.workers[i].update_weights.remote(*self.weights))

    def push(self, version: int, tensors: dict, lora_config: dict) -> float:
        """Send the weights to every worker: one object-store copy that every worker reads (Ray resolves the
        ObjectRef argument on the worker's node); returns seconds."""
        import ray

        start = time.perf_counter()
        self.version = version
        self.weights = (version, ray.put(tensors), lora_config)
        futures = [w.update_weights.remote(*self.weights) for w in self.workers]
        for i, future in enumerate(futures):
            self._get(i, future, "update_weights", *self.weights)
        return time.perf_counter() - start

    def _shares(self, examples: list[dict]) -> list[tuple[int, list[dict]]]:
        """(worker index, its examples): round-robin over the workers, empty shares left out."""
        shares = [(i, examples[i::len(self.workers)]) for i in range(len(self.workers))]
        return [(i, share) for i, share in shares if share]

    def submit(self, examples: list[dict]) -> list:
        """Split examples over the workers; returns [(worker index, examples, future)]."""
        return [(i, share, self.workers[i].rollout.remote(share, self.cfg.n)) for i, share in self._shares(examples)]

    def collect(self, submitted: list) -> list:
        """Wait for the shares (retrying a dead worker's share) and check each came back whole."""
        groups = []
        for i, share, future in submitted:
            result = self._get(i, future, "rollout", share, self.cfg.n)
            got = [g.meta["id"] for g in result or []]
            if got != [ex["id"] for ex in share]:
                raise RuntimeError(f"rollout worker {i} returned {len(got)} groups for {len(share)} conversations"
                                   + (" (no samples)" if not got else f": ids {got[:5]}"))
            empty = [g.meta["id"] for g in result if not g.completion_ids]
            if empty:
                raise RuntimeError(f"rollout worker {i} returned no samples for conversations {empty[:5]}")
            groups.extend(result)
        return groups

    def probe(self, prompt_ids: list[int], completion_ids: list[int]) -> list[float]:
        return self._get(0, self.workers[0].probe.remote(prompt_ids, completion_ids), "probe", prompt_ids,
                         completion_ids)

    def greedy_texts(self, examples: list[dict]) -> list[str]:
        futures = [(i, share, self.workers[i].greedy.remote(share)) for i, share in self._shares(examples)]
        texts: dict[str, str] = {}
        for i, share, future in futures:
            texts.update({ex["id"]: t for ex, t in zip(share, self._get(i, future, "greedy", share))})
        return [texts[ex["id"]] for ex in examples]

    def shutdown(self) -> None:
        import ray

        for w in self.workers:
            ray.kill(w, no_restart=True)
