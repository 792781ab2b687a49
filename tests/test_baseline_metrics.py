"""A baseline's metrics.json names the baseline and its training data, never a model or adapter it did not run."""

import json

from actors.evaluate import EvalConfig, run_eval
from data.embedded import SHORT_TRAIN_PATH, TEST_PATH, TRAIN_PATH


def test_majority_metrics_name_the_baseline_and_its_training_mix(tmp_path):
    mix = f"{TRAIN_PATH},{SHORT_TRAIN_PATH}"
    run_eval(EvalConfig(backend="majority", train=mix, data=str(TEST_PATH), out=str(tmp_path)))
    config = json.loads((tmp_path / "metrics.json").read_text())["config"]
    assert config["system"] == "majority label" and config["train"] == mix
    assert config["model"] is None and config["adapter"] is None


def test_model_metrics_keep_model_and_adapter_and_drop_train(tmp_path):
    from actors import evaluate

    cfg = EvalConfig(backend="hf", model="tiny", adapter="none", data=str(TEST_PATH), out=str(tmp_path), limit=1,
                     max_new_tokens=2)
    evaluate.run_eval(cfg)
    config = json.loads((tmp_path / "metrics.json").read_text())["config"]
    assert config["model"] == "tiny" and "train" not in config and "system" not in config
