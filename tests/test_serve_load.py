"""Deadlines, backpressure, the answer cap, probed reloads and draining (issue 16).

First without Ray: the answer cap, the probe's judge, the config rules, and the ingress in this process with a
stub model (504 past the deadline with the model request cancelled, 503 + Retry-After on a full queue or while
draining). Then against the session's one real Serve app (tests/conftest.py `serve_app`: the tiny model, two
model replicas), changed in place and put back by each test: a tiny deadline, a queue of one, a candidate the
probe refuses (the old version still answering) and one it accepts, a drain.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from serve.config import ServeConfig, ServeConfigError

REPO = Path(__file__).resolve().parents[1]
CONV = [{"role": "user", "content": "Our brand voice is warm, plain-spoken and never uses exclamation marks."}]
ROUTE = {"conversation": CONV}
CHAT = {"model": "memroute-router", "messages": CONV}


# --- no Ray ------------------------------------------------------------------------------------------------------


def test_answer_cap_is_the_longest_valid_answer_plus_a_margin():
    from itertools import combinations

    from data.parser import format_answer, parse_answer
    from data.taxonomy import REAL_LABELS
    from memroute.core.models import load_tokenizer, resolve_model
    from serve.model import MAX_LABELS, answer_cap, label_regex, longest_answer

    tok = load_tokenizer(resolve_model("tiny"))  # SmolLM2's tokenizer

    def tokens(text):
        return len(tok(text, add_special_tokens=False)["input_ids"])

    longest = longest_answer(tok)
    assert parse_answer(longest).labels == parse_answer(longest).labels[:MAX_LABELS]
    assert len(parse_answer(longest).labels) == MAX_LABELS and longest == format_answer(parse_answer(longest).labels)
    every = [format_answer(c) for k in range(1, MAX_LABELS + 1) for c in combinations(REAL_LABELS, k)]
    assert tokens(longest) == max(map(tokens, every)) == 36
    assert answer_cap(tok) == 36 + 1 + 4 == 41  # + the end-of-turn token + the default margin
    assert answer_cap(tok, margin=0) == 37
    # what the grammar allows beyond a valid set (a label repeated) still fits with the margin
    import re

    worst = ", ".join([max(REAL_LABELS, key=tokens)] * MAX_LABELS)
    assert re.fullmatch(label_regex(), worst) and tokens(worst) + 1 <= answer_cap(tok)


def _answer(text="user.role_context", finish="stop", tokens=4, finite=True):
    return {"text": text, "finish_reason": finish, "completion_tokens": tokens, "prompt_tokens": 99, "version": 0,
            "logprobs_finite": finite, "mean_logprob": -0.5}


def test_probe_judge_accepts_only_clean_answers():
    from serve.reload import describe, judge

    def verdict(*answers):
        return judge({"checkpoint": "/a", "answers": list(answers), "max_tokens": 41, "constrained": True,
                      "seconds": 1.0, "replica": "r1"})

    good = verdict(_answer(), _answer("none", tokens=2), _answer("company.brand_core, user.role_context", tokens=9))
    assert good["ok"] and not good["problems"] and good["answers"][2]["labels"] == ["company.brand_core",
                                                                                     "user.role_context"]
    assert describe(good).startswith("probe of /a on replica r1: accepted (3 conversations, answer cap 41")
    cases = {
        "no end of answer within the cap (41 tokens of 41, finish length)": _answer(
            "company.brand_core, user.role_context", "length", 41),  # cut on a label boundary: it parses
        "does not parse into labels": _answer("\n\n\nSeedSeed"),
        "holds what is not a label: ['and more']": _answer("user.role_context, and more"),
        "non-finite logprobs (NaN / inf weights)": _answer(finite=False),
        "6 labels, over 5": _answer("company.brand_core, company.tools_config, company.performance_context, "
                                    "user.role_context, user.workflow_patterns, user.session_history", tokens=30),
    }
    for problem, answer in cases.items():
        bad = verdict(_answer(), answer)
        assert not bad["ok"] and bad["problems"] == [f"answer 2: {problem}"], bad["problems"]
        assert "REFUSED" in describe(bad) and problem in describe(bad)
    assert not verdict()["ok"]  # no answers: refused


def test_load_config_rules():
    cfg = ServeConfig()
    assert (cfg.request_timeout_s, cfg.max_queued_requests, cfg.retry_after_s, cfg.drain_timeout_s) == (30, 64, 1, 30)
    assert cfg.max_tokens is None and cfg.answer_margin_tokens == 4 and cfg.samples == 0  # greedy by default
    ServeConfig(max_queued_requests=-1, ingress_max_queued_requests=-1, max_tokens=24)
    for bad, needle in (({"max_queued_requests": 0}, "max_queued_requests must be -1"),
                        ({"request_timeout_s": 0}, "request_timeout_s must be > 0"),
                        ({"drain_timeout_s": -1}, "drain_timeout_s must be > 0"),
                        ({"retry_after_s": -1}, "retry_after_s must be >= 0"),
                        ({"deadline_reserve_s": -0.5}, "deadline_reserve_s must be >= 0"),
                        ({"return_reserve_s": -0.1}, "return_reserve_s must be >= 0"),
                        ({"samples": -1}, "samples must be >= 0"),
                        ({"max_tokens": 0}, "max_tokens must be >= 1"),
                        ({"max_conversation_tokens": 2000}, "the answer cap's bound")):
        with pytest.raises(ServeConfigError, match=needle):
            ServeConfig(**bad)


class _Response:
    """A stand-in for Serve's DeploymentResponse: awaits `result` (a coroutine function), records cancel()."""

    def __init__(self, result):
        self.result, self.cancelled = result, False

    def __await__(self):
        return self.result().__await__()

    def cancel(self):
        self.cancelled = True


