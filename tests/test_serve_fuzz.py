"""Hostile input against the real Serve app (tests/conftest.py `serve_app`: the tiny model, an API key), over HTTP
on 127.0.0.1: a corpus of over 200 malformed requests, built here, none of which may get a 5xx.

Through the real proxy the corpus also holds request heads over the proxy's limits (serve.http_guard: 431).
Every bad request must get a 4xx with the one error shape `{"error": {"type", "code", "message"}}`; the few good
ones (content parts, stream=true) a 200; no body may hold a traceback or the API key; the server still answers
/health at the end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

MODEL = "memroute-router"
TURN = {"role": "user", "content": "Our brand voice is warm and plain."}
ROUTES = ("/route", "/v1/chat/completions")


@dataclass
class Case:
    name: str
    path: str = "/route"
    content: bytes = b""
    ctype: str | None = "application/json"
    auth: str | None = "key"  # "key": the right one; None: no header; else the header's value
    method: str = "POST"
    expect: int | None = None  # None: any 4xx; else this exact status
    headers: dict = field(default_factory=dict)


def body(path: str, turns) -> dict:
    """The request body of `turns` (whatever they are) for either route."""
    if path == "/route":
        return {"conversation": turns}
    return {"model": MODEL, "messages": turns}


class StubResponse:
    """A stand-in for Serve's DeploymentResponse: awaitable, cancellable."""

    def __init__(self, value):
        self.value, self.cancelled = value, False

    def __await__(self):
        async def get():
            return self.value
        return get().__await__()

    def cancel(self):
        self.cancelled = True


def enc(obj) -> bytes:
    return json.dumps(obj).encode()  # ensure_ascii: a lone surrogate travels as its \\udXXX escape


def nested(n: int, kind: str) -> bytes:
    return b"[" * n + b"]" * n if kind == "array" else b'{"a":' * n + b"1" + b"}" * n


