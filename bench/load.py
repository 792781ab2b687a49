"""Load-benchmark helpers shared by bench/serve_load.py (deadlines, backpressure, reloads) and
bench/serve_batching.py (batching choices): closed-loop HTTP clients, latency summaries, a random LoRA adapter,
the embedded test conversations."""

from __future__ import annotations

import json
import os
import re
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path


def random_adapter(folder: str | os.PathLike, model: str, seed: int, std: float = 0.02, rank: int = 4) -> Path:
    """A random LoRA on q_proj / k_proj / v_proj of `model`, as a peft folder (shapes from the model's
    config.json). All three parts of vLLM's fused qkv_proj: on the tiny model, a q/v-only adapter pushed through
    the merged weight sync gave NaN logprobs (answers spelled one character per token), which the reload probe
    refuses."""
    import torch

    from memroute.core.adapter import peft_adapter_config, write_adapter
    from memroute.core.models import resolve_model

    arch = json.loads((Path(resolve_model(model)) / "config.json").read_text())
    hidden = arch["hidden_size"]
    head = arch.get("head_dim") or hidden // arch["num_attention_heads"]
    out = {"q_proj": arch["num_attention_heads"] * head, "k_proj": arch["num_key_value_heads"] * head,
           "v_proj": arch["num_key_value_heads"] * head}
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(arch["num_hidden_layers"]):
        for proj, dim in out.items():
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{proj}"
            tensors[f"{prefix}.lora_A.weight"] = torch.randn(rank, hidden, generator=gen) * 0.1
            tensors[f"{prefix}.lora_B.weight"] = torch.randn(dim, rank, generator=gen) * std
    cfg = peft_adapter_config({"r": rank, "lora_alpha": 2 * rank, "target_modules": list(out)})
    return write_adapter(folder, tensors, cfg)


def closed_loop(send, items: list, clients: int, seconds: float, during=None) -> dict:
    """`clients` threads calling `send(item) -> (ok, info)` back to back for `seconds` (and until `during()`, if
    given, has returned). An info dict with a `retry_after` (seconds) makes that client wait so long before its
    next request, as a client honouring a 503's Retry-After does. Every request is recorded as (start, end, ok,
    info); a transport error is a failed request with status 0 (no retries in a benchmark)."""
    stop = threading.Event()
    lock = threading.Lock()
    records: list[tuple[float, float, bool, object]] = []

    def run(offset: int):
        i = offset
        while not stop.is_set():
            start = time.perf_counter()
            try:
                ok, info = send(items[i % len(items)])
            except Exception as e:
                ok, info = False, {"status": 0, "message": repr(e)[:300]}
            with lock:
                records.append((start, time.perf_counter(), ok, info))
            retry = info.get("retry_after") if isinstance(info, dict) else None
            if retry:
                stop.wait(float(retry))
            i += clients

    threads = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    extra = during() if during else None
    time.sleep(max(0.0, seconds - (time.perf_counter() - t0)))
    stop.set()
    for t in threads:
        t.join(timeout=600)
    return {"clients": clients, "seconds": time.perf_counter() - t0, "records": records, "during": extra}


def merge(rounds: list[dict]) -> dict:
    """Rounds of one phase (interleaved with another phase's, so both see the same machine load) as one."""
    out = dict(rounds[0], rounds=len(rounds))
    out["records"] = [rec for r in rounds for rec in r["records"]]
    out["seconds"] = sum(r["seconds"] for r in rounds)
    return out


def route_sender(url: str, key: str, honour_retry_after: bool = False):
    """`send(conversation)` for `closed_loop`: one POST /route per call on a per-thread HTTP client. The info
    carries the HTTP status (and, for a 503 when `honour_retry_after`, its Retry-After)."""
    import httpx

    local = threading.local()

    def send(conv):
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=600)
        resp = local.client.post("/route", json={"conversation": conv})
        if resp.status_code != 200:
            retry = resp.headers.get("retry-after") if honour_retry_after and resp.status_code == 503 else None
            info = {"status": resp.status_code, "retry_after": retry, "message": resp.text[:200]}
            if resp.headers.get("server-timing"):  # a 504's ingress share and where its time went
                info["server_timing"] = resp.headers["server-timing"]
            return False, info
        r = resp.json()["results"][0]
        info = {"status": 200, "version": r["version"], "parsed": r["parsed"], "tokens": r["completion_tokens"],
                "ingress_ms": r["latency_ms"]}
        if r.get("timing"):
            info.update(r["timing"])
        return True, info
    return send


def pct(values: list[float], q: float):
    """The q-quantile of `values` (seconds) in milliseconds, or None for none."""
    values = sorted(values)
    return round(1000 * values[min(len(values) - 1, int(q * len(values)))], 1) if values else None


def status_counts(records: list) -> dict[str, int]:
    """How many requests ended with each HTTP status ('0': a transport error; senders without statuses count as
    '200' when ok and 'error' when not)."""
    counts: dict[str, int] = {}
    for _, _, ok, info in records:
        status = str(info.get("status")) if isinstance(info, dict) and "status" in info else ("200" if ok else "error")
        counts[status] = counts.get(status, 0) + 1
    return dict(sorted(counts.items()))


