"""The example schema (see ../shared/data/README.md), its validation, and JSONL / Parquet I/O.

Errors name the file, the line (JSONL) or row (Parquet) and the field, so a bad row in a 10k-line file is
found in one look. Writers are atomic.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from data.atomic import atomic_path, write_jsonl_atomic
from memroute.core.errors import InputError, InputNotFoundError
from data.taxonomy import BY_NAME, HORIZONS, LABELS, NONE, SCOPES, canonical_order, majority_horizon, set_scope

ROLES = ("user", "assistant")
HORIZON_VALUES = HORIZONS + ("mixed", "none")


class ExampleError(InputError):
    """A row that does not fit the schema. `where` is `path:line` (or `path:row N` for Parquet)."""

    def __init__(self, where: str, field_name: str, problem: str):
        self.where, self.field, self.problem = where, field_name, problem
        super().__init__(f"{where}: field {field_name!r}: {problem}")


@dataclass
class Example:
    id: str
    conversation: list[dict[str, str]]
    categories: list[str] = field(default_factory=list)
    persistence_horizon: str = ""
    memory_scope: str = ""
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def derive_horizon(categories: list[str]) -> str:
    """The dataset's `persistence_horizon` for a label set: the shared horizon, `mixed`, or `none`."""
    if not categories or categories == [NONE]:
        return "none"
    horizons = {BY_NAME[c].horizon for c in categories}
    return horizons.pop() if len(horizons) == 1 else "mixed"


def make_example(id: str, conversation: list[dict[str, str]], categories: list[str], source: str = "",
                 metadata: dict | None = None) -> Example:
    """Build a valid example, deriving horizon and scope from the labels."""
    cats = canonical_order(categories)
    ex = Example(id=id, conversation=conversation, categories=cats, persistence_horizon=derive_horizon(cats),
                 memory_scope=set_scope(cats), source=source, metadata=dict(metadata or {}))
    return validate_example(ex.to_dict(), where=f"example {id}")


def validate_conversation(conversation: Any, where: str) -> list[dict[str, str]]:
    """Check a conversation (used by the dataset readers and by the serving endpoint alike)."""
    if not isinstance(conversation, list):
        raise ExampleError(where, "conversation", f"must be a list of turns, got {type(conversation).__name__}")
    if not conversation:
        raise ExampleError(where, "conversation", "is empty: at least one turn is needed")
    turns = []
    for i, turn in enumerate(conversation):
        name = f"conversation[{i}]"
        if not isinstance(turn, dict):
            raise ExampleError(where, name, f"must be an object with role and content, got {type(turn).__name__}")
        role, content = turn.get("role"), turn.get("content")
        if role not in ROLES:
            raise ExampleError(where, f"{name}.role", f"must be one of {ROLES}, got {role!r}")
        if not isinstance(content, str) or not content.strip():
            raise ExampleError(where, f"{name}.content", "must be a non-empty string")
        turns.append({"role": role, "content": content.strip()})
    return turns


def validate_categories(categories: Any, where: str) -> list[str]:
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        raise ExampleError(where, "categories", "must be a list of label strings")
    if not categories:
        raise ExampleError(where, "categories", f"is empty: use [{NONE!r}] for nothing to remember")
    for c in categories:
        if c not in BY_NAME:
            raise ExampleError(where, "categories", f"unknown category {c!r}; expected one of: {', '.join(LABELS)}")
    if len(set(categories)) != len(categories):
        raise ExampleError(where, "categories", f"duplicate labels in {categories}")
    if NONE in categories and len(categories) > 1:
        raise ExampleError(where, "categories", f"{NONE!r} is exclusive but appears with {categories}")
    return canonical_order(categories)


def validate_example(obj: Any, where: str, require_labels: bool = True) -> Example:
    """Turn a parsed JSON object into an Example, or raise ExampleError naming the problem."""
    if not isinstance(obj, dict):
        raise ExampleError(where, "<row>", f"must be a JSON object, got {type(obj).__name__}")
    ex_id = obj.get("id")
    if not isinstance(ex_id, str) or not ex_id:
        raise ExampleError(where, "id", "must be a non-empty string")
    conversation = validate_conversation(obj.get("conversation"), where)
    categories = obj.get("categories")
    if categories is None and not require_labels:
        categories = []
    else:
        categories = validate_categories(categories, where)
    horizon = obj.get("persistence_horizon") or (derive_horizon(categories) if categories else "")
    if horizon and horizon not in HORIZON_VALUES:
        raise ExampleError(where, "persistence_horizon", f"must be one of {HORIZON_VALUES}, got {horizon!r}")
    scope = obj.get("memory_scope") or (set_scope(categories) if categories else "")
    if scope and scope not in SCOPES:
        raise ExampleError(where, "memory_scope", f"must be one of {SCOPES}, got {scope!r}")
    metadata = obj.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ExampleError(where, "metadata", "must be an object")
    source = obj.get("source") or ""
    if not isinstance(source, str):
        raise ExampleError(where, "source", "must be a string")
    return Example(ex_id, conversation, categories, horizon, scope, source, metadata)


