"""The HTTP ingress (FastAPI through `@serve.ingress`): auth, validation, prompt rendering, response shaping.

Prompts are rendered here with the one prompt function (`data.prompt.render_prompt`) so an over-long
conversation is refused before it reaches a model replica; answers are parsed with the one parser
(`data.parser.parse_answer`) and each label gets its horizon and scope from the taxonomy.

Every request body goes through the one validator, `serve.validate` (limits, depth, encoding, schema), read by
hand rather than declared as a FastAPI parameter so that each failure gets its own status (415, 413, 400, 422)
and the body `{"error": {"type", "code", "message"}}`, whose message names the field or limit at fault. So do
unknown paths and methods (404, 405) and a missing key (401). A bad request never touches the model, so the
server keeps serving; an unexpected exception is logged and answered 500 in the same shape, with no traceback.

Deadlines and backpressure, in the same shape: a request not answered within `request_timeout_s` of its receipt
(less `deadline_reserve_s`, at most a tenth of it, kept for the proxy's queue and the way back, which the ingress
does not see: the model replica plans its batches to end by then; with `return_reserve_s` below it the ingress
waits into the reserve, up to `return_reserve_s` before the end, for a batch that ran past its plan) is answered
504 (`deadline_exceeded`) and its model requests are cancelled (a queued one is never decoded, see serve.model);
a full model queue (Serve's `max_queued_requests`: Serve raises BackPressureError at the handle) is a 503 (`overloaded`) with `Retry-After`, and so is a request that could not be answered before its deadline
behind the answers already owed, at the rate they come back (serve.admission: refused at once, not left to end
as a 504), or that the model replica refused because its batch would end past the deadline, as is every POST
while the app drains for a shutdown (`shutting_down`, and /health answers 503). A client that disconnects has its request cancelled by Serve, which
cancels the model requests made under it. `request_timeout_s`, `retry_after_s` and `draining` are the ingress's
user_config, so they change in place (serve.reload.update(app, {...}, deployment="RouterIngress")), as does
`admit_by_deadline`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from functools import partial

from fastapi import FastAPI, Request
from fastapi.responses import Response
from ray import serve
from starlette.exceptions import HTTPException

from serve import schema
from serve.admission import Admission
from serve.auth import authorized, check_bind
from serve.config import ServeConfig
from serve.metrics import IngressMetrics
from serve.validate import (ApiError, check_conversations, check_tokens, content_type_ok, error_body, parse_json,
                            to_model, too_large)

# load balancers probe these without a key; they say nothing about conversations
OPEN_PATHS = ("/healthz", "/health")
CODES = {404: "not_found", 405: "method_not_allowed"}
logger = logging.getLogger("ray.serve")

app = FastAPI(title="memroute router", description="Routes conversations to memory categories.")


def _error(status: int, code: str, message: str, headers: dict | None = None) -> Response:
    return Response(error_body(status, code, message), status_code=status, media_type="application/json",
                    headers=headers)


def retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(0, math.ceil(seconds)))}  # RFC 9110: whole seconds


@app.exception_handler(ApiError)
async def _api_error(request: Request, exc: ApiError) -> Response:
    request.app.state.metrics.error(exc.status)
    return _error(exc.status, exc.code, exc.message, exc.headers)


@app.exception_handler(HTTPException)
async def _http_error(request: Request, exc: HTTPException) -> Response:  # unknown path / method
    request.app.state.metrics.error(exc.status_code)
    return _error(exc.status_code, CODES.get(exc.status_code, "http_error"), f"{request.method} {request.url.path}: "
                  f"{exc.detail}; routes: POST /route, /v1/chat/completions; GET /health, /version, /metrics")


@app.middleware("http")
async def _auth(request: Request, call_next):
    metrics = request.app.state.metrics
    try:
        if request.url.path not in OPEN_PATHS and not authorized(request.headers.get("authorization"),
                                                                 request.app.state.key_digest):
            metrics.error(401)
            # never echo the header: it may hold a key meant for something else
            return _error(401, "invalid_api_key", "missing or wrong API key: send `Authorization: Bearer <key>`")
        state = request.app.state
        if getattr(state, "draining", False) and request.method == "POST":
            metrics.error(503)
            return _error(503, "shutting_down", "this server is shutting down: retry, on another replica or later",
                          retry_after(getattr(state, "retry_after_s", 1.0)))
        metrics.started()
        try:
            return await call_next(request)
        finally:
            metrics.ended()
    except Exception:  # a bug, not the input (the validator refuses that): logged here, never sent back
        ref = uuid.uuid4().hex[:12]
        logger.exception("unexpected error in %s %s (ref %s)", request.method, request.url.path, ref)
        metrics.error(500)
        return _error(500, "internal_error", f"internal error (ref {ref}, in the ingress replica's log)")


async def read_body(request: Request, model, cfg: ServeConfig):
    """The request body as `model`, through the one validator, or an ApiError naming what is wrong with it."""
    content_type_ok(request.headers.get("content-type", ""))
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cfg.max_body_bytes:
        raise too_large(int(declared), cfg)  # refused before it is read
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cfg.max_body_bytes:
            raise too_large(size, cfg)
        chunks.append(chunk)
    return to_model(parse_json(b"".join(chunks), cfg), model)


def shape(out: dict, latency_ms: float) -> schema.RouteResult:
    """A model answer -> labels with horizon and scope, via the one parser and the taxonomy."""
    from data.parser import parse_answer
    from data.schema import derive_horizon
    from data.taxonomy import category, set_scope

    parsed = parse_answer(out["text"])
    timing = (schema.Timing(queue_ms=out["queue_ms"], engine_ms=out["engine_ms"], batch_size=out["batch_size"])
              if "engine_ms" in out else None)
    labels = [schema.Label(name=n, horizon=category(n).horizon, scope=category(n).scope) for n in parsed.labels]
    return schema.RouteResult(labels=labels, persistence_horizon=derive_horizon(parsed.labels),
                              memory_scope=set_scope(parsed.labels), parsed=parsed.parsed, unknown=parsed.unknown,
                              text=out["text"], finish_reason=out["finish_reason"], version=out["version"],
                              prompt_tokens=out["prompt_tokens"], completion_tokens=out["completion_tokens"],
                              latency_ms=round(latency_ms, 2), timing=timing)


def _proxy_host(default: str) -> str:
    """The host Serve's HTTP proxies bind (from the controller), else the configured one."""
    try:
        from ray.serve.context import _get_global_client

        return _get_global_client().http_config.host or default
    except Exception:  # no controller reachable (a unit test): the config is all we know
        return default


