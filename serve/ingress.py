"""The HTTP ingress (FastAPI through `@serve.ingress`): auth, validation, prompt rendering, response shaping.

Prompts are rendered here with the one prompt function (`data.prompt.render_prompt`) so an over-long
conversation is refused before it reaches a model replica; answers are parsed with the one parser
(`data.parser.parse_answer`) and each label gets its horizon and scope from the taxonomy. Every error is a JSON
body `{"error": {"type", "message"}}` whose message names the field or limit at fault; a bad request never
touches the model, so the server keeps serving.

Bodies are read by hand rather than declared as FastAPI parameters so that each failure gets its own status:
415 for a non-JSON content type, 400 for malformed JSON, 422 for a body that does not fit the schema, 413 for
a batch or a conversation over the configured limits (FastAPI would answer 422 to all of them).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter, deque

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from ray import serve

from serve import schema
from serve.auth import authorized, check_bind
from serve.config import ServeConfig

MAX_BODY_BYTES = 8 << 20
OPEN_PATHS = ("/healthz",)  # load balancers probe it without a key; it says nothing about conversations

app = FastAPI(title="memroute router", description="Routes conversations to memory categories.")


class ApiError(Exception):
    def __init__(self, status: int, type_: str, message: str):
        super().__init__(message)
        self.status, self.type, self.message = status, type_, message


def _error(status: int, type_: str, message: str) -> JSONResponse:
    body = schema.ErrorResponse(error=schema.ErrorBody(type=type_, message=message))
    return JSONResponse(body.model_dump(), status_code=status)


@app.exception_handler(ApiError)
async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    request.app.state.stats["errors"][exc.status] += 1
    return _error(exc.status, exc.type, exc.message)


@app.middleware("http")
async def _auth(request: Request, call_next):
    if request.url.path not in OPEN_PATHS and not authorized(request.headers.get("authorization"),
                                                             request.app.state.key_digest):
        request.app.state.stats["errors"][401] += 1
        # never echo the header: it may hold a key meant for something else
        return _error(401, "unauthorized", "missing or wrong API key: send `Authorization: Bearer <key>`")
    return await call_next(request)


async def read_body(request: Request, model):
    """The request body as `model`, or an ApiError naming what is wrong with it."""
    ctype = request.headers.get("content-type", "")
    if ctype.split(";")[0].strip().lower() != "application/json":
        raise ApiError(415, "unsupported_media_type", f"Content-Type must be application/json, got {ctype or 'none'!r}")
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, "payload_too_large", f"the body is {len(raw)} bytes, over the {MAX_BODY_BYTES} limit")
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {e}") from None
    try:
        return model.model_validate(obj)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            where = ".".join(map(str, err["loc"]))
            problems.append(f"{where + ': ' if where else ''}{err['msg'].removeprefix('Value error, ')}")
        raise ApiError(422, "invalid_request", "; ".join(problems)) from None


def shape(out: dict, latency_ms: float) -> schema.RouteResult:
    """A model answer -> labels with horizon and scope, via the one parser and the taxonomy."""
    from data.parser import parse_answer
    from data.schema import derive_horizon
    from data.taxonomy import category, set_scope

    parsed = parse_answer(out["text"])
    labels = [schema.Label(name=n, horizon=category(n).horizon, scope=category(n).scope) for n in parsed.labels]
    return schema.RouteResult(labels=labels, persistence_horizon=derive_horizon(parsed.labels),
                              memory_scope=set_scope(parsed.labels), parsed=parsed.parsed, unknown=parsed.unknown,
                              text=out["text"], finish_reason=out["finish_reason"], version=out["version"],
                              prompt_tokens=out["prompt_tokens"], completion_tokens=out["completion_tokens"],
                              latency_ms=round(latency_ms, 2))


def _proxy_host(default: str) -> str:
    """The host Serve's HTTP proxies bind (from the controller), else the configured one."""
    try:
        from ray.serve.context import _get_global_client

        return _get_global_client().http_config.host or default
    except Exception:  # no controller reachable (a unit test): the config is all we know
        return default


# Helpers stand above the class: `@serve.ingress` pickles the class when it is defined, with the globals it uses.


