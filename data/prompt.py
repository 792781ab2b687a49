"""The one prompt: how a conversation becomes model input, and what the model is trained to answer.

SFT, rollouts, evaluation and serving all call `render_prompt`, so a model never sees a prompt at serving time
that differs from the one it was trained on. The conversation is quoted inside a single user message (it is
the material to classify, not a chat with the router), under a system message that lists the labels.
"""

from __future__ import annotations

from data.parser import format_answer
from data.taxonomy import LABELS, NONE
from memroute.core.errors import InputError

# Labels only, no descriptions: the descriptions (taxonomy.CATEGORIES) cost ~350 tokens per prompt, which is
# most of the training compute on short conversations, and a fine-tuned router does not need them.
SYSTEM_PROMPT = (
    "You route marketing conversations to memory. Answer with the memory categories the conversation should "
    f"be stored under, comma-separated, chosen from: {', '.join(LABELS)}. `{NONE}` means nothing is worth "
    "remembering and is never combined with another label. Answer with the labels only."
)

_SPEAKER = {"user": "USER", "assistant": "ASSISTANT"}


def conversation_text(conversation: list[dict[str, str]]) -> str:
    """`USER: ...` / `ASSISTANT: ...` lines, the layout the reference corpus and its test prompts use."""
    return "\n".join(f"{_SPEAKER[turn['role']]}: {turn['content']}" for turn in conversation)


def prompt_messages(conversation: list[dict[str, str]]) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"Conversation:\n{conversation_text(conversation)}\n\nMemory categories?"},
    ]


def render_prompt(tokenizer, conversation: list[dict[str, str]]) -> str:
    """Model input text for a conversation, through the tokenizer's own chat template."""
    if getattr(tokenizer, "chat_template", None) is None:
        raise InputError(f"tokenizer {getattr(tokenizer, 'name_or_path', '?')!r} has no chat template; "
                         "memroute needs an instruct/chat model's tokenizer")
    return tokenizer.apply_chat_template(prompt_messages(conversation), tokenize=False, add_generation_prompt=True)


def completion_text(tokenizer, labels, order: Sequence[str] | None = None) -> str:
    """The SFT target: the answer (taxonomy order, or `order`) followed by the end-of-turn token the chat
    template expects."""
    return format_answer(labels, order) + (tokenizer.eos_token or "")


# The follow-up question of a rationale turn (`rationale_turn_texts`).
RATIONALE_QUESTION = "Why these categories?"


def rationale_turn_texts(tokenizer, conversation: list[dict[str, str]], labels, rationale: str) -> tuple[str, str]:
    """(bridge, rationale) texts that extend an SFT example with the teacher's reason for its labels, as a second
    exchange after the answer: the bridge is the template text from the answer's end-of-turn token to the next
    assistant turn (a user turn asking `RATIONALE_QUESTION`), the rationale that turn's content and end token.

    Training on it (learner.sft_data, `rationale_weight`) teaches the router why the teacher chose the labels;
    serving never sees it, since the answer ends at the first end-of-turn token.
    """
    first = render_prompt(tokenizer, conversation) + completion_text(tokenizer, labels)
    messages = prompt_messages(conversation) + [
        {"role": "assistant", "content": format_answer(labels)},
        {"role": "user", "content": RATIONALE_QUESTION},
    ]
    both = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if not both.startswith(first):
        raise InputError(f"tokenizer {getattr(tokenizer, 'name_or_path', '?')!r}: its chat template does not render "
                         "an answered turn as prompt + answer + end token, so a rationale turn cannot follow it")
    return both[len(first):], rationale.strip() + (tokenizer.eos_token or "")


def example_token_ids(tokenizer, example, order: Sequence[str] | None = None) -> tuple[list[int], list[int]]:
    """(prompt ids, answer ids) of a labelled example: the SFT training pair, and the RL loop's probe sequence."""
    prompt = tokenizer(render_prompt(tokenizer, example.conversation), add_special_tokens=False)["input_ids"]
    answer = tokenizer(completion_text(tokenizer, example.categories, order), add_special_tokens=False)["input_ids"]
    return list(prompt), list(answer)