def corpus(cfg, proxy: bool = False) -> list[Case]:
    """The hostile requests; with `proxy`, also those only Serve's HTTP proxy can refuse (serve.http_guard: the
    request head's size and header count), which a test without the proxy cannot send to it."""
    cases: list[Case] = []
    add = cases.append
    if proxy:
        for path in ROUTES:
            p = path.rsplit("/", 1)[1]
            ok = enc(body(path, [TURN]))
            for size in (cfg.max_header_bytes + 1, 64 << 10, 1 << 20):
                add(Case(f"{p} header of {size} bytes", path, ok, expect=431, headers={"x-big": "y" * size}))
            for n in (cfg.max_headers + 1, 2000):
                add(Case(f"{p} {n} headers", path, ok, expect=431, headers={f"x-h{i}": "1" for i in range(n)}))
    for path in ROUTES:
        p = path.rsplit("/", 1)[1]
        ok_body = body(path, [TURN])
        # deep nesting: the whole body, and inside a turn's content
        for n in (65, 200, 1000, 5000, 20_000, 100_000):
            for kind in ("array", "object"):
                add(Case(f"{p} body nested {n} {kind}", path, nested(n, kind)))
                prefix = enc(body(path, [{"role": "user", "content": "@"}])).split(b'"@"')
                add(Case(f"{p} content nested {n} {kind}", path, prefix[0] + nested(n, kind) + prefix[1]))
        # lone surrogates, in content, role, a key, a system message, a content part
        for s in ("\udbff", "\ud800", "\udfff", "a\udbffb", "ok \udc00"):
            add(Case(f"{p} surrogate content {s!a}", path, enc(body(path, [{"role": "user", "content": s}]))))
            add(Case(f"{p} surrogate role {s!a}", path, enc(body(path, [{"role": s, "content": "hi"}]))))
            add(Case(f"{p} surrogate key {s!a}", path, enc({**ok_body, s: 1})))
        add(Case(f"{p} surrogate system", path, enc(body(path, [{"role": "system", "content": "\udbff"}, TURN]))))
        add(Case(f"{p} surrogate part", path, enc(body(path, [{"role": "user", "content": [
            {"type": "text", "text": "\udbff"}]}]))))
        # huge bodies
        for size in (cfg.max_body_bytes + 1, 2 * cfg.max_body_bytes, 4 * cfg.max_body_bytes):
            big = enc(body(path, [{"role": "user", "content": "x" * size}]))
            add(Case(f"{p} huge body {size}", path, big, expect=413))
        # wrong types
        for turns in ("hello", 42, None, True, {"role": "user", "content": "hi"}, ["hi"], [42], [None], [[TURN]],
                      [{"role": 5, "content": "hi"}], [{"role": ["user"], "content": "hi"}],
                      [{"role": "user", "content": 42}], [{"role": "user", "content": {"text": "hi"}}],
                      [{"role": "user", "content": True}], [{"role": "user", "content": [1, 2]}],
                      [{"role": None, "content": None}]):
            add(Case(f"{p} wrong type {str(turns)[:40]}", path, enc(body(path, turns))))
        for whole in ([TURN], "text", 3, None, [], True):
            add(Case(f"{p} body is {str(whole)[:20]}", path, enc(whole)))
        # missing fields
        for turns in ([{"role": "user"}], [{"content": "hi"}], [{}], [TURN, {"role": "assistant"}]):
            add(Case(f"{p} missing field {turns}", path, enc(body(path, turns))))
        add(Case(f"{p} no fields", path, b"{}"))
        # unknown roles
        for role in ("robot", "tool", "function", "", "USER", " user", "null", "developer\x00"):
            add(Case(f"{p} role {role!r}", path, enc(body(path, [{"role": role, "content": "hi"}]))))
        # empty conversations
        for turns in ([], [{"role": "user", "content": ""}], [{"role": "user", "content": "   \n\t"}],
                      [{"role": "system", "content": "only a system message"}],
                      [{"role": "user", "content": []}]):
            add(Case(f"{p} empty {str(turns)[:40]}", path, enc(body(path, turns))))
        # too many turns, oversized turns, over the prompt token limit
        for n in (cfg.max_turns + 1, 4 * cfg.max_turns):
            add(Case(f"{p} {n} turns", path, enc(body(path, [TURN] * n)), expect=413))
        add(Case(f"{p} turn over max_turn_chars", path,
                 enc(body(path, [{"role": "user", "content": "y" * (cfg.max_turn_chars + 1)}])), expect=413))
        add(Case(f"{p} over max_conversation_tokens", path,
                 enc(body(path, [{"role": "user", "content": "budget review " * 300}])), expect=413))
        # invalid JSON
        for raw in (b"", b"{", b'{"conversation": [', b"{'conversation': []}", b'{"a": 1,}', b"nul", b"}{",
                    b'{"a": "unterminated', b'{"a": NaN}', b"\xef\xbb\xbf" + enc(ok_body), b"[1, 2", b"\x00\x00",
                    enc(ok_body) + b" trailing"):
            add(Case(f"{p} invalid json {raw[:20]!r}", path, raw))
        # wrong content types
        for ctype in (None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                      "application/jsonx", "application/xml", ""):
            add(Case(f"{p} content-type {ctype!r}", path, enc(ok_body), ctype=ctype, expect=415))
        # non-UTF-8 bytes
        for raw in (b'{"conversation": [{"role": "user", "content": "caf\xe9"}]}', b"\xff\xfe{\x00}\x00",
                    b'{"a": "\xed\xa0\x80"}', b'{"a": "\xc0\xaf"}', json.dumps(ok_body).encode("utf-16"),
                    b'{"model": "\x80\x81"}'):
            add(Case(f"{p} non-utf8 {raw[:16]!r}", path, raw, expect=400))
        # bad API keys
        for auth in (None, "Bearer wrong", "Bearer KEYx", "Basic dXNlcjpwYXNz", "Bearer", "Bearer  \t x", "Token KEY",
                     "KEY", "Bearer " + "z" * 10_000):
            add(Case(f"{p} auth {str(auth)[:20]!r}", path, enc(ok_body), auth=auth, expect=401))
        # extra / odd fields of /route, a batch over the limit
        if path == "/route":
            add(Case("route extra field", path, enc({**ok_body, "extra": 1})))
            add(Case("route both fields", path, enc({**ok_body, "conversations": [[TURN]]})))
            add(Case("route batch over the limit", path,
                     enc({"conversations": [[TURN]] * (cfg.max_request_conversations + 1)}), expect=413))
            add(Case("route conversations not lists", path, enc({"conversations": [TURN, TURN]})))
            add(Case("route empty batch", path, enc({"conversations": []})))
    # the OpenAI route: model, messages, stream, content parts
    chat = "/v1/chat/completions"
    for i, bad in enumerate(({"messages": [TURN]}, {"model": MODEL}, {"model": 5, "messages": [TURN]},
                {"model": None, "messages": [TURN]}, {"model": "gpt-4o", "messages": [TURN]},
                {"model": MODEL, "messages": "hi"}, {"model": MODEL, "messages": {"role": "user"}},
                {"model": MODEL, "messages": [TURN], "stream": "maybe"},
                {"model": MODEL, "messages": [TURN], "stream": [True]},
                {"model": MODEL, "messages": [], "stream": True},
                {"model": MODEL, "messages": [{"role": "robot", "content": "x"}], "stream": True},
                {"model": "\udbff", "messages": [TURN], "stream": True})):
        add(Case(f"chat {i} {str(bad)[:60]}", chat, enc(bad)))
    for parts in ([{"type": "image_url", "image_url": {"url": "http://127.0.0.1/x.png"}}], [{"type": "text"}],
                  [{"type": "text", "text": 5}], [{"text": "no type"}], [1], ["a string"], [None],
                  [{"type": "text", "text": ""}], [{"type": "input_audio", "input_audio": {}}],
                  [{"type": "text", "text": "ok"}, {"type": "image_url"}], {"type": "text", "text": "not a list"},
                  [{"type": ["text"], "text": "x"}], [{"type": "text", "text": ["x"]}], []):
        add(Case(f"chat content parts {str(parts)[:50]}", chat, enc(body(chat, [{"role": "user", "content": parts}]))))
    # unknown paths and methods, a key on the open probe
    for method, path in (("GET", "/route"), ("PUT", "/route"), ("DELETE", "/v1/chat/completions"),
                         ("GET", "/nope"), ("POST", "/health"), ("GET", "/v1/chat"), ("GET", "/../../etc/passwd")):
        add(Case(f"{method} {path}", path, b"", method=method))
    # the good ones: content parts joined, stream=true (SSE), both together
    parts = [{"type": "text", "text": "Our brand voice is warm"}, {"type": "text", "text": "and plain."}]
    add(Case("good content parts", chat, enc(body(chat, [{"role": "user", "content": parts}])), expect=200))
    add(Case("good stream", chat, enc({**body(chat, [TURN]), "stream": True}), expect=200))
    add(Case("good stream + parts", chat, enc({"model": MODEL, "messages": [
        {"role": "system", "content": [{"type": "text", "text": "ignored"}]},
        {"role": "user", "content": parts}], "stream": True, "temperature": 0.7}), expect=200))
    add(Case("good route", "/route", enc(body("/route", [TURN])), expect=200))
    return cases


