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


def test_gpu_path_agrees_on_the_model_and_the_configs():
    """cluster.yaml, the GPU configs, the runtime env and docs/cluster.md agree (issue 18): the GPU configs name the
    one model folder cluster.yaml's setup downloads (every Ray process runs with HF_HUB_OFFLINE=1, so the model must
    be that local folder, not a hub id), RL starts from the SFT run's adapter, the docs submit the GPU configs with
    no model override, and every config path the cluster files and docs mention exists."""
    import re
    import shlex
    from pathlib import Path

    import yaml

    from learner.rl import RLConfig
    from memroute.core.models import _looks_like_path

    repo = Path(__file__).resolve().parents[1]
    cluster = yaml.safe_load((repo / "cluster.yaml").read_text())
    setup = [c for k in ("setup_commands", "head_setup_commands", "worker_setup_commands") for c in cluster[k] or []]
    prepared = {m for c in setup for m in re.findall(r"--local-dir[= ](\S+)", c)}
    assert len(prepared) == 1, f"cluster.yaml should download exactly one model folder, found {prepared}"
    model_dir = prepared.pop()
    assert _looks_like_path(model_dir) and model_dir.startswith("/shared/"), model_dir  # a folder, on the mount
    assert "-v /shared:/shared" in cluster["docker"]["run_options"]  # ... which every node's container sees

    sft = load_config(SFTConfig, repo / "configs" / "gpu_llama8b_sft.yaml")
    rl = load_config(RLConfig, repo / "configs" / "gpu_llama8b_rl.yaml")
    assert sft.model.name == rl.learner.model.name == rl.rollout.engine.model == model_dir
    assert rl.learner.adapter == f"{sft.run_dir}/adapter"  # stage 2 starts from what stage 1 exports
    assert all(d.startswith("/shared/") for d in (sft.run_dir, rl.run_dir))  # run dirs every node sees

    # offline everywhere a job runs: so a hub id would not resolve, and the local folder is the one location
    runtime_env = yaml.safe_load((repo / "configs" / "runtime_env.yaml").read_text())
    assert runtime_env["env_vars"]["HF_HUB_OFFLINE"] == "1"
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert "HF_HUB_OFFLINE=1" in " ".join(cluster[key]), key

    texts = {name: (repo / name).read_text() for name in ("cluster.yaml", "cluster-local.yaml", "docs/cluster.md")}
    for name, text in texts.items():
        mentioned = set(re.findall(r"configs/[\w./-]*?\.ya?ml\b", text))
        missing = sorted(p for p in mentioned if not (repo / p).is_file())
        assert not missing, f"{name} mentions config files that do not exist: {missing}"

    # the GPU training jobs in cluster.yaml's header and docs/cluster.md: the GPU configs, no model or resource
    # overrides (only the data paths a user chooses)
    for name in ("cluster.yaml", "docs/cluster.md"):
        text = re.sub(r"\\\n[#\s]*", " ", texts[name])  # shell continuation lines (also inside `# ` comments) joined
        gpu_job = re.compile(r"python -m learner\.(sft|rl)\s+--config\s+configs/gpu_")
        jobs = [line for line in text.splitlines() if gpu_job.search(line)]
        stages = {re.search(r"learner\.(sft|rl)", j).group(1) for j in jobs}
        assert stages == {"sft", "rl"}, f"{name}: GPU SFT and RL jobs expected, found {jobs}"
        for job in jobs:
            cmd = job.split("python -m ", 1)[1].split("#", 1)[0]
            overrides = [w.split("=", 1)[0] for w in shlex.split(cmd) if "=" in w and not w.startswith("-")]
            assert set(overrides) <= {"train_data", "eval_data"}, f"{name}: {job}"
        assert "configs/cpu_rl.yaml" not in " ".join(jobs)


def test_configs_layer_left_to_right_and_resolve_from_the_shipped_folder(tmp_path, monkeypatch):
    from learner.rl import RLConfig
    from memroute.core.config import preset_overrides, shipped_configs_dir

    monkeypatch.chdir(tmp_path)  # no configs/ here: the names resolve to the shipped files
    layered = load_config(RLConfig, "configs/cpu_rl.yaml,tiny_rl.yaml", ["prompts_per_step=3"])
    base = load_config(RLConfig, "configs/cpu_rl.yaml")
    assert layered.rollout.reward == "toy_low_ids" and layered.learner.model.name == "tiny"
    assert layered.prompts_per_step == 3 and layered.steps == base.steps  # untouched keys keep the base's value
    assert layered.learner.optim.betas == base.learner.optim.betas  # sections merge key by key, not replaced
    # the preset as overrides is the same preset
    assert load_config(RLConfig, "cpu_rl.yaml", preset_overrides("tiny_rl") + ["prompts_per_step=3"]) == layered
    # a user's own file wins over a shipped one of the same name
    mine = tmp_path / "configs"
    mine.mkdir()
    (mine / "cpu_rl.yaml").write_text("steps: 7\n")
    assert load_config(RLConfig, "configs/cpu_rl.yaml").steps == 7
    with pytest.raises(ConfigError, match=r"config file not found: other/cpu_rl\.yaml \(the shipped configs are: .*"
                                          r"cpu_rl\.yaml"):
        load_config(RLConfig, "other/cpu_rl.yaml")  # a path into another folder is never swapped for a shipped file
    assert (shipped_configs_dir() / "tiny_rl.yaml").is_file()
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(RLConfig, tmp_path / "list.yaml")
