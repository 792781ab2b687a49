"""The shipped default router (memroute/router/): which adapter `default` / `none` pick, and how the folder is
built (float16 tensors, a model card whose figures come from the metrics files)."""

import json
from pathlib import Path

import pytest

from memroute.router import ROUTER_DIR, choose_adapter, shipped_adapter
from memroute.router.ship import ship

REPO = Path(__file__).resolve().parents[1]


def test_default_none_and_a_path():
    assert choose_adapter(None, "smollm2-135m") is None and choose_adapter("none", "smollm2-135m") is None
    assert choose_adapter("NONE", "tiny") is None
    assert choose_adapter("runs/x/adapter", "tiny") == "runs/x/adapter"  # a path is taken as given
    assert choose_adapter("default", "tiny") is None  # trained for the default model only: base model otherwise
    assert choose_adapter("default", "smollm2-135m") == str(ROUTER_DIR) == str(shipped_adapter())


def test_the_shipped_router_is_whole():
    from safetensors import safe_open

    cfg = json.loads((ROUTER_DIR / "adapter_config.json").read_text())
    assert cfg["r"] == 32 and cfg["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    with safe_open(str(ROUTER_DIR / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
        assert keys and all(f.get_tensor(k).dtype.is_floating_point and f.get_tensor(k).element_size() == 2
                            for k in keys[:8])
    assert {k.rsplit(".", 2)[0].rsplit(".", 1)[-1] for k in keys} == set(cfg["target_modules"])
    metrics = json.loads((ROUTER_DIR / "metrics.json").read_text())
    card = (ROUTER_DIR / "README.md").read_text()
    assert metrics["n"] == 201 and f"{metrics['mean_f1']:.3f}" in card and f"{metrics['exact_match']:.3f}" in card


def test_ship_builds_the_folder_from_an_adapter_and_its_eval(tmp_path):
    from safetensors.torch import load_file

    from bench.serve_load import random_adapter
    from data.embedded import TEST_PATH, TRAIN_PATH
    from data.baselines import majority_predictions
    from data.metrics import align, compute_metrics
    from data.schema import read_examples

    adapter = random_adapter(tmp_path / "adapter", "tiny", seed=0)
    test = read_examples(TEST_PATH)
    perfect = compute_metrics([(ex.categories, ex.categories) for ex in test], n_boot=20)
    perfect["config"] = {"data": str(TEST_PATH)}
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps(perfect))
    majority = compute_metrics(align(majority_predictions(read_examples(TRAIN_PATH), test), test), n_boot=20)
    (tmp_path / "majority.json").write_text(json.dumps(majority))
    out = ship(str(adapter), str(tmp_path / "eval"), [("majority label", str(tmp_path / "majority.json"))],
               notes="Trained for the test.", out=tmp_path / "router")
    original, shipped = load_file(str(adapter / "adapter_model.safetensors")), load_file(
        str(out / "adapter_model.safetensors"))
    assert original.keys() == shipped.keys()
    for k, v in shipped.items():
        assert str(v.dtype) == "torch.float16" and (v.float() - original[k]).abs().max() < 1e-2
    card = (out / "README.md").read_text()
    assert "| memroute router (this adapter) | 1.000" in card and f"| majority label | {majority['mean_f1']:.3f}" in card
    assert card.rstrip().endswith("Trained for the test.") and "test.jsonl" in card
    with pytest.raises(FileNotFoundError, match="LoRA adapter not found"):
        ship(str(tmp_path / "nope"), str(tmp_path / "eval"), [], out=tmp_path / "router2")