def send(client, app, case: Case):
    headers = dict(case.headers)
    if case.ctype is not None:
        headers["Content-Type"] = case.ctype
    if case.auth == "key":
        headers["Authorization"] = f"Bearer {app.key}"
    elif case.auth is not None:
        headers["Authorization"] = case.auth.replace("KEY", app.key)
    return client.request(case.method, app.url + case.path, content=case.content or None, headers=headers)


def test_corpus_is_big_and_covers_every_class():
    from serve.config import ServeConfig

    cases = corpus(ServeConfig())
    names = " ".join(c.name for c in cases)
    assert len(cases) >= 200 and len({c.name for c in cases}) == len(cases)
    for needle in ("body nested 100000", "content nested 1000", "surrogate", "huge body", "wrong type",
                   "missing field", "role 'robot'", "empty", "turns", "max_turn_chars", "invalid json",
                   "content-type", "non-utf8", "auth", "content parts", "stream"):
        assert needle in names, needle


def problem(case: Case, resp, key: str) -> str | None:
    """What is wrong with the answer to `case`, or None."""
    text = resp.text
    if resp.status_code >= 500:
        return "5xx"
    if "Traceback" in text or key in text:
        return "the body holds a traceback or the API key"
    if case.expect == 200:
        if resp.status_code != 200:
            return "a good request was refused"
        if "stream" in case.name:
            events = [e for e in text.split("\n\n") if e]
            chunk = json.loads(events[0].removeprefix("data: "))
            if (resp.headers["content-type"].split(";")[0] != "text/event-stream" or events[-1] != "data: [DONE]"
                    or chunk["object"] != "chat.completion.chunk" or not chunk["choices"][0]["delta"]["content"]):
                return "not an OpenAI event stream"
        return None
    if not 400 <= resp.status_code < 500 or (case.expect and resp.status_code != case.expect):
        return f"expected {case.expect or '4xx'}"
    try:
        error = resp.json()["error"]
    except (ValueError, KeyError, TypeError):
        return "not a JSON error body"
    if set(error) != {"type", "code", "message"} or not all(isinstance(v, str) and v for v in error.values()):
        return "not the error shape"
    return None


