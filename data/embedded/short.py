"""Compose SHORT conversations (2-4 turns, ~20-80 words) and write `short_train.jsonl` / `short_test.jsonl`.

    python -m data.embedded.short [--out-dir DIR] [--seed N]

Users often send a chat of two to four short turns in which one company fact (or one fact about themselves) is
stated; the router has to route those too, not answer `none`. The main embedded set (`build.py`) has 3 to 12
turns with long utterances, so this builder makes the short kind from `short_bank.py` (one-sentence signals and
short neutral turns) and `bank.py` (industries, people, months, topic replies).

Everything is driven by one `random.Random(seed)`, so a re-run writes byte-identical files. How a row is made:
1. A plan of label sets: single-label rows weighted toward company.* (about half of all rows), fewer user.*
   rows, `none` rows, and 2-label rows (company + user, company + company, user + user).
2. The test split is drawn from the plan, stratified by label-set kind; every fourth signal and none item of
   `short_bank` is reserved for it (as in `build.py`), so test rows never reuse a training template.
3. Turn counts (2, 3 or 4) are dealt to each split from fixed proportions.
4. Each conversation is composed: one signal sentence per label, on the first user turn (with an optional
   lead-in or a neutral question) or on the second one (after a greeting, a short request or a one-off
   question); the other turns are neutral, and each user turn gets an assistant reply that adds no fact.
   Labels are exactly the categories of the signals placed. Rows outside MIN_WORDS..MAX_WORDS words are
   redrawn.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import random
from typing import Sequence

from data.embedded import EMBEDDED_DIR, bank, short_bank
from data.embedded.build import make_fills, split_pool
from data.schema import Example, make_example, write_examples
from data.taxonomy import LABELS, NONE, REAL_LABELS, canonical_order

DEFAULT_SEED = 1502
SOURCE = "embedded_short"
TRAIN_NAME, TEST_NAME = "short_train.jsonl", "short_test.jsonl"

COMPANY_LABELS = tuple(label for label in REAL_LABELS if label.startswith("company."))
USER_LABELS = tuple(label for label in REAL_LABELS if label.startswith("user."))

N_SINGLE_PER_COMPANY_LABEL = 58
N_SINGLE_PER_USER_LABEL = 24
N_NONE = 95
N_COMPANY_USER_PAIRS = 85
N_COMPANY_PAIRS = 25
N_USER_PAIRS = 15
TEST_FRACTION = 0.15

MIN_WORDS, MAX_WORDS = 20, 80
TURN_WEIGHTS: dict[int, int] = {2: 30, 3: 45, 4: 25}

P_LEAD_IN = 0.3          # a lead-in in front of a signal that opens the conversation
P_ASK = 0.3              # a neutral question after a signal on the first turn
P_SIGNAL_SECOND = 0.5    # a single signal goes on the second user turn (when there is one)
P_SAME_TURN = 0.25       # both signals of a pair share one user turn even when there are two user turns
P_CATEGORY_REPLY = 0.6   # a topic-fitting reply instead of a generic acknowledgement


# ---------------------------------------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------------------------------------


def plan_label_sets(rng: random.Random) -> list[tuple[str, ...]]:
    plan: list[tuple[str, ...]] = [(NONE,)] * N_NONE
    plan += [(label,) for label in COMPANY_LABELS for _ in range(N_SINGLE_PER_COMPANY_LABEL)]
    plan += [(label,) for label in USER_LABELS for _ in range(N_SINGLE_PER_USER_LABEL)]
    companies = [COMPANY_LABELS[i % len(COMPANY_LABELS)] for i in range(N_COMPANY_USER_PAIRS)]
    users = [USER_LABELS[i % len(USER_LABELS)] for i in range(N_COMPANY_USER_PAIRS)]
    rng.shuffle(companies)
    rng.shuffle(users)
    pairs = [(c, u) for c, u in zip(companies, users)]
    pairs += [tuple(rng.sample(COMPANY_LABELS, 2)) for _ in range(N_COMPANY_PAIRS)]
    pairs += [tuple(rng.sample(USER_LABELS, 2)) for _ in range(N_USER_PAIRS)]
    plan += [tuple(canonical_order(pair)) for pair in pairs]
    rng.shuffle(plan)
    return plan


def _stratum(labels: tuple[str, ...]) -> str:
    if len(labels) == 1:
        return labels[0]
    return "pair:" + "+".join(label.split(".")[0] for label in labels)


def choose_test(plan: list[tuple[str, ...]]) -> list[bool]:
    """Stratified test membership per plan row: the first TEST_FRACTION of each stratum, in plan order."""
    strata: dict[str, list[int]] = {}
    for i, labels in enumerate(plan):
        strata.setdefault(_stratum(labels), []).append(i)
    is_test = [False] * len(plan)
    for key in sorted(strata):
        members = strata[key]
        for i in members[:max(1, round(len(members) * TEST_FRACTION))]:
            is_test[i] = True
    return is_test


def deal_turns(rng: random.Random, rows: list[int]) -> dict[int, int]:
    """Turn counts for `rows` in the proportions of TURN_WEIGHTS (largest remainder), in random order."""
    total, weight_sum = len(rows), sum(TURN_WEIGHTS.values())
    exact = {k: total * w / weight_sum for k, w in TURN_WEIGHTS.items()}
    counts = {k: int(v) for k, v in exact.items()}
    for k in sorted(TURN_WEIGHTS, key=lambda k: (-(exact[k] - counts[k]), k))[:total - sum(counts.values())]:
        counts[k] += 1
    turns = [k for k in sorted(counts) for _ in range(counts[k])]
    rng.shuffle(turns)
    return dict(zip(rows, turns))


# ---------------------------------------------------------------------------------------------------------
# Composition
# ---------------------------------------------------------------------------------------------------------


def short_fills(rng: random.Random, industry: bank.Industry) -> dict[str, str]:
    fills = make_fills(rng, industry)
    kind = short_bank.INDUSTRY_KINDS[industry.name]
    fills["kind"], fills["Kind"] = kind, kind[0].upper() + kind[1:]
    return fills


def lower_start(template: str) -> str:
    """The template with its first word lower-cased, for use after a lead-in that does not end a sentence
    ("FYI, our CRM is ..."). A leading slot becomes its lower-case form; proper nouns and "I" are kept."""
    if template.startswith("{"):
        return "{" + template[1].lower() + template[2:]
    bare = template.split(" ", 1)[0].split("'", 1)[0].rstrip(",.:;")
    if bare in short_bank.KEEP_CAPITAL or not (bare[:1].isupper() and bare[1:].islower()):
        return template
    return template[0].lower() + template[1:]


def ends_sentence(prefix: str) -> bool:
    return prefix.rstrip()[-1:] in (".", "!", "?")


def word_count(conversation: list[dict[str, str]]) -> int:
    return sum(len(turn["content"].split()) for turn in conversation)


class _Composer:
    def __init__(self, rng: random.Random, fills: dict[str, str]):
        self.rng, self.fills, self.used = rng, fills, set()

    def pick(self, pool: Sequence):
        fresh = [item for item in pool if item not in self.used]
        item = self.rng.choice(fresh or list(pool))
        self.used.add(item)
        return item

    def fill(self, template: str) -> str:
        return template.format(**self.fills)

    def after(self, before: str, template: str) -> str:
        """`before + template`, filled, lower-casing the template's start when `before` runs into it
        (no lower-casing at the start of a turn or after a full stop)."""
        if not before.strip() or ends_sentence(before):
            return before + self.fill(template)
        return before + self.fill(lower_start(template))

    def signal_text(self, units: list[tuple[str, str]], prefix: str = "") -> str:
        text = self.after(prefix, units[0][1])
        for _, template in units[1:]:
            text = self.after(text + self.rng.choice(short_bank.CONNECTORS), template)
        return text

    def signal_reply(self, labels: list[str]) -> str:
        label = self.rng.choice(labels)
        if self.rng.random() < P_CATEGORY_REPLY:
            pool = short_bank.CATEGORY_REPLIES[label] + bank.CATEGORY_REPLIES[label]
            return self.fill(self.pick(pool))
        return self.pick(short_bank.ACKS)


def compose(rng: random.Random, labels: tuple[str, ...], n_turns: int, split: str,
            fills: dict[str, str]) -> list[dict[str, str]]:
    c = _Composer(rng, fills)
    n_user = (n_turns + 1) // 2
    none_pool = split_pool(short_bank.NONE_ITEMS, split)
    # (user text, assistant reply) per user turn
    turns: list[tuple[str, str]] = []

    if labels == (NONE,):
        kind, question, answer = c.pick(none_pool)
        if n_turns == 2 and kind == "ask" and rng.random() < 0.3:
            question = c.pick(short_bank.GREETINGS)[0] + " " + question
        turns.append((question, answer))
        if n_user == 2:
            if kind == "ask" and rng.random() < 0.5:
                turns.append(c.pick(short_bank.CLOSERS))
            else:
                _, question, answer = c.pick([item for item in none_pool if item[0] == "ask"])
                turns.append((question, answer))
    else:
        units = [(label, c.pick(split_pool(short_bank.SIGNALS[label], split))) for label in labels]
        rng.shuffle(units)
        if len(units) == 2 and (n_user == 1 or rng.random() < P_SAME_TURN):
            groups = [units]
        else:
            groups = [[unit] for unit in units]
        second = n_user == 2 and (len(groups) == 2 or rng.random() < P_SIGNAL_SECOND)
        if second and len(groups) == 1:
            # a neutral first turn, then the signal
            kind = rng.choice(("greeting", "opener", "opener", "none"))
            if kind == "greeting":
                first, reply = c.pick(short_bank.GREETINGS)
                prefix = ""
            elif kind == "opener":
                first, reply = (c.fill(text) for text in c.pick(short_bank.OPENERS))
                prefix = ""
            else:
                _, first, reply = c.pick([item for item in none_pool if item[0] == "ask"])
                prefix = rng.choice(short_bank.AFTER_ANSWER)
            turns.append((first, reply))
            reply = c.signal_reply([label for label, _ in groups[0]])
            if kind == "opener" and rng.random() < 0.5:
                reply += " " + c.pick(short_bank.NEXT_STEPS)
            turns.append((c.signal_text(groups[0], prefix), reply))
        else:
            prefix = rng.choice(short_bank.LEAD_INS) if rng.random() < P_LEAD_IN else ""
            text = c.signal_text(groups[0], prefix)
            reply = c.signal_reply([label for label, _ in groups[0]])
            if rng.random() < P_ASK:
                ask, answer = c.pick(short_bank.ASKS)
                text += " " + c.fill(ask)
                reply += " " + c.fill(answer)
            turns.append((text, reply))
            if len(groups) == 2:
                turns.append((c.signal_text(groups[1]), c.signal_reply([label for label, _ in groups[1]])))
            elif n_user == 2:
                kind = rng.choice(("followup", "followup", "closer"))
                pool = short_bank.FOLLOWUPS if kind == "followup" else short_bank.CLOSERS
                turns.append(tuple(c.fill(text) for text in c.pick(pool)))

    conversation: list[dict[str, str]] = []
    for user, assistant in turns:
        conversation += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    conversation = conversation[:n_turns]
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
    turns: dict[int, int] = {}
    for flag in (False, True):
        turns.update(deal_turns(rng, [i for i in range(len(plan)) if is_test[i] == flag]))

    seen: set[tuple[tuple[str, str], ...]] = set()
    out: dict[str, list[Example]] = {"train": [], "test": []}
    for i, labels in enumerate(plan):
        split = "test" if is_test[i] else "train"
        for _ in range(500):
            industry = rng.choice(bank.INDUSTRIES)
            fills = short_fills(rng, industry)
            conversation = compose(rng, labels, turns[i], split, fills)
            key = tuple((t["role"], t["content"]) for t in conversation)
            if MIN_WORDS <= word_count(conversation) <= MAX_WORDS and key not in seen:
                break
        else:  # pragma: no cover - the bank is far larger than the dataset
            raise RuntimeError(f"could not compose a short conversation for plan row {i} {labels}")
        seen.add(key)
        rows = out[split]
        metadata = {"industry": industry.name, "company": fills["company"], "turns": len(conversation),
                    "words": word_count(conversation), "split": split}
        rows.append(make_example(f"short-{split}-{len(rows):04d}", conversation, list(labels), source=SOURCE,
                                 metadata=metadata))
    return out["train"], out["test"]


def _write(out_dir: Path, train: list[Example], test: list[Example]) -> tuple[Path, Path]:
    return write_examples(out_dir / TRAIN_NAME, train), write_examples(out_dir / TEST_NAME, test)


def build(out_dir: Path = EMBEDDED_DIR, seed: int = DEFAULT_SEED) -> tuple[Path, Path]:
    """Write `short_train.jsonl` and `short_test.jsonl` into `out_dir`; returns their paths."""
    return _write(Path(out_dir), *generate(seed))


def summarize(train: list[Example], test: list[Example]) -> str:
    rows = train + test
    lines = [f"rows: {len(rows)} (train {len(train)}, test {len(test)})"]
    for label in LABELS:
        lines.append(f"  {label:32s} {sum(label in ex.categories for ex in train):4d} train "
                     f"{sum(label in ex.categories for ex in test):3d} test")
    pairs = sum(len(ex.categories) == 2 for ex in rows) / len(rows)
    company_only = sum(all(c.startswith("company.") for c in ex.categories) for ex in rows) / len(rows)
    lines.append(f"2-label {pairs:.1%}, company-only {company_only:.1%}")
    counts = [len(ex.conversation) for ex in rows]
    words = sorted(word_count(ex.conversation) for ex in rows)
    lines.append("turns: " + ", ".join(f"{n}:{counts.count(n)}" for n in sorted(set(counts)))
                 + f"; words min {words[0]}, median {words[len(words) // 2]}, max {words[-1]}")
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
