import json

import pytest

from data.baselines import majority_label, majority_predictions
from data.metrics import (Prediction, PredictionError, align, bootstrap_ci, compute_metrics, metrics_table,
                          paired_bootstrap, read_predictions, write_predictions)
from data.schema import make_example

CONV = [{"role": "user", "content": "hello"}]


def ex(i, labels):
    return make_example(f"e{i}", CONV, labels)


def test_metrics_hand_computed():
    pairs = [
        (["user.role_context"], ["user.role_context"]),                            # exact
        (["user.role_context", "company.brand_core"], ["user.role_context"]),      # F1 2/3
        (["none"], ["company.tools_config"]),                                     # miss
        ([], ["none"]),                                                            # parse failure
    ]
    m = compute_metrics(pairs, n_boot=200)
    assert m["n"] == 4
    assert m["mean_f1"] == pytest.approx((1 + 2 / 3 + 0 + 0) / 4)
    assert m["exact_match"] == 0.25 and m["any_match"] == 0.5
    assert m["parse_failure_rate"] == 0.25
    assert m["mean_labels_predicted"] == pytest.approx(4 / 4)
    # micro: tp=2 (role x2), fp=2 (brand_core, none), fn=2 (tools_config, none)
    assert m["micro"]["precision"] == pytest.approx(0.5) and m["micro"]["recall"] == pytest.approx(0.5)
    role = m["per_category"]["user.role_context"]
    assert (role["precision"], role["recall"], role["support"]) == (1.0, 1.0, 2)
    assert m["none_precision"] == 0.0 and m["none_recall"] == 0.0
    # macro over the 4 active labels: role 1.0, brand_core 0, tools_config 0, none 0
    assert m["macro"]["f1"] == pytest.approx(0.25)
    # row 2's majority horizon is a long/medium tie -> long, against gold medium: only row 1 agrees
    assert m["horizon_agreement"] == pytest.approx(1 / 4)
    assert m["scope_agreement"] == pytest.approx(1 / 4)  # row 2 is mixed vs user, row 3 none vs company
    lo, hi = m["mean_f1_ci95"]
    assert lo <= m["mean_f1"] <= hi
    assert m["mean_reward"] == pytest.approx((1.0 + (0.6 * 2 / 3 + 0.2 * 0.5 + 0.1) + (0.2 * 0.5 + 0.1) - 1) / 4)
    assert "user.role_context" in metrics_table(m, "t")
    assert "per_source" not in m and "| source |" not in metrics_table(m, "t")


def test_metrics_per_source_where_there_are_several():
    pairs = [(["user.role_context"], ["user.role_context"]),
             (["user.role_context", "company.brand_core"], ["user.role_context"]),
             (["none"], ["company.tools_config"])]
    m = compute_metrics(pairs, n_boot=50, sources=["long", "long", "diverse"])
    assert m["per_source"] == {
        "diverse": {"n": 1, "mean_f1": 0.0, "exact_match": 0.0, "mean_labels_predicted": 1.0, "mean_labels_gold": 1.0},
        "long": {"n": 2, "mean_f1": pytest.approx(5 / 6), "exact_match": 0.5, "mean_labels_predicted": 1.5,
                 "mean_labels_gold": 1.0}}
    assert "| long | 2 | 0.833 | 0.500 | 1.50 (1.00) |" in metrics_table(m)
    assert "per_source" not in compute_metrics(pairs, n_boot=50, sources=["one"] * 3)
    with pytest.raises(ValueError, match="2 sources for 3 predictions"):
        compute_metrics(pairs, n_boot=50, sources=["a", "b"])


def test_bootstrap_interval_narrows_with_more_data():
    small = bootstrap_ci([0.0, 1.0] * 10)
    large = bootstrap_ci([0.0, 1.0] * 500)
    assert small[1] - small[0] > large[1] - large[0] > 0
    assert bootstrap_ci([0.5] * 10) == (0.5, 0.5)


def test_predictions_io_align_and_paired_bootstrap(tmp_path):
    examples = [ex(i, ["user.role_context"]) for i in range(30)]
    good = [Prediction(e.id, ["user.role_context"], "user.role_context", "a") for e in examples]
    bad = [Prediction(e.id, ["company.brand_core"], "company.brand_core", "b") for e in examples]
    write_predictions(tmp_path / "good.jsonl", good)
    assert read_predictions(tmp_path / "good.jsonl") == good
    result = paired_bootstrap(align(bad, examples), align(good, examples))
    assert result["delta"] == pytest.approx(1.0) and result["p_b_not_better"] == 0.0
    with pytest.raises(PredictionError, match="no prediction"):
        align(good[:-1], examples)
    with pytest.raises(PredictionError, match="duplicate"):
        align(good + good[:1], examples)
    (tmp_path / "broken.jsonl").write_text(json.dumps({"id": "e0", "predicted": ["company.vibes"]}) + "\n")
    with pytest.raises(PredictionError, match="broken.jsonl:1"):
        read_predictions(tmp_path / "broken.jsonl")


def test_majority_baseline():
    train = [ex(0, ["user.role_context", "company.brand_core"]), ex(1, ["user.role_context"]), ex(2, ["none"]),
             ex(3, ["none"])]
    assert majority_label(train) == "user.role_context"  # 2-2 tie with none, broken by taxonomy order
    preds = majority_predictions(train, train)
    assert {tuple(p.predicted) for p in preds} == {("user.role_context",)}
    with pytest.raises(ValueError):
        majority_label([])


def test_tfidf_decode_rules():
    from data.baselines import decode
    from data.taxonomy import LABELS

    probs = [0.1] * len(LABELS)
    probs[LABELS.index("user.role_context")] = 0.3
    assert decode(probs) == ["user.role_context"]  # nothing over 0.5: the top label, never an empty answer
    probs[LABELS.index("company.brand_core")] = 0.9
    probs[LABELS.index("user.strategic_approach")] = 0.6
    probs[LABELS.index("none")] = 0.7  # over 0.5 but not the top label: dropped, `none` is exclusive
    assert decode(probs) == ["company.brand_core", "user.strategic_approach"]
    probs[LABELS.index("none")] = 0.95
    assert decode(probs) == ["none"]


def test_tfidf_baseline_beats_majority_on_embedded_split():
    """Fitted on the embedded train split only; on its held-out test templates it must clearly beat the majority
    label (a broken vectoriser or an unfitted model lands at or below it)."""
    from data.baselines import fit_tfidf
    from data.embedded import TEST_PATH, TRAIN_PATH
    from data.metrics import align, compute_metrics
    from data.schema import read_examples

    train, test = read_examples(TRAIN_PATH), read_examples(TEST_PATH)
    router = fit_tfidf(train)
    assert router.c in (1.0, 4.0, 16.0, 64.0)
    tfidf = compute_metrics(align(router.predict(test), test), n_boot=10)
    majority = compute_metrics(align(majority_predictions(train, test), test), n_boot=10)
    assert tfidf["parse_failure_rate"] == 0.0
    assert tfidf["mean_f1"] > majority["mean_f1"] + 0.2, (tfidf["mean_f1"], majority["mean_f1"])
    with pytest.raises(ValueError, match="at least 20"):
        fit_tfidf(train[:5])
