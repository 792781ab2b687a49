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


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(SFTConfig, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(SFTConfig, bad)