def _jsonl_rows(path: Path) -> Iterable[tuple[str, Any]]:
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    ends_with_newline = raw.endswith(b"\n")
    if ends_with_newline:
        lines = lines[:-1]
    for i, line in enumerate(lines, start=1):
        where = f"{path}:{i}"
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            yield where, ExampleError(where, "<row>", f"is not valid UTF-8 (byte {e.start}: "
                                                      f"{line[e.start:e.start + 4]!r})")
            continue
        try:
            obj = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as e:
            truncated = i == len(lines) and not ends_with_newline
            hint = "the last line looks truncated (no newline, incomplete JSON)" if truncated else "malformed JSON"
            detail = f"{e.msg} at column {e.colno}" if isinstance(e, json.JSONDecodeError) else "nested too deep"
            obj = ExampleError(where, "<row>", f"{hint}: {detail}")
        yield where, obj  # a bad line as its ExampleError: the reader goes on to the next one


def _parquet_rows(path: Path) -> Iterable[tuple[str, Any]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise ExampleError(str(path), "<file>", f"cannot be read as Parquet: {e}") from None
    for i, row in enumerate(table.to_pylist()):
        if isinstance(row.get("metadata"), str):
            row["metadata"] = json.loads(row["metadata"]) if row["metadata"] else {}
        yield f"{path}:row {i}", row


SUFFIXES = (".jsonl", ".parquet")


def check_suffix(path: Path) -> None:
    """Datasets are JSONL or Parquet, told apart by suffix: anything else is refused, not guessed."""
    if path.suffix not in SUFFIXES:
        raise InputError(f"{path}: unknown dataset format {path.suffix or '(no suffix)'!r}; use .jsonl or .parquet")


def read_examples(path: str | os.PathLike, require_labels: bool = True,
                  rejects: list[ExampleError] | None = None) -> list[Example]:
    """Read a .jsonl or .parquet file of examples.

    By default the first bad row raises. Pass a `rejects` list to collect bad rows there and keep the rest
    (the teacher pipeline and `memroute data validate` do that): rows that do not fit the schema, lines that are
    not JSON or not UTF-8, and repeated ids (the first row with an id is kept; the error names both lines).
    """
    path = Path(path)
    check_suffix(path)
    if not path.exists():
        raise InputNotFoundError(f"dataset not found: {path}")
    rows = _parquet_rows(path) if path.suffix == ".parquet" else _jsonl_rows(path)
    examples, first_at = [], {}
    for where, obj in rows:
        try:
            if isinstance(obj, ExampleError):
                raise obj
            ex = validate_example(obj, where, require_labels=require_labels)
            if ex.id in first_at:
                raise ExampleError(where, "id", f"duplicate id {ex.id!r}, first at {first_at[ex.id]}")
            place = where.removeprefix(f"{path}:")  # "7" (a JSONL line) or "row 6" (Parquet)
            first_at[ex.id] = f"line {place}" if place.isdigit() else place
            examples.append(ex)
        except ExampleError as e:
            if rejects is None:
                raise
            rejects.append(e)
    return examples


def _parquet_schema():
    import pyarrow as pa

    turn = pa.struct([("role", pa.string()), ("content", pa.string())])
    return pa.schema([
        ("id", pa.string()), ("conversation", pa.list_(turn)), ("categories", pa.list_(pa.string())),
        ("persistence_horizon", pa.string()), ("memory_scope", pa.string()), ("source", pa.string()),
        ("metadata", pa.string()),  # JSON text: metadata keys differ per source
    ])


def write_examples(path: str | os.PathLike, examples: Iterable[Example]) -> Path:
    """Write examples atomically as JSONL or Parquet (chosen by suffix)."""
    path = Path(path)
    check_suffix(path)
    rows = [ex.to_dict() for ex in examples]
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        for row in rows:
            row["metadata"] = json.dumps(row["metadata"], ensure_ascii=False)
        table = pa.Table.from_pylist(rows, schema=_parquet_schema())
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
    else:
        write_jsonl_atomic(path, rows)
    return path
