"""Reference baselines: the training set's most frequent label (no model), and TF-IDF + logistic regression.

The TF-IDF baseline is the bar the issue sets for a trained router (0.80 mean F1 / 0.62 exact on the reference
test split). scikit-learn is not in our package set, so it is written here on torch: word uni+bigram TF-IDF
(sublinear tf, smoothed idf, L2 rows, the usual defaults) and one-vs-rest logistic regression fitted with
L-BFGS; its L2 strength is picked on a held-out tenth of the training set, never on the test set.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from data.metrics import Prediction
from data.schema import Example
from data.taxonomy import LABELS, NONE, clean_label_set
from memroute.core.errors import InputError


def majority_label(train: Sequence[Example]) -> str:
    """The label on the most training rows (ties go to the label first in taxonomy order).

    On the reference corpus this is user.strategic_approach (611 of 1,800 rows); it beats predicting the most
    frequent exact label set (`none`, 195 rows) on F1.
    """
    if not train:
        raise InputError("majority baseline needs a non-empty training set")
    counts = Counter(label for ex in train for label in ex.categories)
    return max(LABELS, key=lambda label: (counts[label], -LABELS.index(label)))


def majority_predictions(train: Sequence[Example], examples: Sequence[Example]) -> list[Prediction]:
    label = majority_label(train)
    return [Prediction(ex.id, [label], raw=label, model="majority") for ex in examples]


_WORD = re.compile(r"[a-z0-9][a-z0-9_'\-]*")


def _terms(ex: Example) -> list[str]:
    """Uni- and bigrams of the conversation's words; the speaker is a token too (who said it matters)."""
    words: list[str] = []
    for turn in ex.conversation:
        words.append(f"<{turn['role']}>")
        words.extend(_WORD.findall(turn["content"].lower()))
    return words + [f"{a} {b}" for a, b in zip(words, words[1:])]


@dataclass
class TfidfRouter:
    vocab: dict[str, int]
    idf: list[float]
    weights: object  # torch tensor [V, 13]
    bias: object  # torch tensor [13]
    c: float

    def features(self, examples: Sequence[Example]):
        import torch

        x = torch.zeros(len(examples), len(self.vocab))
        for row, ex in enumerate(examples):
            for term, tf in Counter(_terms(ex)).items():
                col = self.vocab.get(term)
                if col is not None:
                    x[row, col] = (1.0 + math.log(tf)) * self.idf[col]
        return torch.nn.functional.normalize(x, dim=1)

    def probabilities(self, examples: Sequence[Example]):
        import torch

        return torch.sigmoid(self.features(examples) @ self.weights + self.bias)

    def predict(self, examples: Sequence[Example]) -> list[Prediction]:
        labels = [decode(p) for p in self.probabilities(examples).tolist()]
        return [Prediction(ex.id, ls, raw=", ".join(ls), model=f"tfidf-logreg(C={self.c:g})")
                for ex, ls in zip(examples, labels)]


def decode(probs: Sequence[float]) -> list[str]:
    """Labels over 0.5; `none` only when it is the most likely label; never an empty answer (top label)."""
    best = max(range(len(LABELS)), key=probs.__getitem__)
    if LABELS[best] == NONE:
        return [NONE]
    chosen = [label for label, p in zip(LABELS, probs) if p > 0.5 and label != NONE]
    return clean_label_set(chosen or [LABELS[best]])


def _fit_logreg(x, y, c: float, iters: int = 200):
    """One-vs-rest L2 logistic regression: sum of log losses + ||w||^2 / (2C), as scikit-learn defines C."""
    import torch

    w = torch.zeros(x.shape[1], y.shape[1], requires_grad=True)
    b = torch.zeros(y.shape[1], requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=iters, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y, reduction="sum")
        loss = loss + (w * w).sum() / (2 * c)
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def fit_tfidf(train: Sequence[Example], cs: Sequence[float] = (1.0, 4.0, 16.0, 64.0), min_df: int = 2,
              seed: int = 0) -> TfidfRouter:
    import random

    import torch

    from data.reward import set_f1

    if len(train) < 20:
        raise InputError(f"the TF-IDF baseline needs at least 20 training rows, got {len(train)}")

    def vectoriser(rows: Sequence[Example]) -> TfidfRouter:
        df = Counter(term for ex in rows for term in set(_terms(ex)))
        terms = sorted(t for t, n in df.items() if n >= min_df)
        idf = [math.log((1 + len(rows)) / (1 + df[t])) + 1.0 for t in terms]
        return TfidfRouter({t: i for i, t in enumerate(terms)}, idf, None, None, 0.0)

    def fit(router: TfidfRouter, x, rows: Sequence[Example], c: float) -> TfidfRouter:
        y = torch.tensor([[float(label in ex.categories) for label in LABELS] for ex in rows])
        router.weights, router.bias = _fit_logreg(x, y, c)
        router.c = c
        return router

    rows = list(train)
    random.Random(seed).shuffle(rows)
    held, fit_rows = rows[:len(rows) // 10], rows[len(rows) // 10:]
    router = vectoriser(fit_rows)  # the vocabulary and features do not depend on C: built once for the search
    x = router.features(fit_rows)
    scores = {}
    for c in cs:
        predictions = fit(router, x, fit_rows, c).predict(held)
        scores[c] = sum(set_f1(p.predicted, ex.categories) for p, ex in zip(predictions, held)) / len(held)
    best = max(cs, key=lambda c: (scores[c], -c))
    final = vectoriser(train)
    return fit(final, final.features(train), train, best)


def tfidf_predictions(train: Sequence[Example], examples: Sequence[Example]) -> list[Prediction]:
    return fit_tfidf(train).predict(examples)
