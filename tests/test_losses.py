"""learner.losses: every loss kind, the KL estimators and the aggregations against hand-computed numbers."""

from __future__ import annotations

import math

import pytest
import torch

from learner.losses import NonFiniteLossError, policy_loss
from memroute.core.exchange import equal_reward_groups, group_advantages

LN2 = math.log(2.0)
LN15 = math.log(1.5)

# The shared toy batch: B=2 sequences, T=3 tokens; row 1's last token is padding.
# sampler log-probs are 0, so ratio = exp(logp) = RATIOS on the valid tokens.
RATIOS = [[1.0, 2.0, 0.5], [1.5, 0.5, 9.0]]
MASK = [[1, 1, 1], [1, 1, 0]]
ADV = [1.0, -2.0]


def batch(requires_grad=True):
    logp = torch.log(torch.tensor(RATIOS)).requires_grad_(requires_grad)
    logq = torch.zeros(2, 3)
    return logp, logq, torch.tensor(ADV), torch.tensor(MASK)


def close(a, b, tol=1e-6):
    return abs(a - b) <= tol


# --- the loss kinds ---------------------------------------------------------------------------------------------


def test_is_loss_value_stats_and_gradient():
    logp, logq, adv, mask = batch()
    loss, stats = policy_loss(logp, logq, adv, mask, kind="is")
    # per token -r*A: row 0 (A=1): -1, -2, -0.5; row 1 (A=-2): 3, 1 -> sum 0.5 over 5 valid tokens
    assert close(loss.item(), 0.1)
    assert close(stats["loss"], 0.1)
    assert close(stats["mean_ratio"], (1 + 2 + 0.5 + 1.5 + 0.5) / 5)  # 1.1
    assert close(stats["max_ratio"], 2.0)  # the masked 9.0 does not count
    assert stats["clip_fraction"] == 0.0
    assert stats["num_tokens"] == 5.0
    assert "kl" not in stats
    loss.backward()
    # d/dlogp (-r*A) = -A*r, divided by the 5 valid tokens; zero on padding
    expected = torch.tensor([[-1.0, -2.0, -0.5], [3.0, 1.0, 0.0]]) / 5
    torch.testing.assert_close(logp.grad, expected)


def test_ppo_loss_and_clip_fraction():
    logp, logq, adv, mask = batch()
    loss, stats = policy_loss(logp, logq, adv, mask, kind="ppo", clip_eps=0.2)
    # row 0, A=+1: r=1 -> -1; r=2 -> -min(2, 1.2) = -1.2 (clipped); r=0.5 -> -min(0.5, 0.8) = -0.5
    # row 1, A=-2: r=1.5 -> -min(-3, -2.4) = 3 (unclipped); r=0.5 -> -min(-1, -1.6) = 1.6 (clipped)
    assert close(loss.item(), (-1 - 1.2 - 0.5 + 3 + 1.6) / 5)  # 0.38
    assert close(stats["clip_fraction"], 2 / 5)
    loss.backward()
    # clipped tokens get no gradient; the others -A*r/5
    expected = torch.tensor([[-1.0, 0.0, -0.5], [3.0, 0.0, 0.0]]) / 5
    torch.testing.assert_close(logp.grad, expected)


def test_ppo_equals_is_inside_the_trust_region():
    logp = torch.log(torch.tensor([[1.0, 1.1, 0.9]]))
    args = (logp, torch.zeros(1, 3), torch.tensor([0.7]), torch.ones(1, 3))
    ppo, s = policy_loss(*args, kind="ppo")
    is_, _ = policy_loss(*args, kind="is")
    assert close(ppo.item(), is_.item()) and s["clip_fraction"] == 0.0