def server_timing(header: str) -> tuple[float, str] | None:
    """(ingress ms, where) from a 504's `Server-Timing: ingress;dur=<ms>;desc="<where>"`, or None."""
    m = re.match(r'ingress;dur=([0-9.]+);desc="([a-z_]+)"', header or "")
    return (float(m.group(1)), m.group(2)) if m else None


def expired_breakdown(expired: list[tuple[float, dict]]) -> dict:
    """Where the 504s' time went: how many by cause (serve.ingress.EXPIRED_WHERE), and the median and longest wait
    at the client against the ingress's share of it; the difference is the proxy's queue and the way back."""
    parsed = [(client_s, server_timing(info.get("server_timing"))) for client_s, info in expired]
    where: dict[str, int] = {}
    for _, st in parsed:
        where[st[1] if st else "unknown"] = where.get(st[1] if st else "unknown", 0) + 1
    client_ms = [1000 * c for c, _ in parsed]
    ingress_ms = [st[0] for _, st in parsed if st]
    outside_ms = [1000 * c - st[0] for c, st in parsed if st]
    med = lambda xs: round(statistics.median(xs), 1) if xs else None  # noqa: E731
    return {"count": len(expired), "where": dict(sorted(where.items())),
            "client_ms": {"median": med(client_ms), "max": round(max(client_ms), 1)},
            "ingress_ms": {"median": med(ingress_ms), "max": round(max(ingress_ms), 1) if ingress_ms else None},
            "outside_ingress_ms": {"median": med(outside_ms), "max": round(max(outside_ms), 1) if outside_ms else None}}


def summarize(res: dict) -> dict:
    """Requests/s, latency percentiles over the answered requests, statuses, errors, and what the answers were
    (parsed share, tokens, versions)."""
    res = dict(res)
    records = res.pop("records")
    lat = [t1 - t0 for t0, t1, ok, _ in records if ok]
    infos = [info for *_, ok, info in records if ok]
    errors = [str(info)[:300] for *_, ok, info in records if not ok]
    res.update(seconds=round(res["seconds"], 1), requests=len(records), ok=len(lat), errors=len(errors),
               error_samples=errors[:3], statuses=status_counts(records), rps=round(len(lat) / res["seconds"], 3),
               p50_ms=pct(lat, 0.5), p95_ms=pct(lat, 0.95), p99_ms=pct(lat, 0.99),
               max_ms=round(1000 * max((t1 - t0 for t0, t1, *_ in records), default=0), 1))
    if infos and isinstance(infos[0], dict) and "parsed" in infos[0]:
        res["parsed_share"] = round(sum(i.get("parsed", False) for i in infos) / len(infos), 3)
        res["mean_completion_tokens"] = round(statistics.mean(i.get("tokens", 0) for i in infos), 1)
        versions: dict = {}
        for i in infos:
            versions[i.get("version")] = versions.get(i.get("version"), 0) + 1
        res["answers_per_version"] = {str(k): v for k, v in sorted(versions.items(), key=lambda kv: str(kv[0]))}
    expired = [(t1 - t0, info) for t0, t1, ok, info in records if not ok and isinstance(info, dict)
               and info.get("status") == 504]
    if expired:
        res["expired"] = expired_breakdown(expired)
    timed = [(t1 - t0, info) for t0, t1, ok, info in records if ok and isinstance(info, dict) and "engine_ms" in info]
    if timed:
        res["breakdown"] = breakdown(timed)
    return res


def breakdown(timed: list[tuple[float, dict]]) -> dict:
    """Medians of where an answered request's time went: `client` (its wall time), `http` (client minus what the
    ingress measured from receipt: the HTTP proxy, the network and the client), `ingress` (receipt to answer, less
    the queue and the engine: validation, rendering, handles), `queue` (sent to the model replica -> its batch got
    the engine) and `engine` (its batch's decode); and the median batch size."""
    def med(values):
        return round(statistics.median(values), 1)

    return {"client_ms": med([1000 * s for s, _ in timed]),
            "http_ms": med([1000 * s - i["ingress_ms"] for s, i in timed]),
            "ingress_ms": med([i["ingress_ms"] - i["queue_ms"] - i["engine_ms"] for _, i in timed]),
            "queue_ms": med([i["queue_ms"] for _, i in timed]),
            "engine_ms": med([i["engine_ms"] for _, i in timed]),
            "batch_size": med([i["batch_size"] for _, i in timed]), "requests": len(timed)}


def conversations() -> list:
    from data.embedded import TEST_PATH
    from data.schema import read_examples

    return [ex.conversation for ex in read_examples(TEST_PATH)]


def bench_session(prefix: str) -> tuple[Path, str]:
    """What every serving benchmark starts with: offline (no model hub), and a temp folder holding a fresh API
    key file for the app. Returns (folder, key)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    key = uuid.uuid4().hex
    (tmp / "key").write_text(key)
    return tmp, key
