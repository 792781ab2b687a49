"""Load-benchmark helpers shared by bench/serve_load.py (deadlines, backpressure, reloads) and
bench/serve_batching.py (batching choices): closed-loop HTTP clients, latency summaries, a random LoRA adapter,
the embedded test conversations."""

from __future__ import annotations

import json
import os
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
    given, has returned). Returns requests/s, latency percentiles, errors and the infos of the answers."""
    stop = threading.Event()
    lock = threading.Lock()
    lat, errors, infos = [], [], []

    def run(offset: int):
        i = offset
        while not stop.is_set():
            start = time.perf_counter()
            try:
                ok, info = send(items[i % len(items)])
            except Exception as e:  # a transport error is a failed request here: no retries in the bench
                ok, info = False, repr(e)
            dt = time.perf_counter() - start
            with lock:
                (lat.append(dt), infos.append(info)) if ok else errors.append(str(info)[:300])
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
    return {"clients": clients, "seconds": time.perf_counter() - t0, "lat": lat, "errors": errors, "infos": infos,
            "during": extra}


def merge(rounds: list[dict]) -> dict:
    """Rounds of one phase (interleaved with another phase's, so both see the same machine load) as one."""
    out = dict(rounds[0], rounds=len(rounds))
    for key in ("lat", "errors", "infos"):
        out[key] = [x for r in rounds for x in r[key]]
    out["seconds"] = sum(r["seconds"] for r in rounds)
    return out


def route_sender(url: str, key: str):
    import httpx

    local = threading.local()

    def send(conv):
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=600)
        resp = local.client.post("/route", json={"conversation": conv})
        if resp.status_code != 200:
            return False, f"{resp.status_code}: {resp.text[:200]}"
        r = resp.json()["results"][0]
        return True, {"version": r["version"], "parsed": r["parsed"], "tokens": r["completion_tokens"]}
    return send


def summarize(res: dict) -> dict:
    """Requests/s, latency percentiles, errors, and what the answers were (parsed share, tokens, versions)."""
    res = dict(res)
    lat, errors, infos = sorted(res.pop("lat")), res.pop("errors"), res.pop("infos")
    pct = (lambda q: round(1000 * lat[min(len(lat) - 1, int(q * len(lat)))], 1)) if lat else (lambda q: None)
    res.update(seconds=round(res["seconds"], 1), requests=len(lat), errors=len(errors), error_samples=errors[:3],
               rps=round(len(lat) / res["seconds"], 3), p50_ms=pct(0.5), p99_ms=pct(0.99))
    if infos and isinstance(infos[0], dict):
        res["parsed_share"] = round(sum(i.get("parsed", False) for i in infos) / len(infos), 3)
        res["mean_completion_tokens"] = round(statistics.mean(i.get("tokens", 0) for i in infos), 1)
        versions: dict = {}
        for i in infos:
            versions[i.get("version")] = versions.get(i.get("version"), 0) + 1
        res["answers_per_version"] = {str(k): v for k, v in sorted(versions.items(), key=lambda kv: str(kv[0]))}
    return res


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