@pytest.fixture
def ingress(monkeypatch):
    """The ingress's FastAPI app in this process, its replica built by hand around a stub model whose
    `generate.remote(prompt, deadline)` is `ingress.answer(prompt, deadline)` (an async function, set by the test);
    `ingress.responses` are the stub responses handed out."""
    from fastapi.testclient import TestClient
    from ray import serve

    from actors.engine import EngineConfig
    from memroute.core.models import load_tokenizer, resolve_model
    from serve.auth import key_digest
    from serve.admission import Admission
    from serve.ingress import RouterIngress
    from serve.metrics import IngressMetrics

    box = SimpleNamespace(responses=[], answer=None)

    class Generate:
        def remote(self, prompt, deadline):
            response = _Response(lambda: box.answer(prompt, deadline))
            box.responses.append(response)
            return response

    cfg = ServeConfig(engine=EngineConfig(model="tiny", max_model_len=1024), max_conversation_tokens=512,
                      request_timeout_s=0.5, retry_after_s=2.5)
    cls = RouterIngress.func_or_class
    replica = object.__new__(cls)
    replica.model, replica.cfg, replica.started = SimpleNamespace(generate=Generate()), cfg, time.time()
    replica.tokenizer, replica.metrics = load_tokenizer(resolve_model("tiny")), IngressMetrics()
    replica.admission = Admission(min_answers=3)
    fastapi_app = cls.route.__globals__["app"]
    for name, value in (("key_digest", key_digest("k")), ("metrics", replica.metrics), ("draining", False),
                        ("retry_after_s", cfg.retry_after_s)):
        monkeypatch.setattr(fastapi_app.state, name, value, raising=False)
    monkeypatch.setattr(serve, "get_replica_context", lambda: SimpleNamespace(
        servable_object=replica, replica_id=SimpleNamespace(unique_id="stub")))
    with TestClient(fastapi_app, raise_server_exceptions=False, base_url="http://127.0.0.1") as client:
        box.client, box.replica, box.headers = client, replica, {"Authorization": "Bearer k"}
        yield box


def _ok(prompt, deadline):
    return {"text": "user.role_context", "finish_reason": "stop", "version": 0, "prompt_tokens": 9,
            "completion_tokens": 3}


def _error(resp, status, code):
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body["error"]) == {"type", "code", "message"} and body["error"]["code"] == code, body
    assert body["error"]["type"] == ("server_error" if status >= 500 else "invalid_request_error")
    return body["error"]["message"]


def test_an_answer_a_little_past_the_replicas_deadline_is_waited_for_within_the_reserve(ingress):
    """The replica plans to answer by request_timeout_s - deadline_reserve_s; the ingress waits on until
    request_timeout_s - return_reserve_s, so a batch that ran past its plan is a 200, and later still a 504."""
    from dataclasses import replace

    ingress.replica.cfg = replace(ingress.replica.cfg, request_timeout_s=3.0, deadline_reserve_s=0.3,
                                  return_reserve_s=0.05)

    def after(seconds):
        async def answer(prompt, deadline):
            await asyncio.sleep(max(0.0, deadline - time.time()) + seconds)
            return _ok(prompt, deadline)
        return answer

    ingress.answer = after(0.1)  # 0.1 s past the replica's deadline: inside the 0.25 s the ingress still waits
    assert ingress.client.post("/route", json=ROUTE, headers=ingress.headers).status_code == 200
    ingress.answer = after(0.5)  # past what the ingress waits for
    resp = ingress.client.post("/route", json=ROUTE, headers=ingress.headers)
    assert "had not answered" in _error(resp, 504, "deadline_exceeded")
    held = float(resp.headers["server-timing"].removeprefix("ingress;dur=").split(";desc=")[0])
    assert 2900 <= held < 3000  # it waited to request_timeout_s - return_reserve_s, no longer


