"""Average LoRA adapters exactly: `python -m memroute.router.soup OUT ADAPTER [ADAPTER ...]`.

A "soup" of fine-tuned endpoints (Wortsman et al., 2022) averages their weights. For LoRA the weight change of an
adapter is `scale * B @ A`, which is not linear in (A, B), so averaging the A's and B's apart is not averaging the
models. Concatenating the ranks is: with `A = [A_1; ...; A_n]` and `B = [w_1 s_1 B_1, ..., w_n s_n B_n]` (rank
n*r, alpha = rank, so the new scale is 1), `B @ A = sum_i w_i s_i B_i @ A_i` exactly. A module one adapter lacks
counts as zero there. The adapters must share the base model; the result is float16, like
the shipped router. (peft's `add_weighted_adapter(combination_type="cat")` does the same on a loaded model; this
works on the files, without loading the base model.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from memroute.core.adapter import lora_pairs, lora_scaling, read_adapter, write_adapter

PEFT_PREFIX = "base_model.model."


def soup(adapters: Sequence[str | Path], out: str | Path, weights: Sequence[float] | None = None) -> Path:
    """Write the weighted average (default: uniform) of `adapters` to `out`; returns the folder."""
    import torch

    if not adapters:
        raise ValueError("soup needs at least one adapter")
    weights = list(weights) if weights is not None else [1.0 / len(adapters)] * len(adapters)
    if len(weights) != len(adapters):
        raise ValueError(f"{len(weights)} weights for {len(adapters)} adapters")
    loaded = [read_adapter(a) for a in adapters]
    # a hub id and a local folder of the same model name the same base ("HuggingFaceTB/X", ".../models/X")
    base = {Path(str(cfg.get("base_model_name_or_path"))).name for _, cfg in loaded}
    if len(base) > 1:
        raise ValueError(f"the adapters are for different base models: {sorted(map(str, base))}")
    pairs = [lora_pairs(t) for t, _ in loaded]
    shapes = {}
    for p in pairs:
        for name, (a, b) in p.items():
            shapes.setdefault(name, (a.shape[1], b.shape[0]))
    tensors, rank = {}, sum(cfg["r"] for _, cfg in loaded)
    for name, (fan_in, fan_out) in sorted(shapes.items()):
        As, Bs = [], []
        for p, (_, cfg), w in zip(pairs, loaded, weights):
            r = cfg["r"]
            a, b = p.get(name, (torch.zeros(r, fan_in), torch.zeros(fan_out, r)))
            As.append(a.float())
            Bs.append(b.float() * (w * lora_scaling(cfg)))
        module = PEFT_PREFIX + name.removesuffix(".weight")
        tensors[f"{module}.lora_A.weight"] = torch.cat(As, 0).half()
        tensors[f"{module}.lora_B.weight"] = torch.cat(Bs, 1).half()
    cfg = dict(loaded[0][1])
    layers = [cfg_i.get("layers_to_transform") for _, cfg_i in loaded]
    cfg.update(r=rank, lora_alpha=rank, lora_dropout=0.0, rank_pattern={}, alpha_pattern={},
               target_modules=sorted({m for _, c in loaded for m in c.get("target_modules") or []}),
               layers_to_transform=None if any(x is None for x in layers) else sorted({i for x in layers for i in x}))
    return write_adapter(out, tensors, cfg)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m memroute.router.soup", description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="the folder to write")
    p.add_argument("adapters", nargs="+", help="adapter folders (adapter_config.json + adapter_model.safetensors)")
    p.add_argument("--weights", type=float, nargs="+", default=None, help="one per adapter (default: uniform)")
    args = p.parse_args(argv)
    try:
        out = soup(args.adapters, args.out, args.weights)
    except (ValueError, OSError) as e:
        print(f"soup: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out} (rank {read_adapter(out)[1]['r']}, {len(args.adapters)} adapters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
