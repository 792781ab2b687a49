"""Near-duplicate conversations: word-shingle Jaccard, with MinHash + LSH to find candidates fast.

A teacher asked for many similar scenarios repeats itself. Exact Jaccard over all pairs is quadratic (tens of
seconds at a few thousand rows), so each conversation gets a MinHash signature (NUM_PERM hashes); signatures
split into bands, and only conversations sharing a band bucket are compared, with the exact Jaccard of their
shingle sets. At the 0.8 default threshold a true pair is missed with probability about 2e-4 (16 bands of 4).
The first occurrence (in input order) is kept; later near-duplicates are reported with what they duplicate.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from data.prompt import conversation_text
from data.schema import Example

NUM_PERM, ROWS_PER_BAND = 64, 4
_PRIME = (1 << 31) - 1  # hashes are reduced below 2**32 so a * h + b fits in uint64
_rng = np.random.default_rng(20240817)  # fixed: signatures must not change between runs
_A = _rng.integers(1, _PRIME, NUM_PERM, dtype=np.uint64)
_B = _rng.integers(0, _PRIME, NUM_PERM, dtype=np.uint64)
_WORD = re.compile(r"\w+")


def shingles(text: str, k: int = 3) -> frozenset[str]:
    words = _WORD.findall(text.lower())
    if len(words) <= k:
        return frozenset([" ".join(words)])
    return frozenset(" ".join(words[i:i + k]) for i in range(len(words) - k + 1))


def jaccard(a: frozenset, b: frozenset) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def minhash(sh: frozenset[str]) -> np.ndarray:
    # blake2b, not hash(): Python's string hash is salted per process, and signatures must be reproducible.
    h = np.fromiter((int.from_bytes(hashlib.blake2b(s.encode(), digest_size=4).digest(), "little") for s in sh),
                    dtype=np.uint64, count=len(sh))
    return ((h[:, None] * _A + _B) % _PRIME).min(axis=0)


@dataclass
class Duplicate:
    id: str
    duplicate_of: str
    similarity: float


def find_near_duplicates(examples: Sequence[Example], threshold: float, k: int = 3) -> list[Duplicate]:
    """Rows (after the first of each group) whose shingle Jaccard with an earlier kept row is >= threshold."""
    buckets: dict[tuple, list[int]] = {}
    kept_shingles: dict[int, frozenset] = {}
    found = []
    for i, ex in enumerate(examples):
        sh = shingles(conversation_text(ex.conversation), k)
        sig = minhash(sh)
        keys = [(b, sig[b * ROWS_PER_BAND:(b + 1) * ROWS_PER_BAND].tobytes())
                for b in range(NUM_PERM // ROWS_PER_BAND)]
        candidates = {j for key in keys for j in buckets.get(key, ())}
        best = max(((jaccard(sh, kept_shingles[j]), j) for j in candidates), default=(0.0, -1))
        if best[0] >= threshold:
            found.append(Duplicate(ex.id, examples[best[1]].id, round(best[0], 4)))
            continue
        kept_shingles[i] = sh
        for key in keys:
            buckets.setdefault(key, []).append(i)
    return found


def drop_near_duplicates(examples: Sequence[Example], threshold: float, k: int = 3
                         ) -> tuple[list[Example], list[Duplicate]]:
    dups = find_near_duplicates(examples, threshold, k)
    dropped = {d.id for d in dups}
    return [ex for ex in examples if ex.id not in dropped], dups