# Helpers stand above the class: `@serve.ingress` pickles the class when it is defined, with the globals it uses.


def sse(chunk: schema.ChatCompletionChunk) -> Response:
    """`stream=true`: the answer as server-sent events, one chunk and `[DONE]` (OpenAI's stream format)."""
    body = f"data: {chunk.model_dump_json()}\n\ndata: [DONE]\n\n"
    return Response(body, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


# Where a 504's time went, for whoever tunes the deadline or the admission (bench/serve_load.py counts them): the
# ingress got the request with no time left (the proxy's queue), the replica dropped it from its queue undecoded, or
# no answer came back in time (still decoding, or still in a queue the ingress cannot see into).
EXPIRED_WHERE = {"arrival": "no time was left when the ingress received it",
                 "replica_queue": "it waited in the model replica's queue past its deadline and was never decoded",
                 "unanswered": "the model replica had not answered (its batch still decoding, or the request queued)"}


def deadline_exceeded(timeout_s: float, where: str, start: float) -> ApiError:
    """A 504, its message saying where the time went (EXPIRED_WHERE) and a `Server-Timing` header the ingress's
    share of it (`ingress;dur=<ms>;desc=<where>`): the client's wait less that is the proxy's and the network's."""
    held_ms = 1000 * (time.perf_counter() - start)
    return ApiError(504, "deadline_exceeded", f"no answer within request_timeout_s={timeout_s:g} s of the request's "
                                              f"receipt: {EXPIRED_WHERE[where]}; its generation was cancelled",
                    {"Server-Timing": f'ingress;dur={held_ms:.1f};desc="{where}"'})


def _settle(admission: Admission, task: asyncio.Future) -> None:
    """A model request ended: an answer (it counts toward the measured rate) or not (no longer owed)."""
    if task.cancelled() or task.exception() is not None or "text" not in task.result():  # expired or late
        admission.gave_up()
    else:
        admission.answered()


def _retrieve(task: asyncio.Task) -> None:  # a done callback: no "exception was never retrieved" warnings
    if not task.cancelled():
        task.exception()


@serve.deployment(name="RouterIngress")
@serve.ingress(app)
class RouterIngress:
    user_config: dict = {}  # set by reconfigure (the class default for a replica built by hand, in tests)

    def __init__(self, model, cfg: ServeConfig, key_digest: str | None):
        from memroute.core.models import load_tokenizer, resolve_model

        check_bind(_proxy_host(cfg.host), key_digest, cfg)  # a cluster whose proxy binds wider: refuse there too
        self.model, self.cfg = model, cfg
        self.tokenizer = load_tokenizer(resolve_model(cfg.engine.model))
        self.metrics = IngressMetrics()
        self.admission = Admission() if cfg.admit_by_deadline else None
        app.state.key_digest, app.state.metrics = key_digest, self.metrics  # for the middleware and error handlers
        app.state.draining, app.state.retry_after_s = False, cfg.retry_after_s
        self.started = time.time()

    def reconfigure(self, user_config: dict) -> None:
        """The in-place settings: `request_timeout_s`, `retry_after_s` and `admit_by_deadline` (default: the
        ServeConfig's) and `draining` (serve.reload.drain sets it for a shutdown: POSTs get 503, /health 503)."""
        self.user_config = dict(user_config or {})
        app.state.draining = bool(self.user_config.get("draining", False))
        app.state.retry_after_s = self._setting("retry_after_s")
        if not self.user_config.get("admit_by_deadline", self.cfg.admit_by_deadline):
            self.admission = None
        elif self.admission is None:  # switched on: a new estimate (kept, with what it learnt, while it stays on)
            self.admission = Admission()

    def _setting(self, key: str) -> float:
        return float(self.user_config.get(key, getattr(self.cfg, key)))

    def drain_state(self) -> dict:
        """For serve.reload.drain (a handle call, not HTTP): whether this replica drains, and its requests in
        flight."""
        return {"draining": bool(getattr(app.state, "draining", False)), "in_flight": self.metrics.active,
                "user_config": self.user_config, "replica": serve.get_replica_context().replica_id.unique_id}

    # --- routes --------------------------------------------------------------------------------------------

    @app.post("/route", response_model=schema.RouteResponse)
    async def route(self, request: Request) -> schema.RouteResponse:
        start = time.perf_counter()
        req = await read_body(request, schema.RouteRequest, self.cfg)
        results = await self._route(req.batch(), start, "route")
        return schema.RouteResponse(results=results, model=self.cfg.model_id, version=results[0].version)

    @app.post("/v1/chat/completions", response_model=schema.ChatCompletionResponse)
    async def chat_completions(self, request: Request):
        start = time.perf_counter()
        req = await read_body(request, schema.ChatCompletionRequest, self.cfg)
        if req.model != self.cfg.model_id:
            raise ApiError(404, "model_not_found", f"model {req.model!r} is not served here; use {self.cfg.model_id!r}")
        try:
            conversation = req.conversation()
        except ValueError as e:
            raise ApiError(422, "invalid_request", str(e)) from None
        [result] = await self._route([conversation], start, "chat_completions")
        from data.parser import format_answer

        content = format_answer([label.name for label in result.labels]) if result.parsed else result.text
        usage = schema.Usage(prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens,
                             total_tokens=result.prompt_tokens + result.completion_tokens)
        ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if req.stream:
            choice = schema.ChunkChoice(index=0, delta=schema.ChunkDelta(content=content),
                                        finish_reason=result.finish_reason)
            return sse(schema.ChatCompletionChunk(id=ident, created=created, model=self.cfg.model_id,
                                                  choices=[choice], usage=usage, memroute=result))
        choice = schema.ChatChoice(index=0, message=schema.ChatChoiceMessage(content=content),
                                   finish_reason=result.finish_reason)
        return schema.ChatCompletionResponse(id=ident, created=created, model=self.cfg.model_id, choices=[choice],
                                             usage=usage, memroute=result)

    @app.get("/v1/models", response_model=schema.ModelList)
    async def models(self) -> schema.ModelList:
        return schema.ModelList(data=[schema.ModelCard(id=self.cfg.model_id, created=int(self.started))])

    @app.get("/health", response_model=schema.HealthResponse)
    async def health(self):
        if getattr(app.state, "draining", False):  # a load balancer stops sending here
            body = schema.HealthResponse(status="draining", auth=app.state.key_digest is not None)
            return Response(body.model_dump_json(), status_code=503, media_type="application/json",
                            headers=retry_after(self._setting("retry_after_s")))
        return schema.HealthResponse(status="ok", auth=app.state.key_digest is not None)

    @app.get("/healthz", response_model=schema.HealthResponse)
    async def healthz(self) -> schema.HealthResponse:
        return await self.health()

    @app.get("/version", response_model=schema.VersionResponse)
    async def version(self) -> schema.VersionResponse:
        info = await self.model.info.remote()
        return schema.VersionResponse(version=info["version"], checkpoint=info["checkpoint"], model=info["model"],
                                      model_id=self.cfg.model_id, replica=info["replica"],
                                      max_tokens=info["max_tokens"])

    @app.get("/metrics")
    async def metrics(self) -> Response:
        """This ingress replica's counters in Prometheus' text format (Ray's Prometheus endpoint has Serve's own
        `ray_serve_*` metrics)."""
        return Response(self.metrics.render(), media_type=self.metrics.content_type)

    # --- the work ------------------------------------------------------------------------------------------

    async def _route(self, conversations: list[list[dict]], start: float, route: str) -> list[schema.RouteResult]:
        from data.prompt import render_prompt

        check_conversations(conversations, self.cfg)
        prompts = [render_prompt(self.tokenizer, c) for c in conversations]
        check_tokens([len(self.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts], self.cfg)
        outs = await self._answers(prompts, start)
        for out in outs:
            self.metrics.latency(out["latency_s"])
        self.metrics.routed(route, len(outs))
        return [shape(out, out["latency_s"] * 1000) for out in outs]

    async def _answers(self, prompts: list[str], start: float) -> list[dict]:
        """The model's answers to `prompts`, all within the deadline (`request_timeout_s` from `start`), or an
        ApiError (504, 503); whatever ends this early (the deadline, an error, this request cancelled because its
        client went away) cancels the model requests still out."""
        timeout = self._setting("request_timeout_s")
        reserve = min(self.cfg.deadline_reserve_s, timeout / 10)  # the proxy's queue and the way back
        grace = reserve - min(self.cfg.return_reserve_s, reserve)  # of it, what an overrunning batch may use
        remaining = timeout - reserve - (time.perf_counter() - start)  # to the deadline the replica plans for
        if remaining <= 0:
            raise deadline_exceeded(timeout, "arrival", start)
        if self.admission is not None and not self.admission.admits(len(prompts), remaining):
            wait = self.admission.expected_wait_s(len(prompts))
            raise ApiError(503, "overloaded", f"the model replicas answer {self.admission.rate():.2f} conversations/s "
                           f"and owe {self.admission.owed}: an answer would take ~{wait:.0f} s, past this request's "
                           f"deadline ({remaining:.0f} s left of request_timeout_s={timeout:g}): retry later",
                           retry_after(self._setting("retry_after_s")))
        deadline = time.time() + remaining  # wall clock: the model replica may be another process or machine
        tasks = [asyncio.ensure_future(self._generate(p, deadline, start)) for p in prompts]
        admission = self.admission  # the one these tasks settle with, even if reconfigure switches it off
        if admission is not None:
            admission.begin(len(tasks))
        for task in tasks:
            task.add_done_callback(_retrieve)
            if admission is not None:
                task.add_done_callback(partial(_settle, admission))
        try:
            done, pending = await asyncio.wait(tasks, timeout=remaining + grace, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in tasks:
                task.cancel()  # a no-op on the finished ones
        failed = [t for t in tasks if t in done and not t.cancelled() and t.exception() is not None]
        if failed:
            raise failed[0].exception()
        outs = [t.result() for t in tasks] if not pending else []
        if pending:
            raise deadline_exceeded(timeout, "unanswered", start)
        if any(out.get("expired") for out in outs):  # dropped by the replica before decoding
            raise deadline_exceeded(timeout, "replica_queue", start)
        late = [out for out in outs if out.get("late")]  # refused by the replica: its batch would end too late
        if late:
            raise ApiError(503, "overloaded", f"the model replica expects to answer in ~{late[0]['expected_s']:g} s, "
                           f"past this request's deadline (~{late[0].get('left_s', 0):g} s left of "
                           f"request_timeout_s={timeout:g}): retry later",
                           retry_after(self._setting("retry_after_s")))
        return outs

    async def _generate(self, prompt: str, deadline: float, start: float) -> dict:
        from ray.exceptions import ActorDiedError, ActorUnavailableError
        from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

        for attempt in (0, 1):
            sent = time.time()
            response = self.model.generate.remote(prompt, deadline)
            try:
                out = await response
                if "engine_start" in out:
                    out = {**out, "queue_ms": round(1000 * max(0.0, out.pop("engine_start") - sent), 2)}
                return {**out, "latency_s": time.perf_counter() - start}
            except asyncio.CancelledError:
                response.cancel()  # the deadline, or the client went away: Serve drops it on the replica
                raise
            except BackPressureError as e:
                limit = e.args[1] if len(e.args) > 1 else self.cfg.max_queued_requests
                raise ApiError(503, "overloaded", f"the model replicas are busy and the queue is full "
                                                  f"(max_queued_requests={limit}): retry later",
                               retry_after(self._setting("retry_after_s"))) from None
            except DeploymentUnavailableError:
                raise ApiError(503, "unavailable", "the model deployment is not available: retry later",
                               retry_after(self._setting("retry_after_s"))) from None
            except (ActorDiedError, ActorUnavailableError):
                # the replica died under this request (routing is idempotent): once more, on a live or new replica
                if attempt:
                    raise
        raise AssertionError("unreachable")
