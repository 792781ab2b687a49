import pytest

from learner.config import LearnerConfig, SFTConfig
from memroute.core.config import ConfigError, dump_config, load_config


def test_defaults_yaml_and_overrides(tmp_path):
    assert load_config(SFTConfig) == SFTConfig()
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 3\noptim:\n  lr: 1e-4\n  betas: [0.9, 0.99]\nlora:\n  rank: 8\n")
    cfg = load_config(SFTConfig, path, ["optim.lr=5e-5", "model.name=tiny", "max_steps=7", "lora.target_modules=[q_proj]"])
    assert cfg.epochs == 3 and cfg.optim.lr == 5e-5 and cfg.optim.betas == (0.9, 0.99)
    assert cfg.lora.rank == 8 and cfg.model.name == "tiny" and cfg.max_steps == 7
    assert cfg.lora.target_modules == ["q_proj"]
    assert load_config(SFTConfig, None, ["max_steps=null"]).max_steps is None
    # a dumped config loads back to the same thing
    again = tmp_path / "again.yaml"
    again.write_text(dump_config(cfg))
    assert load_config(SFTConfig, again) == cfg
    assert load_config(LearnerConfig, None, ["loss.kind=ppo"]).loss.kind == "ppo"


@pytest.mark.parametrize("overrides, words", [
    (["optim.lrr=1"], "unknown config key optim.lrr"),
    (["epochz=1"], "unknown config key epochz"),
    (["epochs=many"], "config key epochs: expected"),
    (["optim=3"], "optim: expected a mapping"),
    (["nokeyvalue"], "must look like key=value"),
])
def test_bad_configs_are_named(overrides, words):
    with pytest.raises(ConfigError, match=words):
        load_config(SFTConfig, None, overrides)


@pytest.mark.parametrize("overrides, words", [
    # enums
    (["learner.loss.kind=grpo"], "learner.loss.kind must be one of is, ppo, tis, got 'grpo'"),
    (["learner.optim.schedule=cosin"], "learner.optim.schedule must be one of cosine, linear, constant"),
    (["learner.loss.kl_estimator=k2"], "learner.loss.kl_estimator must be one of k1, k3"),
    (["rollout.engine.weight_sync=nccl"], "rollout.engine.weight_sync must be one of"),
    (["rollout.reward=bleu"], "rollout.reward must be one of routing, toy_low_ids"),
    (["placement_strategy=ANY"], "placement_strategy must be one of PACK"),
    # ranges
    (["learner.optim.lr=0"], "learner.optim.lr must be > 0"),
    (["rollout.temperature=-0.5"], "rollout.temperature must be >= 0"),
    (["rollout.top_p=1.5"], "rollout.top_p must be in \\(0, 1\\]"),
    (["learner.lora.rank=0"], "learner.lora.rank must be >= 1"),
    (["rollout.engine.kv_cache_gib=0"], "rollout.engine.kv_cache_gib must be > 0"),
    # cross-field
    (["rollout.engine.model=tiny"], "learner.model.name \\(smollm2-135m\\) and rollout.engine.model \\(tiny\\)"),
    (["learner.loss.kl_reference=start"], "learner.loss.kl_reference=start needs adapter"),
])
def test_every_rl_value_is_checked_when_the_config_loads(overrides, words):
    from learner.rl import RLConfig

    with pytest.raises(ConfigError, match=words):
        load_config(RLConfig, None, overrides)


@pytest.mark.parametrize("overrides, words", [
    (["epochs=0"], "epochs must be >= 1"),
    (["trunk.dtype=bf16"], "trunk.dtype must be one of float16, float32"),
    (["model.dtype=fp8"], "model.dtype must be one of auto"),
    (["optim.betas=[0.9, 1.2]"], "optim.betas must be two numbers"),
    (["lora.dropout=1"], "lora.dropout must be in"),
    (["trunk.cache=true"], "trunk.cache=true needs lora.top_layers"),
    (["optim.loraplus_ratio=0.5"], "optim.loraplus_ratio must be >= 1"),
])
def test_every_sft_value_is_checked_when_the_config_loads(overrides, words):
    with pytest.raises(ConfigError, match=words):
        load_config(SFTConfig, None, overrides)


def test_every_shipped_config_validates(tmp_path):
    """Each YAML in configs/ loads into its dataclass (so every value passes its check) as it is shipped; Ray
    Serve's own config format (configs/serve.yaml) through the args of each of its applications."""
    from pathlib import Path

    import yaml

    from data.teacher.config import TeacherConfig
    from learner.rl import RLConfig
    from serve.config import ServeConfig

    kinds = {"sft": SFTConfig, "rl": RLConfig, "serve": ServeConfig, "teacher": TeacherConfig}
    configs = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    checked = []
    for path in configs:
        kind = next((k for k in kinds if path.stem.endswith(k) or path.stem.startswith(k)), None)
        if kind is None:
            continue  # runtime_env.yaml: Ray's runtime env, not one of ours
        doc = yaml.safe_load(path.read_text())
        if "applications" in doc:
            for i, app in enumerate(doc["applications"]):
                args = tmp_path / f"{path.stem}-{i}.yaml"
                args.write_text(yaml.safe_dump(app["args"]))
                load_config(ServeConfig, args)
        else:
            load_config(kinds[kind], path)
        checked.append(path.name)
    assert len(checked) == len(configs) - 1, checked


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(SFTConfig, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(SFTConfig, bad)
