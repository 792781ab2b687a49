"""`memroute quickstart`: the main job on the embedded default, end to end on one CPU machine.

1. provision the default model and check the embedded dataset;
2. SFT (configs/cpu_sft.yaml) on the embedded train split and its short conversations, on Ray Train (default
   model: LoRA in the last 8 layers from the frozen-trunk cache, 5 epochs);
3. a short RL run (configs/cpu_rl.yaml) from the SFT adapter: vLLM rollout workers, learner, verified pushes;
4. evaluate on the embedded test split (the vLLM engine): majority and TF-IDF baselines (fitted on the SFT data),
   zero-shot, SFT, SFT+RL, and, with the
   default model, the shipped router (memroute/router) for comparison;
5. the run's router: the RL adapter when it beats its SFT start (higher mean F1, exact match no lower), else the
   SFT adapter, as the recipe ships RL (issue 15); plots of the training curves, then the Ray Serve endpoint
   (`--no-serve` to skip), running until Ctrl-C, with the run's router, or the shipped router when that scored
   higher on the embedded test split.

Every stage resumes: re-running the command continues SFT and RL from their checkpoints and skips what is done.
`key=value` overrides go to both training configs' shared fields via `--sft` / `--rl` (e.g. `--rl steps=8`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from data.atomic import write_text_atomic
from data.embedded import SHORT_TRAIN_PATH, TEST_PATH, TRAIN_PATH
from memroute.core.errors import run_command

# the quickstart's own settings: configs/quickstart_sft.yaml (default model only) and configs/quickstart_rl.yaml
SFT_PRESET, RL_PRESET = "quickstart_sft.yaml", "quickstart_rl.yaml"
SHIPPED = "shipped router"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="memroute quickstart", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m",
                   help="a known model name (smollm2-135m, tiny) or a HF model path (default: %(default)s)")
    p.add_argument("--out", default="runs/quickstart", help="run folder: sft/, rl/, eval/, logs/, summary.md "
                   "(default: %(default)s)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N test conversations "
                   "(default: all)")
    p.add_argument("--sft", nargs="*", default=[], metavar="KEY=VALUE",
                   help="overrides of configs/cpu_sft.yaml, after the quickstart's own (configs/quickstart_sft.yaml "
                        "for the default model; default: none more)")
    p.add_argument("--rl", nargs="*", default=[], metavar="KEY=VALUE",
                   help="overrides of configs/cpu_rl.yaml, after the quickstart's own (configs/quickstart_rl.yaml; "
                        "default: none more)")
    p.add_argument("--no-serve", action="store_true", help="stop after evaluation and plots")
    p.add_argument("--port", type=int, default=8000, help="the Serve endpoint's port (default: %(default)s)")
    p.add_argument("--print-config", action="store_true", help="print the SFT and the RL config the run would use "
                   "(two YAML documents) and exit; runs nothing")
    args = p.parse_args(argv)
    if args.print_config:  # a config error propagates: one line, exit 2
        from memroute.core.config import dump_config

        sft_cfg, rl_cfg = training_configs(args)
        sys.stdout.write(f"# SFT\n{dump_config(sft_cfg)}---\n# RL\n{dump_config(rl_cfg)}")
        return 0
    return run(args)


def training_configs(args):
    """The SFT and RL configs of this run, built (and so checked, value by value) before anything starts: a typo
    in --rl fails now, not after SFT. The RL run starts from the adapter SFT will write."""
    from learner.config import SFTConfig
    from learner.rl import RLConfig
    from learner.sft import validate_sft_config
    from memroute.core.config import load_config
    from memroute.router import is_default_model

    out = Path(args.out)
    default = is_default_model(args.model)
    sft_cfg = load_config(SFTConfig, ["cpu_sft.yaml", *([SFT_PRESET] if default else [])],
                          [f"model.name={args.model}", f"run_dir={out / 'sft'}",
                           *([f"train_data={TRAIN_PATH},{SHORT_TRAIN_PATH}"] if default else []), *args.sft])
    validate_sft_config(sft_cfg)
    sft_adapter = Path(sft_cfg.run_dir) / "adapter"
    rl_cfg = load_config(RLConfig, ["cpu_rl.yaml", RL_PRESET],
                         [f"learner.model.name={args.model}", f"rollout.engine.model={args.model}",
                          f"learner.adapter={sft_adapter}", f"run_dir={out / 'rl'}", *args.rl])
    return sft_cfg, rl_cfg


def quiet_logs(folder: Path) -> dict[str, Path]:
    """vLLM's INFO logs go to a file in the run dir and only its errors to the console, where the stages and
    progress bars stay readable. A Python logging config for vLLM (VLLM_LOGGING_CONFIG_PATH), used by the
    engines in this process and, through the runtime env, in every Ray worker."""
    folder.mkdir(parents=True, exist_ok=True)
    log_file, config_file = folder / "vllm.log", folder / "vllm_logging.json"
    config = {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(levelname)s %(asctime)s %(process)d %(name)s: %(message)s"}},
        "handlers": {
            "file": {"class": "logging.FileHandler", "filename": str(log_file.resolve()), "level": "INFO",
                     "formatter": "plain"},
            "console": {"class": "logging.StreamHandler", "level": "ERROR", "formatter": "plain"},
        },
        "loggers": {"vllm": {"handlers": ["file", "console"], "level": "INFO", "propagate": False}},
    }
    write_text_atomic(config_file, json.dumps(config, indent=2) + "\n")
    os.environ["VLLM_LOGGING_CONFIG_PATH"] = str(config_file.resolve())
    return {"vllm": log_file, "vllm_config": config_file.resolve()}


def stage(n: int, text: str) -> None:
    print(f"\n[{n}/5] {text}", flush=True)


def run(args) -> int:
    import ray

    from actors.evaluate import EvalConfig, run_eval
    from data.schema import read_examples
    from memroute.core.models import resolve_model
    from learner.rl import train_rl
    from learner.sft import train_sft
    from memroute.router import is_default_model, shipped_adapter

    start = time.perf_counter()
    out = Path(args.out)
    sft_cfg, rl_cfg = training_configs(args)  # both built and checked before anything starts
    logs = quiet_logs(out / "logs")
    if not ray.is_initialized():
        ctx = ray.init(include_dashboard=True, dashboard_host="127.0.0.1", logging_level=logging.WARNING,
                       logging_config=ray.LoggingConfig(log_level="WARNING"),
                       runtime_env={"env_vars": {"VLLM_LOGGING_CONFIG_PATH": str(logs["vllm_config"])}})
        print(f"Ray dashboard: http://{ctx.dashboard_url}  (jobs, actors, logs and metrics of this run)"
              if ctx.dashboard_url else "Ray dashboard: not available (see the Ray logs)")
        ray_logs = Path(ctx.address_info["session_dir"]) / "logs"
        print(f"logs: vLLM engines -> {logs['vllm']}; Ray workers -> {ray_logs}")

    stage(1, f"model {resolve_model(args.model)}")
    train, test = read_examples(TRAIN_PATH), read_examples(TEST_PATH)
    print(f"      embedded data: {len(train)} train / {len(test)} test conversations, valid")

    stage(2, "SFT on the embedded train split and its short conversations (Ray Train)")
    sft = train_sft(sft_cfg)
    print(f"      adapter {sft['adapter']}")
    expected = Path(rl_cfg.learner.adapter)  # the RL config was built with this path before SFT ran
    if Path(sft["adapter"]).resolve() != expected.resolve():
        raise RuntimeError(f"SFT wrote its adapter to {sft['adapter']}, expected {expected}")

    stage(3, "RL from the SFT adapter (vLLM rollout workers + learner)")
    rl = train_rl(rl_cfg)
    print(f"      adapter {rl['adapter']}")

    stage(4, "evaluation on the embedded test split (vLLM engine)")
    systems = [("majority baseline", "majority", None), ("TF-IDF + LR", "tfidf", None),
               (f"{args.model} zero-shot", "vllm", None), ("SFT", "vllm", sft["adapter"]),
               ("SFT + RL", "vllm", rl["adapter"])]
    router = shipped_adapter() if is_default_model(args.model) else None
    if router is not None:  # for comparison: the default router, trained longer on the reference corpus
        systems.append((SHIPPED, "vllm", str(router)))
    rows, results = [], {}
    for i, (name, backend, adapter) in enumerate(systems):
        folder = out / "eval" / f"{i}-{backend}"
        # the baselines learn from the same conversations as SFT
        m = run_eval(EvalConfig(model=args.model, backend=backend, adapter=adapter, out=str(folder), limit=args.limit,
                                train=sft_cfg.train_data))
        results[name] = {k: m[k] for k in ("mean_f1", "exact_match", "parse_failure_rate", "mean_reward")}
        rows.append(f"| {name} | {m['mean_f1']:.3f} | {m['exact_match']:.3f} | {m['parse_failure_rate']:.3f} "
                    f"| {m['mean_reward']:.3f} | {folder} |")
        print(f"      {name}: mean F1 {m['mean_f1']:.3f}, exact {m['exact_match']:.3f}")
    chosen, why = choose_router(results)
    adapters = {"SFT": sft["adapter"], "SFT + RL": rl["adapter"]}
    summary = "\n".join(["| system | mean F1 | exact | parse failures | mean reward | results |",
                         "|---|---|---|---|---|---|", *rows, "",
                         f"This run's router: {chosen}, {adapters[chosen]}: {why}."])
    write_text_atomic(out / "summary.md", summary + "\n")
    write_text_atomic(out / "summary.json", json.dumps(
        {**results, "router": {"system": chosen, "adapter": adapters[chosen], "why": why}}, indent=2) + "\n")
    print(f"      this run's router: {chosen} ({why})")

    stage(5, "plots" + ("" if args.no_serve else " and the Serve endpoint"))
    plots = _plots([out / "sft"]) + [Path(p) for p in rl["plots"]]  # train_rl plotted its own run
    print(f"\n{summary}\n")
    for p in plots:
        print(f"plot: {p}")
    print(f"finished training and evaluation in {time.perf_counter() - start:.0f}s; summary at {out / 'summary.md'}")
    if args.no_serve:
        return 0
    served = adapters[chosen]
    if router is not None and results[SHIPPED]["mean_f1"] > results[chosen]["mean_f1"]:
        # a user wants the better router behind the endpoint; this run's stays one command away
        served = str(router)
        print(f"serving the shipped router: it scores higher on the embedded test split than this run's {chosen} "
              f"({results[SHIPPED]['mean_f1']:.3f} vs {results[chosen]['mean_f1']:.3f} mean F1); "
              f"`memroute serve --checkpoint {adapters[chosen]}` serves this run's")
    return _serve(served, args.model, args.port)


def choose_router(results: dict) -> tuple[str, str]:
    """(system, why): the run's router, "SFT + RL" when RL beat its SFT start (higher mean F1 and exact match
    no lower), else "SFT". A short RL stage on a small set can lose what SFT learned; it ships only if it helps."""
    sft, rl = results["SFT"], results["SFT + RL"]
    scores = (f"mean F1 {rl['mean_f1']:.3f} vs {sft['mean_f1']:.3f}, "
              f"exact {rl['exact_match']:.3f} vs {sft['exact_match']:.3f}")
    if rl["mean_f1"] > sft["mean_f1"] and rl["exact_match"] >= sft["exact_match"]:
        return "SFT + RL", f"RL beat its SFT start ({scores})"
    return "SFT", f"RL did not beat its SFT start ({scores}), so the SFT adapter is kept"


def _plots(run_dirs) -> list[Path]:
    try:
        from memroute.plot import plot_run
    except ImportError:  # plotting is optional: the numbers are in summary.md and metrics.jsonl
        return []
    paths: list[Path] = []
    for run_dir in run_dirs:
        paths.extend(Path(p) for p in plot_run(run_dir))
    return paths


def _serve(adapter: str, model: str, port: int) -> int:
    """Serve `adapter` on `model` until Ctrl-C or SIGTERM, then stop as `memroute serve` does: drain, then delete
    the app. The tiny model gets Serve's tiny preset (configs/tiny_serve.yaml), as `memroute cluster up --tiny`."""
    from memroute.core.config import load_config, preset_overrides
    from serve.app import deploy, shutdown, wait_for_stop
    from serve.config import ServeConfig

    preset = preset_overrides("tiny_serve") if model == "tiny" else []
    cfg = load_config(ServeConfig, None, [*preset, f"engine.model={model}", f"checkpoint={adapter}", f"port={port}"])
    url = deploy(cfg)
    wait_for_stop(f"\nServe endpoint: {url}  (Ctrl-C stops it)\n"
                  f"  curl -s {url}/route -H 'Content-Type: application/json' "
                  "-d '{\"conversation\": [{\"role\": \"user\", \"content\": \"Our brand voice is warm and plain.\"}]}'\n"
                  f"  python -c \"from serve.client import RouterClient; print(RouterClient('{url}').route("
                  "[{'role': 'user', 'content': 'I prefer bullet points.'}]))\"")
    shutdown(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(run_command("memroute quickstart", main))
