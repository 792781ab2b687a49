"""The Ray Serve endpoint: unit tests of the key rule, schema and config (no Ray), then ONE real Serve app on the
session's local Ray (tiny model, two model replicas) called over HTTP: routing, batches, every bad input, the API
key, the OpenAI SDK, hot reload under load and a killed replica, all with zero failed requests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from memroute.router import shipped_adapter

from data.parser import format_answer, parse_answer
from serve.auth import authorized, check_bind, is_loopback, key_digest, resolve_api_key
from serve.config import ServeConfig, ServeConfigError, resolve_checkpoint
from serve.schema import RouteRequest

REPO = Path(__file__).resolve().parents[1]
CONV = [{"role": "user", "content": "Our brand voice is warm, plain-spoken and never uses exclamation marks."}]
CONV2 = [{"role": "user", "content": "I run paid social for the EMEA team and report to the CMO."},
         {"role": "assistant", "content": "Noted. What should we look at first?"},
         {"role": "user", "content": "Last week's campaign CPA, it was 20% over target."}]


# --- no Ray ------------------------------------------------------------------------------------------------------


def test_api_key_and_the_loopback_rule(tmp_path, monkeypatch):
    cfg = ServeConfig(api_key_env="MEMROUTE_TEST_KEY")
    monkeypatch.delenv("MEMROUTE_TEST_KEY", raising=False)
    assert resolve_api_key(cfg) is None
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.5"):
        assert is_loopback(host)
        check_bind(host, None, cfg)  # loopback without a key: allowed
    for host in ("0.0.0.0", "10.1.2.3", "example.org", "::"):
        assert not is_loopback(host)
        with pytest.raises(ServeConfigError, match=f"refusing to serve on {host} without an API key.*MEMROUTE_TEST"):
            check_bind(host, None, cfg)
    monkeypatch.setenv("MEMROUTE_TEST_KEY", "  s3cret  ")
    digest = key_digest(resolve_api_key(cfg))
    check_bind("0.0.0.0", digest, cfg)  # with a key: allowed
    assert digest != "s3cret" and authorized("Bearer s3cret", digest) and authorized("bearer  s3cret", digest)
    assert not authorized(None, digest) and not authorized("Bearer nope", digest) and not authorized("s3cret", digest)
    assert authorized(None, None)  # no key configured: open (loopback only, see above)
    secret = tmp_path / "key"
    secret.write_text("from-file\n")
    assert resolve_api_key(ServeConfig(api_key_file=str(secret), api_key_env="MEMROUTE_TEST_KEY")) == "from-file"
    with pytest.raises(ServeConfigError, match="does not exist"):
        resolve_api_key(ServeConfig(api_key_file=str(tmp_path / "missing")))
    secret.write_text(" \n")
    with pytest.raises(ServeConfigError, match="is empty"):
        resolve_api_key(ServeConfig(api_key_file=str(secret)))


def test_cli_refuses_a_wide_bind_without_a_key(monkeypatch, capsys):
    from memroute.core.errors import run_command
    from serve.app import main

    def serve_cli(*argv):  # as `memroute serve ...` runs it: config errors are usage errors, one line, exit 2
        return run_command("memroute serve", main, list(argv))

    monkeypatch.delenv("MEMROUTE_API_KEY", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert serve_cli("--host", "0.0.0.0", "engine.model=tiny") == 2  # refused before Ray starts
    assert "memroute serve: error: refusing to serve on 0.0.0.0 without an API key" in capsys.readouterr().err
    assert serve_cli("--detach") == 2
    assert "--detach needs a running cluster" in capsys.readouterr().err
    assert serve_cli("--checkpoint", "/nonexistent/adapter") == 2
    assert "checkpoint not found: /nonexistent/adapter" in capsys.readouterr().err


def test_route_request_schema():
    one = RouteRequest.model_validate({"conversation": [{"role": "user", "content": " hi "}]})
    assert one.batch() == [[{"role": "user", "content": "hi"}]]
    assert len(RouteRequest.model_validate({"conversations": [CONV, CONV2]}).batch()) == 2
    bad = {
        "exactly one of": {},
        "is empty": {"conversation": []},
        "conversation[0].role": {"conversation": [{"role": "robot", "content": "x"}]},
        "conversation[0].content": {"conversation": [{"role": "user"}]},
        "conversations[1]": {"conversations": [CONV, []]},
        "Extra inputs": {"conversation": CONV, "conversatoins": []},
    }
    for needle, body in bad.items():
        with pytest.raises(ValueError, match=needle.replace("[", r"\[").replace("]", r"\]")):
            RouteRequest.model_validate(body)


def test_the_validator_refuses_before_anything_can_fail():
    from serve.validate import ApiError, check_conversations, error_body, json_depth, parse_json

    cfg = ServeConfig(max_body_bytes=4096, max_json_depth=8, max_turns=3, max_turn_chars=20)

    def refused(raw: bytes) -> tuple[int, str]:
        with pytest.raises(ApiError) as e:
            parse_json(raw, cfg)
        return e.value.status, e.value.code

    big = ServeConfig(max_json_depth=8)  # the default body limit: 100,000 levels take more than 4096 bytes
    for n in (9, 1000, 100_000):  # refused by the byte scan, before json.loads could raise RecursionError
        for body in (b"[" * n + b"]" * n, b'{"a":' * n + b"1" + b"}" * n,
                     b'{"conversation": [{"role": "user", "content": ' + b"[" * n + b"]" * n + b"}]}"):
            with pytest.raises(ApiError) as e:
                parse_json(body, big)
            assert (e.value.status, e.value.code) == (400, "json_too_deep")
    assert json_depth(b'{"a": "[[[[\\" ]]{{", "b": [[1], {"c": []}]}', limit=1) == 4  # strings do not count
    assert parse_json(b'{"a": [[[[[[[1]]]]]]]}', cfg) == {"a": [[[[[[[1]]]]]]]}  # depth 8: allowed
    assert refused(b'{"conversation": [{"role": "user", "content": "\\udbff"}]}') == (400, "invalid_text")
    assert refused(b'{"x\\udc00": 1}') == (400, "invalid_text")  # keys too
    assert parse_json(b'"\\ud83d\\ude00"', cfg) == "\U0001f600"  # a surrogate *pair* is one valid character
    assert refused(b'{"a": "caf\xe9"}') == (400, "invalid_encoding")
    assert refused(b'{"a": ') == (400, "malformed_json")
    assert refused(b'"' + b"x" * 5000 + b'"') == (413, "payload_too_large")
    turn = {"role": "user", "content": "hi"}
    for conversations, code in (([[turn]] * 33, "payload_too_large"), ([[turn] * 4], "too_many_turns"),
                                ([[{"role": "user", "content": "x" * 21}]], "turn_too_long")):
        with pytest.raises(ApiError) as e:
            check_conversations(conversations, cfg)
        assert (e.value.status, e.value.code) == (413, code)
    check_conversations([[turn] * 3], cfg)
    body = json.loads(error_body(422, "invalid_request", "role 'robot\udbff' " + "x" * 5000))
    assert set(body["error"]) == {"type", "code", "message"} and body["error"]["type"] == "invalid_request_error"
    assert len(body["error"]["message"]) < 1100  # an echo of the input is cut
    assert json.loads(error_body(401, "invalid_api_key", "no"))["error"]["type"] == "authentication_error"
    with pytest.raises(ServeConfigError, match="max_turns, max_json_depth|max_json_depth, max_turns"):
        ServeConfig(max_turns=0, max_json_depth=0)


def test_every_refusal_and_crash_has_the_error_shape(monkeypatch):
    """The ingress's FastAPI app in-process (no Serve): unknown paths and methods, a wrong key, and an exception in a
    route (outside Serve a class route cannot find its replica: a stand-in for a bug) all answer the one shape."""
    from fastapi.testclient import TestClient

    from serve.ingress import app as ingress_app
    from serve.metrics import IngressMetrics

    monkeypatch.setattr(ingress_app.state, "metrics", IngressMetrics(), raising=False)
    monkeypatch.setattr(ingress_app.state, "key_digest", key_digest("k"), raising=False)
    client = TestClient(ingress_app, raise_server_exceptions=False)
    auth, wrong = {"Authorization": "Bearer k"}, {"Authorization": "Bearer x"}
    for method, path, headers, status, code in (("GET", "/nope", auth, 404, "not_found"),
                                                ("DELETE", "/route", auth, 405, "method_not_allowed"),
                                                ("POST", "/route", wrong, 401, "invalid_api_key"),
                                                ("GET", "/version", auth, 500, "internal_error")):
        resp = client.request(method, path, headers=headers)
        assert resp.status_code == status and resp.headers["content-type"] == "application/json"
        assert resp.json()["error"]["code"] == code and "Traceback" not in resp.text
    text = ingress_app.state.metrics.render().decode()
    assert 'memroute_errors_total{status="401"} 1.0' in text and 'memroute_errors_total{status="500"} 1.0' in text


def test_shape_gives_each_label_its_horizon_and_scope():
    from serve.ingress import shape

    out = {"text": "user.role_context, company.performance_context", "finish_reason": "stop", "version": 3,
           "prompt_tokens": 10, "completion_tokens": 9}
    r = shape(out, 12.5)
    assert [(lb.name, lb.horizon, lb.scope) for lb in r.labels] == [
        ("company.performance_context", "rolling", "company"), ("user.role_context", "medium", "user")]
    assert (r.persistence_horizon, r.memory_scope, r.parsed, r.version) == ("mixed", "mixed", True, 3)
    junk = shape({**out, "text": "hello there"}, 1.0)
    assert junk.labels == [] and not junk.parsed and junk.unknown == ["hello there"]


def test_label_regex_allows_exactly_label_lists():
    import re

    from data.taxonomy import REAL_LABELS
    from serve.model import MAX_LABELS, label_regex

    rx = re.compile(label_regex())
    for labels in (["none"], ["user.role_context"], list(REAL_LABELS[:MAX_LABELS]),
                   ["company.brand_core", "user.session_history"]):
        text = format_answer(labels) if labels != ["none"] else "none"
        assert rx.fullmatch(text) and parse_answer(text).parsed
    too_many = format_answer(REAL_LABELS[:MAX_LABELS + 1])
    for text in ("", "none, user.role_context", "brand", "company.brand_core,", "Company.brand_core", too_many):
        assert not rx.fullmatch(text)


def test_config_round_trips_through_serve_config_args(tmp_path):
    from ray.serve.schema import ServeDeploySchema

    from serve.app import app_config, config_from_args

    cfg = ServeConfig(num_replicas=3, autoscaling_config={"min_replicas": 1, "max_replicas": 4}, checkpoint=None)
    cfg.engine.model = "tiny"
    args = app_config(cfg, "abc")["args"]
    assert config_from_args(args) == (cfg, "abc")
    # configs/serve.yaml is a valid Serve config whose args build a ServeConfig
    import yaml

    doc = yaml.safe_load((REPO / "configs" / "serve.yaml").read_text())
    schema = ServeDeploySchema.model_validate(doc)
    [app] = schema.applications
    assert app.import_path == "serve.app:app_builder"
    built, digest = config_from_args(app.args)
    assert isinstance(built, ServeConfig) and digest is None and schema.http_options.host == built.host
    # its controller_options install the proxy's HTTP guard with the app's own limits
    from serve.http_guard import HttpLimits

    assert schema.controller_options.runtime_env["env_vars"] == HttpLimits.from_config(built).env()
    from memroute.core.config import load_config

    assert load_config(ServeConfig, REPO / "configs" / "serve_cpu.yaml") == ServeConfig()  # the defaults, written out
    with pytest.raises(Exception, match="unknown config key"):
        config_from_args({"num_replica": 2})
    with pytest.raises(ServeConfigError, match="max_model_len"):
        ServeConfig(max_conversation_tokens=4000)


def test_docs_publish_the_current_json_schema():
    from serve.schema import json_schemas

    doc = (REPO / "docs" / "serve.md").read_text()
    block = doc.split("<!-- schema:begin -->")[1].split("<!-- schema:end -->")[0]
    published = json.loads(block.strip().removeprefix("```json").removesuffix("```"))
    assert published == json_schemas(), "docs/serve.md is stale: paste `python -m serve.schema` between its markers"


def _write_adapter(folder: Path, seed: int) -> Path:
    """A random LoRA (q, k, v) for the tiny model, small enough (B std 0.02) to pass the reload probe: at std 0.5
    one in two ran an answer to the cap (spelled in tiny tokens), and the probe refused it."""
    from bench.load import random_adapter

    return random_adapter(folder, "tiny", seed=seed, std=0.02)


def test_resolve_checkpoint(tmp_path):
    adapter = _write_adapter(tmp_path / "a", seed=0)
    assert resolve_checkpoint(adapter) == adapter and resolve_checkpoint(None) is None
    assert resolve_checkpoint("none") is None and resolve_checkpoint("default", "tiny") is None
    assert resolve_checkpoint("default") == shipped_adapter()  # the shipped router (None until one is shipped)
    run = tmp_path / "run"
    _write_adapter(run / "adapter", seed=1)
    assert resolve_checkpoint(run) == run / "adapter"  # a run dir: its adapter
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        resolve_checkpoint(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="neither a LoRA adapter folder"):
        resolve_checkpoint(tmp_path / "a" / "..")


# --- one Serve app over HTTP ---------------------------------------------------------------------------------------


@pytest.fixture
def app(serve_app):  # the session's one Serve app (tests/conftest.py), shared with tests/test_serve_fuzz.py
    return serve_app


def _post(app, path="/route", body=None, key="default", **kw):
    import httpx

    headers = {"Authorization": f"Bearer {app.key if key == 'default' else key}"} if key else {}
    headers.update(kw.pop("headers", {}))
    return httpx.post(app.url + path, json=body, headers=headers, timeout=300, **kw)


@pytest.mark.slow
def test_route_one_conversation_and_a_batch(app):
    from serve.client import RouterClient

    with RouterClient(app.url, api_key=app.key) as client:
        assert client.health() == {"status": "ok", "auth": True}
        assert _get(app, "/health", key=None).json() == {"status": "ok", "auth": True}
        one = client.route(CONV)
        assert one["parsed"] and one["finish_reason"] in ("stop", "length") and one["version"] == 0
        assert one["labels"] and parse_answer(one["text"]).labels == [lb["name"] for lb in one["labels"]]
        from data.taxonomy import category

        for lb in one["labels"]:
            assert (lb["horizon"], lb["scope"]) == (category(lb["name"]).horizon, category(lb["name"]).scope)
        assert one["prompt_tokens"] > 50 and one["latency_ms"] > 0
        timing = one["timing"]  # the breakdown: the queue and the decode fit in the ingress's latency
        assert timing["engine_ms"] > 0 and timing["queue_ms"] >= 0 and timing["batch_size"] >= 1
        assert timing["queue_ms"] + timing["engine_ms"] <= one["latency_ms"] + 5  # 5 ms: clock reads apart
        batch = client.route([CONV, CONV2, CONV])
        assert len(batch) == 3 and all(r["parsed"] for r in batch)
        assert batch[0]["text"] == batch[2]["text"] == one["text"]  # greedy: same conversation, same answer
        version = client.version()
        assert version["version"] == 0 and version["checkpoint"] is None and version["model"] == "tiny"
    metrics = _get(app, "/metrics")
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = dict(line.rsplit(" ", 1) for line in metrics.text.splitlines() if not line.startswith("#"))
    assert float(samples["memroute_conversations_total"]) >= 4
    assert float(samples['memroute_requests_total{route="route"}']) >= 2
    assert float(samples["memroute_conversation_latency_seconds_count"]) >= 4


def _get(app, path, key="default"):
    import httpx

    headers = {"Authorization": f"Bearer {app.key if key == 'default' else key}"} if key else {}
    return httpx.get(app.url + path, headers=headers, timeout=60)


@pytest.mark.slow
def test_openai_sdk_chat_completions(app):
    import openai

    client = openai.OpenAI(base_url=app.url + "/v1", api_key=app.key, max_retries=0)
    assert [m.id for m in client.models.list().data] == ["memroute-router"]
    resp = client.chat.completions.create(model="memroute-router", messages=[
        {"role": "system", "content": "ignored: the router has its own instructions"}, *CONV2])
    content = resp.choices[0].message.content
    assert parse_answer(content).parsed and content == format_answer(parse_answer(content).labels)
    assert resp.usage.prompt_tokens > 50 and resp.model == "memroute-router"
    with pytest.raises(openai.NotFoundError, match="not served here"):
        client.chat.completions.create(model="gpt-4o", messages=CONV)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=app.url + "/v1", api_key="wrong", max_retries=0).models.list()


@pytest.mark.slow
def test_bad_input_is_a_4xx_naming_the_problem(app):
    long_turn = {"role": "user", "content": "campaign budget review " * 400}
    cases = [  # (status, needle in the message, request kwargs)
        (400, "not valid JSON", dict(content=b'{"conversation": [', headers={"Content-Type": "application/json"})),
        (422, "exactly one of", dict(body={})),
        (422, "Extra inputs", dict(body={"conversation": CONV, "extra": 1})),
        (422, "is empty", dict(body={"conversation": []})),
        (422, "conversation[0].role", dict(body={"conversation": [{"role": "robot", "content": "beep"}]})),
        (422, "conversation[1].content", dict(body={"conversation": [CONV[0], {"role": "assistant"}]})),
        (413, "over max_conversation_tokens=512", dict(body={"conversation": [long_turn]})),
        (413, "9 conversations in one request, over max_request_conversations=8",
         dict(body={"conversations": [CONV] * 9})),
        (415, "Content-Type must be application/json", dict(content=b"conversation=hi",
                                                          headers={"Content-Type": "text/plain"})),
    ]
    for status, needle, kw in cases:
        body = kw.pop("body", None)
        resp = _post(app, body=body, **kw)
        assert resp.status_code == status, (needle, resp.status_code, resp.text)
        assert needle in resp.json()["error"]["message"], resp.text
        assert set(resp.json()["error"]) == {"type", "code", "message"}
    ok = _post(app, body={"conversation": CONV})  # still serving
    assert ok.status_code == 200 and ok.json()["results"][0]["parsed"]
    assert _post(app, path="/v1/chat/completions", body={"model": "memroute-router", "messages": [],
                                                          }).status_code == 422


@pytest.mark.slow
def test_api_key_required_and_never_logged(app, ray_local):
    for key in (None, "wrong", app.key + "x"):
        resp = _post(app, body={"conversation": CONV}, key=key)
        assert resp.status_code == 401 and "API key" in resp.json()["error"]["message"]
        assert _get(app, "/version", key=key).status_code == 401
    assert _get(app, "/healthz", key=None).status_code == 200  # the load balancer's probe
    import ray

    session = Path(ray._private.worker._global_node.get_session_dir_path())
    leaked = [p for p in (session / "logs").rglob("*") if p.is_file() and app.key.encode() in p.read_bytes()]
    assert not leaked, f"the API key appears in {leaked}"


class Load:
    """Client threads sending /route requests until stopped: counts answers per version, and failures (any non-200
    answer, or a connection error after the client's retries)."""

    def __init__(self, app, threads: int = 3):
        self.app, self.stop, self.lock = app, threading.Event(), threading.Lock()
        self.versions, self.failures, self.retried = Counter(), [], 0
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self):
        import httpx

        while not self.stop.is_set():
            for attempt in range(3):
                try:
                    resp = _post(self.app, body={"conversations": [CONV, CONV2]})
                    break
                except httpx.TransportError as e:
                    with self.lock:
                        self.retried += 1
                    if attempt == 2:
                        with self.lock:
                            self.failures.append(repr(e))
                        resp = None
                    time.sleep(0.5)
            with self.lock:
                if resp is None:
                    continue
                if resp.status_code != 200:
                    self.failures.append(f"{resp.status_code}: {resp.text[:300]}")
                else:
                    for r in resp.json()["results"]:
                        self.versions[r["version"]] += 1

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=600)


