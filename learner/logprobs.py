"""Per-token log-probs of completions given prompts, under a causal LM (plain HF or peft-wrapped), with gradients.

Two ways to the same numbers:

- ``sequence_logprobs`` (naive): every row is ``prompt + completion``, right-padded into one batch, one forward.
  Each row recomputes its prompt.
- ``group_logprobs`` (shared prefix): the GRPO case, N completions of ONE prompt. The prompt runs once (batch 1,
  ``use_cache=True``, graph kept), its KV cache is broadcast to N rows as a stride-0 ``expand`` view (no copy), and
  the N completions run as one right-padded batch on top of it. The prompt's computation is shared: its activations
  are computed once and, in the backward, the gradients of the N rows flowing into the cached keys/values are summed
  by the ``expand`` backward and go through the prompt's graph once. With a prompt of P tokens and completions of
  ~C tokens that is about ``P + N*C`` token-positions instead of ``N*(P + C)``.

Token ``j`` of a completion is scored by the logits at the position before it: the prompt's last position for
``j = 0``, completion position ``j - 1`` otherwise. The last completion token is therefore never fed to the model
(nothing is scored from its logits), in both paths.

Logits are computed only at the positions that score a completion token (``logits_to_keep``), and log-softmax in
float32 only on those rows, so the ``[batch, seq, vocab]`` logits of the whole sequence are never materialised.

KV cache layout (transformers 5.x): ``DynamicCache.layers[i]`` is a ``DynamicLayer`` holding ``.keys`` / ``.values``
of shape ``[batch, kv_heads, seq, head_dim]``, and ``update`` appends with ``torch.cat`` along ``seq``. We replace
each layer's 1-row tensors with ``.expand(N, ...)`` views (``Cache.batch_repeat_interleave`` would copy). The
completion forward's ``cat`` then materialises ``[N, kv_heads, P + L, head_dim]`` per layer (a memory copy, no
FLOPs); the matmuls over the prompt keys are the only per-row prompt cost left.

Gradient checkpointing drops the KV cache in training mode (transformers sets ``past_key_values=None`` in
checkpointed layers), so ``group_logprobs`` refuses a model with checkpointing enabled in training mode.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


def _check_ids(name: str, ids) -> list[int]:
    if isinstance(ids, Tensor):
        if ids.dim() != 1:
            raise ValueError(f"{name} must be a 1-D sequence of token ids, got shape {tuple(ids.shape)}")
        ids = ids.tolist()
    try:
        out = [int(t) for t in ids]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a sequence of int token ids") from None
    if any(t < 0 for t in out):
        raise ValueError(f"{name} has negative token ids")
    return out


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _pad_id(model) -> int:
    cfg = getattr(model, "config", None)
    pad = getattr(cfg, "pad_token_id", None)
    if isinstance(pad, int) and pad >= 0:
        return pad
    eos = getattr(cfg, "eos_token_id", None)
    if isinstance(eos, (list, tuple)):
        eos = eos[0] if eos else None
    return eos if isinstance(eos, int) and eos >= 0 else 0


def _score(logits: Tensor, targets: Tensor, return_entropy: bool) -> tuple[Tensor, Tensor | None]:
    """``logits [K, V]`` (any dtype) and ``targets [K]`` -> float32 log-probs ``[K]`` and optionally entropies."""
    logp_all = torch.log_softmax(logits.float(), dim=-1)
    logp = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    ent = None
    if return_entropy:
        with torch.no_grad():
            ent = -(logp_all.exp() * logp_all).sum(-1)
    return logp, ent


def _split(flat: Tensor, lengths: list[int]) -> list[Tensor]:
    return list(torch.split(flat, lengths)) if lengths else []


def token_entropy(logits: Tensor) -> Tensor:
    """Entropy ``-sum_v p_v log p_v`` (nats) of the distribution at each position of ``logits [..., V]``, float32."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def sequence_logprobs(
    model,
    prompt_ids: Sequence[Sequence[int]],
    completion_ids: Sequence[Sequence[int]],
    return_entropy: bool = False,
) -> list[Tensor] | tuple[list[Tensor], list[Tensor]]:
    """Naive path: per-token log-probs of ``completion_ids[i]`` after ``prompt_ids[i]``, every row computed in full.

    Rows are ``prompt + completion[:-1]`` right-padded into one batch (padding masked out), one forward. Returns a list
    of float32 1-D tensors, ``len(completion_ids[i])`` each, differentiable w.r.t. the model's trainable parameters.
    With ``return_entropy``, also a list of the (detached) entropies of the model's distribution at the same
    positions.
    """
    if len(prompt_ids) != len(completion_ids):
        raise ValueError(f"{len(prompt_ids)} prompts but {len(completion_ids)} completions")
    prompts = [_check_ids(f"prompt_ids[{i}]", p) for i, p in enumerate(prompt_ids)]
    comps = [_check_ids(f"completion_ids[{i}]", c) for i, c in enumerate(completion_ids)]
    for i, p in enumerate(prompts):
        if not p:
            raise ValueError(f"prompt_ids[{i}] is empty: the first completion token needs a context")
    lengths = [len(c) for c in comps]
    device = _device(model)
    if not prompts or sum(lengths) == 0:
        empty = [torch.zeros(n, device=device) for n in lengths]
        return (empty, [e.clone() for e in empty]) if return_entropy else empty

    rows = [p + c[:-1] for p, c in zip(prompts, comps)]
    width = max(len(r) for r in rows)
    pad = _pad_id(model)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        input_ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        attention[i, : len(r)] = 1
    position_ids = torch.arange(width).unsqueeze(0).expand(len(rows), -1)

    # Only the positions that score a completion token: [min_i(P_i) - 1, max_i(P_i + C_i - 1)).
    scoring = [(len(p) - 1, len(p) - 1 + n) for p, n in zip(prompts, lengths) if n > 0]
    start, stop = min(s for s, _ in scoring), max(e for _, e in scoring)
    keep = torch.arange(start, stop, device=device)
    out = model(
        input_ids=input_ids.to(device),
        attention_mask=attention.to(device),
        position_ids=position_ids.to(device),
        use_cache=False,
        logits_to_keep=keep,
    )
    logits = out.logits  # [B, stop - start, V]

    b_idx, t_idx, targets = [], [], []
    for i, (p, c) in enumerate(zip(prompts, comps)):
        for j, tok in enumerate(c):
            b_idx.append(i)
            t_idx.append(len(p) - 1 + j - start)
            targets.append(tok)
    sel = logits[torch.tensor(b_idx, device=device), torch.tensor(t_idx, device=device)]  # [sum C, V]
    logp, ent = _score(sel, torch.tensor(targets, device=device), return_entropy)
    if return_entropy:
        return _split(logp, lengths), _split(ent, lengths)
    return _split(logp, lengths)


