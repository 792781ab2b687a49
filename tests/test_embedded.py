"""The embedded dataset (data/embedded): its committed files meet the spec and are exactly what build.py makes."""

from __future__ import annotations

import re
import string
from collections import Counter
from pathlib import Path

import pytest

from data.embedded import EMBEDDED_DIR, TEST_PATH, TRAIN_PATH, bank
from data.embedded import build as builder
from data.schema import Example, read_examples
from data.taxonomy import LABELS, NONE, REAL_LABELS


@pytest.fixture(scope="module")
def train() -> list[Example]:
    return read_examples(TRAIN_PATH)


@pytest.fixture(scope="module")
def test() -> list[Example]:
    return read_examples(TEST_PATH)


@pytest.fixture(scope="module")
def rows(train, test) -> list[Example]:
    return train + test


def _render(ex: Example) -> str:
    return "\n".join(f"{t['role'].upper()}: {t['content']}" for t in ex.conversation)


def _label_count(examples: list[Example], label: str) -> int:
    return sum(label in ex.categories for ex in examples)


# --- files and sizes ----------------------------------------------------------------------------------------


def test_paths():
    assert TRAIN_PATH == EMBEDDED_DIR / "train.jsonl" and TEST_PATH == EMBEDDED_DIR / "test.jsonl"
    assert EMBEDDED_DIR == Path(builder.__file__).parent


def test_row_counts(train, test, rows):
    assert len(rows) >= 300
    assert len(test) >= 45
    assert 0.12 <= len(test) / len(rows) <= 0.18


def test_ids_source_and_metadata(train, test):
    for split, examples in (("train", train), ("test", test)):
        assert [ex.id for ex in examples] == [f"embedded-{split}-{i:04d}" for i in range(len(examples))]
        industries = {ind.name: ind for ind in bank.INDUSTRIES}
        for ex in examples:
            assert ex.source == "embedded"
            assert set(ex.metadata) == {"industry", "company", "turns", "split"}
            assert ex.metadata["split"] == split
            assert ex.metadata["turns"] == len(ex.conversation)
            assert ex.metadata["company"] in industries[ex.metadata["industry"]].companies


# --- labels -------------------------------------------------------------------------------------------------


def test_every_label_covered(rows, test):
    for label in LABELS:
        assert _label_count(rows, label) >= 15, label
        assert _label_count(test, label) >= 3, label


def test_label_sets_are_canonical(rows):
    for ex in rows:
        assert 1 <= len(ex.categories) <= 3
        assert ex.categories == [NONE] or NONE not in ex.categories
        assert ex.categories == [label for label in LABELS if label in ex.categories]


def test_multi_label_and_none_fractions(rows):
    multi = sum(len(ex.categories) > 1 for ex in rows) / len(rows)
    none = sum(ex.categories == [NONE] for ex in rows) / len(rows)
    assert 0.28 <= multi <= 0.40
    assert 0.08 <= none <= 0.13


# --- conversations ------------------------------------------------------------------------------------------


def test_turn_lengths(rows, test):
    turns = [len(ex.conversation) for ex in rows]
    assert min(turns) == 3 and max(turns) <= 12
    assert sum(n == 3 for n in turns) / len(turns) >= 0.10
    assert sum(n >= 8 for n in turns) / len(turns) >= 0.15
    test_turns = [len(ex.conversation) for ex in test]
    assert 3 in test_turns and max(test_turns) >= 8


def test_conversation_shape(rows):
    for ex in rows:
        roles = [t["role"] for t in ex.conversation]
        assert roles == ["user" if i % 2 == 0 else "assistant" for i in range(len(roles))], ex.id
        for t in ex.conversation:
            assert t["content"].strip() == t["content"] and t["content"], ex.id
            assert "{" not in t["content"] and "}" not in t["content"], (ex.id, t["content"])
            assert "  " not in t["content"], (ex.id, t["content"])


def test_conversations_unique(rows):
    rendered = [_render(ex) for ex in rows]
    assert len(set(rendered)) == len(rendered)


def test_no_test_conversation_in_train(train, test):
    train_texts = [_render(ex) for ex in train]
    train_user_turns = {t["content"] for ex in train for t in ex.conversation if t["role"] == "user"}
    for ex in test:
        text = _render(ex)
        assert not any(text in other for other in train_texts), ex.id
        # each test conversation has a user turn never seen in train (test-only signal / none utterances)
        assert any(t["content"] not in train_user_turns for t in ex.conversation if t["role"] == "user"), ex.id


def _template_regex(template: str) -> re.Pattern:
    escaped = re.escape(template)
    return re.compile(re.sub(r"\\\{\w+\\\}", lambda _: ".+?", escaped), re.IGNORECASE)