@pytest.mark.slow
def test_hot_reload_under_load_fails_no_request(app):
    from serve.reload import current, publish

    adapter = _write_adapter(app.tmp / "v1", seed=1)
    run_dir = app.tmp / "run"
    _write_adapter(run_dir / "adapter", seed=2)
    with Load(app) as load:
        time.sleep(3)
        new = publish(adapter, version=1, app_name=app.cfg.app_name)
        assert new["checkpoint"] == str(adapter.resolve()) and new["version"] == 1
        assert new == current(app.cfg.app_name) and new["max_batch_size"] == app.cfg.max_batch_size
        time.sleep(3)
        # the command, from another process joining the cluster: a run dir, version = current + 1
        env = {**os.environ, "RAY_ADDRESS": app.gcs}
        proc = subprocess.run([sys.executable, "-m", "memroute", "serve", "reload", "--checkpoint", str(run_dir)],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"on {app.gcs} now serves version 2" in proc.stdout
        time.sleep(3)
    print(f"hot reload under load: answers per version {dict(load.versions)}, failures {len(load.failures)}, "
          f"connection retries {load.retried}")
    assert not load.failures, load.failures[:5]
    assert load.versions[0] > 0 and load.versions[1] > 0 and load.versions[2] > 0
    info = _get(app, "/version").json()
    assert info["version"] == 2 and info["checkpoint"] == str((run_dir / "adapter").resolve())
    # every replica moved: many calls, one version
    assert {_get(app, "/version").json()["version"] for _ in range(8)} == {2}


@pytest.mark.slow
def test_killed_replica_is_replaced_while_requests_continue(app):
    import ray
    from ray import serve

    from serve.reload import MODEL_DEPLOYMENT
    from serve.ingress import _proxy_host  # noqa: F401 - the ingress module imports cleanly in the driver

    def replicas():
        details = serve.context._get_global_client().get_serve_details()
        reps = details["applications"][app.cfg.app_name]["deployments"][MODEL_DEPLOYMENT]["replicas"]
        return {r["replica_id"]: r for r in reps if r["state"] == "RUNNING"}

    before = replicas()
    assert len(before) == 2
    version = _get(app, "/version").json()["version"]
    victim_id, victim = next(iter(before.items()))
    with Load(app) as load:
        time.sleep(2)
        ray.kill(ray.get_actor(victim["actor_name"], namespace="serve"), no_restart=True)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            now = replicas()
            if len(now) == 2 and victim_id not in now:
                break
            time.sleep(2)
        else:
            pytest.fail(f"the killed replica was not replaced: {sorted(replicas())}")
        time.sleep(3)
    print(f"replica kill: answers {sum(load.versions.values())}, failures {len(load.failures)}, "
          f"connection retries {load.retried}")
    assert not load.failures, load.failures[:5]
    # the replacement ran reconfigure with the published adapter before taking traffic
    assert {_get(app, "/version").json()["version"] for _ in range(8)} == {version}
