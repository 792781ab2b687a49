"""The one request validator of every POST route (`/route` and `/v1/chat/completions`), and the error body.

Each step refuses with an `ApiError` (a 4xx) before the next can fail on what it let through, in this order:
content type (415), body size (413, `max_body_bytes`, checked on Content-Length and while reading), UTF-8 (400),
JSON nesting depth (400, `max_json_depth`, a scan of the raw bytes *before* `json.loads` could recurse), JSON
syntax (400), text that cannot be encoded, e.g. a lone UTF-16 surrogate such as "\\udbff" (400), the schema (422),
then per conversation: turns (413, `max_turns`) and characters per turn (413, `max_turn_chars`). Prompt tokens
(413, `max_conversation_tokens`) are checked by the ingress once it has rendered the prompts (`check_tokens`).

Every refusal, on every route, is `{"error": {"type", "code", "message"}}`: OpenAI's error shape, `type` its
class of error (`invalid_request_error`, `authentication_error`, `server_error`), `code` the exact reason.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate, count
from operator import sub
from typing import Any

from pydantic import ValidationError

from serve.config import ServeConfig

MAX_MESSAGE_CHARS = 1000  # an error message echoes input (a role, a model id): never more than this of it


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_type(status: int) -> str:
    if status == 401:
        return "authentication_error"
    return "server_error" if status >= 500 else "invalid_request_error"


def error_body(status: int, code: str, message: str) -> bytes:
    """The JSON of an error, ASCII-escaped: a message quoting a lone surrogate still encodes."""
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS] + " ..."
    body = {"error": {"type": error_type(status), "code": code, "message": message}}
    return json.dumps(body, ensure_ascii=True).encode("ascii")


# --- the raw body ----------------------------------------------------------------------------------------------

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')  # a JSON string (unrolled: linear, no backtracking)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")  # running sum of these - position = depth


def json_depth(raw: bytes, limit: int) -> int:
    """The nesting depth of the JSON text `raw` (brackets inside strings do not count); where it holds no more
    than `limit` brackets, their count (it cannot be deeper). No recursion: C-speed scans only."""
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    if len(brackets) <= limit:
        return len(brackets)
    return max(map(sub, accumulate(brackets.translate(_STEP)), count(1)))


def content_type_ok(content_type: str) -> None:
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise ApiError(415, "unsupported_media_type",
                       f"Content-Type must be application/json, got {content_type or 'none'!r}")


def too_large(size: int, cfg: ServeConfig) -> ApiError:
    return ApiError(413, "payload_too_large", f"the body is {size} bytes or more, over max_body_bytes="
                                              f"{cfg.max_body_bytes}")


def parse_json(raw: bytes, cfg: ServeConfig) -> Any:
    """The body's JSON value, or an ApiError: size, encoding, depth, syntax, unencodable text."""
    if len(raw) > cfg.max_body_bytes:
        raise too_large(len(raw), cfg)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ApiError(400, "invalid_encoding", f"the body is not UTF-8 (byte {e.start}: "
                                                f"{raw[e.start:e.start + 4]!r})") from None
    depth = json_depth(raw, cfg.max_json_depth)
    if depth > cfg.max_json_depth:
        raise ApiError(400, "json_too_deep", f"the body nests {depth} levels deep, over max_json_depth="
                                             f"{cfg.max_json_depth}")
    try:
        obj = json.loads(text)
    except RecursionError:  # cannot happen below max_json_depth; the second line of defence
        raise ApiError(400, "json_too_deep", f"the body nests over max_json_depth={cfg.max_json_depth}") from None
    except ValueError as e:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {e}") from None
    if "\\u" in text and re.search(r"\\u[dD][89abcdefABCDEF]", text):  # only escapes make lone surrogates
        check_text(obj)
    return obj


def check_text(obj: Any) -> None:
    """Every string (keys too) must encode as UTF-8: a lone surrogate, which JSON escapes allow, does not (the
    tokenizer would raise on it). Iterative: depth is bounded already, but no recursion is needed."""
    stack: list[tuple[Any, str]] = [(obj, "")]
    while stack:
        node, where = stack.pop()
        if isinstance(node, dict):
            stack.extend((k, f"{where} key") for k in node)
            stack.extend((v, f"{where}.{k}") for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(node))
        elif isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError as e:
                raise ApiError(400, "invalid_text", f"{where.lstrip('.') or 'the body'}: the text holds a lone "
                                                    f"surrogate {ascii(node[e.start])} at character {e.start}, "
                                                    f"which is not valid Unicode") from None


def to_model(obj: Any, model):
    try:
        return model.model_validate(obj)
    except ValidationError as e:
        problems = []
        for err in e.errors()[:5]:
            where = ".".join(map(str, err["loc"]))
            problems.append(f"{where + ': ' if where else ''}{err['msg'].removeprefix('Value error, ')}")
        more = f" (and {e.error_count() - 5} more)" if e.error_count() > 5 else ""
        raise ApiError(422, "invalid_request", "; ".join(problems) + more) from None


# --- the conversations -----------------------------------------------------------------------------------------


def check_conversations(conversations: list[list[dict]], cfg: ServeConfig) -> None:
    """Conversations per request, turns per conversation and characters per turn."""
    if len(conversations) > cfg.max_request_conversations:
        raise ApiError(413, "payload_too_large", f"{len(conversations)} conversations in one request, over "
                                                 f"max_request_conversations={cfg.max_request_conversations}")
    for i, conv in enumerate(conversations):
        where = f"conversations[{i}]" if len(conversations) > 1 else "conversation"
        if len(conv) > cfg.max_turns:
            raise ApiError(413, "too_many_turns", f"{where} has {len(conv)} turns, over max_turns={cfg.max_turns}")
        for j, turn in enumerate(conv):
            if len(turn["content"]) > cfg.max_turn_chars:
                raise ApiError(413, "turn_too_long", f"{where}[{j}].content is {len(turn['content'])} characters, "
                                                     f"over max_turn_chars={cfg.max_turn_chars}")


def check_tokens(token_counts: list[int], cfg: ServeConfig) -> None:
    for i, n in enumerate(token_counts):
        if n > cfg.max_conversation_tokens:
            raise ApiError(413, "conversation_too_long",
                           f"conversations[{i}] renders to {n} prompt tokens, over max_conversation_tokens="
                           f"{cfg.max_conversation_tokens}: split or trim it")
