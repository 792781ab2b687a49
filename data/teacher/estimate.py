"""Dry-run estimates: requests, tokens and cost of the work still pending, with no network call and no key.

Input tokens are counted as characters / 4 (a fair rate for English with Cohere's tokenizer, and no tokenizer
download needed); output tokens use the per-stage estimates in the config. Retries and rejected answers cost
extra, so the figure is a floor: the budget in the config is the hard limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from data.teacher.config import TeacherConfig

CHARS_PER_TOKEN = 4


@dataclass
class Estimate:
    requests: int
    input_tokens: int
    output_tokens: int
    cost_usd: float

    def line(self, cfg: TeacherConfig, what: str) -> str:
        text = (f"dry run ({what}): {self.requests} requests, ~{self.input_tokens:,} input + ~{self.output_tokens:,} "
                f"output tokens, estimated cost ${self.cost_usd:.2f} ({cfg.model} at ${cfg.price_input_per_mtok:.2f}"
                f" / ${cfg.price_output_per_mtok:.2f} per million input / output tokens); no request was sent")
        over = []
        if cfg.request_budget is not None and self.requests > cfg.request_budget:
            over.append(f"request_budget={cfg.request_budget}")
        if cfg.token_budget is not None and self.input_tokens + self.output_tokens > cfg.token_budget:
            over.append(f"token_budget={cfg.token_budget:,}")
        if over:
            text += f"\nwarning: the estimate exceeds {' and '.join(over)}: a real run would stop there"
        return text


def estimate(messages_per_request: Sequence[list[dict[str, str]]], output_tokens: Sequence[int],
             cfg: TeacherConfig) -> Estimate:
    input_tokens = sum(sum(len(m["content"]) for m in messages) // CHARS_PER_TOKEN + 4 * len(messages)
                       for messages in messages_per_request)
    out = sum(output_tokens)
    cost = (input_tokens * cfg.price_input_per_mtok + out * cfg.price_output_per_mtok) / 1e6
    return Estimate(len(messages_per_request), input_tokens, out, cost)
