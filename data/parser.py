"""Parse a model's answer into taxonomy labels.

The answer format is comma-separated labels (`company.brand_core, user.role_context`). Models drift from it,
so the parser also accepts: any case, stray whitespace (also around the dot), an optional leading
`categories:`-style prefix, newline / semicolon separators, list bullets, quotes and brackets. Anything left
that is not a label is reported in `unknown`, never silently dropped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from data.taxonomy import BY_NAME, clean_label_set

# "Categories:", "memory categories -", "Labels:", "Answer:" ... at the very start of the answer.
_PREFIX = re.compile(r"^\s*(?:the\s+)?(?:memory\s+)?(?:categories|category|labels?|answer|routing)\s*[:=\-]\s*",
                     re.IGNORECASE)
_SEPARATORS = re.compile(r"[,;\n|]+")
_BULLET = re.compile(r"^(?:[-*•]+|\d+[.)])\s*")
_STRIP_CHARS = " \t\r'\"`[](){}<>."


@dataclass
class ParsedAnswer:
    labels: list[str] = field(default_factory=list)  # valid labels, taxonomy order, `none` dropped if mixed
    unknown: list[str] = field(default_factory=list)  # pieces that are not labels
    parsed: bool = False  # True when at least one valid label was found


def _normalise(piece: str) -> str:
    piece = _BULLET.sub("", piece.strip())
    piece = piece.strip(_STRIP_CHARS).lower()
    piece = re.sub(r"\s*\.\s*", ".", piece)  # "company . brand_core"
    return re.sub(r"\s+", "_", piece)  # "brand core" inside a label -> brand_core


def parse_answer(text: str | None) -> ParsedAnswer:
    if not text or not text.strip():
        return ParsedAnswer()
    body = _PREFIX.sub("", text.strip(), count=1)
    valid, unknown = [], []
    for raw_piece in _SEPARATORS.split(body):
        if not raw_piece.strip():
            continue
        piece = _normalise(raw_piece)
        if piece in BY_NAME:
            valid.append(piece)
        elif piece:
            unknown.append(raw_piece.strip())
    labels = clean_label_set(valid)
    return ParsedAnswer(labels=labels, unknown=unknown, parsed=bool(labels))


# How an SFT answer lists its labels (learner.sft_data): taxonomy order, or most frequent in the training data first.
LABEL_ORDERS = ("taxonomy", "frequency")


def format_answer(labels, order: Sequence[str] | None = None) -> str:
    """The answer text for a label set (the SFT target and the parser's inverse): taxonomy order, or the given
    `order` of label names (an SFT choice; the parser reads any order)."""
    labels = clean_label_set(labels)
    if order is not None:
        rank = {name: i for i, name in enumerate(order)}
        labels = sorted(labels, key=lambda name: rank.get(name, len(rank)))
    return ", ".join(labels)
