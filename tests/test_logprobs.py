"""learner.logprobs: the shared-prefix path gives the naive path's log-probs and LoRA gradients (tiny model, fp32)."""

from __future__ import annotations

import pytest
import torch

from learner.config import LoraConfig, ModelConfig
from learner.logprobs import _expand_cache, group_logprobs, sequence_logprobs, token_entropy

VOCAB = 49152  # the SmolLM2 tokenizer the tiny model shares
PROMPT_LEN = 200
LENGTHS = [3, 12, 5, 7, 4, 10, 6, 9]


@pytest.fixture(scope="module")
def policy():
    from learner.lora import build_policy

    torch.manual_seed(0)
    model = build_policy(ModelConfig(name="tiny", dtype="float32"), LoraConfig(rank=8))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # peft inits B = 0, which would make every A gradient zero
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
    # One intra-op thread: the tensors are tiny, and OpenMP threads spinning on a shared, busy machine make
    # small ops orders of magnitude slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield model
    finally:
        torch.set_num_threads(threads)


def _ids(n, seed):
    return torch.randint(0, VOCAB, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def _lora_grads(model, rows):
    params = [p for n, p in model.named_parameters() if p.requires_grad]
    assert params and all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)
    return torch.autograd.grad(sum(r.sum() for r in rows), params)


def _check_same(policy, prompt, completions):
    naive = sequence_logprobs(policy, [prompt] * len(completions), completions)
    shared = group_logprobs(policy, prompt, completions)
    assert [t.shape for t in shared] == [(len(c),) for c in completions]
    for a, b in zip(naive, shared):
        assert a.dtype == b.dtype == torch.float32
        assert torch.isfinite(a).all()
        torch.testing.assert_close(b, a, atol=1e-5, rtol=0)
    g_naive = _lora_grads(policy, naive)
    g_shared = _lora_grads(policy, shared)
    assert any(g.abs().max() > 0 for g in g_naive)
    for a, b in zip(g_naive, g_shared):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4 * float(a.abs().max()) + 1e-9)


def test_group_matches_naive_values_and_lora_gradients(policy):
    prompt = _ids(PROMPT_LEN, 0)
    completions = [_ids(n, 100 + i) for i, n in enumerate(LENGTHS)]
    _check_same(policy, prompt, completions)


def test_single_completion_of_one_token(policy):
    prompt = _ids(PROMPT_LEN, 0)
    _check_same(policy, prompt, [_ids(1, 7)])
    _check_same(policy, prompt, [_ids(1, 7), _ids(4, 8), _ids(1, 9)])  # mixed with longer ones


def test_entropy_matches_and_is_detached(policy):
    prompt = _ids(50, 3)
    completions = [_ids(n, 30 + n) for n in (2, 5, 1)]
    lp_a, ent_a = sequence_logprobs(policy, [prompt] * 3, completions, return_entropy=True)
    lp_b, ent_b = group_logprobs(policy, prompt, completions, return_entropy=True)
    for a, b in zip(ent_a, ent_b):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=0)
        assert not b.requires_grad
    # against the helper on the full-sequence logits
    with torch.no_grad():
        seq = torch.tensor([prompt + completions[1]])
        logits = policy(input_ids=seq).logits[0, len(prompt) - 1 : -1]
    torch.testing.assert_close(ent_a[1], token_entropy(logits), atol=1e-5, rtol=0)
    assert (ent_a[1] > 0).all() and (ent_a[1] <= torch.log(torch.tensor(float(VOCAB))) + 1e-4).all()


def test_naive_batch_with_different_prompts_matches_rows_alone(policy):
    prompts = [_ids(20, 1), _ids(35, 2), _ids(7, 3)]
    completions = [_ids(4, 11), _ids(1, 12), _ids(9, 13)]
    with torch.no_grad():
        batched = sequence_logprobs(policy, prompts, completions)
        for p, c, b in zip(prompts, completions, batched):
            (alone,) = sequence_logprobs(policy, [p], [c])
            torch.testing.assert_close(b, alone, atol=1e-5, rtol=0)
            # and against a plain forward over prompt + completion
            logits = policy(input_ids=torch.tensor([p + c])).logits[0].float()
            ref = torch.log_softmax(logits, -1)[torch.arange(len(p) - 1, len(p) + len(c) - 1), torch.tensor(c)]
            torch.testing.assert_close(b, ref, atol=1e-5, rtol=0)


def test_cache_is_expanded_without_copy(policy):
    prompt = torch.tensor([_ids(10, 5)])
    with torch.no_grad():
        cache = policy(input_ids=prompt, use_cache=True).past_key_values
    before = [layer.keys.data_ptr() for layer in cache.layers]
    _expand_cache(cache, 4)
    for layer, ptr in zip(cache.layers, before):
        assert layer.keys.shape[0] == 4 and layer.keys.stride(0) == 0 and layer.keys.data_ptr() == ptr
        assert layer.values.shape[0] == 4 and layer.values.stride(0) == 0


def test_input_errors(policy):
    with pytest.raises(ValueError, match="prompt_ids is empty"):
        group_logprobs(policy, [], [[1, 2]])
    with pytest.raises(ValueError, match="2 prompts but 1 completions"):
        sequence_logprobs(policy, [[1], [2]], [[3]])
    assert [t.numel() for t in group_logprobs(policy, [1, 2], [[], [5]])] == [0, 1]
