"""Compose the embedded dataset from `bank.py` and write `train.jsonl` / `test.jsonl`.

    python -m data.embedded.build [--out-dir DIR] [--seed N]

Everything is driven by one `random.Random(seed)`, and nothing depends on set or dict iteration of unordered
data, so a re-run writes byte-identical files.

How a row is made:
1. A plan of label sets is drawn: `none` rows, single-label rows (the same number per real label) and 2- and
   3-label rows whose labels are balanced across the taxonomy.
2. The test split is drawn from the plan, stratified by label-set kind (none / each single label / pairs /
   triples), then topped up until every label is on at least `MIN_TEST_PER_LABEL` test rows.
3. Turn counts (3 to 12) are dealt to each split from the same proportional quotas, loosely longer for rows
   with more labels.
4. Each conversation is composed: one signal utterance per label (sometimes two for a single label) placed on
   user turns, the other user turns filled with neutral openers, follow-ups, closers or `none` utterances,
   and each user turn answered by an assistant reply that fits it. Labels are exactly the categories of the
   signal utterances placed. Every fourth signal and none utterance in the bank is reserved for the test
   split, so test conversations never reuse a training template.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import random
from typing import Sequence

from data.embedded import EMBEDDED_DIR
from data.embedded import bank
from data.schema import Example, make_example, write_examples
from data.taxonomy import LABELS, NONE, REAL_LABELS, canonical_order

DEFAULT_SEED = 1301
SOURCE = "embedded"

N_NONE = 32
N_SINGLE_PER_LABEL = 15
N_PAIRS = 80
N_TRIPLES = 28
TEST_FRACTION = 0.15
MIN_TEST_PER_LABEL = 3

# Share of conversations per number of turns (applied to each split separately).
LENGTH_WEIGHTS: dict[int, int] = {3: 48, 4: 45, 5: 50, 6: 50, 7: 45, 8: 28, 9: 20, 10: 16, 11: 10, 12: 8}

P_DOUBLE_SIGNAL = 0.35   # a single-label row with >= 3 user turns gets a second utterance of its label
P_ASK = 0.4              # a neutral question is appended to a signal turn
P_LEAD_IN = 0.2          # a neutral lead-in in front of a signal that opens the conversation
P_CATEGORY_REPLY = 0.65  # after a signal, a topic-fitting reply instead of a generic acknowledgement
P_CLOSER = 0.3
P_MERGE = 0.2            # two signal utterances of a multi-signal row share one user turn even when not needed
P_DISTRACTOR = 0.12      # a none utterance among the neutral turns of a labelled row
P_NONE_FIRST = 0.7       # a none row opens with its none utterance


def is_held_out(index: int) -> bool:
    """Bank items reserved for the test split: every fourth one."""
    return index % 4 == 3


def split_pool(items: Sequence, split: str) -> list:
    return [item for i, item in enumerate(items) if is_held_out(i) == (split == "test")]


# ---------------------------------------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------------------------------------


def plan_label_sets(rng: random.Random) -> list[tuple[str, ...]]:
    plan: list[tuple[str, ...]] = [(NONE,)] * N_NONE
    plan += [(label,) for label in REAL_LABELS for _ in range(N_SINGLE_PER_LABEL)]
    counts = {label: N_SINGLE_PER_LABEL for label in REAL_LABELS}
    for k in [2] * N_PAIRS + [3] * N_TRIPLES:
        ranked = sorted(REAL_LABELS, key=lambda label: (counts[label], rng.random()))
        first = ranked[0]
        rest = rng.sample([label for label in REAL_LABELS if label != first], k - 1)
        labels = tuple(canonical_order([first, *rest]))
        for label in labels:
            counts[label] += 1
        plan.append(labels)
    rng.shuffle(plan)
    return plan


def _stratum(labels: tuple[str, ...]) -> str:
    if labels == (NONE,):
        return NONE
    return f"single:{labels[0]}" if len(labels) == 1 else f"multi:{len(labels)}"


def choose_test(plan: list[tuple[str, ...]]) -> list[bool]:
    """Stratified test membership per plan row (deterministic given the plan order)."""
    strata: dict[str, list[int]] = {}
    for i, labels in enumerate(plan):
        strata.setdefault(_stratum(labels), []).append(i)
    is_test = [False] * len(plan)
    for key in sorted(strata):
        members = strata[key]
        for i in members[:max(1, round(len(members) * TEST_FRACTION))]:
            is_test[i] = True
    for label in LABELS:
        while sum(1 for i, labels in enumerate(plan) if is_test[i] and label in labels) < MIN_TEST_PER_LABEL:
            candidates = [i for i, labels in enumerate(plan) if not is_test[i] and label in labels]
            # prefer multi-label rows: they top up several labels at once
            best = max(candidates, key=lambda i: (len(plan[i]), -i))
            is_test[best] = True
    return is_test


def _apportion(weights: dict[int, int], total: int) -> list[int]:
    """Largest-remainder apportionment of `total` items over the weighted keys; returns the expanded list."""
    weight_sum = sum(weights.values())
    exact = {k: total * w / weight_sum for k, w in weights.items()}
    counts = {k: int(v) for k, v in exact.items()}
    by_remainder = sorted(weights, key=lambda k: (-(exact[k] - counts[k]), k))
    for k in by_remainder[:total - sum(counts.values())]:
        counts[k] += 1
    return [k for k in sorted(counts) for _ in range(counts[k])]


def assign_lengths(rng: random.Random, plan: list[tuple[str, ...]], rows: list[int]) -> dict[int, int]:
    lengths = _apportion(LENGTH_WEIGHTS, len(rows))
    keyed = sorted(rows, key=lambda i: (len(plan[i]) + rng.uniform(0.0, 2.5), i))
    return dict(zip(keyed, lengths))


# ---------------------------------------------------------------------------------------------------------
# Composition
# ---------------------------------------------------------------------------------------------------------


def make_fills(rng: random.Random, industry: bank.Industry) -> dict[str, str]:
    metric, value, target = rng.choice(industry.metrics)
    fills = {
        "company": rng.choice(industry.companies),
        "product": rng.choice(industry.products),
        "audience": rng.choice(industry.audiences),
        "channel": rng.choice(industry.channels),
        "metric": metric,
        "value": value,
        "target": target,
        "quarter": rng.choice(bank.QUARTERS),
        "month": rng.choice(bank.MONTHS),
        "weekday": rng.choice(bank.WEEKDAYS),
        "person": rng.choice(bank.PEOPLE),
        "pct": str(rng.randint(*bank.PCT_RANGE)),
    }
    for key in list(fills):
        fills[key[0].upper() + key[1:]] = fills[key][0].upper() + fills[key][1:]
    return fills


_KEEP_CAPITAL = frozenset({"I", "English"})


def join_sentence(before: str, joiner: str, sentence: str, template: str) -> str:
    """`before + joiner + sentence`, lower-casing the sentence's first word after a joiner that does not end a
    sentence ("Quick background - our voice ..."), unless the word is a slot value, a name, an acronym or "I".
    `template` is the unfilled sentence (a sentence that starts with a slot is left alone)."""
    if joiner.rstrip().endswith(":") and ":" in sentence.split(".", 1)[0]:
        # no "Separately: following on from this morning: ..." - fall back to a plain space (or no lead-in)
        return f"{before} {sentence}" if before else sentence
    if joiner.rstrip().endswith((":", "-")) and not template.startswith("{"):
        word = sentence.split(" ", 1)[0]
        bare = word.split("'", 1)[0].rstrip(",.:;")
        if bare not in _KEEP_CAPITAL and bare.isalpha() and bare[:1].isupper() and bare[1:].islower():
            sentence = sentence[0].lower() + sentence[1:]
    return before + joiner + sentence


class _Composer:
    """Composes one conversation; `used` keeps any text from appearing twice in it."""

    def __init__(self, rng: random.Random, fills: dict[str, str]):
        self.rng, self.fills, self.used = rng, fills, set()

    def pick(self, pool: Sequence):
        fresh = [item for item in pool if item not in self.used]
        item = self.rng.choice(fresh or list(pool))
        self.used.add(item)
        return item

    def fill(self, template: str) -> str:
        return template.format(**self.fills)


def compose(rng: random.Random, labels: tuple[str, ...], n_turns: int, split: str,
            fills: dict[str, str]) -> list[dict[str, str]]:
    c = _Composer(rng, fills)
    n_user, n_assistant = (n_turns + 1) // 2, n_turns // 2
    none_pool = split_pool(bank.NONE_ITEMS, split)

    # --- signal utterances, grouped onto user turns
    groups: list[list[tuple[str, str]]] = []
    none_pos = -1
    if labels == (NONE,):
        none_pos = 0 if rng.random() < P_NONE_FIRST else rng.randrange(n_user)
    else:
        units = [(label, c.pick(split_pool(bank.SIGNALS[label], split))) for label in labels]
        if len(labels) == 1 and n_user >= 3 and rng.random() < P_DOUBLE_SIGNAL:
            units.append((labels[0], c.pick(split_pool(bank.SIGNALS[labels[0]], split))))
        rng.shuffle(units)
        groups = [[unit] for unit in units]
        while len(groups) > n_user or (len(groups) > 1 and len(groups) == len(units) and rng.random() < P_MERGE):
            i = rng.randrange(len(groups) - 1)
            groups[i:i + 2] = [groups[i] + groups[i + 1]]
    positions = sorted(rng.sample(range(n_user), len(groups)))
    at = dict(zip(positions, groups))

    # --- user turns: (kind, text, extra); extra = categories for signals, the prepared answer otherwise
    user_turns: list[tuple[str, str, object]] = []
    # "task": work is in hand, so a follow-up fits; "answered": a one-off question was answered;
    # "open": nothing in hand, so a new request (or a none utterance) comes next
    state = "open"
    for j in range(n_user):
        last = j == n_user - 1
        if j in at:
            group = at[j]
            text = c.fill(group[0][1])
            for _, template in group[1:]:
                text = join_sentence(text, rng.choice(bank.CONNECTORS), c.fill(template), template)
            has_ask = rng.random() < P_ASK
            if has_ask:
                text += " " + c.fill(c.pick(bank.ASKS))
            if j == 0 and rng.random() < P_LEAD_IN:
                text = join_sentence("", rng.choice(bank.LEAD_INS), text, group[0][1])
            user_turns.append(("signal+ask" if has_ask else "signal", text, [label for label, _ in group]))
            state = "task" if has_ask else "open"
            continue
        distractor = labels != (NONE,) and rng.random() < P_DISTRACTOR
        if j == none_pos or distractor or (state != "task" and labels == (NONE,) and rng.random() < 0.3):
            kind, question, answer = c.pick(none_pool)
            user_turns.append(("none", c.fill(question), c.fill(answer)))
            state = "answered" if kind == "ask" else "open"
        elif state in ("task", "answered") and last and j > 0 and rng.random() < P_CLOSER:
            user_turns.append(("closer", c.pick(bank.CLOSERS), rng.choice(bank.CLOSING_REPLIES)))
            state = "open"
        elif state == "task":
            question, answer = c.pick(bank.FOLLOWUPS)
            user_turns.append(("followup", c.fill(question), c.fill(answer)))
        else:
            request, reply = c.pick(bank.OPENERS)
            user_turns.append(("opener", c.fill(request), c.fill(reply)))
            state = "task"

    # --- assistant replies
    conversation: list[dict[str, str]] = []
    for j, (kind, text, extra) in enumerate(user_turns):
        conversation.append({"role": "user", "content": text})
        if j >= n_assistant:
            break
        if kind.startswith("signal"):
            if rng.random() < P_CATEGORY_REPLY:
                reply = c.fill(c.pick(bank.CATEGORY_REPLIES[rng.choice(extra)]))
            else:
                reply = c.fill(c.pick(bank.ACK_REPLIES))
            if kind == "signal+ask":
                reply += " " + c.fill(c.pick(bank.GENERIC_REPLIES))
        else:
            reply = extra
        conversation.append({"role": "assistant", "content": reply})
    assert len(conversation) == n_turns, (len(conversation), n_turns)
    return conversation


# ---------------------------------------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------------------------------------


def generate(seed: int = DEFAULT_SEED) -> tuple[list[Example], list[Example]]:
    """All examples, as (train, test)."""
    rng = random.Random(seed)
    plan = plan_label_sets(rng)
    is_test = choose_test(plan)
    lengths: dict[int, int] = {}
    for split_flag in (False, True):
        lengths.update(assign_lengths(rng, plan, [i for i in range(len(plan)) if is_test[i] == split_flag]))

    seen: set[tuple[tuple[str, str], ...]] = set()
    out: dict[str, list[Example]] = {"train": [], "test": []}
    for i, labels in enumerate(plan):
        split = "test" if is_test[i] else "train"
        for _ in range(200):
            industry = rng.choice(bank.INDUSTRIES)
            fills = make_fills(rng, industry)
            conversation = compose(rng, labels, lengths[i], split, fills)
            key = tuple((t["role"], t["content"]) for t in conversation)
            if key not in seen:
                break
        else:  # pragma: no cover - the bank is far larger than the dataset
            raise RuntimeError(f"could not compose a new conversation for plan row {i} {labels}")
        seen.add(key)
        rows = out[split]
        metadata = {"industry": industry.name, "company": fills["company"], "turns": len(conversation),
                    "split": split}
        rows.append(make_example(f"{SOURCE}-{split}-{len(rows):04d}", conversation, list(labels), source=SOURCE,
                                 metadata=metadata))
    return out["train"], out["test"]


def build(out_dir: Path = EMBEDDED_DIR, seed: int = DEFAULT_SEED) -> tuple[Path, Path]:
    """Write `train.jsonl` and `test.jsonl` into `out_dir`; returns their paths."""
    return _write(Path(out_dir), *generate(seed))


def _write(out_dir: Path, train: list[Example], test: list[Example]) -> tuple[Path, Path]:
    train_path = write_examples(out_dir / "train.jsonl", train)
    test_path = write_examples(out_dir / "test.jsonl", test)
    return train_path, test_path


def summarize(train: list[Example], test: list[Example]) -> str:
    rows = train + test
    lines = [f"rows: {len(rows)} (train {len(train)}, test {len(test)})"]
    for label in LABELS:
        lines.append(f"  {label:32s} {sum(label in ex.categories for ex in train):4d} train "
                     f"{sum(label in ex.categories for ex in test):3d} test")
    multi = sum(len(ex.categories) > 1 for ex in rows) / len(rows)
    none = sum(ex.categories == [NONE] for ex in rows) / len(rows)
    lines.append(f"multi-label {multi:.1%}, none {none:.1%}")
    turns = [len(ex.conversation) for ex in rows]
    lines.append("turns: " + ", ".join(f"{n}:{turns.count(n)}" for n in sorted(set(turns))))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=EMBEDDED_DIR)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    train, test = generate(args.seed)
    train_path, test_path = _write(args.out_dir, train, test)
    print(f"wrote {train_path} and {test_path}")
    print(summarize(train, test))


if __name__ == "__main__":
    main()
