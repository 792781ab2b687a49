"""The Cohere V2 chat client: retries with exponential backoff and jitter, a request / token budget, usage.

Written by hand on top of the SDK (which still makes every HTTP call, with its own request timeout), because the
SDK's built-in retries do not fit here: their backoff starts at a fixed 1 s module constant (tests could not
make it tiny), they do not retry timeouts or dropped connections by default, and retries inside the SDK would be
invisible to the budget, which must count every HTTP request. So the SDK client is built with max_retries=0.

The key is handed to the SDK and kept nowhere else; no message below ever includes it.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from dataclasses import dataclass

from data.teacher.config import TeacherConfig, api_key
from memroute.core.errors import UsageError

# Statuses worth another try: rate limiting, request timeout / conflict, and any server-side error.
RETRY_STATUSES = (408, 409, 429)
# Statuses that doom every request of the run (bad key, no access, unknown model): stop at once.
FATAL_STATUSES = (401, 403, 404, 498)


class BudgetExhausted(RuntimeError):
    """The run's request or token budget is spent; finished work is kept, the rest stays pending."""


class RequestFailed(RuntimeError):
    """One request failed for good (retries used up, or the API refused this request)."""


class FatalApiError(UsageError, RuntimeError):
    """The API refused in a way no other request will get past (bad key, unknown model): a set-up problem."""


@dataclass
class ChatResult:
    text: str
    finish_reason: str
    input_tokens: int
    output_tokens: int


class Budget:
    """Thread-safe request and token accounting against the run's limits.

    A request is reserved before it is sent, so the request budget is never exceeded. Tokens are only known
    after the answer, so the token budget can be overshot by the requests already in flight (at most
    `concurrency` of them).
    """

    def __init__(self, max_requests: int | None, max_tokens: int | None):
        self.max_requests, self.max_tokens = max_requests, max_tokens
        self.requests = self.input_tokens = self.output_tokens = self.retries = 0
        self._lock = threading.Lock()

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def reserve(self) -> None:
        with self._lock:
            if self.max_requests is not None and self.requests >= self.max_requests:
                raise BudgetExhausted(f"request budget exhausted ({self.requests} of request_budget="
                                      f"{self.max_requests} requests sent)")
            if self.max_tokens is not None and self.tokens >= self.max_tokens:
                raise BudgetExhausted(f"token budget exhausted ({self.tokens:,} of token_budget="
                                      f"{self.max_tokens:,} tokens used)")
            self.requests += 1

    def record(self, input_tokens: int, output_tokens: int) -> None:
        with self._lock:
            self.input_tokens += input_tokens
            self.output_tokens += output_tokens

    def count_retry(self) -> None:
        with self._lock:
            self.retries += 1

    def summary(self) -> str:
        return (f"{self.requests} requests ({self.retries} retries), {self.input_tokens:,} input + "
                f"{self.output_tokens:,} output tokens")