def test_tis_loss_truncation_and_gradient():
    logp, logq, adv, mask = batch()
    loss, stats = policy_loss(logp, logq, adv, mask, kind="tis", tis_cap=1.2)
    # w = min(r, 1.2) = [1, 1.2, 0.5], [1.2, 0.5]; per token -w*A*logp with logp = ln r:
    # row 0: 0, -1.2 ln2, +0.5 ln2; row 1: +2.4 ln1.5, -ln2  -> sum = -1.7 ln2 + 2.4 ln1.5 = -0.2052341
    assert close(loss.item(), (-1.7 * LN2 + 2.4 * LN15) / 5)  # -0.04104683
    assert close(stats["clip_fraction"], 2 / 5)  # r = 2 and 1.5 exceed the cap
    loss.backward()
    # the weight is stop-gradient: d/dlogp = -w*A/5
    expected = torch.tensor([[-1.0, -1.2, -0.5], [2.4, 1.0, 0.0]]) / 5
    torch.testing.assert_close(logp.grad, expected)


def test_tis_gradient_equals_is_gradient_below_the_cap():
    logp = torch.log(torch.tensor([[1.0, 1.3, 0.6]])).requires_grad_(True)
    args = (torch.zeros(1, 3), torch.tensor([-0.5]), torch.ones(1, 3))
    policy_loss(logp, *args, kind="tis", tis_cap=2.0)[0].backward()
    g_tis = logp.grad.clone()
    logp.grad = None
    policy_loss(logp, *args, kind="is")[0].backward()
    torch.testing.assert_close(g_tis, logp.grad)


# --- KL ---------------------------------------------------------------------------------------------------------

# ref - logp on the valid tokens: [0, ln2, -ln2], [0.5, 0]
D = [[0.0, LN2, -LN2], [0.5, 0.0, 123.0]]
# k3 = e^d - d - 1: 0, 1 - ln2 = 0.3068528, ln2 - 0.5 = 0.1931472, e^0.5 - 1.5 = 0.1487213, 0
K3_MEAN = (0.0 + (1 - LN2) + (LN2 - 0.5) + (math.exp(0.5) - 1.5) + 0.0) / 5  # 0.1297443
# k1 = logp - ref = -d: 0, -ln2, ln2, -0.5, 0
K1_MEAN = -0.5 / 5


def test_k3_and_k1_against_hand_values():
    logp, logq, adv, mask = batch()
    ref = logp.detach() + torch.tensor(D)
    loss, stats = policy_loss(logp, logq, adv, mask, ref_logprobs=ref, kl_coef=0.0, kl_estimator="k3")
    assert close(stats["kl"], K3_MEAN)
    assert close(loss.item(), 0.1)  # kl_coef 0: reported, not added
    loss, stats = policy_loss(logp, logq, adv, mask, ref_logprobs=ref, kl_coef=0.1, kl_estimator="k3")
    assert close(stats["kl"], K3_MEAN)
    assert close(loss.item(), 0.1 + 0.1 * K3_MEAN)  # 0.11297443
    loss, stats = policy_loss(logp, logq, adv, mask, ref_logprobs=ref, kl_coef=0.5, kl_estimator="k1")
    assert close(stats["kl"], K1_MEAN)
    assert close(loss.item(), 0.1 + 0.5 * K1_MEAN)  # 0.05


def test_k3_gradient():
    logp, logq, adv, mask = batch()
    ref = logp.detach() + torch.tensor(D)
    policy_loss(logp, logq, adv, mask, ref_logprobs=ref, kl_coef=1.0)[0].backward()
    # d/dlogp k3 = 1 - e^d ; plus the IS part -A*r
    d = torch.tensor(D)
    expected = (torch.tensor([[-1.0, -2.0, -0.5], [3.0, 1.0, 0.0]]) + (1 - torch.exp(d))) / 5
    expected[1, 2] = 0.0
    torch.testing.assert_close(logp.grad, expected)


# --- aggregation and masking ------------------------------------------------------------------------------------


def test_sequence_aggregation():
    logp, logq, adv, mask = batch()
    loss, stats = policy_loss(logp, logq, adv, mask, kind="is", aggregate="sequence")
    # row 0: (-1 - 2 - 0.5) / 3 = -1.1666667; row 1: (3 + 1) / 2 = 2 -> mean 0.4166667
    assert close(loss.item(), (-3.5 / 3 + 2.0) / 2)
    assert close(stats["loss"], 0.4166667, 1e-6)


