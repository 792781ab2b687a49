"""What the rollout workers hand the learner: `Group`s of scored completions, with group-normalised advantages.

Both sides of the RL loop use these types and nothing else of each other: `actors/rollout.py` builds groups,
`learner/actor.py` trains on them, and the RL driver (`learner/rl.py`) carries them from one to the other.
torch is imported only by the advantage functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from torch import Tensor


@dataclass
class Group:
    """N sampled completions of one prompt, as the rollout workers return them."""
    prompt_ids: list[int]
    completion_ids: list[list[int]]
    sampler_logprobs: list[list[float]]  # per completion token, from the sampler
    advantages: list[float]  # one per completion
    policy_version: int = 0  # the adapter version that sampled them
    meta: dict = field(default_factory=dict)

    def n_tokens(self) -> int:
        return sum(len(c) for c in self.completion_ids)

    def validate(self) -> None:
        n = len(self.completion_ids)
        if n == 0 or not self.prompt_ids:
            raise ValueError("a group needs a prompt and at least one completion")
        if len(self.sampler_logprobs) != n or len(self.advantages) != n:
            raise ValueError(f"group has {n} completions but {len(self.sampler_logprobs)} logprob rows and "
                             f"{len(self.advantages)} advantages")
        for i, (c, lp) in enumerate(zip(self.completion_ids, self.sampler_logprobs)):
            if len(c) != len(lp) or not c:
                raise ValueError(f"completion {i}: {len(c)} tokens but {len(lp)} sampler logprobs")


def _rewards_tensor(rewards: Sequence[float] | Tensor, group_size: int) -> Tensor:
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be a positive int, got {group_size!r}")
    import torch

    r = rewards.detach() if isinstance(rewards, torch.Tensor) else torch.as_tensor(list(rewards))
    r = r.to(torch.float32)
    if r.dim() != 1:
        raise ValueError(f"rewards must be 1-D (one per completion), got shape {tuple(r.shape)}")
    if r.numel() % group_size != 0:
        raise ValueError(
            f"{r.numel()} rewards do not split into groups of {group_size} (the rewards of a prompt's "
            f"completions must be consecutive, {group_size} per prompt)"
        )
    if not torch.isfinite(r).all():
        bad = torch.nonzero(~torch.isfinite(r)).flatten().tolist()
        raise ValueError(f"non-finite rewards at positions {bad[:10]}")
    return r


def group_advantages(
    rewards: Sequence[float] | Tensor, group_size: int, normalize_std: bool = True, eps: float = 1e-6
) -> Tensor:
    """GRPO advantages: each reward minus its group's mean, divided by the group's std when ``normalize_std``.

    ``rewards`` holds ``G = len(rewards) / group_size`` consecutive groups (one prompt's completions each)::

        A_i = (r_i - mean_g)                      normalize_std=False (Dr. GRPO)
        A_i = (r_i - mean_g) / (std_g + eps)      normalize_std=True  (GRPO)

    ``std_g`` is the population std of the group (divides by ``group_size``, not ``group_size - 1``), so a group of
    one is well defined (advantage 0). A group whose rewards are all equal gets advantage 0 for every member (see
    ``equal_reward_groups``). Returns a float32 tensor of ``len(rewards)``.
    """
    r = _rewards_tensor(rewards, group_size)
    g = r.view(-1, group_size)
    centred = g - g.mean(dim=1, keepdim=True)
    if normalize_std:
        centred = centred / (g.std(dim=1, correction=0, keepdim=True) + eps)
    return centred.reshape(-1)


def equal_reward_groups(rewards: Sequence[float] | Tensor, group_size: int, atol: float = 0.0) -> list[int]:
    """Indices of the groups (0-based) whose rewards are all equal (max - min <= atol); they carry no signal."""
    import torch

    r = _rewards_tensor(rewards, group_size)
    g = r.view(-1, group_size)
    spread = g.max(dim=1).values - g.min(dim=1).values
    return torch.nonzero(spread <= atol).flatten().tolist()


def summarize(groups: list[Group]) -> dict:
    """Mean reward and its components over every sample of `groups` (the RL loop's per-step row)."""
    comps = [c for g in groups for c in g.meta["reward_components"]]
    n = max(len(comps), 1)
    return {
        "reward": sum(c["total"] for c in comps) / n,
        "f1": sum(c["f1"] for c in comps) / n,
        "temporal": sum(c["temporal"] for c in comps) / n,
        "parity": sum(c["parity"] for c in comps) / n,
        "efficiency": sum(c["efficiency"] for c in comps) / n,
        "parse_failure_rate": sum(not c["parsed"] for c in comps) / n,
        "samples": len(comps),
    }
