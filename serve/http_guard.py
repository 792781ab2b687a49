"""What Serve's HTTP proxy does not limit: request head size and header count, and time to read a request.

Ray Serve's proxy is uvicorn with the httptools parser, started inside Serve's proxy actor. It has no limit on a
request's head (a 1 MiB header is read and answered) and no timeout while a request is being read: a client that
sends its request a byte at a time, or opens a connection and sends nothing, holds it for ever (slow loris), and
a few hundred such clients hold every socket the proxy has.

Serve's supported hook into that actor is the HTTP proxy callback: the function named by
`RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH` is called once as the proxy starts, before its HTTP server does.
`proxy_callback` swaps uvicorn's protocol for `GuardedHttpToolsProtocol` (uvicorn resolves its protocol class when
the server starts, from `uvicorn.protocols.http.auto`) and returns no middleware. `serve.app.deploy` sets the
variable, and the limits as JSON in `MEMROUTE_HTTP_LIMITS` (`env_vars`), on the Serve controller through
`serve.start(controller_options=...)`; the proxy actors it creates inherit its runtime environment. The Serve CLI
config (configs/serve.yaml) sets the same under `controller_options`.

The protocol refuses, with the one error shape (`serve.validate.error_body`) and then closes the connection:
- a request head (request line and headers) over `max_header_bytes`: 431 `header_too_large`;
- more than `max_headers` header lines: 431 `too_many_headers`;
- a head not complete within `header_timeout_s` of its first byte (or of the connection, for a new one): 408
  `request_timeout`; the same for a body not complete within `body_timeout_s` of the end of its head.
Everything else is uvicorn's own behaviour, unchanged.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass

CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
CALLBACK_PATH = "serve.http_guard:proxy_callback"
LIMITS_ENV = "MEMROUTE_HTTP_LIMITS"

log = logging.getLogger(__name__)

LINGER_S = 2.0  # after a refusal: how long the connection stays open to drain what the client still sends
_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


@dataclass(frozen=True)
class HttpLimits:
    max_header_bytes: int = 32 << 10  # request line + headers, as received
    max_headers: int = 100  # header lines
    header_timeout_s: float = 10.0  # first byte of a request (or the connection) -> end of its head
    body_timeout_s: float = 30.0  # end of the head -> end of the body

    def __post_init__(self):
        for name in ("max_header_bytes", "max_headers"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        for name in ("header_timeout_s", "body_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")

    def env(self) -> dict[str, str]:
        """The environment that installs the guard with these limits in a proxy actor started under it."""
        return {CALLBACK_ENV: CALLBACK_PATH, LIMITS_ENV: json.dumps(asdict(self))}

    @classmethod
    def from_config(cls, cfg) -> "HttpLimits":
        """The limits a `serve.config.ServeConfig` sets."""
        return cls(cfg.max_header_bytes, cfg.max_headers, cfg.header_timeout_s, cfg.body_timeout_s)

    @classmethod
    def from_env(cls) -> "HttpLimits":
        raw = os.environ.get(LIMITS_ENV)
        return cls(**json.loads(raw)) if raw else cls()


def refusal(status: int, code: str, message: str) -> bytes:
    """A whole HTTP/1.1 response with the error shape, which closes the connection."""
    from serve.validate import error_body

    body = error_body(status, code, message)
    head = (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
            % (status, _REASONS[status], len(body)))
    return head + body


def guarded_protocol(limits: HttpLimits):
    """uvicorn's httptools protocol with `limits` (module doc)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        guard_limits = limits

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._refused = False
            self._in_head = True  # a new connection must send a request head in time, like a new request
            self._head_bytes = self._parsed_head_bytes = 0  # as received (incomplete heads) / as parsed
            self._header_count = 0
            self._guard_timer = None
            self._arm(limits.header_timeout_s, "its request line and headers")

        # -- the timer: one at a time, reading a head or a body -------------------------------------------

        def _arm(self, seconds: float, what: str) -> None:
            self._disarm()
            self._guard_timer = self.loop.call_later(seconds, self._timed_out, seconds, what)

        def _disarm(self) -> None:
            if self._guard_timer is not None:
                self._guard_timer.cancel()
                self._guard_timer = None

        def _timed_out(self, seconds: float, what: str) -> None:
            self._guard_timer = None
            self._refuse(408, "request_timeout", f"the client did not send {what} within {seconds:g} s")

        def _refuse(self, status: int, code: str, message: str) -> None:
            if self._refused or self.transport.is_closing():
                return
            self._refused = True
            self._disarm()
            cycle = None if self._in_head else self.cycle  # while a head is read, self.cycle is the last request's
            if cycle is not None:
                if not cycle.response_complete:
                    # the app is waiting for the body: it sees a disconnect, and anything it sends is dropped
                    cycle.disconnected = True
                    cycle.message_event.set()
                if cycle.response_started:  # answered already (e.g. refused on its Content-Length): only cut
                    self.transport.close()
                    return
            self.transport.write(refusal(status, code, message))
            if self.transport.can_write_eof():
                # a lingering close: the answer goes out with a FIN while what the client still sends is read and
                # dropped (data_received), so the client reads the answer instead of a reset; closed in any case
                # after LINGER_S
                self.transport.write_eof()
                self.loop.call_later(LINGER_S, self.transport.close)
            else:
                self.transport.close()

        # -- uvicorn's parser callbacks --------------------------------------------------------------------

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            super().data_received(data)
            if self._refused or not self._in_head:
                return
            self._head_bytes += len(data)  # all of it is head: the head is still incomplete after it
            if self._head_bytes > limits.max_header_bytes:
                self._refuse_head_too_large()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_head, self._head_bytes, self._parsed_head_bytes, self._header_count = True, 0, 0, 0
            self._arm(limits.header_timeout_s, "its request line and headers")

        def _head_grew(self, size: int) -> bool:
            """Count `size` more bytes of the head as parsed (a head that arrives in one piece never shows as
            incomplete in `data_received`); refuse and say so when it is over the limit."""
            self._parsed_head_bytes += size
            if self._parsed_head_bytes > limits.max_header_bytes:
                self._refuse_head_too_large()
            return self._refused

        def _refuse_head_too_large(self) -> None:
            self._refuse(431, "header_too_large", f"the request line and headers exceed max_header_bytes "
                         f"({limits.max_header_bytes} bytes)")

        def on_url(self, url: bytes) -> None:
            if not self._refused and not self._head_grew(len(url)):
                super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            if self._refused or self._head_grew(len(name) + len(value) + 4):
                return
            self._header_count += 1
            if self._header_count > limits.max_headers:
                self._refuse(431, "too_many_headers", f"the request has more than max_headers "
                             f"({limits.max_headers}) header lines")
                return
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._in_head = False
            if self._refused:
                return
            self._arm(limits.body_timeout_s, "its body")
            super().on_headers_complete()

        def on_body(self, body: bytes) -> None:
            if not self._refused:
                super().on_body(body)

        def on_message_complete(self) -> None:
            self._disarm()
            if not self._refused:
                super().on_message_complete()

        def eof_received(self) -> bool | None:
            if self._refused:
                self.transport.close()  # the client is done sending: the lingering close can end
            return super().eof_received()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

    return GuardedHttpToolsProtocol


def install(limits: HttpLimits) -> bool:
    """Make uvicorn servers started from now on in this process use the guarded protocol; False (and a warning)
    when uvicorn would not use httptools, whose protocol this guards."""
    import uvicorn.protocols.http.auto as auto
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    base = auto.AutoHTTPProtocol
    if getattr(base, "guard_limits", None) is not None:
        base = base.__mro__[1]
    if base is not HttpToolsProtocol:
        log.warning("memroute HTTP guard not installed: uvicorn uses %s, not httptools", base.__name__)
        return False
    auto.AutoHTTPProtocol = guarded_protocol(limits)
    return True


def proxy_callback() -> list:
    """Serve's HTTP proxy callback (module doc): installs the guard, adds no middleware."""
    install(HttpLimits.from_env())
    return []
