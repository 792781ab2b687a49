"""Per-token policy-gradient losses for LoRA RL. Pure torch. (The group-normalised advantages the rollout workers
compute are in memroute/core/exchange.py.)

Notation, per sequence ``b`` and completion token ``t`` (only tokens with ``mask[b, t] = 1`` count):

- ``logp[b, t]``: log-probability of the sampled token under the policy being trained (carries the gradient);
- ``logq[b, t]``: log-probability under the policy that sampled it (the rollout engine; data, no gradient);
- ``A[b]``: the sequence's advantage, broadcast over its tokens;
- ``r[b, t] = exp(logp - logq)``: the importance ratio (1 in value when learner and sampler agree).

Loss kinds (``policy_loss(kind=...)``), per-token loss ``l[b, t]``:

- ``"is"`` (importance-sampled policy gradient; the reference project's loss)::

      l = -r * A                                    grad l = -A * r * grad logp

  On-policy (``r = 1``) this is REINFORCE with a baseline. The ratio is not clipped.

- ``"ppo"`` (PPO-clip, Schulman et al. 2017)::

      l = -min(r * A, clip(r, 1 - eps, 1 + eps) * A)

  The clipped branch is the active one (and the token's gradient is zero) where ``A > 0 and r > 1 + eps`` or
  ``A < 0 and r < 1 - eps``; ``clip_fraction`` is the fraction of valid tokens where that holds.

- ``"tis"`` (truncated importance sampling, for sampler/learner numerical mismatch, e.g. a vLLM sampler and an HF
  learner; Ionides 2008, Yao et al. 2025 "Your efficient RL framework secretly brings you off-policy RL training")::

      w = stopgrad(min(r, C))        l = -w * A * logp        grad l = -A * min(r, C) * grad logp

  ``C = tis_cap``. The gradient equals the IS gradient with the ratio truncated at ``C`` (for ``r <= C`` the two
  are identical in gradient); the loss *value* is a surrogate (it depends on ``logp``, not only on ``r``) and is not
  comparable to the other kinds. ``clip_fraction`` is the fraction of valid tokens with ``r > C``.

KL penalty to a reference policy (``ref_logprobs`` = ``logp_ref``, data), with ``d = logp_ref - logp``::

      k1 = logp - logp_ref = -d                     (unbiased estimator of KL(pi || ref); high variance, can be < 0)
      k3 = exp(d) - d - 1                           (Schulman's low-variance estimator; always >= 0)

``kl_coef * k`` is added to every token's loss when ``kl_coef > 0``; the ``kl`` stat (token-level mean of the chosen
estimator) is reported whenever ``ref_logprobs`` is given, also with ``kl_coef = 0``.

Aggregation over the batch (``aggregate=``):

- ``"token"`` (default): ``loss = sum_{b,t} mask * l / sum_{b,t} mask``, the mean over all valid tokens of the batch
  (every token weighs the same, so long completions weigh more; DAPO's token-level loss);
- ``"sequence"``: ``loss = mean_b( sum_t mask * l / sum_t mask )`` over the sequences that have at least one valid
  token (every sequence weighs the same; the GRPO paper's form).

Masked (padding) positions never influence the loss, the gradient or the stats: their inputs are replaced by zeros
before anything is computed, so even NaN or inf there is harmless. The loss is computed in float32 whatever the input
dtype. A non-finite loss raises ``NonFiniteLossError`` so the caller never takes an optimizer step on NaN.
"""

from __future__ import annotations

import torch
from torch import Tensor

from learner.config import AGGREGATES, KL_ESTIMATORS, LOSS_KINDS  # one definition; the config checks them at load


class NonFiniteLossError(ValueError):
    """The loss came out NaN or infinite; the batch must be skipped (never backpropagated / stepped on)."""


def _check_2d(name: str, t: Tensor, shape: torch.Size) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.shape != shape:
        raise ValueError(
            f"shape mismatch: {name} has shape {tuple(t.shape)}, expected {tuple(shape)} "
            f"(the shape of logprobs, [batch, completion_tokens])"
        )


