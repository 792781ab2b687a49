"""Benchmark: batched serving vs one-at-a-time HF generate, the replica's batching vs none, against ray.serve.llm.

(The serving targets of deadlines, backpressure and reloads are bench/serve_load.py's; this one measures the
batching choices. Helpers shared with it: bench/load.py.)

    python -m bench.serve_batching [--model smollm2-135m] [--seconds 15] [--clients 1,8,32] [--checkpoint RUN_OR_ADAPTER]
                               [--no-serve-llm] [--out bench/results/serve_batching.json]

On a local Ray instance of its own (2 CPUs; never a running cluster), it deploys the app (serve.app.deploy, one
model replica, API key on) and drives it over loopback HTTP with closed-loop clients (each sends one
conversation from the embedded test split, waits for the answer, sends the next) for `--seconds` per phase:

1. constrained answers (the default), batches (serve.batcher) up to 32: 1, 8 and 32 clients;
2. at 32 clients, unconstrained answers (free text up to the answer cap, serve.model.answer_cap: 41 tokens for
   SmolLM2, or --max-tokens; the same for HF and ray.serve.llm), batched, in two rounds
   interleaved with two rounds of `actors.hf_engine.HFEngine` in this process, one request at a time, greedy,
   the same prompts and max_new_tokens (the machine's load drifts; interleaving gives both the same). One
   request at a time means 32 clients would wait on one generate loop, so HF's requests/s is that loop's rate
   (measured without HTTP: the comparison favours HF). Then max_batch_size=1 (each request its own engine
   call: what the engine does without batching). Both knobs change in place through the user_config;
3. hot reload under load (8 clients): `serve.reload.publish` of `--checkpoint` (default: the newest adapter of
   runs/sft-shared, copied first; a random LoRA when there is none), counting failed requests;
4. ray.serve.llm (vLLM's AsyncLLM behind Serve, continuous batching) at 32 clients on /v1/completions, the same
   rendered prompts and decoding (unless --no-serve-llm).

Prints a table and writes the JSON report atomically. Exits 1 on any failed request or a ratio under 4x.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import threading
import time
from pathlib import Path

from bench.load import bench_session, closed_loop, conversations, merge, random_adapter, route_sender, summarize

DEFAULT_OUT = "bench/results/serve_batching.json"
DEFAULT_RUN = "runs/sft-shared"
TARGET_RATIO = 4.0


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.serve_batching", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--seconds", type=float, default=15.0, help="per load phase")
    p.add_argument("--clients", default="1,8,32")
    p.add_argument("--checkpoint", default=None, help=f"adapter or run dir for the reload (default {DEFAULT_RUN})")
    p.add_argument("--port", type=int, default=8472)
    p.add_argument("--max-tokens", type=int, default=None, help="default: the served answer cap")
    p.add_argument("--no-serve-llm", dest="serve_llm", action="store_false")
    p.add_argument("--out", default=DEFAULT_OUT)
    args = p.parse_args(argv)
    args.clients = [int(c) for c in args.clients.split(",")]
    return args


def reload_checkpoint(args, tmp: Path) -> tuple[Path, str]:
    """A private copy of the adapter to publish (a training run keeps deleting its old checkpoints)."""
    from serve.config import resolve_checkpoint

    source = args.checkpoint or (DEFAULT_RUN if Path(DEFAULT_RUN).exists() else None)
    if source:
        try:
            folder = resolve_checkpoint(source)
            return Path(shutil.copytree(folder, tmp / "adapter")), str(folder)
        except FileNotFoundError:
            if args.checkpoint:
                raise
    return random_adapter(tmp / "adapter", args.model, seed=1), "random LoRA (no SFT run found)"


def serve_llm_phase(args, convs, clients: int) -> dict:
    """ray.serve.llm on the same model: OpenAI /v1/completions, the same rendered prompts and decoding."""
    import httpx
    from ray import serve
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    from data.prompt import render_prompt
    from memroute.core.models import load_tokenizer, resolve_model
    from serve.app import wait_running
    from serve.config import ServeConfig

    path = str(resolve_model(args.model))
    tok = load_tokenizer(path)
    prompts = [tok(render_prompt(tok, c), add_special_tokens=False)["input_ids"] for c in convs]
    llm_config = {  # a ray.serve.llm LLMConfig, as a Serve config's args hold it
        "model_loading_config": {"model_id": "bench", "model_source": path},
        "accelerator_config": {"kind": "cpu"}, "placement_group_config": {"bundles": [{"CPU": 1}]},
        "engine_kwargs": {"max_model_len": 2048, "enforce_eager": True, "dtype": "float32", "max_num_seqs": 32,
                          "enable_prefix_caching": True},
        "runtime_env": {"env_vars": {"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1",
                                     **ServeConfig().replica_env}},  # the same engine settings as ours
        "deployment_config": {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0.25}}}
    t0 = time.perf_counter()
    # declaratively, like our app (Serve keeps one API per cluster tidy): import_path = Serve LLM's own builder
    _get_global_client().deploy_apps(ServeDeploySchema(applications=[{
        "name": "serve-llm", "route_prefix": "/llm", "import_path": "ray.serve.llm:build_openai_app",
        "args": {"llm_configs": [llm_config],
                 # its OpenAiIngress reserves 1 CPU by default: with the engine's bundle that is more than 2
                 "ingress_deployment_config": {"ray_actor_options": {"num_cpus": 0.1}}}}]))
    wait_running("serve-llm", 600)
    start_s = time.perf_counter() - t0
    local = threading.local()

    def send(ids):
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=f"http://127.0.0.1:{args.port}/llm", timeout=600)
        resp = local.client.post("/v1/completions", json={
            "model": "bench", "prompt": ids, "max_tokens": args.max_tokens, "temperature": 0.0,
            "stop_token_ids": [tok.eos_token_id]})
        if resp.status_code != 200:
            return False, f"{resp.status_code}: {resp.text[:200]}"
        return True, {"tokens": resp.json()["usage"]["completion_tokens"]}

    closed_loop(send, prompts[:4], 4, 3)  # warm-up
    res = summarize(closed_loop(send, prompts, clients, args.seconds))
    res["start_s"] = round(start_s, 1)
    serve.delete("serve-llm")
    return res


def hf_sender(args, convs):
    """One-request-at-a-time HF generate in this process: (send, prompts)."""
    from actors.hf_engine import HFEngine
    from data.prompt import render_prompt

    engine = HFEngine(args.model, batch_size=1)
    prompts = [render_prompt(engine.tokenizer, c) for c in convs]
    engine.generate(prompts[:1], max_new_tokens=4)  # warm-up

    def send(prompt):
        [g] = engine.generate([prompt], max_new_tokens=args.max_tokens)
        return True, {"tokens": g.n_completion_tokens}
    return send, prompts


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.max_tokens is None:
        from memroute.core.models import load_tokenizer, resolve_model
        from serve.model import answer_cap

        args.max_tokens = answer_cap(load_tokenizer(resolve_model(args.model)))
    tmp, key = bench_session("serve-batching-")
    import ray
    from ray import serve

    from actors.engine import EngineConfig
    from data.atomic import write_json_atomic
    from serve.app import deploy
    from serve.config import ServeConfig
    from serve.reload import publish, update

    convs = conversations()
    adapter, adapter_source = reload_checkpoint(args, tmp)
    cfg = ServeConfig(engine=EngineConfig(model=args.model, kv_cache_gib=1, max_num_seqs=32), port=args.port,
                      api_key_file=str(tmp / "key"), max_tokens=args.max_tokens, replica_cpus=1)
    report: dict = {"model": args.model, "seconds_per_phase": args.seconds, "machine": {
        "cpus": os.cpu_count(), "platform": platform.platform(), "loadavg_start": os.getloadavg()}}
    for attempt in range(3):  # a loaded machine sometimes fails a raylet's start (GCS deadlines): try again
        try:
            ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=256 << 20,
                     log_to_driver=False)
            break
        except Exception as e:
            print(f"ray.init failed ({e}); {'retrying' if attempt < 2 else 'giving up'}", flush=True)
            ray.shutdown()
            if attempt == 2:
                raise
    try:
        t0 = time.perf_counter()
        url = deploy(cfg)
        report["app_start_s"] = round(time.perf_counter() - t0, 1)
        print(f"app up in {report['app_start_s']} s at {url}", flush=True)
        send = route_sender(url, key)
        closed_loop(send, convs[:4], 4, 3)  # warm-up
        phases = report["phases"] = {}
        for c in args.clients:
            phases[f"constrained_batched_{c}"] = summarize(closed_loop(send, convs, c, args.seconds))
            print(f"  {c} clients: {phases[f'constrained_batched_{c}']['rps']} req/s", flush=True)
        top = max(args.clients)
        update(cfg.app_name, {"constrained": False})
        # batched serving vs HF one at a time, interleaved (2 rounds each): the machine's load drifts
        hf_send, hf_prompts = hf_sender(args, convs)
        served, hf = [], []
        for _ in range(2):
            served.append(closed_loop(send, convs, top, args.seconds))
            hf.append(closed_loop(hf_send, hf_prompts, 1, args.seconds))
        phases[f"free_batched_{top}"] = summarize(merge(served))
        phases["hf_one_at_a_time"] = summarize(merge(hf))
        del hf_send
        update(cfg.app_name, {"max_batch_size": 1})
        phases[f"free_one_at_a_time_{top}"] = summarize(closed_loop(send, convs, top, args.seconds))
        update(cfg.app_name, {"constrained": True, "max_batch_size": cfg.max_batch_size})
        print("  batching comparison done", flush=True)

        def push():
            time.sleep(2)
            t = time.perf_counter()
            new = publish(adapter, version=1, app_name=cfg.app_name)
            return {"version": new["version"], "publish_s": round(time.perf_counter() - t, 2)}

        reload_res = summarize(closed_loop(send, convs, 8, max(args.seconds, 10), during=push))
        reload_res["adapter_source"] = adapter_source
        phases["hot_reload_8"] = reload_res
        print(f"  hot reload: {reload_res['errors']} failed requests", flush=True)
        serve.delete(cfg.app_name)
        if args.serve_llm:
            try:
                phases[f"serve_llm_free_{top}"] = serve_llm_phase(args, convs, top)
            except Exception as e:  # recorded, not fatal: it is a comparison, not our endpoint
                phases[f"serve_llm_free_{top}"] = {"error": repr(e)[:500]}
    finally:
        serve.shutdown()
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    report["loadavg_end"] = os.getloadavg()
    batched, single = phases[f"free_batched_{top}"]["rps"], phases["hf_one_at_a_time"]["rps"]
    report["ratio_batched_vs_hf"] = round(batched / single, 2) if single else None
    constrained = phases[f"constrained_batched_{top}"]["rps"]
    report["ratio_constrained_vs_hf"] = round(constrained / single, 2) if single else None
    report["ratio_serve_batch_vs_one_at_a_time"] = round(batched / phases[f"free_one_at_a_time_{top}"]["rps"], 2)
    llm = phases.get(f"serve_llm_free_{top}", {})
    if llm.get("rps"):
        report["ratio_serve_batch_vs_serve_llm"] = round(batched / llm["rps"], 2)
    write_json_atomic(args.out, report)
    print_table(report)
    failed = sum(p.get("errors", 0) for p in phases.values())
    ok = failed == 0 and (report["ratio_batched_vs_hf"] or 0) >= TARGET_RATIO
    print(f"\nfailed requests: {failed}; batched serving / one-at-a-time HF at {top} clients: "
          f"{report['ratio_batched_vs_hf']}x (target >= {TARGET_RATIO}x) -> {'OK' if ok else 'MISSED'}; "
          f"written to {args.out}")
    return 0 if ok else 1


def print_table(report: dict) -> None:
    print(f"\n{'phase':<28} {'clients':>7} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} {'tok/ans':>7}")
    for name, r in report["phases"].items():
        if "error" in r:
            print(f"{name:<28} failed: {r['error'][:80]}")
            continue
        print(f"{name:<28} {r['clients']:>7} {r['rps']:>7} {r['p50_ms']!s:>8} {r['p99_ms']!s:>8} {r['errors']:>6} "
              f"{r.get('mean_completion_tokens', '')!s:>7}")


if __name__ == "__main__":
    sys.exit(main())
