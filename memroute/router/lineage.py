"""The shipped router's lineage (lineage.json beside the adapter): every run it came from, and every release.

    {"runs":  [{run_dir, stage, init_adapter, train_data: [{path, sha256, examples}], step, batch_size,
                examples_seen, epochs_seen, lora, lr}, ...],      # oldest first; the last one made this adapter
     "ships": [{time, adapter, eval: {data, n, mean_f1, exact_match, ...}, predictions,
                against_incumbent: {paired bootstrap} | null}, ...]}

A run that started from the shipped router (`init_adapter` = this folder, or a copy holding the same lineage)
extends the shipped lineage; a run from scratch starts a new one. The release gate (`check_beats`): a new router
ships only when the paired bootstrap over the same test conversations puts its mean F1 above the incumbent's
(the 95% interval of the difference above 0).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from memroute.core.checkpoint import sha256_file
from memroute.core.errors import MemrouteError

LINEAGE = "lineage.json"


class GateError(MemrouteError, RuntimeError):
    """The candidate does not beat the shipped router; the message carries the comparison."""


def read_lineage(folder: Path) -> dict:
    path = Path(folder) / LINEAGE
    if not path.exists():
        return {"runs": [], "ships": []}
    return json.loads(path.read_text(encoding="utf-8"))


def _checkpoint_step(adapter: Path) -> int | None:
    """The optimizer step of an adapter inside an SFT checkpoint (its manifest), else None."""
    manifest = adapter.parent / "memroute_checkpoint.json"
    if manifest.exists():
        return json.loads(manifest.read_text(encoding="utf-8")).get("global_step")
    return None


def run_entry(adapter: Path, run_dir: Path) -> dict:
    """What one SFT run was and how far the adapter got in it, from the run's config.yaml and metrics.jsonl."""
    import yaml

    from data.mix import mix_paths

    cfg = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if x]
    step = _checkpoint_step(adapter) or (rows[-1]["step"] if rows else 0)
    files = []
    for p in mix_paths(cfg["train_data"]):
        n = sum(1 for line in p.read_text(encoding="utf-8").splitlines() if line.strip()) if p.exists() else None
        files.append({"path": str(p), "sha256": sha256_file(p) if p.exists() else None, "examples": n})
    n_examples = sum(f["examples"] or 0 for f in files)
    seen = step * cfg["batch_size"]
    return {"run_dir": str(run_dir), "stage": "sft", "init_adapter": cfg.get("init_adapter"), "train_data": files,
            "step": step, "batch_size": cfg["batch_size"], "examples_seen": seen,
            "epochs_seen": round(seen / n_examples, 3) if n_examples else None, "lora": cfg.get("lora"),
            "lr": cfg.get("optim", {}).get("lr"), "loraplus_ratio": cfg.get("optim", {}).get("loraplus_ratio"),
            "trunk_cache": cfg.get("trunk", {}).get("cache")}


def lineage_runs(entry: dict, shipped: Path) -> list[dict]:
    """The run chain of a new adapter: the shipped chain + `entry` when it started from the shipped router."""
    init = entry.get("init_adapter")
    if init and (Path(init).resolve() == Path(shipped).resolve()
                 or read_lineage(Path(init)).get("runs") == read_lineage(shipped).get("runs") != []):
        return read_lineage(shipped)["runs"] + [entry]
    if init and (Path(init) / LINEAGE).exists():
        return read_lineage(Path(init))["runs"] + [entry]
    return [entry]


def check_beats(candidate_predictions: Path, incumbent_predictions: Path, data: Path) -> dict:
    """Paired bootstrap of the candidate (B) against the incumbent (A) on `data`; GateError unless B wins."""
    from data.metrics import align, paired_bootstrap, read_predictions
    from data.schema import read_examples

    examples = read_examples(data)
    result = paired_bootstrap(align(read_predictions(incumbent_predictions), examples),
                              align(read_predictions(candidate_predictions), examples))
    if result["delta_ci95"][0] <= 0:
        raise GateError(f"the candidate does not beat the shipped router on {data}: mean F1 "
                        f"{result['mean_f1_b']:.3f} vs {result['mean_f1_a']:.3f}, difference {result['delta']:+.3f} "
                        f"(95% CI {result['delta_ci95'][0]:+.3f} to {result['delta_ci95'][1]:+.3f}); not shipped")
    return result


def ship_entry(adapter: str, metrics: dict, predictions: str | None, comparison: dict | None) -> dict:
    keep = ("n", "mean_f1", "mean_f1_ci95", "exact_match", "exact_match_ci95", "parse_failure_rate", "mean_reward")
    return {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "adapter": adapter,
            "eval": {"data": metrics.get("config", {}).get("data"), **{k: metrics.get(k) for k in keep}},
            "predictions": predictions, "against_incumbent": comparison}


def lineage_markdown(lineage: dict) -> str:
    lines = ["## Lineage", "", "Runs, oldest first (the last one made this adapter):", "",
             "| run | from | data | steps x batch | examples seen | epochs | LoRA layers | lr |", "|---|---|---|---|---|---|---|---|"]
    for r in lineage["runs"]:
        data = " + ".join(f"{Path(f['path']).parent.name}/{Path(f['path']).name} ({f['examples']})"
                          for f in r["train_data"])
        layers = (r.get("lora") or {}).get("top_layers")
        lr = f"{r['lr']} (LoRA+: B at {r['loraplus_ratio']}x)" if r.get("loraplus_ratio") else r["lr"]
        lines.append(f"| {Path(r['run_dir']).name} | {Path(r['init_adapter']).name if r.get('init_adapter') else 'scratch'} "
                     f"| {data} | {r['step']} x {r['batch_size']} | {r['examples_seen']} | {r['epochs_seen']} "
                     f"| {'last ' + str(layers) if layers else 'all'} | {lr} |")
    lines += ["", "Releases of this folder:", "", "| shipped | test mean F1 | exact | vs the router before it |",
              "|---|---|---|---|"]
    for s in lineage["ships"]:
        c = s.get("against_incumbent")
        vs = (f"{c['delta']:+.3f} F1 (95% CI {c['delta_ci95'][0]:+.3f} to {c['delta_ci95'][1]:+.3f}), "
              f"{c['exact_delta']:+.3f} exact" if c else "first release")
        e = s["eval"]
        lines.append(f"| {s['time'][:10]} | {e['mean_f1']:.3f} | {e['exact_match']:.3f} | {vs} |")
    return "\n".join(lines) + "\n"
