#!/usr/bin/env bash
# Behaviour unchanged by the issue-17 redesign: the tiny-model quickstart and a seeded tiny RL run (the RL config's
# defaults with tests/test_rl.py's tiny overrides, a fresh adapter), the same
# arguments in two trees (the commit before the redesign and this one), then their metrics files compared with
# the timing fields left out (compare.py).
#   git worktree add --detach /tmp/wt-base 574ad13
#   bash docs/results/arch_before_after/run.sh /tmp/wt-base . /tmp/archcmp
set -euo pipefail
BASE=$(cd "$1" && pwd); NEW=$(cd "$2" && pwd); OUT=${3:-/tmp/archcmp}
PY=${PYTHON:-$NEW/.venv/bin/python}
TINY_RL=(learner.model.name=tiny learner.model.dtype=float32 learner.lora.rank=8 learner.lora.alpha=16
         learner.optim.lr=0.05 rollout.engine.model=tiny rollout.engine.max_model_len=1024 rollout.engine.kv_cache_gib=1
         rollout.n=4 rollout.max_tokens=6 rollout.reward=toy_low_ids prompts_per_step=2 eval_limit=4)
for side in base new; do
  tree=$BASE; [ "$side" = new ] && tree=$NEW
  mkdir -p "$OUT/$side"
  # every import from this tree, not from the installed (editable) checkout
  ( cd "$tree" && export PYTHONPATH="$tree" &&
    "$PY" -c "import learner.rl, sys; assert learner.rl.__file__.startswith('$tree'), learner.rl.__file__" &&
    { [ -f "$OUT/$side/qs/summary.json" ] ||  # done by an earlier try: kept
    "$PY" -m memroute.cli quickstart --model tiny --out "$OUT/$side/qs" --limit 4 --no-serve \
      --sft max_steps=2 cpus_per_worker=1 --rl steps=2 rollout.n=4 rollout.max_tokens=8 prompts_per_step=2 \
      rollout.reward=toy_low_ids rollout.engine.kv_cache_gib=1 learner.lora.rank=32 > "$OUT/$side/qs.log" 2>&1; } &&
    rm -rf "$OUT/$side/rl" &&
    "$PY" -m learner.rl "${TINY_RL[@]}" steps=4 checkpoint_every=2 eval_every=2 run_dir="$OUT/$side/rl" \
      > "$OUT/$side/rl.log" 2>&1 )
done
"$PY" "$NEW/docs/results/arch_before_after/compare.py" "$OUT/base" "$OUT/new"
