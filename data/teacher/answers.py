"""Reading the teacher's JSON answers: one error type for every way an answer can be unusable."""

from __future__ import annotations

import json
import re

_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL | re.IGNORECASE)


class AnswerError(ValueError):
    """An answer that does not fit: the message is the reason recorded on a rejected row."""


def json_answer(text: str, finish_reason: str = "COMPLETE") -> dict:
    """The JSON object in an answer (a ```json fence around it is tolerated), or AnswerError saying why not."""
    if finish_reason == "MAX_TOKENS":
        raise AnswerError("answer cut off at max_tokens (raise the stage's max_tokens)")
    body = text or ""
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1)
    try:
        obj = json.loads(body)
    except json.JSONDecodeError as e:
        raise AnswerError(f"malformed JSON: {e.msg} at line {e.lineno} column {e.colno} "
                          f"(answer starts {body[:60]!r})") from None
    if not isinstance(obj, dict):
        raise AnswerError(f"answer must be a JSON object, got {type(obj).__name__}")
    return obj
