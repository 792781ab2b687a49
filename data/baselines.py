"""Reference baselines that need no model: every answer is the training set's most common label set."""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from data.metrics import Prediction
from data.schema import Example
from data.taxonomy import LABELS


def majority_label_set(train: Sequence[Example]) -> list[str]:
    """The most frequent exact label set in `train` (ties go to the set that sorts first in taxonomy order)."""
    if not train:
        raise ValueError("majority baseline needs a non-empty training set")
    counts = Counter(tuple(ex.categories) for ex in train)
    best = max(counts.values())
    order = {name: i for i, name in enumerate(LABELS)}
    return list(min((s for s, c in counts.items() if c == best), key=lambda s: [order[x] for x in s]))


def majority_predictions(train: Sequence[Example], examples: Sequence[Example]) -> list[Prediction]:
    labels = majority_label_set(train)
    return [Prediction(ex.id, list(labels), raw=", ".join(labels), model="majority") for ex in examples]