def test_ingress_deadline_is_a_504_and_cancels_the_model_request(ingress):
    async def slow(prompt, deadline):
        assert deadline > time.time()  # the replica gets the wall-clock deadline, in the future
        await asyncio.sleep(30)

    ingress.answer = slow
    start = time.monotonic()
    for path, body in (("/route", ROUTE), ("/v1/chat/completions", CHAT)):
        resp = ingress.client.post(path, json=body, headers=ingress.headers)
        assert "request_timeout_s=0.5 s" in _error(resp, 504, "deadline_exceeded")
        assert "had not answered" in resp.text  # where the time went: in the message and in Server-Timing
        held, where = resp.headers["server-timing"].removeprefix("ingress;dur=").split(";desc=")
        assert where == '"unanswered"' and 400 <= float(held) < 5000  # the ingress held it to its deadline
    assert time.monotonic() - start < 10  # answered at the deadline, not after the model's 30 s
    assert len(ingress.responses) == 2 and all(r.cancelled for r in ingress.responses)

    seen = []

    async def note(prompt, deadline):
        seen.append(deadline - time.time())
        return _ok(prompt, deadline)

    ingress.answer = note  # request_timeout_s 0.5: a tenth (the cap on deadline_reserve_s) kept for the way back
    assert ingress.client.post("/route", json=ROUTE, headers=ingress.headers).status_code == 200
    assert 0.3 < seen[0] <= 0.45

    async def expired(prompt, deadline):  # the replica dropped it before decoding
        return {"expired": True}

    ingress.answer = expired
    resp = ingress.client.post("/route", json={"conversations": [CONV, CONV]}, headers=ingress.headers)
    assert "never decoded" in _error(resp, 504, "deadline_exceeded")
    assert resp.headers["server-timing"].endswith('desc="replica_queue"')

    async def late(prompt, deadline):  # the replica refused it: its batch would have ended past the deadline
        return {"late": True, "expected_s": 7.5, "left_s": 4.25}

    ingress.answer = late
    resp = ingress.client.post("/route", json=ROUTE, headers=ingress.headers)
    assert "~7.5 s, past this request's deadline (~4.25 s left" in _error(resp, 503, "overloaded")
    assert resp.headers["retry-after"] == "3" and ingress.replica.admission.owed == 0  # not owed any more
    ingress.replica.reconfigure({"request_timeout_s": 60})  # in place, from the user_config
    ingress.answer = lambda p, d: asyncio.sleep(0, _ok(p, d))
    assert ingress.client.post("/route", json=ROUTE, headers=ingress.headers).status_code == 200
    text = ingress.replica.metrics.render().decode()
    assert 'memroute_errors_total{status="504"} 3.0' in text and "memroute_requests_in_flight 0.0" in text


def test_admission_rate_counts_busy_time_only():
    from serve.admission import Admission

    now = [0.0]
    adm = Admission(window=4, min_answers=3, clock=lambda: now[0])
    assert adm.rate() is None and adm.admits(100, 0.1)  # unknown: admitted (the queue bounds still apply)
    for _ in range(2):  # a batch of 2 answered together after 2 s of decoding, twice
        adm.begin(2)
        now[0] += 2.0
        adm.answered(), adm.answered()
        now[0] += 50.0  # idle: not service time
    assert adm.owed == 0 and adm.rate() == 3 / 2.0  # answers at busy 2, 2, 4, 4: 3 intervals in 2 s
    assert adm.expected_wait_s(3) == 2.0 and adm.admits(3, 2.0) and not adm.admits(4, 2.0)
    adm.begin(6)
    now[0] += 4.0  # a batch still decoding counts as time spent: the rate falls while nothing comes back
    assert adm.rate() == 3 / 6.0
    adm.gave_up(6)  # cancelled or expired: no longer owed, no answer
    assert adm.owed == 0 and adm.rate() == 3 / 6.0
    for _ in range(5):  # the window keeps the last 4 answers
        adm.begin(1)
        now[0] += 0.5
        adm.answered()
    assert adm.rate() == 3 / 1.5


def test_decode_cost_runs_what_can_end_before_its_deadline():
    from serve.admission import DecodeCost

    cost = DecodeCost(margin=1.0)
    assert cost.expected_s(4) is None
    assert cost.schedule([None, 5.0, 1.0], now=2.0) == ([0, 1], [], [2])  # unknown cost: all live ones run
    cost.observe(2, 0.8)  # one size seen: scaled in proportion (0.4 s per conversation), the cautious guess
    cost.observe(0, 9.0)  # an empty batch says nothing
    assert cost.expected_s(1) == pytest.approx(0.4) and cost.expected_s(8) == pytest.approx(3.2)
    cost.observe(4, 1.2)  # two sizes: the line through them, 0.4 + 0.2 s per conversation
    assert cost.expected_s(1) == pytest.approx(0.6) and cost.expected_s(3) == pytest.approx(1.0)
    # at t=10, latest deadline first: none (1 conversation: ends 10.6), 13.0 (2: 10.8), 11.1 (3: 11.0) fit; 10.5
    # would make 4, ending at 11.2: refused; 9.0 has passed
    run, late, expired = cost.schedule([10.5, 11.1, 13.0, None, 9.0], now=10.0)
    assert expired == [4] and run == [1, 2, 3] and late == [0]
    cost = DecodeCost(margin=2.0, history=2)
    for size, seconds in ((4, 100.0), (4, 2.0), (2, 1.0)):
        cost.observe(size, seconds)
    assert cost.expected_s(4) == pytest.approx(2.0)  # the oldest batch is forgotten
    # margin 2: one conversation (0.5 s) must fit 1 s, two must fit 2 s
    assert cost.schedule([11.9, 14.1], now=10.0) == ([1], [0], [])
    assert cost.schedule([12.0, 14.1], now=10.0) == ([0, 1], [], [])