def _chars_to_tokens(text: str) -> int:
    # ~4 characters a token for English; used only when a response carries no usage block.
    return max(1, len(text) // 4)


def _usage(response, messages, text) -> tuple[int, int]:
    usage = getattr(response, "usage", None)
    for units in (getattr(usage, "billed_units", None), getattr(usage, "tokens", None)):
        if units is not None and units.input_tokens is not None and units.output_tokens is not None:
            return int(units.input_tokens), int(units.output_tokens)
    return _chars_to_tokens("".join(m["content"] for m in messages)), _chars_to_tokens(text)


def _response_text(response) -> str:
    content = getattr(response.message, "content", None) or []
    return "".join(getattr(item, "text", "") or "" for item in content if getattr(item, "type", "") == "text")


def backoff_delay(attempt: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """Seconds to wait before retry `attempt` (0-based): the server's Retry-After when it sent one (capped),
    otherwise "full jitter" exponential backoff, uniform(0, min(cap, base * 2**attempt)), which spreads
    concurrent clients apart instead of having them retry in lockstep."""
    if retry_after is not None:
        return max(0.0, min(cap, retry_after))
    return random.uniform(0.0, min(cap, base * 2 ** attempt))


def _retry_after(headers) -> float | None:
    value = (headers or {}).get("retry-after") or (headers or {}).get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:  # an HTTP date: fall back to our own backoff
        return None


class TeacherClient:
    """`chat(messages, ...)` with retries and budget accounting, shared by all worker threads."""

    def __init__(self, cfg: TeacherConfig, budget: Budget | None = None, log=None):
        try:
            import cohere
        except ImportError:  # an extra since only the teacher needs it: pip install 'memroute[teacher]'
            raise UsageError("the teacher needs the cohere SDK, which is not installed: pip install "
                             "'memroute[teacher]' (or ./install.sh, whose lock includes it)") from None

        self.cfg = cfg
        self.budget = budget or Budget(cfg.request_budget, cfg.token_budget)
        self.log = log or (lambda msg: print(msg, file=sys.stderr))
        self.fatal: FatalApiError | None = None  # once set, no further request is sent
        self._sdk = cohere.ClientV2(api_key=api_key(cfg), base_url=cfg.base_url, timeout=cfg.timeout_s,
                                    max_retries=0, log_warning_experimental_features=False)

    def close(self) -> None:
        self._sdk._client_wrapper.httpx_client.httpx_client.close()  # what the SDK's own __exit__ does

    def _classify(self, error: Exception) -> tuple[bool, str, float | None]:
        """(retryable, short description, Retry-After seconds) for an exception from the SDK."""
        import httpx
        from cohere.core.api_error import ApiError

        if isinstance(error, ApiError):
            status = error.status_code or 0
            desc = f"HTTP {status}: {str(error.body)[:200]}"
            if status in FATAL_STATUSES:
                hint = (f" (check the key in {self.cfg.api_key_env})" if status in (401, 498) else
                        f" (check model={self.cfg.model!r} and base_url)" if status == 404 else "")
                self.fatal = FatalApiError(f"the Cohere API refused the request: {desc}{hint}")
                raise self.fatal from None
            return status in RETRY_STATUSES or status >= 500, desc, _retry_after(error.headers)
        if isinstance(error, httpx.TimeoutException):
            return True, f"timed out after {self.cfg.timeout_s:g} s ({type(error).__name__})", None
        if isinstance(error, httpx.TransportError):  # dropped connection, refused connection, protocol error
            return True, f"connection problem: {type(error).__name__}: {error}", None
        return False, f"{type(error).__name__}: {error}", None

    def chat(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float,
             response_format: dict | None = None) -> ChatResult:
        kwargs = dict(model=self.cfg.model, messages=messages, max_tokens=max_tokens, temperature=temperature)
        if response_format is not None:
            kwargs["response_format"] = response_format
        for attempt in range(self.cfg.max_retries + 1):
            if self.fatal is not None:  # another thread hit it: every further request would fail the same way
                raise self.fatal
            self.budget.reserve()
            try:
                response = self._sdk.chat(**kwargs)
            except Exception as error:  # noqa: BLE001 - classified below; unknown ones are not retried
                retryable, desc, retry_after = self._classify(error)
                if not retryable:
                    raise RequestFailed(desc) from None
                if attempt == self.cfg.max_retries:
                    raise RequestFailed(f"gave up after {attempt + 1} attempts; last: {desc}") from None
                delay = backoff_delay(attempt, self.cfg.backoff_base_s, self.cfg.backoff_cap_s, retry_after)
                self.budget.count_retry()
                self.log(f"retry {attempt + 1}/{self.cfg.max_retries} in {delay:.2f} s: {desc}")
                time.sleep(delay)
                continue
            text = _response_text(response)
            input_tokens, output_tokens = _usage(response, messages, text)
            self.budget.record(input_tokens, output_tokens)
            return ChatResult(text, str(response.finish_reason), input_tokens, output_tokens)
        raise AssertionError("unreachable")
