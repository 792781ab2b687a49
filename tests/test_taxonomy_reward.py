import itertools
import random

import pytest

from data.reward import UNPARSEABLE_REWARD, efficiency, reward_from_labels, reward_from_text, set_f1
from data.taxonomy import (CATEGORIES, HORIZONS, LABELS, NONE, UnknownLabelError, canonical_order, category,
                           clean_label_set, horizon_similarity, majority_horizon, set_scope)


def test_taxonomy_is_the_specified_one():
    assert len(LABELS) == 13 and LABELS[-1] == NONE
    assert [c.name for c in CATEGORIES[:6]] == [
        "company.brand_core", "company.strategic_signatures", "company.knowledge_artifacts",
        "company.business_priorities", "company.tools_config", "company.performance_context"]
    horizons = {c.name.split(".")[-1]: c.horizon for c in CATEGORIES}
    assert {k for k, v in horizons.items() if v == "long"} == {
        "brand_core", "strategic_signatures", "knowledge_artifacts", "communication_style", "strategic_approach"}
    assert {k for k, v in horizons.items() if v == "medium"} == {"tools_config", "role_context", "workflow_patterns"}
    assert {k for k, v in horizons.items() if v == "short"} == {"business_priorities", "session_history", "none"}
    assert horizons["performance_context"] == "rolling" and horizons["interaction_preferences"] == "evolving"
    for c in CATEGORIES:
        assert c.scope == ("none" if c.name == NONE else c.name.split(".")[0])
        assert c.description


def test_unknown_label_is_named():
    with pytest.raises(UnknownLabelError, match="company.brandcore"):
        category("company.brandcore")


def test_set_scope_and_cleaning():
    assert set_scope(["company.brand_core"]) == "company"
    assert set_scope(["user.role_context", "user.session_history"]) == "user"
    assert set_scope(["company.brand_core", "user.role_context"]) == "mixed"
    assert set_scope([NONE]) == "none" and set_scope([]) == "none"
    assert clean_label_set(["user.role_context", NONE, "company.brand_core"]) == [
        "company.brand_core", "user.role_context"]
    assert clean_label_set([NONE, NONE]) == [NONE]
    assert canonical_order(["user.role_context", "company.brand_core", "user.role_context"]) == [
        "company.brand_core", "user.role_context"]


def test_majority_horizon_ties_are_deterministic_and_order_free():
    # one long (brand_core) and one medium (tools_config): a tie, broken by HORIZONS order -> long
    labels = ["company.tools_config", "company.brand_core"]
    assert majority_horizon(labels) == "long"
    assert majority_horizon(list(reversed(labels))) == "long"
    # short vs rolling tie -> short (short comes before rolling in HORIZONS)
    assert majority_horizon(["company.performance_context", "user.session_history"]) == "short"
    # every permutation of a 3-way tie gives the same answer
    three = ["company.performance_context", "user.interaction_preferences", "user.workflow_patterns"]
    assert {majority_horizon(p) for p in itertools.permutations(three)} == {"medium"}
    assert majority_horizon([]) is None
    assert majority_horizon(["company.brand_core", "user.strategic_approach", "user.role_context"]) == "long"


def test_horizon_similarity_table():
    adjacent = {("long", "medium"), ("medium", "short"), ("medium", "rolling"), ("short", "rolling")}
    for a, b in itertools.product(HORIZONS, HORIZONS):
        expected = 1.0 if a == b else (0.5 if (a, b) in adjacent or (b, a) in adjacent else 0.0)
        assert horizon_similarity(a, b) == expected, (a, b)
    assert horizon_similarity(None, "long") == 0.0


def test_set_f1_and_efficiency():
    assert set_f1([], []) == 1.0
    assert set_f1(["a"], []) == 0.0
    assert set_f1(["a", "b"], ["a"]) == pytest.approx(2 / 3)
    assert [efficiency(n) for n in range(8)] == [1.0, 1.0, 1.0, 1.0, 0.7, 0.4, 0.0, 0.0]


def test_reward_hand_computed():
    gold = ["company.business_priorities", "user.strategic_approach"]
    # perfect answer
    r = reward_from_labels(gold, gold)
    assert r.total == pytest.approx(1.0) and r.parsed and r.n_predicted == 2
    # pred: business_priorities only. F1 = 2/3. majority(pred)=short, majority(gold): short+long tie -> long
    # long vs short are not adjacent -> temporal 0. scopes company vs mixed -> 0. efficiency 1.
    r = reward_from_labels(["company.business_priorities"], gold)
    assert (r.f1, r.temporal, r.parity, r.efficiency) == (pytest.approx(2 / 3), 0.0, 0.0, 1.0)
    assert r.total == pytest.approx(0.6 * 2 / 3 + 0.1)
    # pred role_context (medium, user) vs gold strategic_approach (long, user): F1 0, temporal 0.5, parity 1
    r = reward_from_labels(["user.role_context"], ["user.strategic_approach"])
    assert r.total == pytest.approx(0.2 * 0.5 + 0.1 * 1 + 0.1 * 1)
    # five labels: efficiency 0.4
    five = ["company.brand_core", "company.tools_config", "user.role_context", "user.session_history",
            "user.strategic_approach"]
    assert reward_from_labels(five, gold).efficiency == 0.4


def test_reward_none_rules():
    assert reward_from_labels([NONE], [NONE]).total == pytest.approx(1.0)
    # none mixed with a real label is dropped before scoring
    mixed = reward_from_labels([NONE, "user.role_context"], ["user.role_context"])
    assert mixed.total == pytest.approx(1.0) and mixed.n_predicted == 1


def test_unparseable_answers_score_minus_one():
    for text in ["", "   ", "I think this is about marketing", "brand stuff, role"]:
        r = reward_from_text(text, ["user.role_context"])
        assert r.total == UNPARSEABLE_REWARD and not r.parsed
    assert reward_from_labels([], ["user.role_context"]).total == UNPARSEABLE_REWARD


def test_reward_is_order_independent_and_bounded():
    rng = random.Random(0)
    for _ in range(300):
        pred = rng.sample(LABELS[:-1], rng.randint(1, 6))
        gold = rng.sample(LABELS[:-1], rng.randint(1, 3))
        a = reward_from_labels(pred, gold)
        b = reward_from_labels(list(reversed(pred)), list(reversed(gold)))
        assert a == b
        assert 0.0 <= a.total <= 1.0
        assert a.total == pytest.approx(0.6 * a.f1 + 0.2 * a.temporal + 0.1 * a.parity + 0.1 * a.efficiency)
