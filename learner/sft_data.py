"""SFT data: tokenization, deterministic length-grouped batch plans, and each worker's micro-batches.

An example becomes ``prompt ids + completion ids``: the prompt is `data.prompt.render_prompt` and the completion is
`data.prompt.completion_text` (the answer plus the end-of-turn token), each tokenized with
``add_special_tokens=False``. The loss is on the completion tokens only (labels are -100 on the prompt). The
answer lists its labels in taxonomy order (``label_order="taxonomy"``) or most frequent in the training mix first
(``"frequency"``), so the label written first is the most common one; the parser reads either order.

With ``rationale_weight > 0`` an example whose metadata carries the teacher's `label_rationale` (the reference
corpus does) goes on after its answer with a second exchange, "why these categories?" and the rationale
(`data.prompt.rationale_turn_texts`): the answer tokens keep weight 1, the question's template tokens weight 0 and
the rationale's tokens `rationale_weight` each. Learning to explain the labels shapes the top layers' features
for the labels themselves (the multi-task half of "distilling step-by-step"); the answer is unchanged, so
evaluation and serving never generate the rationale.

The batch plan of an epoch is a pure function of ``(lengths, batch_size, seed, epoch)``: shuffle with
``random.Random(seed * 1000 + epoch)``, drop the ``n % batch_size`` examples that come last (a different few each
epoch), sort windows of ~50 batches by length (less padding), cut into global batches and shuffle their order. So a
data position ``(epoch, step_in_epoch)`` names exactly which examples come next, whatever the number of workers: a
resumed run (even on a different number of workers) continues with the same batches.

Each global batch is cut into ``num_workers * grad_accum`` equal chunks of adjacent lengths; micro-batch ``m`` of
worker ``r`` is chunk ``m * num_workers + r``, so at every micro-step the workers process chunks of about the same
length (DDP waits for the slowest).

torch is imported inside `collate` only, so the driver can plan without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from data.mix import MixError, read_mix
from data.parser import LABEL_ORDERS
from data.prompt import example_token_ids, rationale_turn_texts
from memroute.core.errors import InputError

IGNORE_INDEX = -100
WINDOW_BATCHES = 50  # length-sort windows of this many batches


class SFTDataError(InputError):
    """A dataset or batching setting that SFT cannot use; the message names the file / example / setting."""


@dataclass(frozen=True)
class TokenizedExample:
    id: str
    input_ids: tuple[int, ...]  # prompt ids followed by completion ids
    n_prompt: int
    # loss weight of each completion token (n_answer of them); None: every one weighs 1
    weights: tuple[float, ...] | None = None

    @property
    def n_tokens(self) -> int:
        return len(self.input_ids)

    @property
    def n_answer(self) -> int:
        return len(self.input_ids) - self.n_prompt

    @property
    def weight_total(self) -> float:
        """What the example adds to a batch's loss normaliser: its answer tokens, weighted."""
        return float(self.n_answer) if self.weights is None else float(sum(self.weights))


def tokenize_example(tokenizer, example, rationale_weight: float = 0.0,
                     order: Sequence[str] | None = None) -> TokenizedExample:
    prompt, answer = example_token_ids(tokenizer, example, order)
    rationale = example.metadata.get("label_rationale") if rationale_weight > 0 else None
    if not isinstance(rationale, str) or not rationale.strip():
        return TokenizedExample(example.id, tuple(prompt) + tuple(answer), len(prompt))
    bridge_text, rationale_text = rationale_turn_texts(tokenizer, example.conversation, example.categories, rationale)
    bridge = tokenizer(bridge_text, add_special_tokens=False)["input_ids"]
    because = tokenizer(rationale_text, add_special_tokens=False)["input_ids"]
    weights = (1.0,) * len(answer) + (0.0,) * len(bridge) + (float(rationale_weight),) * len(because)
    return TokenizedExample(example.id, tuple(prompt) + tuple(answer) + tuple(bridge) + tuple(because), len(prompt),
                            weights)


def frequency_order(examples) -> list[str]:
    """Label names, most frequent in `examples` first (ties and unseen labels in taxonomy order)."""
    from data.taxonomy import LABELS

    counts = {name: 0 for name in LABELS}
    for ex in examples:
        for name in ex.categories:
            counts[name] += 1
    return sorted(LABELS, key=lambda name: -counts[name])  # stable: ties keep taxonomy order