def test_decode_cost_expects_a_large_batch_to_take_less_than_in_proportion():
    """The bench's case: batches of 1-3 conversations take ~0.7-1.1 s and one of 29 ~9 s. Scaling the newest
    small batch in proportion expects ~20 s for 29 and refuses, at a 30 s deadline, requests the batch answers."""
    from serve.admission import DecodeCost

    cost = DecodeCost(margin=1.15)
    for size, seconds in ((1, 0.7), (3, 1.3), (2, 1.0), (1, 0.7)):
        cost.observe(size, seconds)
    assert 0.3 < cost.expected_s(1) < 1.0 and 8.0 < cost.expected_s(29) < 10.0  # 0.4 + 0.3 s per conversation
    run, late, _ = cost.schedule([30.0] * 29, now=0.0)  # all with 30 s left
    assert len(run) == 29 and late == []
    cost.observe(29, 9.1)
    assert cost.expected_s(29) == pytest.approx(9.1, rel=0.05)
    noisy = DecodeCost()  # bigger measured faster (noise): no negative slope, the mean time
    noisy.observe(4, 1.0), noisy.observe(8, 0.9)
    assert noisy.expected_s(64) == pytest.approx(0.95)
    steep = DecodeCost()  # time growing faster than size: the line through the origin, never a negative intercept
    steep.observe(1, 0.1), steep.observe(2, 1.0)
    a, b = steep.line()  # (the second batch also ran 5x the first's line: expected_s is scaled by the slowdown)
    assert a == 0.0 and b == pytest.approx(2.1 / 5)


def test_decode_cost_does_not_refuse_on_a_line_extrapolated_far_past_what_it_saw():
    """A fresh replica has seen only a warm-up's small batches, one of them slow: the line through them expects
    ~34 s for a burst of 30 and refused 10 of 32 requests with 28.7 s of their deadline left (bench, 2026-12-02)."""
    from serve.admission import DecodeCost

    cost = DecodeCost(margin=1.15)  # reach 2: the estimate refuses batches of up to 8
    for size, seconds in ((4, 5.5), (1, 0.7), (1, 0.6), (2, 0.9)):
        cost.observe(size, seconds)
    assert cost.expected_s(30) > 34.0
    run, late, _ = cost.schedule([28.7] * 30, now=0.0)
    assert len(run) == 30 and late == []
    # within its reach it still refuses: 8 conversations expected ~10.5 s do not fit 9 s; the 6 that fit run
    run, late, _ = cost.schedule([9.0] * 8, now=0.0)
    assert len(run) == 6 and len(late) == 2
    cost.observe(30, 10.7)  # once a batch that large was seen, 60 is within reach and refused when it cannot fit
    run, late, _ = cost.schedule([5.0] * 60, now=0.0)
    assert late and len(run) + len(late) == 60


def test_ingress_refuses_what_cannot_be_answered_before_its_deadline(ingress):
    async def answer(prompt, deadline):
        await asyncio.sleep(0.05)
        return _ok(prompt, deadline)

    ingress.answer = answer
    for _ in range(3):  # the rate is learnt from answers: ~20/s
        assert ingress.client.post("/route", json=ROUTE, headers=ingress.headers).status_code == 200
    admission = ingress.replica.admission
    assert admission.owed == 0 and 5 < admission.rate() < 25
    admission.owed = 40  # as if 40 conversations were being decoded: ~2 s of answers ahead, past the 0.5 s deadline
    resp = ingress.client.post("/route", json=ROUTE, headers=ingress.headers)
    message = _error(resp, 503, "overloaded")
    assert "past this request's deadline" in message and resp.headers["retry-after"] == "3"
    assert len(ingress.responses) == 3  # refused before the model was asked
    admission.owed = 0
    assert ingress.client.post("/route", json=ROUTE, headers=ingress.headers).status_code == 200
    ingress.replica.reconfigure({"admit_by_deadline": False})  # in place: off, then on again with a new estimate
    assert ingress.replica.admission is None
    assert ingress.client.post("/route", json=ROUTE, headers=ingress.headers).status_code == 200
    ingress.replica.reconfigure({})
    assert ingress.replica.admission is not None and ingress.replica.admission.rate() is None


def test_ingress_full_queue_is_a_503_with_retry_after(ingress):
    from ray.serve.exceptions import BackPressureError

    async def full(prompt, deadline):
        raise BackPressureError(num_queued_requests=64, max_queued_requests=64)

    ingress.answer = full
    for path, body in (("/route", {"conversations": [CONV, CONV, CONV]}), ("/v1/chat/completions", CHAT)):
        resp = ingress.client.post(path, json=body, headers=ingress.headers)
        assert "max_queued_requests=64" in _error(resp, 503, "overloaded")
        assert resp.headers["retry-after"] == "3"  # retry_after_s 2.5, rounded up to whole seconds


