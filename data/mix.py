"""Dataset mixes: a `train_data` / `--train` value naming one file or several joined with commas.

SFT, the baselines and the lineage all read a mix the same way: the files in the order given, every example id
unique across them.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from data.schema import Example, read_examples
from memroute.core.errors import InputError


class MixError(InputError):
    """A mix that cannot be read as one dataset; the message names the files."""


def mix_paths(spec: str | os.PathLike) -> list[Path]:
    parts = [p.strip() for p in str(spec).split(",") if p.strip()]
    if not parts:
        raise MixError("no dataset named: give a JSONL or Parquet file (or several, comma-separated)")
    return [Path(p).expanduser() for p in parts]


def read_mix(spec: str | os.PathLike) -> list[tuple[Path, list[Example]]]:
    """[(file, its examples)] for each file of the mix; an id in two files is an error naming both."""
    out, where = [], {}
    for path in mix_paths(spec):
        rows = read_examples(path)
        for ex in rows:
            if ex.id in where:
                raise MixError(f"example id {ex.id!r} is in both {where[ex.id]} and {path}: ids must be unique "
                               f"across the files of a mix")
            where[ex.id] = path
        out.append((path, rows))
    return out


def read_mix_examples(spec: str | os.PathLike) -> list[Example]:
    return [ex for _, rows in read_mix(spec) for ex in rows]


def step_batch(n_examples: int, step: int, per_step: int, seed: int) -> list[int]:
    """Indices of the conversations for `step`: consecutive slices of seeded per-epoch permutations, so a resumed
    run continues exactly where the checkpoint left off."""
    out, pos = [], step * per_step
    while len(out) < per_step:
        epoch, offset = divmod(pos, n_examples)
        order = list(range(n_examples))
        random.Random(seed * 7919 + epoch).shuffle(order)
        take = min(per_step - len(out), n_examples - offset)
        out.extend(order[offset:offset + take])
        pos += take
    return out
