"""`memroute teacher eval`: the teacher as a router, a baseline beside our model.

The teacher gets exactly our router's input (data.prompt.prompt_messages), its answer goes through our one
parser (data.parser.parse_answer) and is scored with data.metrics, so its numbers compare one to one with
`memroute eval`. Answers are not retried for content: an unparseable answer is the teacher's own failure and
counts as such (parse_failure_rate). Rows whose request failed for good, or that the budget stopped, are left
out of the scores and listed in metrics.json under "skipped".

Writes into --out: predictions.jsonl, metrics.json, metrics.md (atomic).
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from data.metrics import Prediction, align, compute_metrics, write_eval_outputs
from data.parser import parse_answer
from data.prompt import prompt_messages
from data.schema import Example
from data.teacher.client import BudgetExhausted, RequestFailed, TeacherClient
from data.teacher.config import TeacherConfig
from memroute.core.errors import MemrouteError


class NothingScoredError(MemrouteError, RuntimeError):
    """Every request of a teacher evaluation failed: there is nothing to score."""


def predict(client: TeacherClient, ex: Example, cfg: TeacherConfig) -> Prediction:
    result = client.chat(prompt_messages(ex.conversation), max_tokens=cfg.eval.max_tokens,
                         temperature=cfg.eval.temperature)
    return Prediction(ex.id, parse_answer(result.text).labels, raw=result.text, model=f"cohere:{cfg.model}")


def run_teacher_eval(cfg: TeacherConfig, examples: Sequence[Example], data_name: str, out: str | Path,
                     client: TeacherClient | None = None, log=None) -> dict:
    log = log or (lambda msg: print(msg, file=sys.stderr))
    client = client or TeacherClient(cfg, log=log)
    predictions: list[Prediction] = []
    skipped: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix="teacher-eval") as pool:
        futures = [(ex, pool.submit(predict, client, ex, cfg)) for ex in examples]
        for ex, future in futures:  # a FatalApiError propagates: no later request would get through either
            try:
                predictions.append(future.result())
            except (BudgetExhausted, RequestFailed) as e:
                skipped[ex.id] = str(e)
    if not predictions:
        raise NothingScoredError(f"no example was scored: {next(iter(skipped.values()), 'no examples')}")
    scored = [ex for ex in examples if ex.id not in skipped]
    metrics = compute_metrics(align(predictions, scored))
    metrics["config"] = asdict(cfg)  # holds the key's variable name, never the key
    metrics["data"] = data_name
    metrics["skipped"] = skipped
    metrics["usage"] = {"requests": client.budget.requests, "retries": client.budget.retries,
                        "input_tokens": client.budget.input_tokens, "output_tokens": client.budget.output_tokens}
    write_eval_outputs(out, predictions, metrics, f"cohere:{cfg.model} on {Path(data_name).name}")
    return metrics
