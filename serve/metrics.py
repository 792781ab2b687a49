"""The ingress replica's counters, for `GET /metrics` in Prometheus' text format (version 0.0.4).

Each ingress replica keeps its own registry (not prometheus_client's global one, which Ray's own metrics share):
requests routed per route, error answers per HTTP status (503: a full queue or a shutdown, 504: a deadline),
conversations routed, the requests in flight, and the latency of each conversation from receipt of its request
to its answer.
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS_S = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120, 300)


class IngressMetrics:
    content_type = CONTENT_TYPE_PLAIN_0_0_4

    def __init__(self):
        self.registry = r = CollectorRegistry()
        self.requests = Counter("memroute_requests", "Requests answered 200, per route", ["route"], registry=r)
        self.errors = Counter("memroute_errors", "Error answers, per HTTP status", ["status"], registry=r)
        self.conversations = Counter("memroute_conversations", "Conversations routed", registry=r)
        self.latency_s = Histogram("memroute_conversation_latency_seconds", "Receipt of the request to the answer, "
                                   "per conversation", buckets=LATENCY_BUCKETS_S, registry=r)
        self.in_flight = Gauge("memroute_requests_in_flight", "Requests being answered (past the key check)",
                               registry=r)
        self.active = 0  # the same, as a number (serve.reload.drain waits for 0)
        Gauge("memroute_start_time_seconds", "When this ingress replica started (Unix time)",
              registry=r).set(time.time())

    def error(self, status: int) -> None:
        self.errors.labels(status=str(status)).inc()

    def started(self) -> None:
        self.active += 1
        self.in_flight.inc()

    def ended(self) -> None:
        self.active -= 1
        self.in_flight.dec()

    def routed(self, route: str, conversations: int) -> None:
        self.requests.labels(route=route).inc()
        self.conversations.inc(conversations)

    def latency(self, seconds: float) -> None:
        self.latency_s.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