def test_sequence_aggregation_skips_fully_masked_rows():
    logp = torch.log(torch.tensor([[2.0, 2.0], [5.0, 5.0]]))
    loss, _ = policy_loss(logp, torch.zeros(2, 2), torch.tensor([1.0, 1.0]), torch.tensor([[1, 1], [0, 0]]),
                          aggregate="sequence")
    assert close(loss.item(), -2.0)


def test_padding_changes_nothing():
    logp, logq, adv, mask = batch()
    ref = logp.detach() + torch.tensor(D)
    base_loss, base_stats = policy_loss(logp, logq, adv, mask, kind="ppo", ref_logprobs=ref, kl_coef=0.1)
    base_loss.backward()
    base_grad = logp.grad.clone()

    for junk in (float("nan"), float("inf"), -float("inf"), 1e30):
        logp2 = logp.detach().clone()
        logq2, ref2 = logq.clone(), ref.clone()
        logp2[1, 2] = junk
        logq2[1, 2] = -junk if not math.isnan(junk) else junk
        ref2[1, 2] = junk
        logp2.requires_grad_(True)
        loss, stats = policy_loss(logp2, logq2, adv, mask, kind="ppo", ref_logprobs=ref2, kl_coef=0.1)
        loss.backward()
        assert loss.item() == base_loss.item()
        assert stats == base_stats
        assert torch.equal(logp2.grad, base_grad)

    # wider padding: appending masked columns changes nothing either
    logp3 = torch.cat([logp.detach(), torch.full((2, 2), 7.0)], dim=1).requires_grad_(True)
    pad = lambda t, v=0.0: torch.cat([t, torch.full((2, 2), v, dtype=t.dtype)], dim=1)  # noqa: E731
    for aggregate in ("token", "sequence"):
        a, _ = policy_loss(logp, logq, adv, mask, aggregate=aggregate)
        b, _ = policy_loss(logp3, pad(logq), adv, pad(mask, 0), aggregate=aggregate)
        assert close(a.item(), b.item(), 1e-7)


def test_bool_mask_and_bfloat16_inputs():
    logp, logq, adv, mask = batch(requires_grad=False)
    a, _ = policy_loss(logp, logq, adv, mask.bool())
    assert close(a.item(), 0.1)
    b, _ = policy_loss(logp.bfloat16(), logq.bfloat16(), adv, mask)
    assert b.dtype == torch.float32 and close(b.item(), 0.1, 1e-2)


# --- errors -----------------------------------------------------------------------------------------------------


def test_shape_errors_name_the_shapes():
    logp, logq, adv, mask = batch()
    with pytest.raises(ValueError, match=r"sampler_logprobs has shape \(2, 2\).*\(2, 3\)"):
        policy_loss(logp, logq[:, :2], adv, mask)
    with pytest.raises(ValueError, match=r"mask has shape \(3, 3\)"):
        policy_loss(logp, logq, adv, torch.ones(3, 3))
    with pytest.raises(ValueError, match=r"ref_logprobs has shape \(2,\)"):
        policy_loss(logp, logq, adv, mask, ref_logprobs=torch.zeros(2))
    with pytest.raises(ValueError, match=r"advantages has shape \(2, 1\).*\(2,\)"):
        policy_loss(logp, logq, adv[:, None], mask)
    with pytest.raises(ValueError, match="2-D"):
        policy_loss(logp[0], logq[0], adv, mask[0])


def test_unknown_kind_and_options():
    logp, logq, adv, mask = batch()
    with pytest.raises(ValueError, match="is, ppo, tis"):
        policy_loss(logp, logq, adv, mask, kind="grpo")
    with pytest.raises(ValueError, match="k1, k3"):
        policy_loss(logp, logq, adv, mask, ref_logprobs=logq, kl_estimator="k2")
    with pytest.raises(ValueError, match="token, sequence"):
        policy_loss(logp, logq, adv, mask, aggregate="batch")
    with pytest.raises(ValueError, match="no valid token"):
        policy_loss(logp, logq, adv, torch.zeros(2, 3))


