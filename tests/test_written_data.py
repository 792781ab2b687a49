"""The hand-written training set (data/written/train.jsonl) meets its spec, and stays apart from the check sets
(which must never be trained on) and from the reference corpus."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from data.schema import read_examples
from data.taxonomy import LABELS
from data.written import WRITTEN_TRAIN_PATH
from tests.test_short_data import CHECK_SETS, _sentences_of

PER_LABEL = 20


@pytest.fixture(scope="module")
def written():
    return read_examples(WRITTEN_TRAIN_PATH)


def test_rows_ids_and_label_balance(written):
    assert len(written) == PER_LABEL * len(LABELS)
    assert all(re.fullmatch(r"written-\d{3}", ex.id) for ex in written)
    assert len({ex.id for ex in written}) == len(written)
    assert {ex.source for ex in written} == {"written_train"}
    assert all(len(ex.categories) == 1 for ex in written)
    assert Counter(ex.categories[0] for ex in written) == {label: PER_LABEL for label in LABELS}


def test_turns_and_lengths(written):
    for ex in written:
        roles = [t["role"] for t in ex.conversation]
        assert 5 <= len(roles) <= 8, ex.id
        assert roles == ["user", "assistant"] * (len(roles) // 2) + ["user"] * (len(roles) % 2), ex.id
        words = sum(len(t["content"].split()) for t in ex.conversation)
        assert 100 <= words <= 320, (ex.id, words)
        assert ex.metadata["turns"] == len(roles) and ex.metadata["industry"], ex.id


def test_no_sentence_repeated_across_conversations(written):
    """Written one by one: a sentence of eight words or more occurs in one conversation only."""
    seen: dict[str, str] = {}
    repeated = []
    for ex in written:
        for s in {s for t in ex.conversation for s in _sentences_of(t["content"], 8)}:
            if s in seen:
                repeated.append((seen[s], ex.id, s))
            seen[s] = ex.id
    assert not repeated, repeated[:5]


def test_shares_no_sentence_with_the_check_sets(written):
    """Training data that echoed a check set would make it a test of memory, not of routing."""
    checks = {s for cs in CHECK_SETS.values() for ex in read_examples(cs.path) for t in ex.conversation
              for s in _sentences_of(t["content"], 5)}
    shared = [(ex.id, s) for ex in written for t in ex.conversation for s in _sentences_of(t["content"], 5)
              if s in checks]
    assert not shared, shared[:5]


def test_not_copied_from_the_reference_corpus(written, reference_corpus_text):
    corpus = reference_corpus_text
    fixed = [piece.strip() for ex in written for t in ex.conversation
             for piece in re.split(r"[.:;!?]", t["content"]) if len(piece.strip()) >= 40]
    assert len(fixed) > 500
    copied = [piece for piece in fixed if piece.lower() in corpus]
    assert not copied, copied[:5]
