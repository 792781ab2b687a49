"""The routing reward: `0.6*F1 + 0.2*temporal + 0.1*parity + 0.1*efficiency`, or -1 with no valid label.

Fixes over the reference implementation:
- the majority horizon's ties are broken by a fixed horizon order (`taxonomy.majority_horizon`), not by set
  iteration order, so the same answer always earns the same reward;
- `none` mixed with a real label is dropped before scoring (`none` is exclusive);
- F1 of two empty sets is 1, and the temporal term is 0 when either set is empty, so no case divides by zero;
- every component is returned, so training curves can show which one moves.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable

from data.parser import parse_answer
from data.taxonomy import clean_label_set, horizon_similarity, majority_horizon, set_scope

WEIGHTS = {"f1": 0.6, "temporal": 0.2, "parity": 0.1, "efficiency": 0.1}
UNPARSEABLE_REWARD = -1.0


@dataclass
class RewardBreakdown:
    total: float
    f1: float
    temporal: float
    parity: float
    efficiency: float
    parsed: bool
    n_predicted: int

    def as_dict(self) -> dict:
        return asdict(self)


def set_f1(predicted: Iterable[str], gold: Iterable[str]) -> float:
    pred, ref = set(predicted), set(gold)
    if not pred and not ref:
        return 1.0
    overlap = len(pred & ref)
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred), overlap / len(ref)
    return 2 * precision * recall / (precision + recall)


def efficiency(n_labels: int) -> float:
    """Penalise label spraying: 1 up to 3 labels, then 0.7, 0.4, and 0 from 6 on."""
    return {4: 0.7, 5: 0.4}.get(n_labels, 1.0 if n_labels <= 3 else 0.0)


def reward_from_labels(predicted: Iterable[str], gold: Iterable[str], parsed: bool = True) -> RewardBreakdown:
    pred, ref = clean_label_set(predicted), clean_label_set(gold)
    if not parsed or not pred:
        return RewardBreakdown(UNPARSEABLE_REWARD, 0.0, 0.0, 0.0, 0.0, False, 0)
    f1 = set_f1(pred, ref)
    temporal = horizon_similarity(majority_horizon(pred), majority_horizon(ref))
    parity = 1.0 if set_scope(pred) == set_scope(ref) else 0.0
    eff = efficiency(len(pred))
    total = (WEIGHTS["f1"] * f1 + WEIGHTS["temporal"] * temporal + WEIGHTS["parity"] * parity
             + WEIGHTS["efficiency"] * eff)
    return RewardBreakdown(total, f1, temporal, parity, eff, True, len(pred))


def reward_from_text(answer: str, gold: Iterable[str]) -> RewardBreakdown:
    """Score a raw model answer against gold labels (parsing it with the one parser)."""
    parsed = parse_answer(answer)
    return reward_from_labels(parsed.labels, gold, parsed.parsed)
