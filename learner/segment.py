"""Running a slice of a decoder's layers, and the shared-prefix forward built on it.

A causal LM here is ``embed -> layers[0:N] -> norm -> lm_head``. Two things need a slice of that stack:

- the frozen-trunk cache (`learner.trunk_cache`): with LoRA only in ``layers[L:N]``, the output of ``layers[0:L]``
  never changes, so it is computed once and training runs ``layers[L:N]`` on it;
- the shared prefix: every SFT prompt starts with the same tokens (chat template + system message), so a
  micro-batch runs them once (batch 1, KV cache kept with its graph), broadcasts the cache as stride-0 views to
  each group of rows of similar length (`length_groups`) and runs those examples' rests on top of it. The
  gradients of all rows flowing into the prefix's keys/values are summed by the ``expand`` backward, so the
  result equals the per-row forward up to float rounding (`learner.logprobs.group_logprobs` does the same for N
  completions of one RL prompt).

`prefix_answer_ce` is both at once: ``start=0`` runs the whole model from token embeddings, ``start=L`` runs the
top layers from cached layer-L states. Logits are computed only at the positions that score an answer token.

The layer loop mirrors transformers' ``LlamaModel.forward`` (rotary embeddings, ``create_causal_mask`` sized
against the cache layer of the first layer run); models with that layout (Llama, Mistral, Qwen2, SmolLM2) work,
others are refused by name.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import Tensor


class SegmentError(TypeError):
    """The model does not have the decoder layout a layer slice needs."""


def decoder_parts(model):
    """(decoder, lm_head) of a plain HF causal LM, a peft wrapper of one, or a DDP wrapper of either."""
    m = getattr(model, "module", model)  # DDP
    if hasattr(m, "get_base_model"):  # peft
        m = m.get_base_model()
    inner, head = getattr(m, "model", None), getattr(m, "lm_head", None)
    for part in ("layers", "rotary_emb", "norm", "embed_tokens"):
        if inner is None or not hasattr(inner, part) or head is None:
            raise SegmentError(f"{type(m).__name__} has no {part!r} in the decoder layout memroute slices "
                               f"(model.layers / rotary_emb / norm / embed_tokens, lm_head)")
    return inner, head


def num_layers(model) -> int:
    return len(decoder_parts(model)[0].layers)


def run_layers(model, hidden: Tensor, start: int, stop: int | None, position_ids: Tensor,
               attention_mask: Tensor | None, cache=None) -> Tensor:
    """``layers[start:stop]`` on ``hidden [B, T, H]`` (the input of layer `start`); returns the output of layer
    ``stop - 1`` (no final norm). With `cache` (a DynamicCache) the layers read and extend it."""
    from transformers.masking_utils import create_causal_mask

    inner, _ = decoder_parts(model)
    mask = create_causal_mask(config=inner.config, inputs_embeds=hidden, attention_mask=attention_mask,
                              past_key_values=cache, position_ids=position_ids, layer_idx=start)
    position_embeddings = inner.rotary_emb(hidden, position_ids=position_ids)
    for layer in inner.layers[start:stop]:
        hidden = layer(hidden, attention_mask=mask, position_embeddings=position_embeddings,
                       position_ids=position_ids, past_key_values=cache, use_cache=cache is not None)
    return hidden


def embed(model, ids: Tensor) -> Tensor:
    return decoder_parts(model)[0].embed_tokens(ids)


def common_prefix_len(sequences: Sequence[Sequence[int]], cap: int | None = None) -> int:
    """Length of the longest token prefix all `sequences` share (at most `cap`)."""
    if not sequences:
        return 0
    first = sequences[0]
    n = min(len(s) for s in sequences)
    if cap is not None:
        n = min(n, cap)
    for s in sequences[1:]:
        i = 0
        while i < n and s[i] == first[i]:
            i += 1
        n = i
        if n == 0:
            break
    return n


def length_groups(lengths: Sequence[int], pad_tokens: int | None) -> list[list[int]]:
    """Rows to run together, each group right-padded to its longest: in order of length, a row joins the group
    before it while the padding that adds stays within `pad_tokens` (what a separate run of the layers costs,
    in tokens); None: all rows in one group."""
    if pad_tokens is None:
        return [list(range(len(lengths)))]
    groups: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: (lengths[i], i)):
        if groups and len(groups[-1]) * (lengths[i] - lengths[groups[-1][-1]]) <= pad_tokens:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def prefix_answer_ce(model, prefix: Tensor, rows: Sequence[Tensor], targets: Sequence[Sequence[int]],
                     n_answer: Sequence[int], start: int = 0,
                     weights: Sequence[Sequence[float] | None] | None = None,
                     pad_tokens: int | None = None) -> Tensor:
    """Summed cross-entropy of each row's answer tokens, the shared prefix run once (``weights[i]``, when given
    and not None, weighs row i's answer tokens one by one).

    `prefix` is ``[P, H]``: the input of layer `start` at the prefix positions (token embeddings when
    ``start == 0``). ``rows[i]`` is ``[S_i, H]``, the same for the rest of example i (its prompt after the prefix
    and its answer), ``targets[i]`` that rest's token ids and ``n_answer[i]`` how many of its last tokens are the
    answer. Token t of a row is scored by the logits of position t - 1; the prefix is never scored (an answer
    starts after the prefix: callers keep ``n_answer[i] < S_i``).

    The rows run after the prefix (its keys and values shared) in groups of similar length, each right-padded to
    its longest (`length_groups`; ``pad_tokens=None``: all in one): the same loss and gradients whatever the
    grouping, only the compute spent on padding and on separate runs changes.
    """
    import torch.nn.functional as F
    from transformers.cache_utils import DynamicCache

    from learner.logprobs import _expand_cache

    inner, head = decoder_parts(model)
    device = prefix.device
    P = prefix.shape[0]
    lengths = [r.shape[0] for r in rows]
    for i, (s, a) in enumerate(zip(lengths, n_answer)):
        if not 0 < a < s:
            raise ValueError(f"row {i}: {a} answer tokens in a rest of {s} tokens (needs 0 < answer < rest)")

    prefix_cache = DynamicCache(config=inner.config)
    run_layers(model, prefix.unsqueeze(0), start, None, torch.arange(P, device=device).unsqueeze(0),
               torch.ones((1, P), dtype=torch.long, device=device), prefix_cache)
    total = prefix.new_zeros((), dtype=torch.float32)
    for group in length_groups(lengths, pad_tokens):
        n, S = len(group), max(lengths[i] for i in group)
        cache = DynamicCache(config=inner.config)  # the prefix's keys and values, extended by this group only
        cache.layers = [copy.copy(layer) for layer in prefix_cache.layers]
        _expand_cache(cache, n)
        hidden = prefix.new_zeros((n, S, prefix.shape[1]))
        attention = torch.zeros((n, P + S), dtype=torch.long, device=device)
        attention[:, :P] = 1
        for b, i in enumerate(group):
            hidden[b, : lengths[i]] = rows[i]
            attention[b, P: P + lengths[i]] = 1
        position_ids = (P + torch.arange(S, device=device)).unsqueeze(0).expand(n, -1)
        out = run_layers(model, hidden, start, None, position_ids, attention, cache)

        # positions S_i - a_i - 1 .. S_i - 2 of row i score its answer tokens S_i - a_i .. S_i - 1
        b_idx, t_idx, tgt, w = [], [], [], []
        for b, i in enumerate(group):
            s, a = lengths[i], n_answer[i]
            b_idx.extend([b] * a)
            t_idx.extend(range(s - a - 1, s - 1))
            tgt.extend(int(t) for t in targets[i][s - a:])
            w.extend(weights[i] if weights and weights[i] is not None else (1.0,) * a)
        sel = out[torch.tensor(b_idx, device=device), torch.tensor(t_idx, device=device)]  # [K, H]
        logits = head(inner.norm(sel)).float()
        ce = F.cross_entropy(logits, torch.tensor(tgt, device=device), reduction="none")
        total = total + (ce * torch.tensor(w, dtype=ce.dtype, device=device)).sum()
    return total