def load_sft_examples(path: str | os.PathLike, tokenizer, max_seq_len: int,
                      rationale_weight: float = 0.0, label_order: str = "taxonomy") -> list[TokenizedExample]:
    """Read and tokenize a labelled dataset (or a comma-separated mix, `data.mix`); refuse an empty file, an id
    that two files share, or an example longer than `max_seq_len`. With `rationale_weight > 0` the examples
    that carry a `label_rationale` are followed by it; `label_order` is how each answer lists its labels
    (module doc)."""
    if label_order not in LABEL_ORDERS:
        raise SFTDataError(f"label_order must be one of {', '.join(LABEL_ORDERS)}, got {label_order!r}")
    try:
        mix = read_mix(path)
    except MixError as e:
        raise SFTDataError(str(e)) from None
    examples, where = [], {}
    for file, rows in mix:
        if not rows:
            raise SFTDataError(f"training dataset {file} is empty: it holds no examples to train on")
        examples.extend(rows)
        where.update((ex.id, file) for ex in rows)
    order = frequency_order(examples) if label_order == "frequency" else None
    out = []
    for ex in examples:
        path = where[ex.id]
        tok = tokenize_example(tokenizer, ex, rationale_weight, order)
        if tok.n_tokens > max_seq_len:
            raise SFTDataError(
                f"example {ex.id!r} in {path} is {tok.n_tokens} tokens long ({tok.n_prompt} prompt + {tok.n_answer} "
                f"answer), over max_seq_len={max_seq_len}; examples are never truncated: raise max_seq_len or "
                f"remove/shorten the example"
            )
        if tok.n_answer == 0:
            raise SFTDataError(f"example {ex.id!r} in {path} has an empty answer (no completion tokens)")
        out.append(tok)
    return out


# --- batching -------------------------------------------------------------------------------------------------


def check_batching(batch_size: int, num_workers: int, grad_accum: int) -> None:
    for name, value in (("batch_size", batch_size), ("num_workers", num_workers), ("grad_accum", grad_accum)):
        if not isinstance(value, int) or value < 1:
            raise SFTDataError(f"{name} must be a positive integer, got {value!r}")
    if batch_size % (num_workers * grad_accum):
        raise SFTDataError(
            f"batch_size={batch_size} is not divisible by num_workers * grad_accum = {num_workers} * {grad_accum} "
            f"= {num_workers * grad_accum}: every worker must get the same number of examples in each of its "
            f"grad_accum micro-batches (e.g. batch_size={num_workers * grad_accum * max(1, batch_size // (num_workers * grad_accum))})"
        )


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    return n_examples // batch_size


def epoch_plan(lengths: Sequence[int], batch_size: int, seed: int, epoch: int,
               window_batches: int = WINDOW_BATCHES) -> list[list[int]]:
    """The global batches of one epoch, as lists of example indices (see the module doc)."""
    n = len(lengths)
    rng = random.Random(seed * 1000 + epoch)
    order = list(range(n))
    rng.shuffle(order)
    order = order[: steps_per_epoch(n, batch_size) * batch_size]
    window = batch_size * window_batches
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: (lengths[i], i))
        batches.extend(chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def worker_micro_batches(batch: Sequence[int], lengths: Sequence[int], rank: int, num_workers: int,
                         grad_accum: int) -> list[list[int]]:
    """Worker `rank`'s `grad_accum` micro-batches of one global batch."""
    parts = num_workers * grad_accum
    if len(batch) % parts:
        raise SFTDataError(f"a global batch of {len(batch)} examples cannot be split in {parts} equal micro-batches")
    size = len(batch) // parts
    ordered = sorted(batch, key=lambda i: (lengths[i], i))
    chunks = [ordered[k * size:(k + 1) * size] for k in range(parts)]
    return [chunks[m * num_workers + rank] for m in range(grad_accum)]


def collate(examples: Sequence[TokenizedExample], indices: Sequence[int], pad_id: int) -> dict:
    """Right-padded tensors for a micro-batch: input_ids, attention_mask, labels (-100 off the answer tokens),
    `weights` (each token's loss weight, 0 off the answer) and `answer_start`, the first answer position over the
    batch (logits are only needed from there on)."""
    import torch

    rows = [examples[i] for i in indices]
    width = max(r.n_tokens for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    weights = torch.zeros((len(rows), width), dtype=torch.float32)
    for b, r in enumerate(rows):
        ids = torch.tensor(r.input_ids, dtype=torch.long)
        input_ids[b, :r.n_tokens] = ids
        attention[b, :r.n_tokens] = 1
        labels[b, r.n_prompt:r.n_tokens] = ids[r.n_prompt:]
        weights[b, r.n_prompt:r.n_tokens] = 1.0 if r.weights is None else torch.tensor(r.weights)
    return {
        "input_ids": input_ids,
        "attention_mask": attention,
        "labels": labels,
        "weights": weights,
        "answer_start": min(r.n_prompt for r in rows),
        "tokens": sum(r.n_tokens for r in rows),
        "answer_tokens": sum(r.n_answer for r in rows),
    }


def batch_ids_hash(ids: Sequence[str]) -> str:
    """A short hash of a batch's example ids, in plan order (metrics rows carry it: no batch repeated or skipped)."""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def plan_fingerprint(examples: Sequence[TokenizedExample], batch_size: int, seed: int) -> str:
    """Identifies the data plan: a checkpoint can only be resumed with the same examples, batch size and seed."""
    h = hashlib.sha256(json.dumps({"batch_size": batch_size, "seed": seed, "window": WINDOW_BATCHES}).encode())
    for ex in examples:
        h.update(f"{ex.id}\t{ex.n_tokens}\t{ex.n_prompt}\n".encode())
        if ex.weights is not None:
            h.update(f"{ex.weight_total:.6f}\n".encode())
    return h.hexdigest()[:16]
