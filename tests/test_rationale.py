"""SFT with the teacher's rationale as a weighted second turn (`rationale_weight`, learner.sft_data), on the tiny
model: what the example holds, that the answer's loss is untouched by the rationale after it, and that the plain,
shared-prefix and cached-trunk paths weigh the tokens alike."""

from __future__ import annotations

import json

import pytest
import torch

from data.embedded import TRAIN_PATH
from data.prompt import RATIONALE_QUESTION
from learner.config import SFTConfig
from learner.sft import answer_loss_fn, lowest_adapted_layer, shared_prefix_len
from learner.sft_data import collate, load_sft_examples, plan_fingerprint
from memroute.core.models import load_tokenizer
from tests.test_trunk_cache import assert_close, loss_and_grads, policy

REASONS = ["The user states how their team approves copy.", "", "Budget figures for the quarter are stated.",
           "Nothing here lasts beyond the session.", "The brand voice is described at length.", "Tools are named."]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    rows = [json.loads(line) for line in TRAIN_PATH.read_text().splitlines()[:6]]
    for row, reason in zip(rows, REASONS):  # the second row has an empty rationale: trained on its answer only
        row.setdefault("metadata", {})["label_rationale"] = reason
    path = tmp_path_factory.mktemp("rationale") / "six.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def load(path, weight):
    return load_sft_examples(path, load_tokenizer("tiny"), 1024, rationale_weight=weight)


def test_the_example_goes_on_with_the_question_and_the_rationale(data_file):
    tok = load_tokenizer("tiny")
    plain, with_reason = load(data_file, 0.0), load(data_file, 0.2)
    assert all(ex.weights is None for ex in plain)
    assert with_reason[1] == plain[1]  # empty rationale: unchanged
    for p, r, reason in zip(plain, with_reason, REASONS):
        if not reason:
            continue
        assert r.input_ids[:p.n_tokens] == p.input_ids and r.n_prompt == p.n_prompt
        tail = tok.decode(r.input_ids[p.n_tokens:])
        assert RATIONALE_QUESTION in tail and reason in tail
        weights = r.weights
        assert len(weights) == r.n_answer
        assert weights[:p.n_answer] == (1.0,) * p.n_answer  # the answer weighs as before
        assert set(weights[p.n_answer:]) == {0.0, 0.2}  # question template 0, rationale 0.2
        assert r.weight_total == pytest.approx(p.n_answer + 0.2 * weights.count(0.2))
    # another weight is another data plan: a run cannot resume across a change of it
    assert len({plan_fingerprint(load(data_file, w), 2, 0) for w in (0.0, 0.1, 0.2)}) == 3


def test_the_answer_loss_is_unchanged_and_the_rationale_adds_linearly(data_file):
    model = policy()
    idx = [0, 2, 3]
    losses = {}
    for w in (0.0, 0.25, 0.5):
        examples = load(data_file, w)
        with torch.no_grad():
            losses[w] = answer_loss_fn(model, examples, 0, "cpu")(idx).item()
    # the answer comes before the rationale, so its tokens' loss cannot see it: w = 0 is the plain example's loss
    # (its rationale tokens weigh nothing), and each rationale token adds w times its cross-entropy
    assert losses[0.25] > losses[0.0]
    assert losses[0.5] - losses[0.0] == pytest.approx(2 * (losses[0.25] - losses[0.0]), rel=1e-4)
    plain = load_sft_examples(data_file, load_tokenizer("tiny"), 1024)
    with torch.no_grad():
        assert answer_loss_fn(model, plain, 0, "cpu")(idx).item() == pytest.approx(losses[0.0], rel=1e-5)


def test_collate_carries_the_weights(data_file):
    examples = load(data_file, 0.3)
    mb = collate(examples, [0, 1], pad_id=0)
    for b, ex in enumerate(examples[:2]):
        row = mb["weights"][b]
        assert row[:ex.n_prompt].sum() == 0 and row[ex.n_tokens:].sum() == 0
        assert row.sum().item() == pytest.approx(ex.weight_total, rel=1e-5)


def test_shared_prefix_and_cached_trunk_weigh_tokens_as_the_plain_path(data_file, tmp_path):
    from learner.trunk_cache import open_cache

    examples = load(data_file, 0.2)
    idx = [0, 1, 4, 5]  # rows with and without a rationale in one micro-batch
    model = policy()
    P = shared_prefix_len(examples)
    ref = loss_and_grads(model, answer_loss_fn(model, examples, 0, "cpu"), idx)
    assert_close(loss_and_grads(model, answer_loss_fn(model, examples, 0, "cpu", prefix_len=P), idx), ref,
                 rtol=1e-4, atol=1e-6)
    model = policy(top_layers=1)
    cache = open_cache(model, [ex.input_ids for ex in examples], lowest_adapted_layer(model), tmp_path, P, "float32")
    ref = loss_and_grads(model, answer_loss_fn(model, examples, 0, "cpu"), idx)
    assert_close(loss_and_grads(model, answer_loss_fn(model, examples, 0, "cpu", cache=cache), idx), ref,
                 rtol=1e-4, atol=1e-6)


def test_rationale_weight_is_checked():
    with pytest.raises(ValueError, match="rationale_weight"):
        SFTConfig(rationale_weight=1.5)
    with pytest.raises(ValueError, match="rationale_weight"):
        SFTConfig(rationale_weight=-0.1)
