"""`memroute eval`: batched routing of a dataset, scored with the foundation's metrics.

Writes into `--out`: predictions.jsonl, metrics.json and metrics.md (all atomic). Backends:
- `vllm` (default): the rollout workers' vLLM engine in this process, batched by vLLM's scheduler; greedy, or
  with `--samples n` each answer the most probable of the greedy one and n sampled ones (the endpoint's
  `samples`);
- `ray-data`: the same engine as Ray Data batch inference over Parquet shards (`map_batches`, `--concurrency`
  engine actors; a JSONL dataset is converted to one Parquet shard first), for a cluster;
- `hf`: transformers `generate`, greedy (no vLLM needed; slower);
- `majority`: the training set's most common label, no model;
- `tfidf`: TF-IDF + logistic regression fitted on `--train` (the classical baseline; data/baselines.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from data.baselines import majority_predictions, tfidf_predictions
from data.mix import read_mix_examples
from data.embedded import TEST_PATH, TRAIN_PATH
from data.metrics import Prediction, align, compute_metrics, metrics_table, write_eval_outputs
from data.parser import parse_answer
from data.prompt import render_prompt
from data.schema import read_examples
from memroute.core.errors import InputError, run_command
from memroute.core.models import DTYPES


@dataclass
class EvalConfig:
    model: str = "smollm2-135m"  # a known name (smollm2-135m, tiny) or any HF model path
    adapter: str | None = "default"  # LoRA adapter folder; default: the shipped router (memroute/router) for the
    #                                  default model; none / None: the base model
    data: str = str(TEST_PATH)
    out: str = "runs/eval"
    backend: str = "vllm"  # vllm | ray-data | hf | majority | tfidf
    train: str = str(TRAIN_PATH)  # the majority / tfidf baselines' training set
    batch_size: int = 8
    max_new_tokens: int = 48
    # vllm / ray-data: 0 = greedy; n = the most probable answer among greedy and n sampled at temperature 1
    # (actors.engine.Engine.best_of), the answer the endpoint serves with ServeConfig.samples = n
    samples: int = 0
    dtype: str = "auto"
    limit: int | None = None  # score only the first N examples (smoke runs)
    kv_cache_gib: float = 2.0  # vllm / ray-data on CPU: each engine's KV cache
    concurrency: int = 1  # ray-data: engine actors
    use_gpu: bool = False  # ray-data: one GPU per engine actor

    def __post_init__(self):  # checked when built, so a bad value in a YAML file or override fails before any work
        from memroute.core.config import check_choice, check_min

        check_choice("backend", self.backend, BACKENDS)
        check_choice("dtype", self.dtype, DTYPES)
        for name in ("batch_size", "max_new_tokens", "concurrency"):
            check_min(name, getattr(self, name), 1)
        check_min("limit", self.limit, 0, optional=True)
        check_min("samples", self.samples, 0)
        check_min("kv_cache_gib", self.kv_cache_gib, 0, inclusive=False)


BACKENDS = ("vllm", "ray-data", "hf", "majority", "tfidf")
BASELINES = {"majority": "majority label", "tfidf": "TF-IDF + logistic regression"}  # backends without a model


def engine_config(cfg: EvalConfig):
    from actors.engine import EngineConfig

    # no LoRA layers: an adapter is merged into the weights (actors/engine.py: faster on CPU, exact)
    return EngineConfig(model=cfg.model, dtype=cfg.dtype, kv_cache_gib=cfg.kv_cache_gib, enable_lora=False,
                        max_num_seqs=max(cfg.batch_size, 16))


def predict_with_engine(cfg: EvalConfig, examples) -> list[Prediction]:
    from actors import batch_route

    batch_route.check_adapter(cfg.adapter)
    if cfg.backend == "vllm":
        texts = batch_route.route_local(engine_config(cfg), cfg.adapter, [ex.conversation for ex in examples],
                                        max_tokens=cfg.max_new_tokens, samples=cfg.samples)
    else:
        import tempfile

        from data.schema import write_examples

        with tempfile.TemporaryDirectory(prefix="memroute-eval-") as tmp:
            shards = cfg.data if Path(cfg.data).suffix == ".parquet" and not cfg.limit else \
                str(write_examples(Path(tmp) / "shard-0.parquet", examples))
            by_id = batch_route.route_ray_data(engine_config(cfg), cfg.adapter, shards, cfg.max_new_tokens,
                                               concurrency=cfg.concurrency, use_gpu=cfg.use_gpu,
                                               samples=cfg.samples)
        texts = [by_id[ex.id] for ex in examples]
    name = cfg.model + (f"+{cfg.adapter}" if cfg.adapter else "")
    return [Prediction(ex.id, parse_answer(t).labels, raw=t, model=name) for ex, t in zip(examples, texts)]


def predict_with_model(cfg: EvalConfig, examples) -> list[Prediction]:
    from tqdm import tqdm

    from actors.hf_engine import HFEngine

    engine = HFEngine(cfg.model, adapter=cfg.adapter, dtype=cfg.dtype, batch_size=cfg.batch_size)
    prompts = [render_prompt(engine.tokenizer, ex.conversation) for ex in examples]
    name = cfg.model + (f"+{cfg.adapter}" if cfg.adapter else "")
    with tqdm(total=len(prompts), desc="eval", unit="conv", file=sys.stderr) as bar:
        generations = engine.generate(prompts, max_new_tokens=cfg.max_new_tokens, progress=bar)
    return [Prediction(ex.id, parse_answer(g.text).labels, raw=g.text, model=name)
            for ex, g in zip(examples, generations)]


def run_eval(cfg: EvalConfig) -> dict:
    from dataclasses import replace

    from memroute.router import choose_adapter

    baseline = cfg.backend in BASELINES
    # the folder actually loaded, or None; a baseline runs no model, and its metrics say so; only the engine
    # backends sample (hf decodes greedily), so metrics.json records samples=0 for the others
    cfg = replace(cfg, adapter=None if baseline else choose_adapter(cfg.adapter, cfg.model),
                  samples=cfg.samples if cfg.backend in ("vllm", "ray-data") else 0)
    examples = read_examples(cfg.data)
    if cfg.limit:
        examples = examples[:cfg.limit]
    if not examples:
        raise InputError(f"no examples to evaluate in {cfg.data}")
    start = time.perf_counter()
    if cfg.backend == "majority":
        predictions = majority_predictions(read_mix_examples(cfg.train), examples)
    elif cfg.backend == "tfidf":
        predictions = tfidf_predictions(read_mix_examples(cfg.train), examples)
    elif cfg.backend == "hf":
        predictions = predict_with_model(cfg, examples)
    elif cfg.backend in ("vllm", "ray-data"):
        predictions = predict_with_engine(cfg, examples)
    else:
        raise InputError(f"unknown eval backend {cfg.backend!r}: use one of {', '.join(BACKENDS)}")
    elapsed = time.perf_counter() - start
    metrics = compute_metrics(align(predictions, examples), sources=[ex.source for ex in examples])
    metrics["config"] = asdict(cfg)
    if baseline:  # what produced these predictions: the baseline and its training data, no model or adapter
        metrics["config"].update(model=None, adapter=None, system=BASELINES[cfg.backend])
    else:
        metrics["config"].pop("train")
    metrics["seconds"] = elapsed
    write_eval_outputs(cfg.out, predictions, metrics, f"{predictions[0].model} on {Path(cfg.data).name}")
    return metrics


_UNSET = object()  # a flag not given on the command line: the config (defaults < --config < key=value) decides


def _parser() -> argparse.ArgumentParser:
    defaults = EvalConfig()
    p = argparse.ArgumentParser(
        prog="memroute eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Every flag is an EvalConfig key (--batch-size: batch_size); a flag given wins over --config and "
               "key=value.\nIn a Ray job: ray job submit -- python -m actors.evaluate [the same arguments].")
    p.add_argument("--config", default=None, help="YAML of EvalConfig keys (default: none, the built-in defaults)")
    p.add_argument("--print-config", action="store_true", help="print the merged config (defaults < --config < "
                   "key=value < flags) as YAML and exit; runs nothing")
    p.add_argument("--model", default=defaults.model,
                   help="a known model name (smollm2-135m, tiny) or a HF model path (default: %(default)s)")
    p.add_argument("--adapter", default=defaults.adapter,
                   help="LoRA adapter folder; 'default' (the default): the shipped router when --model is the default "
                        "model; 'none': the base model")
    p.add_argument("--data", default=defaults.data, help="JSONL or Parquet examples (default: the embedded test "
                   "split, %(default)s)")
    p.add_argument("--out", default=defaults.out, help="output folder for predictions.jsonl, metrics.json, "
                   "metrics.md (default: %(default)s)")
    p.add_argument("--backend", default=defaults.backend, choices=BACKENDS, help="default: %(default)s")
    p.add_argument("--train", default=defaults.train, help="training set for the majority / tfidf baselines "
                   "(default: the embedded train split, %(default)s)")
    p.add_argument("--batch-size", type=int, default=defaults.batch_size,
                   help="conversations per generate batch (default: %(default)s)")
    p.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens,
                   help="answer length cap in tokens (default: %(default)s)")
    p.add_argument("--samples", type=int, default=defaults.samples,
                   help="vllm/ray-data: answer with the most probable of the greedy answer and this many sampled at "
                        "temperature 1; 0: greedy (default: %(default)s)")
    p.add_argument("--dtype", default=defaults.dtype, choices=DTYPES,
                   help="model dtype; auto: bfloat16 on a GPU, float32 on a CPU (default: %(default)s)")
    p.add_argument("--limit", type=int, default=defaults.limit,
                   help="score only the first N examples (default: all)")
    p.add_argument("--kv-cache-gib", type=float, default=defaults.kv_cache_gib,
                   help="vllm/ray-data on CPU: each engine's KV cache in GiB (default: %(default)s)")
    p.add_argument("--concurrency", type=int, default=defaults.concurrency,
                   help="ray-data: engine actors (default: %(default)s)")
    p.add_argument("--use-gpu", action="store_true", default=defaults.use_gpu,
                   help="ray-data: one GPU per engine actor (default: off)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="EvalConfig overrides, e.g. model=tiny limit=3 (default: none)")
    return p


def _parse(argv=None) -> tuple[EvalConfig, bool]:
    """The effective config and whether to only print it. The flags' defaults are shown in --help; only the flags
    actually given become overrides (after the key=value ones), so a YAML value is not masked by a default."""
    import json
    from dataclasses import fields

    from memroute.core.config import load_config

    p = _parser()
    flags = [f.name for f in fields(EvalConfig)]  # every EvalConfig key has its flag
    args = p.parse_args(argv, argparse.Namespace(**{dest: _UNSET for dest in flags}))
    given = [f"{dest}={json.dumps(getattr(args, dest))}" for dest in flags if getattr(args, dest) is not _UNSET]
    return load_config(EvalConfig, args.config, [*args.overrides, *given]), args.print_config


def parse_args(argv=None) -> EvalConfig:
    return _parse(argv)[0]


def main(argv=None) -> int:
    cfg, print_only = _parse(argv)
    if print_only:
        from memroute.core.config import dump_config

        sys.stdout.write(dump_config(cfg))
        return 0
    metrics = run_eval(cfg)
    system = cfg.backend if cfg.backend in ("majority", "tfidf") else f"{cfg.backend}: {cfg.model}"  # no model
    print(metrics_table(metrics, f"{system} on {Path(cfg.data).name}"))
    print(f"wrote {cfg.out}/predictions.jsonl, metrics.json, metrics.md")
    return 0


if __name__ == "__main__":
    sys.exit(run_command("memroute eval", main))
