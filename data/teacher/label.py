"""Conversations -> labelling requests -> validated labels with the teacher's rationale.

The teacher is asked for JSON `{"labels": [...], "rationale": "..."}` under a system prompt that explains every
category (the router's own prompt lists names only; the teacher gets the descriptions because it is not
fine-tuned). The answer is checked with the schema's own label validation (unknown label, `none` mixed with
others, duplicates, empty list), so the teacher is held to exactly the rules the dataset is.
"""

from __future__ import annotations

from typing import Sequence

from data.prompt import conversation_text
from data.schema import Example, make_example, validate_categories
from data.teacher.answers import AnswerError, json_answer
from data.teacher.client import ChatResult
from data.teacher.config import TeacherConfig
from data.teacher.runner import Task
from data.taxonomy import CATEGORIES, LABELS, NONE

_CATEGORY_LINES = "\n".join(f"- {c.name} ({c.scope}, {c.horizon}-lived): {c.description}" for c in CATEGORIES)

SYSTEM = (
    "You label conversations between a marketing professional (USER) and an AI marketing assistant (ASSISTANT) "
    "with the memory categories the conversation should be stored under. Categories:\n"
    f"{_CATEGORY_LINES}\n"
    "Rules: choose every category for which the user's messages carry clear, lasting information, and no "
    f"others. `{NONE}` means nothing is worth remembering and is never combined with another category. "
    'Answer with a JSON object only: {"labels": ["<category>", ...], "rationale": "<one or two sentences: '
    'which message supports each label>"}'
)

LABELS_SCHEMA = {
    "type": "object",
    "properties": {"labels": {"type": "array", "items": {"type": "string", "enum": list(LABELS)}},
                   "rationale": {"type": "string"}},
    "required": ["labels", "rationale"],
}


def label_messages(conversation: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Conversation:\n{conversation_text(conversation)}\n\nJSON answer?"}]


def parse_labels(result: ChatResult, where: str) -> tuple[list[str], str]:
    """(labels in taxonomy order, rationale) from an answer, or AnswerError / ExampleError naming the fault."""
    obj = json_answer(result.text, result.finish_reason)
    if "labels" not in obj:
        raise AnswerError(f"answer has no 'labels' key (keys: {sorted(obj)})")
    labels = validate_categories(obj["labels"], where)
    rationale = obj.get("rationale")
    if not isinstance(rationale, str) or not rationale.strip():
        raise AnswerError("answer has no rationale (a non-empty string is required)")
    return labels, rationale.strip()


def build_labelled(ex: Example, result: ChatResult, cfg: TeacherConfig) -> Example:
    labels, rationale = parse_labels(result, where=f"teacher answer for {ex.id}")
    metadata = {**ex.metadata, "rationale": rationale, "teacher_model": cfg.model,
                "input_labels": list(ex.categories), "input_source": ex.source}
    return make_example(ex.id, ex.conversation, labels, source=f"cohere-teacher:{cfg.model}", metadata=metadata)


def label_tasks(examples: Sequence[Example], cfg: TeacherConfig) -> list[Task]:
    """One task per input row, keyed by the row's id (ids are unique within a dataset: read_examples checks)."""
    def task(ex: Example) -> Task:
        return Task(id=ex.id, messages=label_messages(ex.conversation),
                    build=lambda result: build_labelled(ex, result, cfg),
                    input={"conversation": ex.conversation, "metadata": ex.metadata},
                    max_tokens=cfg.label.max_tokens, temperature=cfg.label.temperature,
                    est_output_tokens=cfg.label.est_output_tokens,
                    response_format={"type": "json_object", "json_schema": LABELS_SCHEMA})

    return [task(ex) for ex in examples]