def _expand_cache(cache, n: int):
    """Broadcast a batch-1 KV cache to ``n`` rows in place, as stride-0 views where the layer type allows it."""
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    if layers is not None and all(isinstance(layer, DynamicLayer) for layer in layers):
        for layer in layers:
            if layer.is_initialized and layer.keys is not None and layer.keys.numel() > 0:
                if layer.keys.shape[0] != 1:
                    raise ValueError(f"expected a batch-1 prompt cache, got keys of shape {tuple(layer.keys.shape)}")
                layer.keys = layer.keys.expand(n, -1, -1, -1)
                layer.values = layer.values.expand(n, -1, -1, -1)
        return cache
    if hasattr(cache, "batch_repeat_interleave"):  # other cache layouts: a copy, still correct
        cache.batch_repeat_interleave(n)
        return cache
    raise TypeError(f"cannot broadcast a KV cache of type {type(cache).__name__} to {n} rows")


def _checkpointing_in_training(model) -> bool:
    if not model.training:
        return False
    return any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules())


def group_logprobs(
    model,
    prompt_ids: Sequence[int],
    completion_ids: Sequence[Sequence[int]],
    return_entropy: bool = False,
) -> list[Tensor] | tuple[list[Tensor], list[Tensor]]:
    """Shared-prefix path: per-token log-probs of N completions of ONE prompt, the prompt computed once.

    Same return value as ``sequence_logprobs(model, [prompt_ids] * N, completion_ids)`` (equal up to float
    rounding, and so are the gradients).

    1. ``model(prompt, use_cache=True, logits_to_keep=1)`` with the autograd graph kept: the KV cache and the
       last-position logits (which score every completion's first token).
    2. The cache's layers are expanded to N rows (stride-0 views).
    3. ``completion[:-1]`` of every row, right-padded to ``L = max(len) - 1``, runs on the cache with
       ``position_ids = P + arange(L)`` and an attention mask of ``[N, P + L]`` (prompt ones, completion padding
       zeros); its logits at position ``j`` score completion token ``j + 1``. Skipped when every completion has one
       token.
    """
    prompt = _check_ids("prompt_ids", prompt_ids)
    comps = [_check_ids(f"completion_ids[{i}]", c) for i, c in enumerate(completion_ids)]
    if not prompt:
        raise ValueError("prompt_ids is empty: the first completion token needs a context")
    if _checkpointing_in_training(model):
        raise ValueError(
            "group_logprobs needs the prompt's KV cache, which gradient checkpointing drops in training mode; "
            "use sequence_logprobs, or disable gradient checkpointing"
        )
    lengths = [len(c) for c in comps]
    n = len(comps)
    device = _device(model)
    if n == 0 or sum(lengths) == 0:
        empty = [torch.zeros(k, device=device) for k in lengths]
        return (empty, [e.clone() for e in empty]) if return_entropy else empty
    P = len(prompt)

    out = model(
        input_ids=torch.tensor([prompt], dtype=torch.long, device=device),
        attention_mask=torch.ones((1, P), dtype=torch.long, device=device),
        position_ids=torch.arange(P, device=device).unsqueeze(0),
        use_cache=True,
        logits_to_keep=1,
    )
    first_logits = out.logits[0, -1]  # [V]: scores token 0 of every completion
    cache = out.past_key_values
    if cache is None or cache.get_seq_length() != P:
        got = None if cache is None else cache.get_seq_length()
        raise RuntimeError(f"the prompt forward returned no usable KV cache (length {got}, expected {P})")

    # Rows of the flat [sum C, V] logits, in output order (row i's tokens 0..C_i-1).
    targets: list[int] = []
    L = max(lengths) - 1
    rest_logits = None
    if L > 0:
        cache = _expand_cache(cache, n)
        pad = _pad_id(model)
        input_ids = torch.full((n, L), pad, dtype=torch.long)
        attention = torch.zeros((n, P + L), dtype=torch.long)
        attention[:, :P] = 1
        for i, c in enumerate(comps):
            fed = c[:-1]
            if fed:
                input_ids[i, : len(fed)] = torch.tensor(fed, dtype=torch.long)
                attention[i, P : P + len(fed)] = 1
        position_ids = (P + torch.arange(L)).unsqueeze(0).expand(n, -1)
        rest_logits = model(
            input_ids=input_ids.to(device),
            attention_mask=attention.to(device),
            position_ids=position_ids.to(device),
            past_key_values=cache,
            use_cache=True,
        ).logits  # [N, L, V]

    b_idx, t_idx = [], []
    order = []  # for each output token: -1 for the first-token logits, else an index into (b_idx, t_idx)
    for i, c in enumerate(comps):
        for j, tok in enumerate(c):
            targets.append(tok)
            if j == 0:
                order.append(-1)
            else:
                order.append(len(b_idx))
                b_idx.append(i)
                t_idx.append(j - 1)
    if b_idx:
        rest = rest_logits[torch.tensor(b_idx, device=device), torch.tensor(t_idx, device=device)]  # [K, V]
        # Interleave: first-token rows are the prompt's last logits, the others come from `rest`.
        stacked = torch.cat([first_logits.unsqueeze(0), rest], dim=0)
        index = torch.tensor([0 if o < 0 else o + 1 for o in order], device=device)
        sel = stacked.index_select(0, index)
    else:
        sel = first_logits.unsqueeze(0).expand(len(targets), -1)
    logp, ent = _score(sel, torch.tensor(targets, device=device), return_entropy)
    if return_entropy:
        return _split(logp, lengths), _split(ent, lengths)
    return _split(logp, lengths)