def test_labels_are_exactly_the_placed_signals(rows):
    """Recover, from the text alone, which categories' signal utterances a conversation contains."""
    patterns = [(label, _template_regex(t)) for label in REAL_LABELS for t in bank.SIGNALS[label]]
    none_questions = [_template_regex(q) for _, q, _ in bank.NONE_ITEMS]
    for ex in rows:
        user_text = [t["content"] for t in ex.conversation if t["role"] == "user"]
        found = sorted({label for label, rx in patterns if any(rx.search(u) for u in user_text)},
                       key=LABELS.index)
        if ex.categories == [NONE]:
            assert found == [], ex.id
            assert any(rx.search(u) for rx in none_questions for u in user_text), ex.id
        else:
            assert found == ex.categories, ex.id


def test_test_split_uses_only_held_out_templates(train, test):
    for split, examples in (("train", train), ("test", test)):
        other = "test" if split == "train" else "train"
        foreign = [_template_regex(t) for label in REAL_LABELS
                   for t in builder.split_pool(bank.SIGNALS[label], other)]
        foreign += [_template_regex(q) for _, q, _ in builder.split_pool(bank.NONE_ITEMS, other)]
        for ex in examples:
            for t in ex.conversation:
                if t["role"] == "user":
                    assert not any(rx.search(t["content"]) for rx in foreign), (ex.id, t["content"])


# --- the bank -----------------------------------------------------------------------------------------------


def _slots(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_bank_sizes_and_slots():
    assert set(bank.SIGNALS) == set(REAL_LABELS)
    allowed = set(bank.SLOTS) | {s[0].upper() + s[1:] for s in bank.SLOTS}
    texts: list[str] = []
    for label in REAL_LABELS:
        utterances = bank.SIGNALS[label]
        assert len(utterances) >= 14 and len(set(utterances)) == len(utterances), label
        texts += utterances
    assert len(set(texts)) == len(texts)
    assert len(bank.NONE_ITEMS) >= 25 and {k for k, _, _ in bank.NONE_ITEMS} <= {"chat", "ask"}
    assert len(bank.INDUSTRIES) >= 12
    for ind in bank.INDUSTRIES:
        assert len(ind.companies) >= 3 and len(ind.products) >= 3 and len(ind.audiences) >= 3
        assert len(ind.channels) >= 3 and len(ind.metrics) >= 3
        assert not any(c.endswith("s") for c in ind.companies)  # "{company}'s" must read well
    for label in REAL_LABELS:
        assert len(bank.CATEGORY_REPLIES[label]) >= 3
    every = (texts + [x for item in bank.NONE_ITEMS for x in item[1:]]
             + [x for pair in bank.OPENERS + bank.FOLLOWUPS for x in pair]
             + list(bank.ASKS + bank.CLOSERS + bank.GENERIC_REPLIES + bank.ACK_REPLIES + bank.CLOSING_REPLIES)
             + [r for replies in bank.CATEGORY_REPLIES.values() for r in replies])
    for text in every:
        assert _slots(text) <= allowed, text


def test_embedded_text_is_not_copied_from_reference(reference_corpus_text):
    """Our sentences must be our own: no longer fixed phrase of the bank occurs in the reference corpus."""
    corpus = reference_corpus_text
    texts = [t for label in REAL_LABELS for t in bank.SIGNALS[label]]
    texts += [x for item in bank.NONE_ITEMS for x in item[1:]] + [x for p in bank.OPENERS + bank.FOLLOWUPS for x in p]
    fixed = [piece.strip() for t in texts for piece in re.split(r"\{\w+\}|[.:;!?]", t) if len(piece.strip()) >= 40]
    assert len(fixed) > 200
    copied = [piece for piece in fixed if piece.lower() in corpus]
    assert not copied, copied[:5]


# --- reproducibility ----------------------------------------------------------------------------------------


def test_build_reproduces_committed_files(tmp_path):
    train_path, test_path = builder.build(tmp_path)
    assert (train_path, test_path) == (tmp_path / "train.jsonl", tmp_path / "test.jsonl")
    assert train_path.read_bytes() == TRAIN_PATH.read_bytes()
    assert test_path.read_bytes() == TEST_PATH.read_bytes()


def test_main_writes_the_same_files(tmp_path, capsys):
    builder.main(["--out-dir", str(tmp_path)])
    assert (tmp_path / "train.jsonl").read_bytes() == TRAIN_PATH.read_bytes()
    assert (tmp_path / "test.jsonl").read_bytes() == TEST_PATH.read_bytes()
    assert "rows: " in capsys.readouterr().out


def test_other_seed_differs_but_keeps_the_spec(tmp_path):
    train_path, test_path = builder.build(tmp_path, seed=builder.DEFAULT_SEED + 1)
    assert train_path.read_bytes() != TRAIN_PATH.read_bytes()
    examples = read_examples(train_path) + read_examples(test_path)
    counts = Counter(label for ex in examples for label in ex.categories)
    assert all(counts[label] >= 15 for label in LABELS)
