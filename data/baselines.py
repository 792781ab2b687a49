"""Reference baselines that need no model: every answer is the training set's most frequent label."""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from data.metrics import Prediction
from data.schema import Example
from data.taxonomy import LABELS


def majority_label(train: Sequence[Example]) -> str:
    """The label on the most training rows (ties go to the label first in taxonomy order).

    On the reference corpus this is user.strategic_approach (611 of 1,800 rows); it beats predicting the most
    frequent exact label set (`none`, 195 rows) on F1.
    """
    if not train:
        raise ValueError("majority baseline needs a non-empty training set")
    counts = Counter(label for ex in train for label in ex.categories)
    return max(LABELS, key=lambda label: (counts[label], -LABELS.index(label)))


def majority_predictions(train: Sequence[Example], examples: Sequence[Example]) -> list[Prediction]:
    label = majority_label(train)
    return [Prediction(ex.id, [label], raw=label, model="majority") for ex in examples]