def test_non_finite_loss_raises():
    logp, logq, adv, mask = batch()
    bad = logp.detach().clone()
    bad[0, 1] = float("nan")  # a valid token
    with pytest.raises(NonFiniteLossError, match="non-finite"):
        policy_loss(bad, logq, adv, mask)
    with pytest.raises(ValueError):  # NonFiniteLossError is a ValueError
        policy_loss(logp, logq, torch.tensor([float("inf"), 1.0]), mask)
    overflow = logp.detach().clone()
    overflow[1, 0] = 1000.0  # ratio exp(1000) = inf, A < 0
    with pytest.raises(NonFiniteLossError):
        policy_loss(overflow, logq, adv, mask, kind="is")


# --- gradient direction -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["is", "ppo", "tis"])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_sgd_step_moves_the_sampled_token(kind, sign):
    torch.manual_seed(0)
    theta = torch.randn(5, requires_grad=True)  # toy logits over a 5-token vocab
    token = 2
    old = torch.log_softmax(theta, -1)[token].item()
    logp = torch.log_softmax(theta, -1)[token].view(1, 1)
    loss, _ = policy_loss(logp, logp.detach(), torch.tensor([sign]), torch.ones(1, 1), kind=kind)
    loss.backward()
    with torch.no_grad():
        theta -= 0.5 * theta.grad
    new = torch.log_softmax(theta, -1)[token].item()
    assert (new - old) * sign > 0  # positive advantage: more likely; negative: less likely


# --- advantages -------------------------------------------------------------------------------------------------


def test_group_advantages():
    rewards = [1.0, 0.0, 1.0, 0.0, 2.0, 2.0, 2.0, 2.0, 3.0, 0.0, 0.0, 0.0]
    a = group_advantages(rewards, 4)
    # group 0: mean 0.5, population std 0.5 -> +-0.5 / (0.5 + 1e-6); group 1: all equal -> 0
    # group 2: mean 0.75, std sqrt((2.25^2 + 3*0.75^2)/4) = sqrt(1.6875) = 1.2990381
    s = 0.5 + 1e-6
    g2 = 1.2990381 + 1e-6
    expected = [0.5 / s, -0.5 / s, 0.5 / s, -0.5 / s, 0, 0, 0, 0, 2.25 / g2, -0.75 / g2, -0.75 / g2, -0.75 / g2]
    torch.testing.assert_close(a, torch.tensor(expected), atol=1e-6, rtol=1e-6)
    assert a.dtype == torch.float32
    b = group_advantages(torch.tensor(rewards), 4, normalize_std=False)
    torch.testing.assert_close(b[:4], torch.tensor([0.5, -0.5, 0.5, -0.5]))
    torch.testing.assert_close(b[8:], torch.tensor([2.25, -0.75, -0.75, -0.75]))
    assert torch.equal(b[4:8], torch.zeros(4))
    assert torch.equal(group_advantages([3.0, -1.0], 1), torch.zeros(2))  # a group of one carries no signal


def test_equal_reward_groups():
    rewards = [1.0, 0.0, 1.0, 0.0, 2.0, 2.0, 2.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 0.5000001]
    assert equal_reward_groups(rewards, 4) == [1, 2]
    assert equal_reward_groups(rewards, 4, atol=1e-5) == [1, 2, 3]
    assert equal_reward_groups([1.0, 2.0], 2) == []


def test_advantage_errors():
    with pytest.raises(ValueError, match="groups of 3"):
        group_advantages([1.0, 2.0, 3.0, 4.0], 3)
    with pytest.raises(ValueError, match="positive int"):
        equal_reward_groups([1.0], 0)
    with pytest.raises(ValueError, match="non-finite"):
        group_advantages([1.0, float("nan")], 2)
