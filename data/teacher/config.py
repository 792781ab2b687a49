"""TeacherConfig: every knob of the teacher pipeline, with defaults that run (configs/teacher.yaml mirrors them).

The API key is never part of the config: the config only names the environment variable that holds it, so a
config file or a dumped config (metrics.json) can never leak it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from data.embedded.bank import INDUSTRIES
from memroute.core.config import ConfigError
from memroute.core.errors import UsageError

# Distractor material a scenario may ask for: turns that carry no memory signal, so the labeller has to tell
# signal from noise (the seed corpus had them too).
DISTRACTORS: tuple[str, ...] = (
    "a bit of small talk (the weather, the weekend, a coffee break)",
    "a one-off factual question about a marketing term, answered briefly",
    "a throwaway request (a synonym, a quick rewrite of one sentence) with no lasting signal",
    "a short tangent about an unrelated news item",
)


@dataclass
class GenerateSettings:
    n_conversations: int = 60
    # The embedded bank's 15 industries; a YAML list replaces them (new industries need no code).
    industries: tuple[str, ...] = tuple(i.name for i in INDUSTRIES)
    min_turns: int = 3
    max_turns: int = 10
    max_labels: int = 3  # a scenario targets 1..max_labels real labels
    none_every: int = 8  # every n-th scenario is a `none` conversation (0: never)
    p_distractor: float = 0.4  # chance a scenario gets 1-2 distractor turns
    seed: int = 0
    temperature: float = 0.8
    max_tokens: int = 1500
    min_turn_ratio: float = 0.5  # reject a conversation shorter than this share of the turns asked for
    est_output_tokens_per_turn: int = 60  # dry-run estimate only


@dataclass
class LabelSettings:
    temperature: float = 0.0
    max_tokens: int = 400
    est_output_tokens: int = 120  # dry-run estimate only


@dataclass
class EvalSettings:
    temperature: float = 0.0
    max_tokens: int = 64
    est_output_tokens: int = 16  # dry-run estimate only


@dataclass
class CoverageTargets:
    per_label: int = 10
    per_industry: int = 3
    per_length_bucket: int = 10
    # Upper bounds (in turns) of the length buckets; (4, 8) gives 1-4, 5-8 and 9+.
    length_buckets: tuple[int, ...] = (4, 8)


@dataclass
class TeacherConfig:
    model: str = "command-r-plus-08-2024"
    base_url: str | None = None  # None: Cohere's production API; tests point it at a fake server
    api_key_env: str = "CO_API_KEY"  # the ONLY place the key is read from
    timeout_s: float = 60.0  # per HTTP request
    concurrency: int = 4  # requests in flight at once
    max_retries: int = 5  # transport retries per request (429 / 5xx / timeout / dropped connection)
    backoff_base_s: float = 1.0  # retry n waits uniform(0, min(cap, base * 2**n)), or Retry-After if sent
    backoff_cap_s: float = 30.0
    max_answer_attempts: int = 3  # requests per item when answers fail validation, then the item is rejected
    request_budget: int | None = 2000  # HTTP requests per run, retries included (None: unlimited)
    token_budget: int | None = 3_000_000  # input + output tokens per run (None: unlimited)
    price_input_per_mtok: float = 2.50  # USD per million tokens, for estimates and usage.json
    price_output_per_mtok: float = 10.00
    dry_run: bool = False
    out_dir: str = "runs/teacher"  # generate/ label/ eval/ go below it unless --out is given
    shard_size: int = 20  # items per shard: the most work a kill can lose
    dedup_threshold: float = 0.8  # word-shingle Jaccard at or above which a conversation is a near-duplicate
    dedup_shingle_words: int = 3
    generate: GenerateSettings = field(default_factory=GenerateSettings)
    label: LabelSettings = field(default_factory=LabelSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)
    coverage: CoverageTargets = field(default_factory=CoverageTargets)

    def __post_init__(self):
        checks = [
            (self.concurrency >= 1, "concurrency must be at least 1"),
            (self.max_retries >= 0, "max_retries must be 0 or more"),
            (self.max_answer_attempts >= 1, "max_answer_attempts must be at least 1"),
            (self.shard_size >= 1, "shard_size must be at least 1"),
            (0.0 < self.dedup_threshold <= 1.0, "dedup_threshold must be in (0, 1]"),
            (self.backoff_base_s >= 0 and self.backoff_cap_s >= 0, "backoff times must be 0 or more"),
            (1 <= self.generate.min_turns <= self.generate.max_turns, "generate.min_turns must be 1..max_turns"),
            (self.generate.max_labels >= 1, "generate.max_labels must be at least 1"),
            (bool(self.generate.industries), "generate.industries must not be empty"),
            (list(self.coverage.length_buckets) == sorted(set(self.coverage.length_buckets)),
             "coverage.length_buckets must be increasing turn counts, e.g. [4, 8]"),
        ]
        for ok, problem in checks:
            if not ok:
                raise ConfigError(f"teacher config: {problem}")


class MissingApiKeyError(UsageError, RuntimeError):
    """No API key in the environment variable the config names."""


def api_key(cfg: TeacherConfig) -> str:
    """The key from the environment variable the config names, or a clear error naming that variable."""
    key = os.environ.get(cfg.api_key_env, "").strip()
    if not key:
        raise MissingApiKeyError(
            f"no Cohere API key: set the environment variable {cfg.api_key_env} (the teacher reads its key only "
            f"from there; config key api_key_env names the variable), or use --dry-run to estimate the cost "
            f"without one")
    return key
