"""The learner: policy updates, weight export, checkpoints, and data-parallel learner actors (tiny model)."""

import math

import pytest
import torch

from learner.actor import Learner, LearnerGroup
from learner.config import LearnerConfig, LoraConfig, LossConfig, ModelConfig, OptimConfig
from memroute.core.checkpoint import CheckpointError
from memroute.core.exchange import Group

PROMPT = list(range(100, 160))
GOOD, BAD = [200, 201, 202], [300, 301]


def config(**over) -> LearnerConfig:
    cfg = LearnerConfig(model=ModelConfig(name="tiny", dtype="float32"), lora=LoraConfig(rank=4, alpha=8),
                        optim=OptimConfig(lr=5e-2, warmup_steps=0, schedule="constant"), loss=LossConfig(kind="is"))
    for k, v in over.items():
        setattr(cfg, k, v)
    return cfg


def group_from(learner: Learner, advantages=(1.0, -1.0), version=0) -> Group:
    completions = [GOOD, BAD]
    sampler = learner.logprobs(PROMPT, completions)  # on-policy: sampler == learner
    return Group(PROMPT, completions, sampler, list(advantages), policy_version=version)


def flat(rows):
    return [x for row in rows for x in row]


def seq_logprob(learner, completion):
    return sum(learner.logprobs(PROMPT, [completion])[0])


def test_updates_follow_the_advantage_and_bump_the_version():
    learner = Learner(config())
    before_good, before_bad = seq_logprob(learner, GOOD), seq_logprob(learner, BAD)
    v0, w0 = learner.get_weights()
    for _ in range(5):
        stats = learner.update([group_from(learner, version=learner.version)])
    assert learner.version == v0 + 5
    assert seq_logprob(learner, GOOD) > before_good + 0.5 and seq_logprob(learner, BAD) < before_bad - 0.5
    assert stats["mean_ratio"] == pytest.approx(1.0, abs=1e-4)  # on-policy samples
    assert stats["stale_groups"] == 0 and stats["tokens"] == 5 and math.isfinite(stats["grad_norm"])
    _, w1 = learner.get_weights()
    assert w0.keys() == w1.keys() and any(not torch.equal(w0[k], w1[k]) for k in w0)


def test_threads_sets_the_learners_torch_threads():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # as Ray sets it for a 1-CPU actor
        Learner(config(threads=2))
        assert torch.get_num_threads() == 2
        Learner(config())  # None leaves what Ray (cpus_per_learner) set
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_reference_logprobs_ignore_the_adapter():
    learner = Learner(config())
    ref_before = learner.logprobs(PROMPT, [GOOD], reference=True)
    for _ in range(3):
        learner.update([group_from(learner)])
    assert flat(learner.logprobs(PROMPT, [GOOD], reference=True)) == pytest.approx(flat(ref_before), abs=1e-5)
    assert flat(learner.logprobs(PROMPT, [GOOD])) != pytest.approx(flat(ref_before), abs=1e-3)


def test_kl_penalty_is_reported():
    learner = Learner(config(loss=LossConfig(kind="ppo", kl_coef=0.1)))
    learner.update([group_from(learner)])
    stats = learner.update([group_from(learner)])
    assert stats["kl"] > 0.0


def test_bad_batches_are_refused_without_touching_weights():
    learner = Learner(config())
    _, w0 = learner.get_weights()
    with pytest.raises(ValueError, match="no groups"):
        learner.update([])
    with pytest.raises(ValueError, match="2 completions but 1 logprob rows"):
        learner.update([Group(PROMPT, [GOOD, BAD], [[-1.0] * 3], [1.0, -1.0])])
    with pytest.raises(ValueError, match="completion 0: 3 tokens but 2 sampler logprobs"):
        learner.update([Group(PROMPT, [GOOD], [[-1.0, -1.0]], [1.0])])
    nan_group = group_from(learner)
    nan_group.advantages = [float("nan"), 1.0]
    with pytest.raises(ValueError):
        learner.update([nan_group])
    _, w1 = learner.get_weights()
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    assert learner.version == 0


