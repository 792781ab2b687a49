"""serve.http_guard: the request-head limits and read timeouts the guarded uvicorn protocol adds to Serve's proxy.

The fast tests run a real uvicorn server (the protocol class Serve's proxy gets from the callback) with a tiny
ASGI app on 127.0.0.1 and talk to it over raw sockets, the way hostile clients do; the slow one checks the real
Serve proxy of `serve_app` (tests/conftest.py), where the callback installs it.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import pytest

from serve.http_guard import CALLBACK_ENV, CALLBACK_PATH, LIMITS_ENV, HttpLimits, guarded_protocol, install

LIMITS = HttpLimits(max_header_bytes=4096, max_headers=20, header_timeout_s=0.6, body_timeout_s=0.6)


async def echo_app(scope, receive, send):
    """Answers 200 with the number of body bytes it read."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/early":  # answers without reading the body
        await send({"type": "http.response.start", "status": 413, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
        return
    size, more = 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = json.dumps({"read": size}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def server():
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(echo_app, http=guarded_protocol(LIMITS), log_level="error", lifespan="off",
                            timeout_keep_alive=5)
    srv = uvicorn.Server(config)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=lambda: loop.run_until_complete(srv.serve(sockets=[sock])), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert srv.started
    yield sock.getsockname()
    srv.should_exit = True
    thread.join(5)


def connect(addr) -> socket.socket:
    s = socket.create_connection(addr, timeout=5)
    return s


def read_all(s: socket.socket) -> bytes:
    """Everything until the server closes the connection (or 5 s)."""
    out = b""
    while True:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        out += chunk
    return out


def status_and_error(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    return status, json.loads(body)["error"] if body else {}


def request(path: str = "/", headers: list[tuple[str, str]] = (), body: bytes = b"") -> bytes:
    lines = [f"POST {path} HTTP/1.1", "host: 127.0.0.1", f"content-length: {len(body)}", "connection: close"]
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def test_an_ordinary_request_is_answered(server):
    with connect(server) as s:
        s.sendall(request(body=b"x" * 10_000))
        raw = read_all(s)
    assert raw.startswith(b"HTTP/1.1 200") and raw.endswith(b'{"read": 10000}')


def test_a_keep_alive_connection_serves_two_requests(server):
    one = request(body=b"ab").replace(b"connection: close", b"connection: keep-alive")
    with connect(server) as s:
        s.sendall(one)
        time.sleep(0.3)
        s.sendall(request(body=b"abc"))
        raw = read_all(s)
    assert raw.count(b"HTTP/1.1 200") == 2 and raw.endswith(b'{"read": 3}')


def test_a_head_over_max_header_bytes_is_a_431(server):
    with connect(server) as s:
        s.sendall(request(headers=[("x-big", "y" * 64 * 1024)]))
        raw = read_all(s)
    status, error = status_and_error(raw)
    assert status == 431 and error["code"] == "header_too_large" and "max_header_bytes" in error["message"]
    assert error["type"] == "invalid_request_error"


def test_a_huge_header_sent_in_pieces_is_refused_before_it_is_all_read(server):
    with connect(server) as s:
        s.sendall(b"POST / HTTP/1.1\r\nhost: x\r\nx-big: ")
        sent = 0
        try:
            for _ in range(256):  # up to 1 MiB, 4 KiB at a time: refused after the first few
                s.sendall(b"z" * 4096)
                sent += 4096
                time.sleep(0.001)
        except (BrokenPipeError, ConnectionResetError):
            pass
        raw = read_all(s)
    assert raw.startswith(b"HTTP/1.1 431")


def test_too_many_headers_is_a_431(server):
    with connect(server) as s:
        s.sendall(request(headers=[(f"x-h{i}", "1") for i in range(2000)]))
        raw = read_all(s)
    status, error = status_and_error(raw)
    assert status == 431 and error["code"] in ("too_many_headers", "header_too_large")
    with connect(server) as s:  # few bytes, too many lines
        s.sendall(request(headers=[(f"h{i}", "") for i in range(40)]))
        status, error = status_and_error(read_all(s))
    assert status == 431 and error["code"] == "too_many_headers"


def test_a_slow_loris_head_is_cut_off_with_a_408(server):
    with connect(server) as s:
        start = time.monotonic()
        s.sendall(b"POST / HTTP/1.1\r\nhost: x\r\n")
        try:
            for _ in range(40):  # a header byte every 50 ms: never done within the head's timeout
                s.sendall(b"a")
                time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            pass
        raw = read_all(s)
        waited = time.monotonic() - start
    status, error = status_and_error(raw)
    assert status == 408 and error["code"] == "request_timeout" and "headers" in error["message"]
    assert waited < LIMITS.header_timeout_s + 1.5


def test_a_connection_that_sends_nothing_is_closed(server):
    with connect(server) as s:
        start = time.monotonic()
        raw = read_all(s)
        waited = time.monotonic() - start
    assert raw.startswith(b"HTTP/1.1 408") and waited < LIMITS.header_timeout_s + 1.5


def test_a_body_that_never_arrives_is_a_408(server):
    with connect(server) as s:
        s.sendall(request(body=b"x" * 100)[:-90])  # the head and 10 of the 100 bytes it promised
        raw = read_all(s)
    status, error = status_and_error(raw)
    assert status == 408 and "body" in error["message"]


def test_limits_travel_in_the_environment(monkeypatch):
    env = LIMITS.env()
    assert env[CALLBACK_ENV] == CALLBACK_PATH
    monkeypatch.setenv(LIMITS_ENV, env[LIMITS_ENV])
    assert HttpLimits.from_env() == LIMITS
    monkeypatch.delenv(LIMITS_ENV)
    assert HttpLimits.from_env() == HttpLimits()
    for bad in ({"max_headers": 0}, {"max_header_bytes": 1.5}, {"header_timeout_s": 0}, {"body_timeout_s": -1}):
        with pytest.raises(ValueError):
            HttpLimits(**bad)


def test_install_swaps_uvicorns_auto_protocol_once(monkeypatch):
    import uvicorn.protocols.http.auto as auto
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    monkeypatch.setattr(auto, "AutoHTTPProtocol", HttpToolsProtocol)
    assert install(LIMITS)
    first = auto.AutoHTTPProtocol
    assert issubclass(first, HttpToolsProtocol) and first.guard_limits == LIMITS
    assert install(HttpLimits())  # installing again replaces the guard, never stacks two
    assert auto.AutoHTTPProtocol.__mro__[1] is HttpToolsProtocol


@pytest.mark.slow
def test_the_serve_proxy_refuses_big_heads_and_cuts_slow_clients(serve_app):
    from urllib.parse import urlparse

    url = urlparse(serve_app.url)
    addr = (url.hostname, url.port)
    auth = ("authorization", f"Bearer {serve_app.key}")
    with connect(addr) as s:
        s.sendall(request("/route", [auth, ("content-type", "application/json"), ("x-big", "y" * (1 << 20))]))
        status, error = status_and_error(read_all(s))
    assert status == 431 and error["code"] == "header_too_large"
    with connect(addr) as s:
        s.sendall(request("/route", [auth] + [(f"x-h{i}", "1") for i in range(2000)]))
        status, _ = status_and_error(read_all(s))
    assert status == 431
    with connect(addr) as s:
        s.settimeout(serve_app.cfg.header_timeout_s + 10)
        start = time.monotonic()
        s.sendall(b"POST /route HTTP/1.1\r\nhost: x\r\n")
        raw = read_all(s)
        waited = time.monotonic() - start
    assert raw.startswith(b"HTTP/1.1 408") and waited < serve_app.cfg.header_timeout_s + 5


def test_a_body_left_unsent_after_the_answer_only_closes_the_connection(server):
    """The app may answer before reading the body (the ingress refuses on Content-Length): when the body timeout
    then fires, the connection is closed without a second, stray response."""
    with connect(server) as s:
        s.sendall(b"GET /early HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n" + b"x" * 10)
        raw = read_all(s)
    assert raw.count(b"HTTP/1.1") == 1 and raw.startswith(b"HTTP/1.1 413")
