"""The shipped default router (memroute/router/): which adapter `default` / `none` pick, and how the folder is
built (float16 tensors, a model card whose figures come from the metrics files). The tests build router folders in
temp dirs, so they hold whether or not an adapter is shipped."""

import json
from pathlib import Path

import pytest

from memroute.router import choose_adapter, shipped_adapter
from memroute.router.ship import ship

REPO = Path(__file__).resolve().parents[1]


def test_default_none_and_a_path(tmp_path, monkeypatch):
    import memroute.router as router
    from bench.load import random_adapter

    assert choose_adapter(None, "smollm2-135m") is None and choose_adapter("none", "smollm2-135m") is None
    assert choose_adapter("NONE", "tiny") is None
    assert choose_adapter("runs/x/adapter", "tiny") == "runs/x/adapter"  # a path is taken as given
    monkeypatch.setattr(router, "ROUTER_DIR", tmp_path / "router")
    assert shipped_adapter() is None and choose_adapter("default", "smollm2-135m") is None  # none shipped: base
    ship(str(random_adapter(tmp_path / "a", "tiny", seed=0)), _write_eval(tmp_path), [], out=tmp_path / "router")
    assert choose_adapter("default", "smollm2-135m") == str(tmp_path / "router") == str(shipped_adapter())
    assert choose_adapter("default", "tiny") is None  # trained for the default model only: base model otherwise


def _write_eval(tmp_path) -> str:
    from data.embedded import TEST_PATH
    from data.metrics import compute_metrics
    from data.schema import read_examples

    perfect = compute_metrics([(ex.categories, ex.categories) for ex in read_examples(TEST_PATH)], n_boot=20)
    perfect["config"] = {"data": str(TEST_PATH)}
    (tmp_path / "eval").mkdir(exist_ok=True)
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps(perfect))
    return str(tmp_path / "eval")


def test_ship_builds_the_folder_from_an_adapter_and_its_eval(tmp_path):
    from safetensors.torch import load_file

    from bench.load import random_adapter
    from data.embedded import TEST_PATH, TRAIN_PATH
    from data.baselines import majority_predictions
    from data.metrics import align, compute_metrics
    from data.schema import read_examples

    adapter = random_adapter(tmp_path / "adapter", "tiny", seed=0)
    test = read_examples(TEST_PATH)
    eval_dir = _write_eval(tmp_path)
    majority = compute_metrics(align(majority_predictions(read_examples(TRAIN_PATH), test), test), n_boot=20)
    (tmp_path / "majority.json").write_text(json.dumps(majority))
    out = ship(str(adapter), eval_dir, [("majority label", str(tmp_path / "majority.json"))],
               notes="Trained for the test.", out=tmp_path / "router")
    original, shipped = load_file(str(adapter / "adapter_model.safetensors")), load_file(
        str(out / "adapter_model.safetensors"))
    assert original.keys() == shipped.keys()
    for k, v in shipped.items():
        assert str(v.dtype) == "torch.float16" and (v.float() - original[k]).abs().max() < 1e-2
    card = (out / "README.md").read_text()
    assert "| memroute router (this adapter) | 1.000" in card and f"| majority label | {majority['mean_f1']:.3f}" in card
    assert card.split("## Lineage")[0].rstrip().endswith("Trained for the test.") and "test.jsonl" in card
    with pytest.raises(FileNotFoundError, match="LoRA adapter not found"):
        ship(str(tmp_path / "nope"), eval_dir, [], out=tmp_path / "router2")
    # an adapter in the last layers only (lora.top_layers) says so in its card
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**cfg, "layers_to_transform": [1]}))
    card = (ship(str(adapter), eval_dir, [], out=tmp_path / "router3") / "README.md").read_text()
    assert "in decoder layers 1-1" in card


def _predictions(path: Path, examples, correct: int) -> Path:
    """Predictions that are right on the first `correct` examples and `none`-vs-label wrong on the rest."""
    from data.metrics import Prediction, write_predictions

    rows = [(ex.id, ex.categories if i < correct else (["user.role_context"] if ex.categories == ["none"]
                                                        else ["none"]))
            for i, ex in enumerate(examples)]
    write_predictions(path, [Prediction(i, p, ", ".join(p)) for i, p in rows])
    return path