@serve.deployment(name="RouterIngress")
@serve.ingress(app)
class RouterIngress:
    def __init__(self, model, cfg: ServeConfig, key_digest: str | None):
        from learner.models import load_tokenizer, resolve_model

        check_bind(_proxy_host(cfg.host), key_digest, cfg)  # a cluster whose proxy binds wider: refuse there too
        self.model, self.cfg = model, cfg
        self.tokenizer = load_tokenizer(resolve_model(cfg.engine.model))
        app.state.key_digest = key_digest
        app.state.stats = {"requests": Counter(), "errors": Counter(), "conversations": 0}
        self.latencies: deque[float] = deque(maxlen=2048)
        self.started = time.time()

    # --- routes --------------------------------------------------------------------------------------------

    @app.post("/route", response_model=schema.RouteResponse)
    async def route(self, request: Request) -> schema.RouteResponse:
        start = time.perf_counter()
        req = await read_body(request, schema.RouteRequest)
        results = await self._route(req.batch(), start)
        return schema.RouteResponse(results=results, model=self.cfg.model_id, version=results[0].version)

    @app.post("/v1/chat/completions", response_model=schema.ChatCompletionResponse)
    async def chat_completions(self, request: Request) -> schema.ChatCompletionResponse:
        start = time.perf_counter()
        req = await read_body(request, schema.ChatCompletionRequest)
        if req.model != self.cfg.model_id:
            raise ApiError(404, "model_not_found", f"model {req.model!r} is not served here; use {self.cfg.model_id!r}")
        if req.stream:
            raise ApiError(400, "bad_request", "stream=true is not supported: a routing answer is a few tokens")
        try:
            conversation = req.conversation()
        except ValueError as e:
            raise ApiError(422, "invalid_request", str(e)) from None
        [result] = await self._route([conversation], start)
        from data.parser import format_answer

        content = format_answer([label.name for label in result.labels]) if result.parsed else result.text
        usage = schema.Usage(prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens,
                             total_tokens=result.prompt_tokens + result.completion_tokens)
        choice = schema.ChatChoice(index=0, message=schema.ChatChoiceMessage(content=content),
                                   finish_reason=result.finish_reason)
        return schema.ChatCompletionResponse(id=f"chatcmpl-{uuid.uuid4().hex}", created=int(time.time()),
                                             model=self.cfg.model_id, choices=[choice], usage=usage, memroute=result)

    @app.get("/v1/models", response_model=schema.ModelList)
    async def models(self) -> schema.ModelList:
        return schema.ModelList(data=[schema.ModelCard(id=self.cfg.model_id, created=int(self.started))])

    @app.get("/healthz", response_model=schema.HealthResponse)
    async def healthz(self) -> schema.HealthResponse:
        return schema.HealthResponse(status="ok", auth=app.state.key_digest is not None)

    @app.get("/version", response_model=schema.VersionResponse)
    async def version(self) -> schema.VersionResponse:
        info = await self.model.info.remote()
        return schema.VersionResponse(version=info["version"], checkpoint=info["checkpoint"], model=info["model"],
                                      model_id=self.cfg.model_id, replica=info["replica"])

    @app.get("/metrics")
    async def metrics(self) -> dict:
        """This ingress replica's counters (Ray's Prometheus endpoint has Serve's own `ray_serve_*` metrics)."""
        lat = sorted(self.latencies)
        pick = (lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))], 2)) if lat else (lambda q: None)
        stats = app.state.stats
        return {"requests": dict(stats["requests"]), "errors": {str(k): v for k, v in stats["errors"].items()},
                "conversations": stats["conversations"], "uptime_s": round(time.time() - self.started, 1),
                "latency_ms": {"window": len(lat), "p50": pick(0.5), "p99": pick(0.99)}}

    # --- the work ------------------------------------------------------------------------------------------

    async def _route(self, conversations: list[list[dict]], start: float) -> list[schema.RouteResult]:
        from data.prompt import render_prompt

        cfg = self.cfg
        if len(conversations) > cfg.max_request_conversations:
            raise ApiError(413, "payload_too_large", f"{len(conversations)} conversations in one request, over "
                                                     f"max_request_conversations={cfg.max_request_conversations}")
        prompts = [render_prompt(self.tokenizer, c) for c in conversations]
        for i, p in enumerate(prompts):
            n = len(self.tokenizer(p, add_special_tokens=False)["input_ids"])
            if n > cfg.max_conversation_tokens:
                raise ApiError(413, "conversation_too_long",
                               f"conversations[{i}] renders to {n} prompt tokens, over max_conversation_tokens="
                               f"{cfg.max_conversation_tokens}: split or trim it")
        app.state.stats["requests"]["route"] += 1
        answers = await asyncio.gather(*(self._answer(p, start) for p in prompts))
        app.state.stats["conversations"] += len(answers)
        return answers

    async def _answer(self, prompt: str, start: float) -> schema.RouteResult:
        from ray.exceptions import ActorDiedError, ActorUnavailableError

        try:
            out = await self.model.generate.remote(prompt)
        except (ActorDiedError, ActorUnavailableError):
            # the replica died under this request (routing is idempotent): once more, on a live or new replica
            out = await self.model.generate.remote(prompt)
        latency_ms = (time.perf_counter() - start) * 1000
        self.latencies.append(latency_ms)
        return shape(out, latency_ms)