def test_checkpoint_round_trip_and_bad_checkpoints(tmp_path):
    learner = Learner(config())
    for _ in range(2):
        learner.update([group_from(learner)])
    path = learner.save_checkpoint(str(tmp_path / "ckpt"))
    expected = learner.logprobs(PROMPT, [GOOD, BAD])
    fresh = Learner(config())
    state = fresh.load_checkpoint(path)
    assert state == {"version": 2, "step": 2} and fresh.version == 2
    assert flat(fresh.logprobs(PROMPT, [GOOD, BAD])) == pytest.approx(flat(expected), abs=1e-6)
    # the next update is identical too (optimizer moments and schedule restored)
    g = group_from(learner)
    learner.update([g])
    fresh.update([g])
    assert flat(fresh.logprobs(PROMPT, [GOOD])) == pytest.approx(flat(learner.logprobs(PROMPT, [GOOD])), abs=1e-5)
    with pytest.raises(CheckpointError, match="nope does not exist"):
        fresh.load_checkpoint(str(tmp_path / "nope"))
    (tmp_path / "ckpt" / "optim.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"ckpt is corrupt or incomplete: optim\.pt: sha256 differs"):
        fresh.load_checkpoint(path)
    assert not list(tmp_path.glob(".ckpt*")), "no temp dirs left"


@pytest.mark.slow
def test_two_data_parallel_learners_match_one(all_cpus):
    cfg1, cfg2 = config(), config(num_learners=2)
    single = Learner(cfg1)
    groups = []
    for i, adv in enumerate([(1.0, -1.0), (-0.5, 0.5), (0.3, -0.3)]):
        g = group_from(single, adv)
        g.completion_ids = [c + [400 + i] * i for c in g.completion_ids]  # vary token counts per group
        g.sampler_logprobs = single.logprobs(PROMPT, g.completion_ids)
        groups.append(g)
    pair = LearnerGroup(cfg2)
    s1 = single.update(groups)
    s2 = pair.update(groups)
    assert s2["tokens"] == s1["tokens"] and s2["loss"] == pytest.approx(s1["loss"], abs=1e-5)
    # the all-reduced gradient is the single learner's (Adam would hide a scale error in the weights; the norm won't)
    assert s2["grad_norm"] == pytest.approx(s1["grad_norm"], rel=1e-4)
    (_, w1), (_, w2) = single.get_weights(), pair.get_weights()
    for k in w1:  # one Adam step of lr 5e-2: differences are float noise, far below the step size
        torch.testing.assert_close(w2[k], w1[k], atol=1e-4, rtol=1e-3)


def test_kl_to_the_starting_adapter(tmp_path):
    """kl_reference=start: the reference is a frozen copy of the adapter RL starts from, so the KL starts at 0
    and grows with the updates, the reference's logprobs never move, and only the trained adapter is saved."""
    from learner.lora import build_policy

    start = tmp_path / "start"
    policy = build_policy(ModelConfig(name="tiny", dtype="float32"), LoraConfig(rank=4, alpha=8))
    with torch.no_grad():
        for name, t in policy.named_parameters():
            if "lora_B" in name:
                t.normal_(0, 0.05)  # an adapter that differs from the base model
    policy.save_pretrained(str(start))
    learner = Learner(config(adapter=str(start), loss=LossConfig(kind="is", kl_reference="start", kl_coef=0.1)))
    ref0 = learner.logprobs(PROMPT, [GOOD, BAD], reference=True)
    assert flat(ref0) == pytest.approx(flat(learner.logprobs(PROMPT, [GOOD, BAD])), abs=1e-6)
    kls = [learner.update([group_from(learner, version=learner.version)])["kl"] for _ in range(4)]
    assert abs(kls[0]) < 1e-6 and kls[-1] > 1e-4
    assert flat(learner.logprobs(PROMPT, [GOOD, BAD], reference=True)) == pytest.approx(flat(ref0), abs=1e-6)
    assert all(p.requires_grad for p in learner.params)
    base = Learner(config(adapter=str(start)))  # kl_reference=base: the adapter disabled
    assert flat(base.logprobs(PROMPT, [GOOD], reference=True)) != pytest.approx(flat(ref0[:1]), abs=1e-4)
    with pytest.raises(ValueError, match="kl_reference=start needs"):
        Learner(config(loss=LossConfig(kl_reference="start")))


def test_an_adapter_trained_with_dropout_is_scored_without_it(tmp_path):
    """RL from an SFT adapter saved with LoRA dropout: the learner's logprobs are the sampled policy's (no units
    dropped), before and after an update, so the first update's ratios are exactly 1 and the push probe agrees."""
    from learner.lora import build_policy

    start = tmp_path / "start"
    policy = build_policy(ModelConfig(name="tiny", dtype="float32"), LoraConfig(rank=4, alpha=8, dropout=0.5))
    with torch.no_grad():
        for name, t in policy.named_parameters():
            if "lora_B" in name:
                t.normal_(0, 0.05)
    policy.save_pretrained(str(start))
    learner = Learner(config(adapter=str(start)))
    before = flat(learner.logprobs(PROMPT, [GOOD, BAD]))
    assert flat(learner.logprobs(PROMPT, [GOOD, BAD])) == before  # deterministic: dropout is off
    stats = learner.update([group_from(learner)])
    assert stats["mean_ratio"] == pytest.approx(1.0, abs=1e-6)  # on-policy: learner == sampler exactly
    after = flat(learner.logprobs(PROMPT, [GOOD, BAD]))
    assert flat(learner.logprobs(PROMPT, [GOOD, BAD])) == after != before  # moved, and still deterministic