def test_ship_gate_and_lineage(tmp_path):
    """A candidate that does not beat the incumbent's predictions is refused and nothing is written; one that
    does ships, and the lineage records its run (data, steps, epochs seen) after the earlier releases."""
    from bench.load import random_adapter
    from data.embedded import TEST_PATH, TRAIN_PATH
    from data.schema import read_examples
    from memroute.router.lineage import GateError, read_lineage

    test = read_examples(TEST_PATH)
    eval_dir = Path(_write_eval(tmp_path))
    incumbent = _predictions(tmp_path / "incumbent.jsonl", test, len(test) // 2)
    adapter = random_adapter(tmp_path / "adapter", "tiny", seed=0)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(f"train_data: {TRAIN_PATH}\nbatch_size: 8\nlora: {{top_layers: 4}}\n"
                                     f"optim: {{lr: 0.001}}\ntrunk: {{cache: true}}\n")
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s}) + "\n" for s in range(1, 69)))
    router = tmp_path / "router"

    _predictions(eval_dir / "predictions.jsonl", test, len(test) // 2 - 3)  # worse than the incumbent
    with pytest.raises(GateError, match="does not beat"):
        ship(str(adapter), str(eval_dir), [], out=router, run_dir=str(run), incumbent=str(incumbent))
    assert not router.exists()

    _predictions(eval_dir / "predictions.jsonl", test, len(test))  # perfect: beats it
    ship(str(adapter), str(eval_dir), [], out=router, run_dir=str(run), incumbent=str(incumbent))
    lineage = read_lineage(router)
    (entry,) = lineage["runs"]
    assert entry["step"] == 68 and entry["examples_seen"] == 544
    assert entry["epochs_seen"] == round(544 / len(read_examples(TRAIN_PATH)), 3)
    assert entry["train_data"][0]["sha256"] and entry["trunk_cache"] is True
    (release,) = lineage["ships"]
    assert release["against_incumbent"]["delta"] > 0 and release["against_incumbent"]["delta_ci95"][0] > 0
    card = (router / "README.md").read_text()
    assert "## Lineage" in card and "544" in card
    # a second release of a run continued from this router keeps the chain
    (run / "config.yaml").write_text((run / "config.yaml").read_text() + f"init_adapter: {router}\n")
    ship(str(adapter), str(eval_dir), [], out=router, run_dir=str(run))
    lineage = read_lineage(router)
    assert len(lineage["runs"]) == 2 and len(lineage["ships"]) == 2


def test_keep_a_candidate_and_continue_its_lineage(tmp_path):
    """`--keep` stores a candidate that was not shipped (float16, its evaluation, the lineage of every run it came
    from); a run continued from it extends that lineage when it ships."""
    from bench.load import random_adapter
    from data.embedded import TRAIN_PATH
    from memroute.router.lineage import read_lineage
    from memroute.router.ship import keep, main

    eval_dir = _write_eval(tmp_path)
    runs = []
    for name, steps, init in (("first", 40, None), ("second", 20, tmp_path / "first" / "adapter")):
        run = tmp_path / name
        random_adapter(run / "adapter", "tiny", seed=len(runs))
        (run / "config.yaml").write_text(f"train_data: {TRAIN_PATH}\nbatch_size: 8\nlora: {{top_layers: 8}}\n"
                                         f"optim: {{lr: 0.001{', loraplus_ratio: 8' if init else ''}}}\n"
                                         + (f"init_adapter: {init}\n" if init else ""))
        (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s}) + "\n" for s in range(1, steps + 1)))
        runs.append(run)
    kept = keep(str(runs[1] / "adapter"), eval_dir, [str(r) for r in runs], tmp_path / "candidates" / "c1")
    lineage = read_lineage(kept)
    assert [r["step"] for r in lineage["runs"]] == [40, 20] and lineage["ships"] == []
    assert lineage["runs"][1]["init_adapter"] == str(tmp_path / "first" / "adapter")
    card = (kept / "README.md").read_text()
    assert "(not shipped)" in card and "| first | scratch |" in card and "Releases" not in card
    assert [r["loraplus_ratio"] for r in lineage["runs"]] == [None, 8]  # the optimizer is part of the recipe
    assert "| 0.001 |" in card and "| 0.001 (LoRA+: B at 8x) |" in card
    assert json.loads((kept / "metrics.json").read_text())["mean_f1"] == 1.0
    # a third run from the kept candidate: shipping it records all three runs
    third = tmp_path / "third"
    random_adapter(third / "adapter", "tiny", seed=9)
    (third / "config.yaml").write_text(f"train_data: {TRAIN_PATH}\nbatch_size: 8\ninit_adapter: {kept}\n")
    (third / "metrics.jsonl").write_text(json.dumps({"step": 5}) + "\n")
    ship(str(third / "adapter"), eval_dir, [], out=tmp_path / "router", run_dir=str(third))
    assert [r["step"] for r in read_lineage(tmp_path / "router")["runs"]] == [40, 20, 5]
    # the CLI refuses to keep over the shipped router and needs the runs
    with pytest.raises(SystemExit):
        main(["--keep", "--adapter", str(kept), "--eval", eval_dir])
    assert main(["--keep", "--adapter", str(third / "adapter"), "--eval", eval_dir, "--run", str(third),
                 "--out", str(tmp_path / "candidates" / "c2")]) == 0


