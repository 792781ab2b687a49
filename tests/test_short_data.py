"""Short conversations: the builder's splits (data/embedded/short.py) and the two hand-written check sets
(data/checks/short_conversations.jsonl and short_conversations_b.jsonl, written independently of each other) meet
the spec, and the committed splits are exactly what the builder makes."""

from __future__ import annotations

import re
import string
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import pytest

from data.embedded import EMBEDDED_DIR, SHORT_TEST_PATH, SHORT_TRAIN_PATH, bank, short_bank
from data.embedded import short as builder
from data.embedded.build import split_pool
from data.schema import Example, derive_horizon, read_examples
from data.taxonomy import LABELS, NONE, REAL_LABELS, set_scope

CHECKS_DIR = Path(__file__).resolve().parents[1] / "data" / "checks"


class CheckSet(NamedTuple):
    path: Path
    id_prefix: str
    source: str
    min_label_rows: int  # the fewest rows any real label may have
    # the shortest sentence that must not occur in the builder's splits: the first set was written to share none,
    # the second by another writer, whose stock replies ("Sure.", "Of course.") any two writers share
    min_sentence_words: int


CHECK_SETS = {
    "a": CheckSet(CHECKS_DIR / "short_conversations.jsonl", "check-short-", "check_short", 2, 1),
    "b": CheckSet(CHECKS_DIR / "short_conversations_b.jsonl", "check-short-b-", "check_short_b", 1, 5),
}


@pytest.fixture(scope="module")
def train() -> list[Example]:
    return read_examples(SHORT_TRAIN_PATH)


@pytest.fixture(scope="module")
def test() -> list[Example]:
    return read_examples(SHORT_TEST_PATH)


