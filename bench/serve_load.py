"""Benchmark: the serving targets of deadlines, backpressure and reloads, measured side by side in one run.

    python -m bench.serve_load [--model smollm2-135m] [--checkpoint default] [--seconds 20] [--round-seconds 20]
                               [--reload-to X] [--out bench/results/serve_load.json]

On a local Ray instance of its own (2 CPUs), in order:

1. **The engine alone against Serve, in rounds** (`--rounds`, alternating so that both see the same machine
   load). The engine alone is `actors.engine.Engine` in this process with the served adapter merged in and the
   served decoding (greedy, constrained to the label grammar, the answer cap): one batched `sample` over every
   prompt (offline requests/s) and prompts one request at a time (single-request latency). Serve is
   `serve.app.deploy`, one model replica, API key on, over loopback HTTP with closed-loop clients that send the
   embedded test conversations on `/route`: 1 client (p50 against the engine's single-request latency) and 32
   clients (requests/s against the engine's offline throughput), each round `--round-seconds` long and then
   drained (every request in flight answered and counted). Then the engine alone is shut down.
2. **Where the time goes**: each answer's `timing` (queue to the engine, the batch's decode) and the ingress's
   `latency_ms` against the client's wall time, as medians per phase (`breakdown`).
3. **Overload**: the replica's queue made small in place (`max_ongoing_requests` / `max_queued_requests`, Serve's
   own options) and a short deadline (`request_timeout_s`), then 64 clients that honour `Retry-After`: every
   answer a 200 or a 503 within the deadline, none waiting past it; 504s and other statuses counted.
4. **Reload under load**: back to the normal queue, 8 clients for a steady-state p95, then `serve.reload.publish`
   of `--reload-to` (probe first) while they keep sending: failed requests and the longest wait of a request that
   overlapped the reload, against 2x the steady p95.

Latencies are client-side wall time of each HTTP request; percentiles over the 200s of a phase. Prints a table
and the four targets, writes the JSON report atomically, and exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
from pathlib import Path

DEFAULT_OUT = "bench/results/serve_load.json"
TARGETS = {"throughput_ratio": 0.8, "latency_ratio": 1.2, "reload_wait_ratio": 2.0}


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.serve_load", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m", help="default: %(default)s")
    p.add_argument("--checkpoint", default="default", help="the adapter served ('default': the shipped router; "
                   "'none': the base model)")
    p.add_argument("--reload-to", default=None, help="the adapter published during the reload phase (default: "
                   "--checkpoint with its lora_B in float32 scaled by 1.001: other weights, the same answers)")
    p.add_argument("--seconds", type=float, default=20.0, help="per load phase (default: %(default)s)")
    p.add_argument("--clients", type=int, default=32, help="the throughput phase (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of the engine-alone and Serve phases at 1 and "
                   "--clients clients, alternating (default: %(default)s)")
    # A round must span several of the replica's batches: with --clients at once a batch takes ~10 s on a 2-core
    # machine, and a round shorter than that measures one batch and the drain after it, not the steady rate.
    p.add_argument("--round-seconds", type=float, default=20.0, help="each Serve round at 1 and at --clients "
                   "clients, before the requests in flight are waited for (default: %(default)s)")
    p.add_argument("--overload-clients", type=int, default=64, help="default: %(default)s")
    p.add_argument("--overload-queue", type=int, default=4, help="max_queued_requests in the overload phase")
    p.add_argument("--overload-deadline", type=float, default=10.0, help="request_timeout_s in the overload phase")
    p.add_argument("--port", type=int, default=8473, help="default: %(default)s")
    # 0, not Ray's 15: the load generator's client threads run in this process at niceness 0 and stand in for
    # clients on other machines; at 15 the replica's engine gets a small share of the CPU whenever 64 of them are
    # runnable (runs M-R: overload batches ran 1.5-3x their plan; runs S and T, at 0: no answer came after its
    # deadline at the replica, docs/serve.md)
    p.add_argument("--worker-niceness", type=int, default=0, help="the niceness Ray starts its workers at, the "
                   "model replica and its engine among them (RAY_worker_niceness; Ray's own default is 15; "
                   "default: %(default)s, the same as this process's clients)")
    p.add_argument("--latency-only", action="store_true", help="only the engine's single requests and Serve at "
                   "1 client, with the latency breakdown: a quick profile of the 1-client overhead")
    p.add_argument("--reload-only", action="store_true", help="only the steady and reload phases (4): a quick "
                   "profile of a reload, with the probe's and the publish's seconds")
    p.add_argument("--out", default=DEFAULT_OUT, help="default: %(default)s")
    args = p.parse_args(argv)
    if args.clients < 2:  # 1 client is its own phase in every run (serve_1): the two would be one phase
        p.error(f"--clients must be >= 2 (got {args.clients}): the 1-client phase is measured in every run")
    return args


class EngineAlone:
    """The engine in this process, decoding as a replica does (the served adapter merged in, `serve.model.decode`
    with the config's samples, constrained to the label grammar, the answer cap): offline batches and single
    requests, timed."""

    def __init__(self, cfg, adapter: Path | None, convs: list):
        from vllm.sampling_params import StructuredOutputsParams

        from actors.engine import Engine
        from memroute.core.adapter import read_adapter
        from serve.model import answer_cap, label_regex

        self.engine = Engine(cfg.engine)
        if adapter is not None:
            self.engine.load_weights(0, *read_adapter(adapter))
        cap = answer_cap(self.engine.tokenizer, cfg.answer_margin_tokens)
        self.max_tokens = min(cap, cfg.max_tokens) if cfg.max_tokens else cap
        self.sampling = {"structured_outputs": StructuredOutputsParams(regex=label_regex())}
        self.samples = cfg.samples
        self.prompts = self.engine.render(convs)
        self._sample(self.prompts[:4])  # warm-up (grammar compiled, caches touched)

    def _sample(self, batch):
        from serve.model import decode

        return decode(self.engine, batch, self.max_tokens, self.samples, self.sampling)

    def offline_s(self) -> float:
        """Seconds for one batched `sample` over every prompt."""
        t0 = time.perf_counter()
        self._sample(self.prompts)
        return time.perf_counter() - t0

    def single_s(self, n: int = 24) -> list[float]:
        """Seconds of each of the first `n` prompts, one request at a time."""
        out = []
        for p in self.prompts[:n]:
            t = time.perf_counter()
            self._sample([p])
            out.append(time.perf_counter() - t)
        return out

    def shutdown(self) -> None:
        self.engine.shutdown()


def engine_summary(offline: list[float], single: list[float], alone: EngineAlone) -> dict:
    from bench.load import pct

    n = len(alone.prompts)
    return {"prompts": n, "offline_rounds": len(offline), "offline_seconds": round(sum(offline), 2) if offline else None,
            "offline_rps": round(n * len(offline) / sum(offline), 3) if offline else None,
            "single_requests": len(single), "single_p50_ms": pct(single, 0.5), "single_p95_ms": pct(single, 0.95),
            "max_tokens": alone.max_tokens}


def main(argv=None) -> int:
    args = parse_args(argv)
    from bench.load import bench_session, closed_loop, conversations, merge, route_sender, summarize

    tmp, key = bench_session("serve-load-")
    import ray
    from ray import serve

    from actors.engine import EngineConfig
    from serve.app import deploy
    from serve.config import ServeConfig, resolve_checkpoint
    from serve.reload import INGRESS_DEPLOYMENT, ProbeRefused, probe, publish, update

    convs = conversations()
    served = resolve_checkpoint(args.checkpoint, args.model)
    reload_to = resolve_checkpoint(args.reload_to, args.model) if args.reload_to else served
    if reload_to is not None:  # a private copy: a training run may delete its checkpoints meanwhile
        reload_to = other_weights(reload_to, tmp / "reload_adapter") if not args.reload_to else \
            Path(shutil.copytree(reload_to, tmp / "reload_adapter"))
    cfg = ServeConfig(engine=EngineConfig(model=args.model, kv_cache_gib=1, max_num_seqs=32), port=args.port,
                      checkpoint=str(served) if served else "none", api_key_file=str(tmp / "key"), replica_cpus=1)
    report: dict = {"model": args.model, "checkpoint": str(served), "seconds_per_phase": args.seconds,
                    "seconds_per_round": args.round_seconds,
                    "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                "loadavg_start": os.getloadavg()}}
    phases = report["phases"] = {}
    # the engine stays up through the Serve phases and they alternate in rounds, so that the ratios compare runs
    # under the same machine load (Ray's processes included) rather than runs minutes apart
    alone = EngineAlone(cfg, served, convs)
    if args.worker_niceness is not None:  # read by the raylet ray.init starts
        os.environ["RAY_worker_niceness"] = str(args.worker_niceness)
    report["worker_niceness"] = int(os.environ.get("RAY_worker_niceness", 15))
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=256 << 20, log_to_driver=False)
    try:
        t0 = time.perf_counter()
        url = deploy(cfg)
        report["app_start_s"] = round(time.perf_counter() - t0, 1)
        send = route_sender(url, key, honour_retry_after=True)
        closed_loop(send, convs[:4], 4, 3)  # warm-up
        offline, single, rounds = [], [], {1: [], args.clients: []}
        for r in range(0 if args.reload_only else args.rounds):
            single += alone.single_s(max(1, 24 // args.rounds))
            rounds[1].append(closed_loop(send, convs, 1, args.round_seconds))
            if not args.latency_only:
                offline.append(alone.offline_s())
                rounds[args.clients].append(closed_loop(send, convs, args.clients, args.round_seconds))
            print(f"  round {r + 1} of {args.rounds} done", flush=True)
        alone.shutdown()  # the phases below have no engine-alone counterpart
        if not args.reload_only:
            report["engine"] = engine_summary(offline, single, alone)
            print(f"engine alone: {report['engine']}", flush=True)
        for clients, done in rounds.items():
            if done:
                phases[f"serve_{clients}"] = summarize(merge(done))
                print(f"  {clients} clients: {phases[f'serve_{clients}']}", flush=True)
        if args.latency_only:
            return finish(report, args, cfg.app_name)

        if not args.reload_only:  # overload: a small queue and a short deadline, changed in place
            small = {"max_ongoing_requests": cfg.max_batch_size, "max_queued_requests": args.overload_queue}
            update(cfg.app_name, {}, options=small)
            update(cfg.app_name, {"request_timeout_s": args.overload_deadline}, deployment=INGRESS_DEPLOYMENT)
            # what the replicas saw: answers decoded past the deadline they planned for (their log says by how
            # much), calls refused while waiting (shed), and calls their ingress gave up on, by where they were; a
            # 504 "unanswered" that no replica counted as cancelled waited in Serve's queue to the replica
            before = replica_counts(cfg.app_name)
            over = summarize(closed_loop(send, convs, args.overload_clients, args.seconds))
            over["deadline_s"], over["queue"] = args.overload_deadline, small
            seen = {k: v - before[k] for k, v in replica_counts(cfg.app_name).items()}
            over["answers_after_replica_deadline"] = seen.pop("overran")
            over["replica"] = seen
            phases[f"overload_{args.overload_clients}"] = over
            print(f"  overload: {over}", flush=True)
            update(cfg.app_name, {"request_timeout_s": cfg.request_timeout_s}, deployment=INGRESS_DEPLOYMENT)
            update(cfg.app_name, {}, options={"max_ongoing_requests": cfg.max_ongoing_requests,
                                              "max_queued_requests": cfg.max_queued_requests})
        else:  # the full run's earlier phases leave the prefix cache warm; so does this
            closed_loop(send, convs, 8, args.seconds)
        steady = summarize(closed_loop(send, convs, 8, args.seconds))
        phases["steady_8"] = steady
        window: dict = {}

        def push():  # the probe, then the publish, timed apart (publish(probe_first=True) is the two in a row)
            time.sleep(2)
            window["start"] = time.perf_counter()
            verdict = probe(reload_to, cfg.app_name)
            if not verdict["ok"]:
                raise ProbeRefused(verdict)
            probed = time.perf_counter()
            new = publish(reload_to, app_name=cfg.app_name, probe_first=False)
            window["end"] = time.perf_counter()
            loads = [info["last_load_s"] for info in model_infos(cfg.app_name)]
            return {"version": new["version"], "publish_s": round(window["end"] - window["start"], 2),
                    "probe_s": round(probed - window["start"], 2), "probe_longest_hold_s": verdict["longest_hold_s"],
                    "update_s": round(window["end"] - probed, 2), "replica_load_s": loads}

        res = closed_loop(send, convs, 8, args.seconds, during=push)
        overlapping = [(t0, t1, ok) for t0, t1, ok, _ in res["records"] if t1 >= window["start"] and t0 <= window["end"]]
        reload_res = summarize(res)
        reload_res.update(res["during"], overlapping=len(overlapping),
                          overlapping_failed=sum(not ok for *_, ok in overlapping),
                          overlapping_max_ms=round(1000 * max((t1 - t0 for t0, t1, _ in overlapping), default=0), 1))
        phases["reload_8"] = reload_res
        print(f"  reload: {reload_res}", flush=True)
        return finish(report, args, cfg.app_name)
    finally:
        alone.shutdown()  # idempotent
        serve.shutdown()
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


def other_weights(adapter: Path, out: Path) -> Path:
    """`adapter` with every lora_B scaled by 1.001: the same answers, but other weights, so that the reload phase
    pays what a real one does (the merge, and a prefix cache that holds nothing for the new weights; a byte-equal
    copy would find the served weights' KV blocks, actors.engine's cache salt being a digest of the weights)."""
    from memroute.core.adapter import read_adapter, write_adapter

    tensors, adapter_cfg = read_adapter(adapter)
    return write_adapter(out, {k: v.float() * 1.001 if "lora_B" in k else v for k, v in tensors.items()}, adapter_cfg)


REPLICA_COUNTS = ("overran", "shed", "cancelled_waiting", "cancelled_running")


def replica_counts(app_name: str) -> dict:
    """The model replicas' counters (serve.model.RouterModel.info), summed over the replicas."""
    infos = model_infos(app_name)
    return {k: sum(info.get(k, 0) for info in infos) for k in REPLICA_COUNTS}


def model_infos(app_name: str, calls: int = 4) -> list[dict]:
    """RouterModel.info() of the model replicas (a few calls through the handle, one entry per replica)."""
    from ray import serve

    from serve.reload import MODEL_DEPLOYMENT

    handle = serve.get_deployment_handle(MODEL_DEPLOYMENT, app_name)
    infos = {}
    for _ in range(calls):
        info = handle.info.remote().result(timeout_s=60)
        infos[info["replica"]] = info
    return list(infos.values())


def finish(report: dict, args, app_name: str) -> int:
    """Delete the app; then the targets, the JSON report and the table (exit status 1 if a target is missed)."""
    from ray import serve

    from data.atomic import write_json_atomic

    serve.delete(app_name)
    report["loadavg_end"] = os.getloadavg()
    report["targets"] = targets(report, args)
    write_json_atomic(args.out, report)
    print_table(report)
    return 0 if all(t["ok"] for t in report["targets"].values()) else 1


def targets(report: dict, args) -> dict:
    ph = report["phases"]
    if args.reload_only:
        return {"reload": reload_target(ph["steady_8"], ph["reload_8"])}
    eng = report["engine"]
    one = ph["serve_1"]
    lat = one["p50_ms"] / eng["single_p50_ms"] if eng["single_p50_ms"] and one["p50_ms"] else float("inf")
    latency = {"ratio": round(lat, 3), "target": f"<= {TARGETS['latency_ratio']}",
               "ok": lat <= TARGETS["latency_ratio"], "what": "Serve p50 at 1 client / the engine's single request"}
    if args.latency_only:
        return {"latency": latency}
    reload = reload_target(ph["steady_8"], ph["reload_8"])
    top = ph[f"serve_{args.clients}"]
    over = ph[f"overload_{args.overload_clients}"]
    thr = top["rps"] / eng["offline_rps"] if eng["offline_rps"] else 0
    other = {s: n for s, n in over["statuses"].items() if s not in ("200", "503")}
    return {
        "throughput": {"ratio": round(thr, 3), "target": f">= {TARGETS['throughput_ratio']}",
                       "ok": thr >= TARGETS["throughput_ratio"],
                       "what": f"Serve at {args.clients} clients / the engine's offline batch, requests/s"},
        "latency": latency,
        "overload": {"other_statuses": other, "max_ms": over["max_ms"], "deadline_ms": 1000 * args.overload_deadline,
                     "ok": not other and over["max_ms"] <= 1000 * args.overload_deadline,
                     "what": "every request 200 or 503, none waiting past the deadline"},
        "reload": reload,
    }


def reload_target(steady: dict, rel: dict) -> dict:
    wait = rel["overlapping_max_ms"] / steady["p95_ms"] if steady["p95_ms"] else float("inf")
    failed = sum(n for s, n in rel["statuses"].items() if s != "200")
    return {"failed": failed, "ratio": round(wait, 3), "target": f"0 failed, <= {TARGETS['reload_wait_ratio']}",
            "ok": failed == 0 and wait <= TARGETS["reload_wait_ratio"],
            "what": "failed requests; longest wait overlapping the reload / steady p95"}


def replica_counts_line(counts: dict) -> str:
    return (f"{counts['shed']} refused while waiting (503), {counts['cancelled_waiting']} given up by the ingress "
            f"while waiting, {counts['cancelled_running']} while decoding")


def print_table(report: dict) -> None:
    eng = report.get("engine")
    if eng:
        print(f"\nengine alone: offline {eng['offline_rps']} req/s over {eng['prompts']} prompts; one at a time p50 "
              f"{eng['single_p50_ms']} ms, p95 {eng['single_p95_ms']} ms")
    print(f"\n| phase | clients | req/s | p50 ms | p95 ms | p99 ms | max ms | statuses |\n|---|---|---|---|---|---|---|---|")
    for name, r in report["phases"].items():
        print(f"| {name} | {r['clients']} | {r['rps']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | {r['max_ms']} | "
              f"{', '.join(f'{k}: {v}' for k, v in sorted(r['statuses'].items()))} |")
    timed = {name: r["breakdown"] for name, r in report["phases"].items() if r.get("breakdown")}
    if timed:
        print("\nmedian ms per answered request: client = http (proxy, network, client) + ingress + queue (to the "
              "engine) + engine (its batch's decode)")
        print("\n| phase | client | http | ingress | queue | engine | batch |\n|---|---|---|---|---|---|---|")
        for name, b in timed.items():
            print(f"| {name} | {b['client_ms']} | {b['http_ms']} | {b['ingress_ms']} | {b['queue_ms']} | "
                  f"{b['engine_ms']} | {b['batch_size']} |")
    gone = {name: r["expired"] for name, r in report["phases"].items() if r.get("expired")}
    if gone:
        print("\n504s: where the time went (serve.ingress.EXPIRED_WHERE), the client's wait and the ingress's share "
              "(Server-Timing); outside = the proxy's queue and the way back, median / max ms")
        print("\n| phase | 504s | where | client | ingress | outside |\n|---|---|---|---|---|---|")
        for name, e in gone.items():
            span = lambda d: f"{d['median']} / {d['max']}"  # noqa: E731
            print(f"| {name} | {e['count']} | {', '.join(f'{k}: {v}' for k, v in e['where'].items())} | "
                  f"{span(e['client_ms'])} | {span(e['ingress_ms'])} | {span(e['outside_ingress_ms'])} |")
    seen = {name: r["replica"] for name, r in report["phases"].items() if r.get("replica")}
    for name, counts in seen.items():
        print(f"\n{name}, as the model replicas counted it: {replica_counts_line(counts)}")
    print("\n| target | measured | goal | met |\n|---|---|---|---|")
    for name, t in report["targets"].items():
        measured = t.get("ratio", t.get("max_ms"))
        print(f"| {name}: {t['what']} | {measured} | {t.get('target', '')} | {'yes' if t['ok'] else 'NO'} |")


if __name__ == "__main__":
    sys.exit(main())