def run_corpus(client, app, proxy: bool = False) -> tuple[list[str], dict]:
    failures, statuses = [], {}
    for case in corpus(app.cfg, proxy):
        try:
            resp = send(client, app, case)
        except Exception as e:  # e.g. the server dropped the connection: as bad as a 500
            failures.append(f"{case.name}: {e!r}")
            continue
        statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
        why = problem(case, resp, app.key)
        if why:
            failures.append(f"{case.name}: {why}: {resp.status_code} {resp.text[:200]!r}")
    return failures, dict(sorted(statuses.items()))


def test_hostile_corpus_in_process(monkeypatch):
    """The corpus against the ingress's FastAPI app in this process, with a stub model (fast, no Ray or vLLM):
    the validator and the error handlers, as the real test below checks them through Serve."""
    import time
    from types import SimpleNamespace

    from fastapi.testclient import TestClient
    from ray import serve

    from actors.engine import EngineConfig
    from memroute.core.models import load_tokenizer, resolve_model
    from serve.auth import key_digest
    from serve.config import ServeConfig
    from serve.ingress import RouterIngress
    from serve.admission import Admission
    from serve.metrics import IngressMetrics

    class Generate:
        def remote(self, prompt, deadline):
            return StubResponse({"text": "user.role_context", "finish_reason": "stop", "version": 0,
                                 "prompt_tokens": 9, "completion_tokens": 3})

    cfg = ServeConfig(engine=EngineConfig(model="tiny", max_model_len=1024), max_conversation_tokens=512,
                      max_tokens=24, max_request_conversations=8)
    cls = RouterIngress.func_or_class  # the replica's class, built by hand: __init__ would check the proxy's host
    replica = object.__new__(cls)
    replica.model, replica.cfg, replica.started = SimpleNamespace(generate=Generate()), cfg, time.time()
    replica.tokenizer, replica.metrics = load_tokenizer(resolve_model("tiny")), IngressMetrics()
    replica.admission = Admission()
    key = "mr-in-process-key"
    fastapi_app = cls.route.__globals__["app"]  # the app object the class's methods see (Serve pickles the class)
    monkeypatch.setattr(fastapi_app.state, "key_digest", key_digest(key), raising=False)
    monkeypatch.setattr(fastapi_app.state, "metrics", replica.metrics, raising=False)
    monkeypatch.setattr(serve, "get_replica_context", lambda: SimpleNamespace(servable_object=replica))
    with TestClient(fastapi_app, raise_server_exceptions=False, base_url="http://127.0.0.1") as client:
        failures, statuses = run_corpus(client, SimpleNamespace(url="", key=key, cfg=cfg))
        assert client.get("/health").json() == {"status": "ok", "auth": True}
    print(f"hostile corpus in process: statuses {statuses}")
    assert not failures, "\n".join(failures[:30])


@pytest.mark.slow
def test_hostile_corpus_gets_no_5xx(serve_app):
    import httpx

    app = serve_app
    with httpx.Client(timeout=300) as client:
        assert client.get(app.url + "/health").status_code == 200
        failures, statuses = run_corpus(client, app, proxy=True)
        health = client.get(app.url + "/health")
    print(f"hostile corpus: {sum(statuses.values())} answers, statuses {statuses}")
    assert not failures, "\n".join(failures[:30])
    assert health.status_code == 200 and health.json()["status"] == "ok"
