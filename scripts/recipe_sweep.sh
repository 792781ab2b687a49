#!/usr/bin/env bash
# The SFT recipe sweep on a subset (issue 15, "learn fast per example"): learning rate, LoRA+, rank, batch size
# and the order of the labels in an answer, each run a few minutes, scored per epoch on a development set cut from
# the reference train split, never on the test split (that judges only the recipe chosen here, at full scale).
#
#   scripts/recipe_sweep.sh [RUN] ...        # default: every run below; finished runs are scored again only
#                                            # where a checkpoint is new (memroute.curve keeps known points)
#
# Data (seeded, from the reference train split only; rebuilt when absent):
#   runs/sweep/train400.jsonl  400 conversations to train on
#   runs/sweep/dev100.jsonl    100 other conversations to score on
# Every run: LoRA in the last 4 layers from the frozen-trunk cache (the cheapest depth: the full recipe's k=12
# costs 3.5x per step), dropout 0.05, batch 8, 3 epochs of cosine schedule (150 steps), a checkpoint per epoch.
# Out: runs/sweep/<run>/ (the SFT run), runs/sweep/curves/<run>.{json,png} (its learning curve on dev), and
# runs/sweep/curves/sweep.{md,png}: the table and the plot of all runs (`python -m memroute.curve --compare`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
MEMROUTE=${MEMROUTE:-.venv/bin/memroute}
SHARED_TRAIN=${SHARED_TRAIN:-../shared/data/train.jsonl}
OUT=runs/sweep

declare -A RUNS=(
  [lr1e-3]="optim.lr=1e-3"
  [lr5e-4]="optim.lr=5e-4"
  [lr2e-3]="optim.lr=2e-3"
  [loraplus8-lr5e-4]="optim.lr=5e-4 optim.loraplus_ratio=8"
  [rank8]="optim.lr=1e-3 lora.rank=8 lora.alpha=8"
  [rank64]="optim.lr=1e-3 lora.rank=64 lora.alpha=64"
  [batch4]="optim.lr=1e-3 batch_size=4"
  [label-frequency]="optim.lr=1e-3 label_order=frequency"
)
ALL=(lr1e-3 lr5e-4 lr2e-3 loraplus8-lr5e-4 rank8 rank64 batch4 label-frequency)
ORDER=("${ALL[@]}")
if [ $# -gt 0 ]; then ORDER=("$@"); fi

if [ ! -s "$OUT/train400.jsonl" ] || [ ! -s "$OUT/dev100.jsonl" ]; then
  [ -s "$SHARED_TRAIN" ] || { echo "recipe_sweep: $SHARED_TRAIN not found (the reference corpus)" >&2; exit 2; }
  mkdir -p "$OUT"
  "$MEMROUTE" data split "$SHARED_TRAIN" --holdout 400 --seed 0 --rest "$OUT/rest.jsonl" --held-out "$OUT/dev_pool.jsonl"
  "$MEMROUTE" data split "$OUT/rest.jsonl" --holdout 400 --seed 0 --rest "$OUT/unused.jsonl" --held-out "$OUT/train400.jsonl"
  "$MEMROUTE" data split "$OUT/dev_pool.jsonl" --holdout 100 --seed 0 --rest "$OUT/dev_unused.jsonl" --held-out "$OUT/dev100.jsonl"
fi

mkdir -p "$OUT/curves"
for run in "${ORDER[@]}"; do
  overrides=${RUNS[$run]:?unknown run $run (known: ${!RUNS[*]})}
  # word splitting of $overrides is intended: one override per word
  # shellcheck disable=SC2086
  "$MEMROUTE" sft --config configs/recipe_sft.yaml lora.top_layers=4 lora.dropout=0.05 epochs=3 \
    train_data="$OUT/train400.jsonl" checkpoint_every=25 run_dir="$OUT/$run" $overrides
  "$PY" -m memroute.curve "$OUT/$run" --data "$OUT/dev100.jsonl" --data-name dev --every-epoch \
    --out "$OUT/curves/$run"
done
curves=()
for run in "${ALL[@]}"; do [ -s "$OUT/curves/$run.json" ] && curves+=("$OUT/curves/$run.json"); done
"$PY" -m memroute.curve --compare "${curves[@]}" --set dev --out "$OUT/curves/sweep"