@pytest.fixture(scope="module", params=sorted(CHECK_SETS))
def check_set(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def checks(check_set) -> list[Example]:
    return read_examples(CHECK_SETS[check_set].path)


def _words(ex: Example) -> int:
    return sum(len(t["content"].split()) for t in ex.conversation)


def _sentences(text: str) -> list[str]:
    return [s.strip().lower() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]


def _template_regex(template: str) -> re.Pattern:
    escaped = re.escape(template)
    return re.compile(re.sub(r"\\\{\w+\\\}", lambda _: ".+?", escaped), re.IGNORECASE)


def _signal_patterns(split: str | None = None) -> list[tuple[str, re.Pattern]]:
    return [(label, _template_regex(t)) for label in REAL_LABELS
            for t in (short_bank.SIGNALS[label] if split is None else split_pool(short_bank.SIGNALS[label], split))]


def _user_turns(ex: Example) -> list[str]:
    return [t["content"] for t in ex.conversation if t["role"] == "user"]


# --- files, ids, schema -------------------------------------------------------------------------------------


def test_paths_and_sizes(train, test):
    assert SHORT_TRAIN_PATH == EMBEDDED_DIR / "short_train.jsonl"
    assert SHORT_TEST_PATH == EMBEDDED_DIR / "short_test.jsonl"
    assert 550 <= len(train) <= 650 and 90 <= len(test) <= 130


def test_ids_source_and_derived_fields(train, test):
    industries = {ind.name: ind for ind in bank.INDUSTRIES}
    for split, examples in (("train", train), ("test", test)):
        assert [ex.id for ex in examples] == [f"short-{split}-{i:04d}" for i in range(len(examples))]
        for ex in examples:
            assert ex.source == "embedded_short"
            assert ex.persistence_horizon == derive_horizon(ex.categories)
            assert ex.memory_scope == set_scope(ex.categories)
            assert set(ex.metadata) == {"industry", "company", "turns", "words", "split"}
            assert ex.metadata["split"] == split and ex.metadata["turns"] == len(ex.conversation)
            assert ex.metadata["words"] == _words(ex)
            assert ex.metadata["company"] in industries[ex.metadata["industry"]].companies


def test_check_set_ids_and_fields(checks, check_set):
    spec = CHECK_SETS[check_set]
    assert len(checks) >= 60
    assert [ex.id for ex in checks] == [f"{spec.id_prefix}{i:03d}" for i in range(len(checks))]
    for ex in checks:
        assert ex.source == spec.source
        assert ex.persistence_horizon == derive_horizon(ex.categories)
        assert ex.memory_scope == set_scope(ex.categories)
        assert ex.metadata["turns"] == len(ex.conversation) and ex.metadata["words"] == _words(ex)


# --- labels -------------------------------------------------------------------------------------------------


def test_every_label_in_both_splits(train, test):
    for label in LABELS:
        assert sum(label in ex.categories for ex in train) >= 20, label
        assert sum(label in ex.categories for ex in test) >= 3, label


def test_label_mix(train, test):
    rows = train + test
    company_only = sum(all(c.startswith("company.") for c in ex.categories) for ex in rows) / len(rows)
    pairs = sum(len(ex.categories) == 2 for ex in rows) / len(rows)
    none = sum(ex.categories == [NONE] for ex in rows) / len(rows)
    assert 0.45 <= company_only <= 0.60
    assert 0.12 <= pairs <= 0.25
    assert 0.10 <= none <= 0.16
    assert all(1 <= len(ex.categories) <= 2 for ex in rows)


def test_check_set_label_mix(checks, check_set):
    counts = Counter(label for ex in checks for label in ex.categories)
    assert all(counts[label] >= CHECK_SETS[check_set].min_label_rows for label in REAL_LABELS), counts
    single = [ex.categories[0] for ex in checks if len(ex.categories) == 1]
    assert sum(label.startswith("company.") for label in single) >= 36
    assert sum(label.startswith("user.") for label in single) >= 8
    assert single.count(NONE) >= 6
    assert sum(len(ex.categories) == 2 for ex in checks) >= 6


def test_labels_are_exactly_the_placed_signals(train, test):
    """Recover from the text alone which categories' signal sentences a conversation holds."""
    patterns = _signal_patterns()
    none_questions = [_template_regex(q) for _, q, _ in short_bank.NONE_ITEMS]
    for ex in train + test:
        users = _user_turns(ex)
        found = sorted({label for label, rx in patterns if any(rx.search(u) for u in users)}, key=LABELS.index)
        if ex.categories == [NONE]:
            assert found == [] and any(rx.search(u) for rx in none_questions for u in users), ex.id
        else:
            assert found == ex.categories, ex.id


# --- shape and length ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["train", "test", *(f"checks-{name}" for name in sorted(CHECK_SETS))])
def test_turns_and_lengths(which, request):
    if which.startswith("checks-"):
        examples, (low, high) = read_examples(CHECK_SETS[which.removeprefix("checks-")].path), (15, 80)
    else:
        examples, (low, high) = request.getfixturevalue(which), (builder.MIN_WORDS, builder.MAX_WORDS)
    for ex in examples:
        roles = [t["role"] for t in ex.conversation]
        assert 2 <= len(roles) <= 4, ex.id
        assert roles == ["user" if i % 2 == 0 else "assistant" for i in range(len(roles))], ex.id
        assert low <= _words(ex) <= high, (ex.id, _words(ex))
        for t in ex.conversation:
            assert t["content"] == t["content"].strip() and "  " not in t["content"], ex.id
            assert "{" not in t["content"] and "}" not in t["content"], (ex.id, t["content"])
            if t["role"] == "user":
                assert len(t["content"].split()) <= 45, (ex.id, t["content"])
    turns = Counter(len(ex.conversation) for ex in examples)
    assert set(turns) == {2, 3, 4}, turns
    assert turns[3] >= max(turns[2], turns[4]), turns


def test_conversations_unique(train, test):
    keys = [tuple((t["role"], t["content"]) for t in ex.conversation) for ex in train + test]
    assert len(set(keys)) == len(keys)


# --- separation of splits and of the check set -------------------------------------------------------------


def test_no_test_template_in_train(train, test):
    for examples, other in ((train, "test"), (test, "train")):
        foreign = [rx for _, rx in _signal_patterns(other)]
        foreign += [_template_regex(q) for _, q, _ in split_pool(short_bank.NONE_ITEMS, other)]
        for ex in examples:
            for user in _user_turns(ex):
                assert not any(rx.search(user) for rx in foreign), (ex.id, user)
    train_signals = {s for ex in train for u in _user_turns(ex) for s in _sentences(u)}
    held_out = [rx for _, rx in _signal_patterns("test")]
    for ex in test:
        for user in _user_turns(ex):
            for sentence in _sentences(user):
                if any(rx.search(sentence) for rx in held_out):
                    assert sentence not in train_signals, (ex.id, sentence)


def _sentences_of(text: str, min_words: int) -> list[str]:
    return [s for s in _sentences(text) if len(s.split()) >= min_words]


def test_check_set_shares_no_sentence_with_the_builder(train, test, checks, check_set):
    min_words = CHECK_SETS[check_set].min_sentence_words
    built = {s for ex in train + test for t in ex.conversation for s in _sentences(t["content"])}
    templates = [rx for _, rx in _signal_patterns()]
    templates += [_template_regex(text) for item in short_bank.NONE_ITEMS for text in item[1:]]
    templates += [_template_regex(text) for pool in (short_bank.GREETINGS, short_bank.OPENERS, short_bank.ASKS,
                                                     short_bank.FOLLOWUPS, short_bank.CLOSERS)
                  for pair in pool for text in pair]
    templates += [_template_regex(t) for label in REAL_LABELS for t in bank.SIGNALS[label]]
    for ex in checks:
        for t in ex.conversation:
            for sentence in _sentences_of(t["content"], min_words):
                assert sentence not in built, (ex.id, sentence)
            assert not any(rx.search(t["content"]) for rx in templates), (ex.id, t["content"])


def test_check_sets_share_no_sentence():
    """The second set was written without reading the first: no sentence of five words or more of one occurs in
    the other."""
    a, b = (read_examples(CHECK_SETS[name].path) for name in ("a", "b"))
    sentences_a = {s for ex in a for t in ex.conversation for s in _sentences_of(t["content"], 5)}
    shared = [s for ex in b for t in ex.conversation for s in _sentences_of(t["content"], 5) if s in sentences_a]
    assert not shared, shared[:5]


# --- the bank -----------------------------------------------------------------------------------------------


def _slots(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_short_bank():
    assert set(short_bank.SIGNALS) == set(REAL_LABELS)
    assert set(short_bank.INDUSTRY_KINDS) == {ind.name for ind in bank.INDUSTRIES}
    slots = set(bank.SLOTS) | {"kind"}
    allowed = slots | {s[0].upper() + s[1:] for s in slots}
    signals = [t for label in REAL_LABELS for t in short_bank.SIGNALS[label]]
    assert len(set(signals)) == len(signals)
    for label in REAL_LABELS:
        # at least 12 training templates per label after holding out every fourth one
        assert len(split_pool(short_bank.SIGNALS[label], "train")) >= 12, label
        assert len(split_pool(short_bank.SIGNALS[label], "test")) >= 4, label
    for t in signals:
        assert len(_sentences(t)) == 1 and len(t.split()) <= 22, t  # one short sentence
    texts = signals + [x for item in short_bank.NONE_ITEMS for x in item[1:]]
    texts += [x for pool in (short_bank.GREETINGS, short_bank.OPENERS, short_bank.ASKS, short_bank.FOLLOWUPS,
                             short_bank.CLOSERS) for pair in pool for x in pair]
    texts += [r for replies in short_bank.CATEGORY_REPLIES.values() for r in replies]
    for text in texts:
        assert _slots(text) <= allowed, text


def test_short_text_is_not_copied_from_reference(checks, reference_corpus_text):
    """Our sentences must be our own: no longer fixed phrase of the short bank or the check set occurs in the
    reference corpus."""
    corpus = reference_corpus_text
    texts = [t for label in REAL_LABELS for t in short_bank.SIGNALS[label]]
    texts += [x for item in short_bank.NONE_ITEMS for x in item[1:]]
    texts += [t["content"] for ex in checks for t in ex.conversation]
    fixed = [piece.strip() for t in texts for piece in re.split(r"\{\w+\}|[.:;!?]", t) if len(piece.strip()) >= 40]
    assert len(fixed) > 50
    copied = [piece for piece in fixed if piece.lower() in corpus]
    assert not copied, copied[:5]


# --- reproducibility ----------------------------------------------------------------------------------------


def test_build_reproduces_committed_files(tmp_path):
    train_path, test_path = builder.build(tmp_path)
    assert (train_path, test_path) == (tmp_path / "short_train.jsonl", tmp_path / "short_test.jsonl")
    assert train_path.read_bytes() == SHORT_TRAIN_PATH.read_bytes()
    assert test_path.read_bytes() == SHORT_TEST_PATH.read_bytes()


def test_main_is_deterministic_and_seeded(tmp_path, capsys):
    builder.main(["--out-dir", str(tmp_path / "a")])
    assert (tmp_path / "a" / "short_train.jsonl").read_bytes() == SHORT_TRAIN_PATH.read_bytes()
    assert (tmp_path / "a" / "short_test.jsonl").read_bytes() == SHORT_TEST_PATH.read_bytes()
    assert "rows: " in capsys.readouterr().out
    builder.main(["--out-dir", str(tmp_path / "b"), "--seed", str(builder.DEFAULT_SEED + 1)])
    other = tmp_path / "b" / "short_train.jsonl"
    assert other.read_bytes() != SHORT_TRAIN_PATH.read_bytes()
    assert Counter(label for ex in read_examples(other) for label in ex.categories).keys() == set(LABELS)
