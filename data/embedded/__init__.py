"""memroute's own small embedded dataset, written by the project (no text taken from any other corpus).

What it is
    About 320 short marketing-assistant conversations (user <-> assistant turns), each labelled with the
    memory categories of `data.taxonomy` (12 real ones plus `none`). It is small enough to commit and to use
    for smoke tests, quick fine-tuning runs and sanity evaluations without the reference corpus.

How it is built
    `bank.py` holds hand-written material: for every real category at least 14 user "signal" utterances that
    carry that category's memory signal, with slots such as {company}, {product}, {channel}, {metric},
    {quarter} and {audience}; "none" utterances (small talk, one-off questions, throwaway requests) with
    their answers; neutral openers, follow-ups and closers; generic and per-category assistant replies; and
    scenario material for 15 industries. `build.py` composes conversations from it with a fixed-seed
    `random.Random`: the labels of a conversation are exactly the categories whose signal utterances were
    placed in it (neutral turns carry no signal; `none` rows hold only none/neutral material). A quarter of
    the signal and none utterances are held out for the test split, so test conversations do not reuse the
    training templates. Re-running `python -m data.embedded.build` reproduces both files byte for byte.
"""

from pathlib import Path

EMBEDDED_DIR = Path(__file__).parent
TRAIN_PATH = EMBEDDED_DIR / "train.jsonl"
TEST_PATH = EMBEDDED_DIR / "test.jsonl"

# Short conversations (2-4 turns, ~20-80 words), built by `short.py` from `short_bank.py`.
SHORT_TRAIN_PATH = EMBEDDED_DIR / "short_train.jsonl"
SHORT_TEST_PATH = EMBEDDED_DIR / "short_test.jsonl"
