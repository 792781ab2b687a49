import pytest

from data.parser import format_answer, parse_answer
from data.prompt import SYSTEM_PROMPT, completion_text, conversation_text, prompt_messages, render_prompt
from data.taxonomy import LABELS, NONE


@pytest.mark.parametrize("text, expected", [
    ("company.brand_core, user.role_context", ["company.brand_core", "user.role_context"]),
    ("User.Role_Context ,COMPANY.BRAND_CORE", ["company.brand_core", "user.role_context"]),
    ("Categories: user.role_context", ["user.role_context"]),
    ("memory categories - user.role_context; company.tools_config", ["company.tools_config", "user.role_context"]),
    ("Labels: user.role_context\ncompany.brand_core", ["company.brand_core", "user.role_context"]),
    ("- user.role_context\n- company.brand_core\n", ["company.brand_core", "user.role_context"]),
    ("1. user.role_context\n2) user.session_history", ["user.role_context", "user.session_history"]),
    ("[\"user.role_context\", 'company.brand_core']", ["company.brand_core", "user.role_context"]),
    ("user . role_context", ["user.role_context"]),
    ("user.role context.", ["user.role_context"]),
    ("none", [NONE]),
    ("None, user.role_context", ["user.role_context"]),
    ("user.role_context, user.role_context", ["user.role_context"]),
])
def test_parser_accepts_variants(text, expected):
    parsed = parse_answer(text)
    assert parsed.labels == expected and parsed.parsed and parsed.unknown == []


def test_parser_reports_unknown_pieces():
    parsed = parse_answer("user.role_context, company.vibes, maybe something")
    assert parsed.labels == ["user.role_context"] and parsed.parsed
    assert parsed.unknown == ["company.vibes", "maybe something"]
    for text in ["", None, "nothing here", "company.vibes"]:
        p = parse_answer(text)
        assert not p.parsed and p.labels == []


def test_format_answer_round_trips():
    for label in LABELS:
        assert parse_answer(format_answer([label])).labels == [label]
    assert format_answer(["user.role_context", "company.brand_core"]) == "company.brand_core, user.role_context"


class FakeTokenizer:
    """Stands in for a chat tokenizer: renders messages in the ChatML layout SmolLM2 uses."""
    chat_template = "chatml"
    eos_token = "<|im_end|>"

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        assert tokenize is False
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


CONV = [{"role": "user", "content": "I lead growth at Acme."}, {"role": "assistant", "content": "Noted."}]


def test_prompt_renders_system_taxonomy_and_conversation():
    text = render_prompt(FakeTokenizer(), CONV)
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")
    for label in LABELS:
        assert label in SYSTEM_PROMPT
    assert "USER: I lead growth at Acme.\nASSISTANT: Noted." in text
    assert conversation_text(CONV) in prompt_messages(CONV)[1]["content"]
    assert completion_text(FakeTokenizer(), ["user.role_context"]) == "user.role_context<|im_end|>"


def test_prompt_refuses_tokenizer_without_chat_template():
    tok = FakeTokenizer()
    tok.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        render_prompt(tok, CONV)


def test_format_answer_in_a_given_label_order_parses_back_to_the_same_set():
    labels = ["user.strategic_approach", "company.brand_core", "user.role_context"]
    order = ["user.strategic_approach", "user.role_context"]  # labels not in the order come after, taxonomy order
    text = format_answer(labels, order)
    assert text == "user.strategic_approach, user.role_context, company.brand_core"
    assert parse_answer(text).labels == parse_answer(format_answer(labels)).labels


def test_sft_answers_in_frequency_order(tmp_path):
    import json

    from learner.config import SFTConfig
    from learner.sft_data import frequency_order, load_sft_examples
    from memroute.core.models import load_tokenizer

    conv = [{"role": "user", "content": "We post on LinkedIn every Tuesday; I run the brand team."}]
    rows = [{"id": f"r{i}", "conversation": conv, "categories": cats} for i, cats in enumerate(
        [["company.brand_core", "user.role_context"], ["user.role_context"], ["user.role_context"], ["none"]])]
    path = tmp_path / "four.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tok = load_tokenizer("tiny")
    from data.schema import read_examples

    order = frequency_order(read_examples(path))
    # role_context 3, then brand_core and none 1 each (taxonomy order between them), then the unseen labels
    assert order[:3] == ["user.role_context", "company.brand_core", "none"]
    assert sorted(order) == sorted(LABELS)

    def first_answer(label_order):
        ex = load_sft_examples(path, tok, 1024, label_order=label_order)[0]
        return tok.decode(ex.input_ids[ex.n_prompt:], skip_special_tokens=True)

    assert first_answer("taxonomy").startswith("company.brand_core, user.role_context")
    assert first_answer("frequency").startswith("user.role_context, company.brand_core")
    with pytest.raises(ValueError, match="label_order"):
        load_sft_examples(path, tok, 1024, label_order="alphabetical")
    with pytest.raises(ValueError, match="label_order"):
        SFTConfig(label_order="alphabetical")