def policy_loss(
    logprobs: Tensor,
    sampler_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    kind: str = "is",
    clip_eps: float = 0.2,
    tis_cap: float = 2.0,
    ref_logprobs: Tensor | None = None,
    kl_coef: float = 0.0,
    kl_estimator: str = "k3",
    aggregate: str = "token",
) -> tuple[Tensor, dict[str, float]]:
    """The policy-gradient loss of a batch of completions (see the module docstring for the formulas).

    Args:
        logprobs: ``[B, T]`` per-token log-probs of the sampled tokens under the trained policy (with grad).
        sampler_logprobs: ``[B, T]`` the same under the sampling policy (treated as data: detached).
        advantages: ``[B]`` one advantage per sequence, broadcast over its tokens (detached).
        mask: ``[B, T]`` 1 (or True) on real completion tokens, 0 on padding.
        kind: ``"is"`` | ``"ppo"`` | ``"tis"``.
        clip_eps: PPO clip range ``eps``.
        tis_cap: TIS truncation ``C`` of the importance weight.
        ref_logprobs: ``[B, T]`` reference-policy log-probs for the KL term (detached), or None.
        kl_coef: weight of the per-token KL penalty (used only when ``ref_logprobs`` is given).
        kl_estimator: ``"k1"`` | ``"k3"``.
        aggregate: ``"token"`` (mean over all valid tokens) | ``"sequence"`` (per-sequence token mean, then mean
            over sequences).

    Returns:
        ``(loss, stats)``: a scalar float32 tensor to backpropagate, and python floats: ``loss``, ``mean_ratio``,
        ``max_ratio`` (over valid tokens), ``clip_fraction`` (PPO: clipped branch active; TIS: ratio truncated; IS:
        0), ``num_tokens``, and ``kl`` (token-level mean of the chosen estimator) when ``ref_logprobs`` is given.

    Raises:
        ValueError: bad shapes (naming them), unknown ``kind`` / ``kl_estimator`` / ``aggregate``, bad
            hyper-parameters, or a mask with no valid token.
        NonFiniteLossError: the loss is NaN or infinite.
    """
    if kind not in LOSS_KINDS:
        raise ValueError(f"unknown loss kind {kind!r}; expected one of {', '.join(LOSS_KINDS)}")
    if kl_estimator not in KL_ESTIMATORS:
        raise ValueError(f"unknown kl_estimator {kl_estimator!r}; expected one of {', '.join(KL_ESTIMATORS)}")
    if aggregate not in AGGREGATES:
        raise ValueError(f"unknown aggregate {aggregate!r}; expected one of {', '.join(AGGREGATES)}")
    if not isinstance(logprobs, Tensor) or logprobs.dim() != 2:
        shape = tuple(logprobs.shape) if isinstance(logprobs, Tensor) else type(logprobs).__name__
        raise ValueError(f"logprobs must be a 2-D tensor [batch, completion_tokens], got {shape}")
    shape = logprobs.shape
    _check_2d("sampler_logprobs", sampler_logprobs, shape)
    _check_2d("mask", mask, shape)
    if ref_logprobs is not None:
        _check_2d("ref_logprobs", ref_logprobs, shape)
    if not isinstance(advantages, Tensor) or advantages.shape != shape[:1]:
        got = tuple(advantages.shape) if isinstance(advantages, Tensor) else type(advantages).__name__
        raise ValueError(
            f"shape mismatch: advantages has shape {got}, expected ({shape[0]},) (one per sequence of logprobs "
            f"{tuple(shape)})"
        )
    if kind == "ppo" and not clip_eps > 0:
        raise ValueError(f"clip_eps must be > 0, got {clip_eps}")
    if kind == "tis" and not tis_cap > 0:
        raise ValueError(f"tis_cap must be > 0, got {tis_cap}")
    if kl_coef < 0:
        raise ValueError(f"kl_coef must be >= 0, got {kl_coef}")

    valid = mask != 0
    n_valid = int(valid.sum())
    if n_valid == 0:
        raise ValueError("mask has no valid token: nothing to compute a loss on")
    vf = valid.to(torch.float32)
    zero = torch.zeros((), dtype=torch.float32, device=logprobs.device)

    # Zero the padding before any arithmetic: NaN/inf there must not leak into the loss or the gradient.
    logp = torch.where(valid, logprobs.to(torch.float32), zero)
    logq = torch.where(valid, sampler_logprobs.detach().to(torch.float32), zero)
    adv = advantages.detach().to(torch.float32).unsqueeze(1).expand(shape)

    ratio = torch.exp(logp - logq)
    if kind == "is":
        per_token = -ratio * adv
        clipped = torch.zeros_like(valid)
    elif kind == "ppo":
        unclipped_obj = ratio * adv
        clipped_obj = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv
        per_token = -torch.minimum(unclipped_obj, clipped_obj)
        clipped = ((adv > 0) & (ratio > 1.0 + clip_eps)) | ((adv < 0) & (ratio < 1.0 - clip_eps))
    else:  # tis
        weight = torch.clamp(ratio, max=tis_cap).detach()
        per_token = -weight * adv * logp
        clipped = ratio > tis_cap

    kl_tok = None
    if ref_logprobs is not None:
        ref = torch.where(valid, ref_logprobs.detach().to(torch.float32), zero)
        if kl_estimator == "k1":
            kl_tok = logp - ref
        else:
            d = ref - logp
            kl_tok = torch.exp(d) - d - 1.0
        if kl_coef > 0:
            per_token = per_token + kl_coef * kl_tok

    per_token = per_token * vf
    if aggregate == "token":
        loss = per_token.sum() / n_valid
    else:
        tokens_per_seq = vf.sum(dim=1)
        has_tokens = tokens_per_seq > 0
        seq_loss = per_token.sum(dim=1)[has_tokens] / tokens_per_seq[has_tokens]
        loss = seq_loss.mean()

    loss_value = float(loss.detach())
    if not torch.isfinite(loss.detach()):
        raise NonFiniteLossError(
            f"non-finite {kind} loss ({loss_value}) over {n_valid} valid tokens; max ratio "
            f"{float(ratio.detach()[valid].max())}: skip this batch (check the log-probs and advantages for NaN/inf)"
        )

    with torch.no_grad():
        r_valid = ratio[valid]
        stats = {
            "loss": loss_value,
            "mean_ratio": float(r_valid.mean()),
            "max_ratio": float(r_valid.max()),
            "clip_fraction": float(clipped[valid].float().mean()),
            "num_tokens": float(n_valid),
        }
        if kl_tok is not None:
            stats["kl"] = float(kl_tok[valid].mean())
    return loss, stats
