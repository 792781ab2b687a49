"""One placement group for an RL run: the learner actors' bundles first, then one per rollout worker.

Reserving everything up front (Ray's placement groups) means a run either gets all its resources or waits,
never half-starts with a learner that holds a GPU while rollout workers queue for one; and each actor is pinned
to its bundle, so a restarted rollout worker comes back in the same slot. `PACK` (the default) keeps the
bundles on as few nodes as possible, which keeps the weight push on one node's object store where it can;
`SPREAD` puts them on different nodes when the cluster has several (e.g. one GPU per node).
"""

from __future__ import annotations

from memroute.core.config import ConfigError
from memroute.core.errors import MemrouteError

STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


class PlacementError(MemrouteError, RuntimeError):
    """The cluster could not give the run the resources it asked for."""


def rl_bundles(learner_cfg, rollout_cfg) -> list[dict[str, float]]:
    """Bundles in order: `num_learners` learner bundles, then `num_workers` rollout bundles."""
    learner = {"CPU": float(learner_cfg.cpus_per_learner)}
    if learner_cfg.use_gpu:
        learner["GPU"] = 1.0
    rollout = {"CPU": float(rollout_cfg.cpus_per_worker)}
    if rollout_cfg.use_gpu:  # a worker holds its engine's whole tensor-parallel group
        rollout["GPU"] = float(rollout_cfg.engine.tensor_parallel_size)
    return [dict(learner) for _ in range(learner_cfg.num_learners)] + \
        [dict(rollout) for _ in range(rollout_cfg.num_workers)]


def reserve(bundles: list[dict[str, float]], strategy: str = "PACK", name: str = "", timeout_s: float = 600):
    """Create the placement group and wait until it is placed; on timeout remove it and name what is missing."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    if strategy not in STRATEGIES:
        raise ConfigError(f"placement strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    pg = placement_group(bundles, strategy=strategy, name=name)
    try:
        ray.get(pg.ready(), timeout=timeout_s)
    except ray.exceptions.GetTimeoutError:
        remove_placement_group(pg)
        need: dict[str, float] = {}
        for b in bundles:
            for k, v in b.items():
                need[k] = need.get(k, 0.0) + v
        raise PlacementError(f"placement group {name or '(unnamed)'} ({strategy}, bundles {bundles}; {need} in all) "
                             f"was not placed within {timeout_s:.0f}s; the cluster has {ray.cluster_resources()} "
                             f"of which {ray.available_resources()} free") from None
    return pg


def in_bundle(pg, index: int) -> dict:
    """Actor options that pin an actor to bundle `index` of `pg`; {} without a group. Tasks the actor starts are
    not captured (vLLM's own workers, e.g. a Ray executor for tensor parallelism, place themselves)."""
    if pg is None:
        return {}
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    return {"scheduling_strategy": PlacementGroupSchedulingStrategy(
        placement_group=pg, placement_group_bundle_index=index)}


def release(pg) -> None:
    if pg is not None:
        from ray.util.placement_group import remove_placement_group

        remove_placement_group(pg)
