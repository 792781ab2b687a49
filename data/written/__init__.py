"""Conversations written by hand for training (no builder, no template, no text from any other corpus).

`train.jsonl`: single-label conversations of 5-8 turns, the same number for each of the 13 labels, each carrying
one clear signal of its label and nothing of the others (README.md in this folder says how they were written).
They add what the builder-made embedded sets cannot: wording that no template repeats, for the one-category
conversations where the router trails a bag-of-words baseline.
"""

from pathlib import Path

WRITTEN_DIR = Path(__file__).parent
WRITTEN_TRAIN_PATH = WRITTEN_DIR / "train.jsonl"
