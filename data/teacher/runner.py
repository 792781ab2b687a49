"""Run teacher tasks: bounded concurrency, answer validation with bounded retries, shard by shard.

Each task is one item (a scenario to write, a conversation to label) with a deterministic id. Its answer is
validated by the task's `build`; a bad answer is asked again, up to `max_answer_attempts` requests, then the
item is recorded as a rejected row with every reason. Items whose requests failed for good (retries used up),
or that the budget stopped, are not recorded: they stay pending, are counted in the summary, and a re-run
picks them up.
"""

from __future__ import annotations

import sys
from concurrent.futures import CancelledError, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Sequence

from data.schema import Example, ExampleError
from data.teacher.answers import AnswerError
from data.teacher.client import BudgetExhausted, ChatResult, FatalApiError, RequestFailed, TeacherClient
from data.teacher.config import TeacherConfig
from data.teacher.shards import ShardStore

RAW_KEEP = 2000  # characters of the last bad answer kept on a rejected row


@dataclass
class Task:
    id: str
    messages: list[dict[str, str]]
    build: Callable[[ChatResult], Example]  # raises AnswerError / ExampleError for an unusable answer
    input: dict  # what a rejected row records about the item (its spec or conversation)
    max_tokens: int
    temperature: float
    est_output_tokens: int = 0  # for the dry-run estimate
    response_format: dict | None = None


@dataclass
class RunSummary:
    total: int
    already_done: int
    accepted: int = 0
    rejected: int = 0
    failed: int = 0  # requests failed for good; pending for the next run
    stopped: str = ""  # why the run stopped early (budget), "" when it went through
    failures: list[str] = field(default_factory=list)

    @property
    def pending(self) -> int:
        return self.total - self.already_done - self.accepted - self.rejected

    @property
    def complete(self) -> bool:
        return self.pending == 0


def solve(task: Task, client: TeacherClient, attempts: int, stage: str) -> Example | dict:
    """An accepted Example, or a rejected row after `attempts` unusable answers."""
    reasons, raw = [], ""
    for _ in range(attempts):
        result = client.chat(task.messages, max_tokens=task.max_tokens, temperature=task.temperature,
                             response_format=task.response_format)
        raw = result.text
        try:
            return task.build(result)
        except (AnswerError, ExampleError) as e:
            reasons.append(str(e))
    return {"id": task.id, "stage": stage, "reason": reasons[-1], "attempts": reasons, "raw": raw[:RAW_KEEP],
            "input": task.input}


def run_tasks(tasks: Sequence[Task], client: TeacherClient, store: ShardStore, cfg: TeacherConfig, stage: str,
              log=None) -> RunSummary:
    log = log or (lambda msg: print(msg, file=sys.stderr))
    done = store.done_ids()
    pending = [t for t in tasks if t.id not in done]
    summary = RunSummary(total=len(tasks), already_done=len(tasks) - len(pending))
    if summary.already_done:
        log(f"{stage}: {summary.already_done} of {len(tasks)} items already done in {store.out_dir}; skipping them")
    budget = client.budget
    recorded = (0, 0, 0, 0)
    with ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix=f"teacher-{stage}") as pool:
        for start in range(0, len(pending), cfg.shard_size):
            chunk = pending[start:start + cfg.shard_size]
            futures = [pool.submit(solve, t, client, cfg.max_answer_attempts, stage) for t in chunk]
            accepted, rejected, fatal = [], [], None
            for future in futures:
                try:
                    outcome = future.result()
                except KeyboardInterrupt:  # do not let the pool send the rest of the chunk on shutdown
                    for other in futures:
                        other.cancel()
                    raise
                except BudgetExhausted as e:
                    summary.stopped = str(e)
                    continue
                except RequestFailed as e:
                    summary.failed += 1
                    summary.failures.append(str(e))
                    continue
                except FatalApiError as e:
                    fatal = fatal or e
                    for other in futures:
                        other.cancel()
                    continue
                except CancelledError:  # not started when a fatal error stopped the chunk
                    continue
                (accepted if isinstance(outcome, Example) else rejected).append(outcome)
            if accepted or rejected:  # keep everything that finished, even when the run stops here
                index = store.write_shard(accepted, rejected)
                summary.accepted += len(accepted)
                summary.rejected += len(rejected)
                log(f"{stage}: shard {index}: {len(accepted)} accepted, {len(rejected)} rejected "
                    f"({summary.already_done + summary.accepted + summary.rejected}/{len(tasks)} done; "
                    f"{budget.summary()})")
            now = (budget.requests, budget.retries, budget.input_tokens, budget.output_tokens)
            if now != recorded:
                store.add_usage(*(a - b for a, b in zip(now, recorded)), cfg.price_input_per_mtok,
                                cfg.price_output_per_mtok)
                recorded = now
            if fatal is not None:
                raise fatal
            if summary.stopped:
                break
            if not accepted and not rejected and len(chunk) > 1:  # a whole chunk failed: the API is down
                summary.stopped = f"every request of a chunk of {len(chunk)} failed; last: {summary.failures[-1]}"
                break
    return summary
