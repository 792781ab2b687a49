"""Scenario specs -> conversation-writing requests -> validated Examples.

A scenario spec says what to write: the industry, the labels whose memory signal the user's turns must carry,
the number of turns and any distractor turns (no signal). Specs are planned deterministically: spec i depends
only on (seed, i), so raising n_conversations extends the plan without changing the specs already written, and
a spec's id is a hash of its content. Labels and industries are dealt round-robin so the plan itself meets
the coverage targets; the teacher's label pass (label.py) then checks what was actually written.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass

from data.schema import ROLES, Example, make_example
from data.teacher.answers import AnswerError, json_answer
from data.teacher.client import ChatResult
from data.teacher.config import DISTRACTORS, GenerateSettings, TeacherConfig
from data.teacher.runner import Task
from data.taxonomy import BY_NAME, NONE, REAL_LABELS

SYSTEM = (
    "You write realistic, varied conversations between a marketing professional (the user) and an AI "
    "marketing assistant (the assistant). They are training data for a model that decides what an assistant "
    "should remember about the company and the person. Answer with a JSON object only."
)

# Asks the model for exactly this shape; the server enforces it where JSON schemas are supported.
CONVERSATION_SCHEMA = {
    "type": "object",
    "properties": {"conversation": {"type": "array", "items": {
        "type": "object",
        "properties": {"role": {"type": "string", "enum": list(ROLES)}, "content": {"type": "string"}},
        "required": ["role", "content"]}}},
    "required": ["conversation"],
}


@dataclass(frozen=True)
class ScenarioSpec:
    index: int
    industry: str
    labels: tuple[str, ...]
    turns: int
    distractors: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        payload = json.dumps(asdict(self), sort_keys=True)
        return "teacher-gen-" + hashlib.sha1(payload.encode()).hexdigest()[:16]


def plan_spec(s: GenerateSettings, i: int) -> ScenarioSpec:
    rng = random.Random(f"{s.seed}:{i}")
    industry = s.industries[i % len(s.industries)]
    turns = rng.randint(s.min_turns, s.max_turns)
    distractors = tuple(rng.sample(DISTRACTORS, rng.randint(1, 2))) if rng.random() < s.p_distractor else ()
    if s.none_every and i % s.none_every == s.none_every - 1:
        return ScenarioSpec(i, industry, (NONE,), turns, distractors)
    # The primary label cycles over the real labels, counting only the specs that are not `none` rows, so every
    # label leads the same number of scenarios; the others are drawn at random.
    real_index = i - ((i + 1) // s.none_every if s.none_every else 0)
    primary = REAL_LABELS[(real_index + s.seed) % len(REAL_LABELS)]
    k = rng.randint(1, min(s.max_labels, len(REAL_LABELS)))
    extra = rng.sample([label for label in REAL_LABELS if label != primary], k - 1)
    labels = tuple(label for label in REAL_LABELS if label in {primary, *extra})  # taxonomy order
    return ScenarioSpec(i, industry, labels, turns, distractors)


def plan_specs(s: GenerateSettings) -> list[ScenarioSpec]:
    return [plan_spec(s, i) for i in range(s.n_conversations)]


def generation_messages(spec: ScenarioSpec) -> list[dict[str, str]]:
    if spec.labels == (NONE,):
        signal = (f"Nothing in it may be worth remembering: {BY_NAME[NONE].description} The user must reveal "
                  "nothing lasting about their company, their role or how they like to work.")
    else:
        wanted = "\n".join(f"- {BY_NAME[label].description}" for label in spec.labels)
        signal = ("The user's messages must carry clear, concrete information of each of these kinds, and of no "
                  f"other kind worth remembering:\n{wanted}")
    distract = "".join(f"\nAlso include {d}; it must carry no lasting information." for d in spec.distractors)
    user = (f"Write a conversation of exactly {spec.turns} turns, alternating user and assistant, starting with "
            f"the user. Industry: {spec.industry}. Invent a company name and specific details (products, "
            f"channels, numbers, people).\n{signal}{distract}\n"
            "Never mention memory, categories or labels. Write natural, specific messages of one to four "
            'sentences.\nAnswer as JSON: {"conversation": [{"role": "user", "content": "..."}, '
            '{"role": "assistant", "content": "..."}, ...]}')
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def build_example(spec: ScenarioSpec, result: ChatResult, cfg: TeacherConfig) -> Example:
    """Validate a written conversation (JSON, roles, non-empty turns, length) into an Example."""
    obj = json_answer(result.text, result.finish_reason)
    if "conversation" not in obj:
        raise AnswerError(f"answer has no 'conversation' key (keys: {sorted(obj)})")
    ex = make_example(spec.id, obj["conversation"], list(spec.labels), source=f"cohere-teacher:{cfg.model}",
                      metadata={"industry": spec.industry, "spec_index": spec.index, "spec_turns": spec.turns,
                                "distractors": list(spec.distractors), "teacher_model": cfg.model})
    shortest = max(1, int(spec.turns * cfg.generate.min_turn_ratio + 0.5))
    if len(ex.conversation) < shortest:
        raise AnswerError(f"conversation has {len(ex.conversation)} turns; the spec asked for {spec.turns} "
                          f"(at least {shortest} accepted)")
    ex.metadata["turns"] = len(ex.conversation)
    return ex


def generation_tasks(cfg: TeacherConfig) -> list[Task]:
    def task(spec: ScenarioSpec) -> Task:
        return Task(id=spec.id, messages=generation_messages(spec),
                    build=lambda result: build_example(spec, result, cfg),
                    input={"spec": asdict(spec)}, max_tokens=cfg.generate.max_tokens,
                    temperature=cfg.generate.temperature,
                    est_output_tokens=cfg.generate.est_output_tokens_per_turn * spec.turns,
                    response_format={"type": "json_object", "json_schema": CONVERSATION_SCHEMA})

    return [task(spec) for spec in plan_specs(cfg.generate)]

