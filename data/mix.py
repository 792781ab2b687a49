"""Dataset mixes: a `train_data` / `--train` value naming one file or several joined with commas.

SFT, the baselines and the lineage all read a mix the same way: the files in the order given, every example id
unique across them.
"""

from __future__ import annotations

import os
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
