"""The serving config (`ServeConfig`) and where a checkpoint's adapter lives.

Defaults run on this CPU machine: one replica of the default model on loopback, serving the shipped router
(memroute/router; the base model when it is absent or the model is another one).
A YAML file (`memroute serve --config ...`, or `args:` of a Serve config file, see configs/serve.yaml) and
`key.sub=value` overrides change the rest, through `memroute.config.load_config` like every other config.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from actors.engine import EngineConfig
from memroute.core.config import ConfigError
from memroute.core.errors import InputNotFoundError
from serve.http_guard import HttpLimits


# What the config check assumes of the computed answer cap when max_tokens is None (each replica checks the real
# cap against it when it starts)
ANSWER_TOKENS_BOUND = 64


class ServeConfigError(ConfigError):
    """A serving config that cannot run; the message names the key or file at fault."""


@dataclass
class ServeConfig:
    # max_num_seqs 32: the largest batch one replica decodes at once (= model.max_batch_size below)
    engine: EngineConfig = field(default_factory=lambda: EngineConfig(max_num_seqs=32))
    # a peft adapter folder, or a run dir (its newest adapter); "default": the shipped router (memroute/router) when
    # engine.model is the default model, else the base model; None / "none": the base model
    checkpoint: str | None = "default"
    version: int = 0  # the weight version reported with every answer (a reload moves it)
    app_name: str = "memroute"
    route_prefix: str = "/"
    host: str = "127.0.0.1"  # beyond loopback only with an API key (see serve.auth)
    port: int = 8000
    api_key_env: str = "MEMROUTE_API_KEY"  # the bearer key's environment variable ...
    api_key_file: str | None = None  # ... or a secret file (read first when set)
    model_id: str = "memroute-router"  # the name /v1/models and chat completions answer to
    # Request limits (serve.validate), every route; over one: a 4xx naming it, before anything reaches a model
    max_body_bytes: int = 2 << 20  # request body (more: 413)
    max_json_depth: int = 64  # JSON nesting (more: 400, found by a scan before the JSON is parsed)
    max_request_conversations: int = 32  # conversations in one POST /route (more: 413)
    max_turns: int = 64  # turns of one conversation (more: 413)
    max_turn_chars: int = 16000  # characters of one turn's content (more: 413)
    max_conversation_tokens: int = 1536  # prompt tokens of one rendered conversation (more: 413)
    # At Serve's HTTP proxy (serve.http_guard), before a request is routed: its request line and headers
    # (more: 431), header lines (more: 431), and the time to receive its head and its body (past it: 408, closed)
    max_header_bytes: int = HttpLimits.max_header_bytes
    max_headers: int = HttpLimits.max_headers
    header_timeout_s: float = HttpLimits.header_timeout_s
    body_timeout_s: float = HttpLimits.body_timeout_s
    # Answer tokens. The cap is the longest valid answer (the MAX_LABELS labels of the most tokens, formatted by
    # data.parser.format_answer, in the served model's tokenizer, + its end-of-turn token) + answer_margin_tokens,
    # computed by each model replica (41 for SmolLM2's tokenizer); max_tokens, when set, lowers it further
    max_tokens: int | None = None
    answer_margin_tokens: int = 4
    constrained: bool = True  # vLLM structured outputs: answers can only be label lists (see serve.model)
    # 0: greedy; n: each answer the most probable of the greedy one and n sampled at temperature 1
    # (actors.engine.Engine.best_of, `memroute eval --samples n`): a batch costs ~3x at n = 8 (docs/serve.md)
    samples: int = 0
    # @serve.batch on the model replica: conversations of concurrent requests decoded together
    max_batch_size: int = 32
    batch_wait_timeout_s: float = 0.01
    num_replicas: int = 1  # model replicas (ignored when autoscaling_config is set)
    # Serve's own autoscaling_config, e.g. {min_replicas: 1, max_replicas: 4, target_ongoing_requests: 16}
    autoscaling_config: dict | None = None
    replica_cpus: float = 1.0  # ray_actor_options.num_cpus of a model replica
    # Extra environment of the model replicas. E.g. {VLLM_CPU_NUM_OF_RESERVED_CPU: "0"}: on x86 vLLM-CPU keeps one
    # core for its scheduler process, so on a 2-core machine decoding gets 1 core; with none reserved decoding is
    # faster on an idle machine but far slower through Serve on an oversubscribed one (its OpenMP threads are
    # pinned to both cores and wait on each other), so it is not the default (docs/serve.md). Ignored on GPUs.
    replica_env: dict = field(default_factory=dict)
    replica_gpus: float = 0.0  # 1 on a GPU cluster
    ingress_replicas: int = 1
    ingress_cpus: float = 0.25
    # per ingress replica; Serve's default (5) would cap the requests in flight, and so the model's batches, at 5
    ingress_max_ongoing_requests: int = 256
    max_ongoing_requests: int = 64  # per model replica: >= max_batch_size, or batches never fill
    # Deadlines and backpressure (docs/serve.md: Deadlines, backpressure and shutdown)
    # receipt of a request to its answer; past it: 504, the model requests cancelled, queued ones never decoded.
    # In the ingress's user_config: changeable in place (serve.reload.update(app, {...}, deployment="RouterIngress"))
    request_timeout_s: float = 30.0
    # of request_timeout_s, kept for what the ingress does not see: the proxy's queue before the request reaches
    # it and the way back to the client, so that the client has its answer (or 504) within request_timeout_s;
    # at most a tenth of request_timeout_s
    deadline_reserve_s: float = 1.0
    # of deadline_reserve_s, what the ingress still keeps while it waits for the model: the replica plans its
    # batches to end by request_timeout_s - deadline_reserve_s, and the ingress waits until request_timeout_s -
    # return_reserve_s before a 504. Less than deadline_reserve_s lets a batch that ran past its plan still be
    # answered, at the risk of an answer reaching its client late when the proxy's way back is slow; by default
    # the whole reserve is kept (docs/serve.md, runs Q and R)
    return_reserve_s: float = 1.0
    # refuse (503, Retry-After) a request that, behind the answers already owed at the rate they come back, would
    # outlive its deadline, instead of admitting it to end as a 504 (serve.admission)
    admit_by_deadline: bool = True
    # per caller (ingress replica): requests waiting for a model replica slot once every replica holds
    # max_ongoing_requests (Serve's max_queued_requests; -1: unbounded); more: 503 with Retry-After
    max_queued_requests: int = 64
    # the same at Serve's proxy, for the ingress (past ingress_max_ongoing_requests): 503 from Serve itself
    ingress_max_queued_requests: int = 256
    retry_after_s: float = 1.0  # the Retry-After of every 503 (a full queue, a server shutting down)
    drain_timeout_s: float = 30.0  # SIGTERM / SIGINT: the longest wait for requests in flight before the app goes

    def __post_init__(self):
        limits = ("max_batch_size", "max_request_conversations", "max_body_bytes", "max_json_depth", "max_turns",
                  "max_turn_chars", "max_conversation_tokens", "max_ongoing_requests", "ingress_max_ongoing_requests",
                  "max_header_bytes", "max_headers")
        low = [k for k in limits if getattr(self, k) < 1]
        if self.max_tokens is not None and self.max_tokens < 1:
            low.append("max_tokens")
        if low:
            raise ServeConfigError(f"{', '.join(low)} must be >= 1")
        not_positive = [k for k in ("request_timeout_s", "drain_timeout_s", "header_timeout_s", "body_timeout_s")
                        if not getattr(self, k) > 0]
        if not_positive:
            raise ServeConfigError(f"{', '.join(not_positive)} must be > 0")
        negative = [k for k in ("retry_after_s", "answer_margin_tokens", "deadline_reserve_s", "return_reserve_s",
                                "samples")
                    if getattr(self, k) < 0]
        if negative:
            raise ServeConfigError(f"{', '.join(negative)} must be >= 0")
        queues = [k for k in ("max_queued_requests", "ingress_max_queued_requests")
                  if getattr(self, k) != -1 and getattr(self, k) < 1]
        if queues:
            raise ServeConfigError(f"{', '.join(queues)} must be -1 (unbounded) or >= 1 (Serve's rule)")
        answer = self.max_tokens if self.max_tokens is not None else ANSWER_TOKENS_BOUND
        if self.max_conversation_tokens + answer > self.engine.max_model_len:
            what = "max_tokens" if self.max_tokens is not None else "the answer cap's bound ANSWER_TOKENS_BOUND"
            raise ServeConfigError(f"max_conversation_tokens ({self.max_conversation_tokens}) + {what} ({answer}) "
                                   f"exceeds engine.max_model_len ({self.engine.max_model_len})")
        if self.max_ongoing_requests < self.max_batch_size:
            raise ServeConfigError(f"max_ongoing_requests ({self.max_ongoing_requests}) < max_batch_size "
                                   f"({self.max_batch_size}): a replica would never see a full batch")


def resolve_checkpoint(path: str | os.PathLike | None, model: str | os.PathLike = "smollm2-135m") -> Path | None:
    """The adapter folder to serve: `path` itself if it is a peft adapter folder, else the newest adapter of a
    run dir (`<run>/adapter/` written at the end of a run, or its latest checkpoint's while it is still
    training: memroute.core.checkpoint.find_adapter). None / "none" serve the base model; "default" the
    shipped router for `model`."""
    from memroute.router import choose_adapter

    path = choose_adapter(None if path is None or str(path) == "" else path, model)
    if path is None:
        return None
    path = Path(path).expanduser()
    if (path / "adapter_config.json").exists():
        return path
    if not path.exists():
        raise InputNotFoundError(f"checkpoint not found: {path}")
    from memroute.core.checkpoint import find_adapter

    found = find_adapter(path)
    if found is None:
        raise InputNotFoundError(f"checkpoint {path} is neither a LoRA adapter folder (adapter_config.json) nor a run "
                                 f"dir with one (looked for {path / 'adapter'} and its latest checkpoint's adapter)")
    return found