def test_soup_is_the_exact_average_of_the_adapters_weight_changes(tmp_path):
    """Two adapters with different layers, ranks' scales and targets: the soup's scale * B @ A is the weighted
    mean of theirs in every module (zero where one lacks it); a missing adapter is an error naming it."""
    import torch

    from memroute.core.adapter import lora_pairs, lora_scaling, read_adapter, write_adapter
    from memroute.router.soup import main as soup_main
    from memroute.router.soup import soup

    gen = torch.Generator().manual_seed(0)

    def adapter(folder, layers, r, alpha):
        tensors = {}
        for i in layers:
            module = f"base_model.model.model.layers.{i}.self_attn.q_proj"
            tensors[f"{module}.lora_A.weight"] = torch.randn(r, 16, generator=gen)
            tensors[f"{module}.lora_B.weight"] = torch.randn(16, r, generator=gen)
        cfg = {"r": r, "lora_alpha": alpha, "target_modules": ["q_proj"], "layers_to_transform": layers,
               "base_model_name_or_path": "tiny", "peft_type": "LORA"}
        return write_adapter(tmp_path / folder, tensors, cfg)

    one, two = adapter("one", [0, 1], 4, 8), adapter("two", [1], 2, 2)
    out = soup([one, two], tmp_path / "soup", weights=[0.25, 0.75])
    tensors, cfg = read_adapter(out)
    assert cfg["r"] == cfg["lora_alpha"] == 6 and cfg["layers_to_transform"] == [0, 1]

    def delta(t, c, name):
        a, b = lora_pairs(t)[name]
        return lora_scaling(c) * (b.float() @ a.float())

    (t1, c1), (t2, c2) = read_adapter(one), read_adapter(two)
    for layer in (0, 1):
        name = f"model.layers.{layer}.self_attn.q_proj.weight"
        want = 0.25 * delta(t1, c1, name) + (0.75 * delta(t2, c2, name) if layer == 1 else 0)
        torch.testing.assert_close(delta(tensors, cfg, name), want, atol=2e-2, rtol=2e-3)  # float16 storage
    assert soup_main([str(tmp_path / "bad"), str(one), str(tmp_path / "missing")]) == 2
    assert not (tmp_path / "bad").exists()
    other_tensors, other_cfg = read_adapter(two)
    other = write_adapter(tmp_path / "other", other_tensors, {**other_cfg, "base_model_name_or_path": "org/Other"})
    with pytest.raises(ValueError, match="different base models"):
        soup([one, other], tmp_path / "bad")
    local = write_adapter(tmp_path / "local", other_tensors, {**other_cfg, "base_model_name_or_path": "/cache/tiny"})
    assert soup([one, local], tmp_path / "same-base").is_dir()  # a hub id and a local folder of the same model