def test_ingress_draining_refuses_new_requests_with_503(ingress):
    ingress.answer = lambda p, d: asyncio.sleep(0, _ok(p, d))
    ingress.replica.reconfigure({"draining": True})
    try:
        resp = ingress.client.post("/route", json=ROUTE, headers=ingress.headers)
        _error(resp, 503, "shutting_down")
        assert resp.headers["retry-after"] == "3"
        health = ingress.client.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "draining"
        assert health.headers["retry-after"] == "3"
        assert ingress.replica.drain_state()["draining"] is True
    finally:
        ingress.replica.reconfigure({})
    assert ingress.client.post("/route", json=ROUTE, headers=ingress.headers).status_code == 200
    assert ingress.client.get("/health").json()["status"] == "ok"


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_signal_drains_deletes_the_app_and_exits_0(sig):
    """`memroute serve` stopped by SIGTERM (a container stop, systemd) or SIGINT (Ctrl-C): drain, then delete the
    app, exit 0 (deploy, drain and serve.delete stubbed: the shutdown path, not Serve; the real drain is tested
    below against the real app)."""
    import signal

    code = ("import sys, serve.app as a\nfrom ray import serve\n"
            "a.deploy = lambda cfg: 'http://127.0.0.1:1'\n"
            "def drain(name, timeout):\n"
            "    print('draining', name, timeout, flush=True)\n"
            "    return {'in_flight': 2, 'left': 0, 'seconds': 0.5}\n"
            "a.drain = drain\n"
            "serve.delete = lambda name: print('deleted', name, flush=True)\n"
            "sys.exit(a.main(['engine.model=tiny', 'drain_timeout_s=7']))\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().startswith("memroute router on http://127.0.0.1:1")
        proc.send_signal(getattr(signal, sig))
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    lines = out.strip().splitlines()
    assert lines[0].startswith("stopping: draining requests in flight (at most 7 s")
    assert lines[1:] == ["draining memroute 7.0", "drained: 2 requests in flight, 0 left after 0.5 s",
                         "deleted memroute"]


# --- the real app (tests/conftest.py serve_app) ---------------------------------------------------------------


def _post(app, path="/route", body=None, **kw):
    import httpx

    return httpx.post(app.url + path, json=body or ROUTE, headers={"Authorization": f"Bearer {app.key}"},
                      timeout=300, **kw)


def _get(app, path):
    import httpx

    return httpx.get(app.url + path, headers={"Authorization": f"Bearer {app.key}"}, timeout=60)


def _adapter(folder: Path, seed: int, std: float = 0.5) -> Path:
    from bench.load import random_adapter

    return random_adapter(folder, "tiny", seed=seed, std=std)


@pytest.mark.slow
def test_served_answer_cap(serve_app):
    from memroute.core.models import load_tokenizer, resolve_model
    from serve.model import answer_cap

    assert serve_app.cfg.max_tokens is None  # the computed cap, not a fixed max_tokens
    cap = answer_cap(load_tokenizer(resolve_model("tiny")), serve_app.cfg.answer_margin_tokens)
    assert {_get(serve_app, "/version").json()["max_tokens"] for _ in range(4)} == {cap}
    result = _post(serve_app).json()["results"][0]
    assert result["completion_tokens"] <= cap


@pytest.mark.slow
def test_deadline_exceeded_is_a_504(serve_app):
    from ray import serve

    from serve.reload import INGRESS_DEPLOYMENT, MODEL_DEPLOYMENT, update

    app = serve_app
    # admission off: with a rate learnt from earlier requests it would refuse these at once (503), as it should
    update(app.cfg.app_name, {"request_timeout_s": 0.005, "admit_by_deadline": False}, deployment=INGRESS_DEPLOYMENT)
    try:
        for path, body in (("/route", ROUTE), ("/v1/chat/completions", CHAT)):
            resp = _post(app, path, body)
            assert resp.status_code == 504, resp.text
            assert resp.json()["error"]["code"] == "deadline_exceeded" and "0.005 s" in resp.text
    finally:
        update(app.cfg.app_name, {"request_timeout_s": app.cfg.request_timeout_s, "admit_by_deadline": True},
               deployment=INGRESS_DEPLOYMENT)
    # a request already past its deadline when its batch gets the engine is not decoded
    model = serve.get_deployment_handle(MODEL_DEPLOYMENT, app.cfg.app_name)
    from data.prompt import render_prompt
    from memroute.core.models import load_tokenizer, resolve_model

    prompt = render_prompt(load_tokenizer(resolve_model("tiny")), CONV)
    assert model.generate.remote(prompt, time.time() - 1).result(timeout_s=120) == {"expired": True}
    assert model.generate.remote(prompt, time.time() + 120).result(timeout_s=120)["finish_reason"] == "stop"
    assert _post(app).status_code == 200
    metrics = _get(app, "/metrics").text
    assert 'memroute_errors_total{status="504"}' in metrics


@pytest.mark.slow
def test_a_full_queue_is_a_503_with_retry_after(serve_app):
    from serve.reload import update

    app = serve_app
    # one request per model replica at a time, one more waiting at the ingress: the rest of a burst is refused
    update(app.cfg.app_name, {}, options={"max_ongoing_requests": 1, "max_queued_requests": 1})
    statuses, bodies, lock = [], [], threading.Lock()

    def send():
        resp = _post(app)
        with lock:
            statuses.append(resp.status_code)
            bodies.append(resp)

    try:
        time.sleep(2)  # the ingress's router learns the new limits through Serve's long poll
        threads = [threading.Thread(target=send) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
    finally:
        update(app.cfg.app_name, {}, options={"max_ongoing_requests": app.cfg.max_ongoing_requests,
                                              "max_queued_requests": app.cfg.max_queued_requests})
    print(f"burst of 12 against a queue of 1: statuses {sorted(statuses)}")
    assert len(statuses) == 12 and set(statuses) <= {200, 503}, statuses
    assert statuses.count(200) >= 2 and statuses.count(503) >= 1, statuses
    for resp in bodies:
        if resp.status_code == 503:
            assert resp.json()["error"]["code"] == "overloaded" and resp.headers["retry-after"] == "1"
    time.sleep(2)
    assert _post(app).status_code == 200  # the old limits are back


def _reload(app, checkpoint, *extra) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_ADDRESS": app.gcs}
    return subprocess.run([sys.executable, "-m", "memroute", "serve", "reload", "--checkpoint", str(checkpoint),
                           *extra], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_reload_probe_refuses_a_bad_candidate_and_the_old_version_keeps_serving(serve_app):
    """A candidate whose answers do not parse is refused. With the grammar on, every answer of the random tiny
    model parses; with it off (the `constrained` knob, in place) none does: the free text of a random model."""
    from serve.reload import ProbeRefused, current, publish, update

    app = serve_app
    before = current(app.cfg.app_name)
    candidate = _adapter(app.tmp / "refused", seed=7)
    update(app.cfg.app_name, {"constrained": False})
    try:
        proc = _reload(app, candidate)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "REFUSED" in proc.stdout and "does not parse into labels" in proc.stdout, proc.stdout
        assert f"still serves version {before['version']}" in proc.stderr
        with pytest.raises(ProbeRefused, match="does not parse into labels") as e:
            publish(candidate, app_name=app.cfg.app_name)
        assert not e.value.verdict["ok"] and len(e.value.verdict["answers"]) == 4
        assert {k: current(app.cfg.app_name)[k] for k in ("checkpoint", "version")} == {
            "checkpoint": before["checkpoint"], "version": before["version"]}
    finally:
        update(app.cfg.app_name, {"constrained": True})
    # every replica still serves the old version, with its own weights back (the probe's weights are gone)
    info = {_get(app, "/version").json()["version"] for _ in range(6)}
    assert info == {before["version"]}
    result = _post(app).json()["results"][0]
    assert result["version"] == before["version"] and result["parsed"]


@pytest.mark.slow
def test_best_of_samples_is_a_knob_changed_in_place(serve_app):
    """`samples` (the most probable of greedy and n sampled answers) goes into the replicas' user_config in
    place; answers keep coming, parsed under the grammar, from the same version."""
    from serve.reload import current, update

    app = serve_app
    before = current(app.cfg.app_name)
    assert before.get("samples", 0) == 0
    update(app.cfg.app_name, {"samples": 3})
    try:
        assert current(app.cfg.app_name)["samples"] == 3
        resp = _post(app)
        assert resp.status_code == 200, resp.text
        result = resp.json()["results"][0]
        assert result["parsed"] and result["version"] == before["version"]
    finally:
        update(app.cfg.app_name, {"samples": 0})
    assert current(app.cfg.app_name)["samples"] == 0


@pytest.mark.slow
def test_reload_probe_accepts_a_good_candidate(serve_app):
    from serve.reload import current, probe, publish

    app = serve_app
    before = current(app.cfg.app_name)
    candidate = _adapter(app.tmp / "accepted", seed=8, std=0.02)
    verdict = probe(candidate, app.cfg.app_name)
    assert verdict["ok"], verdict["problems"]
    assert all(a["finish_reason"] == "stop" and a["completion_tokens"] <= verdict["max_tokens"]
               for a in verdict["answers"])
    assert current(app.cfg.app_name)["version"] == before["version"]  # a probe publishes nothing
    proc = _reload(app, candidate)
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        version = before["version"] + 1
        assert "accepted" in proc.stdout and f"now serves version {version}" in proc.stdout, proc.stdout
        assert {_get(app, "/version").json()["version"] for _ in range(6)} == {version}
        assert _post(app).json()["results"][0]["version"] == version
    finally:  # as it was: other tests count answers per version
        publish(before["checkpoint"], before["version"], app.cfg.app_name, probe_first=False)


@pytest.mark.slow
def test_drain_lets_requests_in_flight_finish_and_refuses_new_ones(serve_app):
    from serve.reload import INGRESS_DEPLOYMENT, drain, update

    app = serve_app
    results, lock = [], threading.Lock()

    def send():
        resp = _post(app, body={"conversations": [CONV] * 8})
        with lock:
            results.append(resp.status_code)

    # one conversation per model replica at a time, no queue bound: the requests stay in flight for seconds
    update(app.cfg.app_name, {}, options={"max_ongoing_requests": 1, "max_queued_requests": -1})
    threads = [threading.Thread(target=send) for _ in range(4)]
    try:
        time.sleep(2)
        for t in threads:
            t.start()
        time.sleep(0.5)
        done = drain(app.cfg.app_name, timeout_s=120)
        print(f"drain: {done}")
        assert done["in_flight"] >= 1 and done["left"] == 0
        refused = _post(app)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "shutting_down"
        assert refused.headers["retry-after"] == "1"
        import httpx

        health = httpx.get(app.url + "/health", timeout=60)
        assert health.status_code == 503 and health.json()["status"] == "draining"
        for t in threads:
            t.join(timeout=300)
        assert results == [200] * 4, results  # the ones in flight when the drain began were answered
    finally:
        for t in threads:
            if t.is_alive():
                t.join(timeout=300)
        update(app.cfg.app_name, {"draining": False}, deployment=INGRESS_DEPLOYMENT)
        update(app.cfg.app_name, {}, options={"max_ongoing_requests": app.cfg.max_ongoing_requests,
                                              "max_queued_requests": app.cfg.max_queued_requests})
    assert _post(app).status_code == 200


# --- the model replica's weight handling, on a stand-in engine ---------------------------------------------------


class _FakeEngine:
    """The parts of actors.engine.Engine that RouterModel's weight handling uses: load_weights records each push;
    sample answers with NaN logprobs while an adapter holding NaN is in, or ever after once `poison` is set (a
    stand-in for NaN left in reused KV-cache blocks)."""

    def __init__(self, poison=False):
        import threading

        self._lock, self.version, self.pushes, self.weights, self.poison, self.poisoned = (
            threading.RLock(), 0, [], {}, poison, False)

    def load_weights(self, version, tensors, adapter_cfg):
        import math

        self.weights = tensors
        self.pushes.append((version, sorted({k.split(".lora_")[0].rsplit(".", 1)[1] for k in tensors}),
                            all(float(v.abs().sum()) == 0 for k, v in tensors.items() if "lora_B" in k)))
        nan = any(not math.isfinite(float(v.sum())) for v in tensors.values())
        self.poisoned = self.poisoned or (nan and self.poison)
        self.nan = nan
        self.version = version

    def render(self, conversations):
        return [str(c) for c in conversations]

    def sample(self, prompts, n, **kw):
        bad = self.nan or self.poisoned
        return [[SimpleNamespace(text="none", finish_reason="stop", version=self.version, prompt_token_ids=[1, 2],
                                 token_ids=[3, 4], logprobs=[float("nan") if bad else -0.1] * 2)] for _ in prompts]


def _lora(targets, value=0.1):
    import torch

    t = {}
    for name in targets:
        pre = f"base_model.model.model.layers.0.self_attn.{name}"
        t[f"{pre}.lora_A.weight"], t[f"{pre}.lora_B.weight"] = torch.full((2, 4), 0.1), torch.full((4, 2), value)
    return t, {"r": 2, "lora_alpha": 4, "target_modules": list(targets)}


def _model(engine, adapter=None):
    from serve.model import RouterModel

    model = object.__new__(RouterModel.func_or_class)
    model.engine, model.max_tokens, model.sampling, model.samples, model._dead = engine, 41, {}, 0, None
    model._adapter, model.checkpoint = adapter, None
    return model


def test_weights_touched_by_the_previous_adapter_go_back_to_base_first():
    engine = _FakeEngine()
    model = _model(engine)
    model._set_weights(_lora(["q_proj", "v_proj"]), 1)  # from base: one push
    model._set_weights(_lora(["q_proj", "k_proj", "v_proj"]), 2)  # covers the previous: one push
    model._set_weights(_lora(["q_proj"]), 3)  # k and v were touched: they go back to base first
    model._set_weights(None, 4)  # base: the last adapter with B = 0
    assert engine.pushes == [(1, ["q_proj", "v_proj"], False), (2, ["k_proj", "q_proj", "v_proj"], False),
                             (3, ["k_proj", "q_proj", "v_proj"], True), (3, ["q_proj"], False),
                             (4, ["q_proj"], True)]
    assert engine.version == 4 and model._adapter is None


@pytest.mark.parametrize("poison", [False, True])
def test_probe_puts_the_serving_weights_back_and_retires_a_poisoned_replica(monkeypatch, poison):
    import serve.model as sm

    serving, candidate = _lora(["q_proj", "v_proj"]), _lora(["q_proj", "k_proj", "v_proj"], value=float("nan"))
    engine = _FakeEngine(poison=poison)
    model = _model(engine, serving)
    engine.version = 5
    monkeypatch.setattr(sm, "resolve_checkpoint", lambda c: Path("/cand"))
    monkeypatch.setattr(sm, "_read", lambda folder: candidate)
    monkeypatch.setattr(sm.serve, "get_replica_context", lambda: SimpleNamespace(
        replica_id=SimpleNamespace(unique_id="r1")))
    result = model._probe("/cand", [CONV, CONV])
    assert [a["logprobs_finite"] for a in result["answers"]] == [False, False]
    assert model._adapter is serving and engine.version == 5 and engine.weights is serving[0]
    # the candidate touched k: zeroed (zeros, not NaN * 0), then the serving adapter back
    assert engine.pushes[-2:] == [(5, ["k_proj", "q_proj", "v_proj"], True), (5, ["q_proj", "v_proj"], False)]
    if poison:  # the restored weights still answer NaN: the health check fails and Serve replaces the replica
        with pytest.raises(RuntimeError, match="left non-finite logprobs behind"):
            model.check_health()
    else:
        assert model._dead is None


def test_probe_lets_waiting_batches_run_between_its_conversations(monkeypatch):
    """The probe holds the engine for one conversation at a time: a batch waiting for the engine gets it between
    two of them, and always finds the weights in service, never the candidate."""
    import threading
    import time

    import serve.model as sm

    serving, candidate = _lora(["q_proj"]), _lora(["q_proj"], value=0.2)
    engine = _FakeEngine()
    slow = engine.sample

    def sample(prompts, n, **kw):
        time.sleep(0.05)
        return slow(prompts, n, **kw)

    engine.sample = sample
    engine.weights = serving[0]  # in service before the probe
    model = _model(engine, serving)
    monkeypatch.setattr(sm, "resolve_checkpoint", lambda c: Path("/cand"))
    monkeypatch.setattr(sm, "_read", lambda folder: candidate)
    monkeypatch.setattr(sm.serve, "get_replica_context", lambda: SimpleNamespace(
        replica_id=SimpleNamespace(unique_id="r1")))
    seen, done = [], threading.Event()

    def batches():  # a replica's batches, each taking the engine's lock as RouterModel._generate does
        while not done.is_set():
            with engine._lock:
                seen.append((time.perf_counter(), engine.weights is serving[0]))
            time.sleep(0.005)

    worker = threading.Thread(target=batches)
    started = time.perf_counter()
    worker.start()
    result = model._probe("/cand", [CONV] * 4)
    finished = time.perf_counter()
    done.set()
    worker.join()
    during = [ok for t, ok in seen if started < t < finished]
    assert len(result["answers"]) == 4 and result["longest_hold_s"] < result["seconds"] / 2
    assert len(during) >= 3 and all(during)  # it got the engine between the holds, on the serving weights


def test_decode_cost_expects_the_answer_after_the_running_batch_and_those_waiting():
    """A conversation arriving behind a running batch and a queue: its answer comes after both, so one whose
    deadline falls before that is refused at once (503) instead of expiring in the queue (504)."""
    from serve.admission import DecodeCost

    cost = DecodeCost(margin=1.0)
    assert cost.expected_end(0.0, None, 0, 32) is None  # nothing seen: unknown, admitted
    cost.observe(1, 1.0), cost.observe(10, 5.5)  # 0.5 + 0.5 s per conversation
    assert cost.expected_end(100.0, None, 0, 32) == pytest.approx(101.0)  # the engine free: its own batch
    # a batch of 10 started at 98 (ends 103.5), 3 waiting: its batch of 4 ends 2.5 s later
    assert cost.expected_end(100.0, (98.0, 10), 3, 32) == pytest.approx(106.0)
    # 12 waiting with batches of 8: a full batch (4.5 s), then its own of 5 (3 s)
    assert cost.expected_end(100.0, None, 12, 8) == pytest.approx(107.5)
    assert cost.expected_end(100.0, None, 40, 64) is None  # a batch of 41: past twice the largest seen


def test_decode_cost_scales_its_estimates_when_the_newest_batches_run_slow():
    """Overload (bench, 2026-12-07): the proxy and the ingress, busy refusing, took CPU from the decode, batches ran
    ~1.5x the line fitted to the calmer batches before, and the requests admitted on it ended as 504s. The newest
    batches' slowdown now scales every estimate until the line catches up, and only ever up."""
    from serve.admission import DecodeCost

    cost = DecodeCost(margin=1.0)
    for size, seconds in ((10, 3.0), (20, 5.0), (30, 7.0), (10, 3.0), (20, 5.0)):  # 1 + 0.2 s per conversation
        cost.observe(size, seconds)
    assert cost.slowdown() == 1.0 and cost.expected_s(13) == pytest.approx(3.6)
    assert cost.expected_end(100.0, None, 12, 32) == pytest.approx(103.6)
    cost.observe(13, 5.4)  # 1.5x what the line expected
    assert cost.slowdown() == pytest.approx(1.5)
    assert cost.expected_s(13) > 5.0 and cost.expected_end(100.0, None, 12, 32) > 105.0
    run, late, _ = cost.schedule([104.0] * 13, now=100.0)  # 4 s left: on the line 13 would fit; slowed, fewer
    assert late and len(run) < 13
    for _ in range(cost.recent - 1):  # batches back on the line: the slow one still counts
        cost.observe(10, cost.line()[0] + cost.line()[1] * 10)
    assert cost.slowdown() > 1.2
    for _ in range(1):  # and is forgotten after `recent` of them
        cost.observe(10, cost.line()[0] + cost.line()[1] * 10)
    assert cost.slowdown() == pytest.approx(1.0, abs=0.02)
    fast = DecodeCost()
    for size, seconds in ((10, 3.0), (20, 5.0), (10, 1.0)):  # faster than the line: estimates are never scaled down
        fast.observe(size, seconds)
    assert fast.slowdown() == 1.0
    capped = DecodeCost(max_slowdown=2.0)
    capped.observe(10, 1.0), capped.observe(20, 1.5), capped.observe(10, 50.0)
    assert capped.slowdown() == 2.0

