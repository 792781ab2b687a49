"""The shared-prefix SFT loss (learner.segment) and the frozen-trunk cache (learner.trunk_cache), on the tiny model.

The reference for both is the plain path, `learner.sft.masked_ce_sum` (one right-padded forward of whole
examples): the same summed loss and the same LoRA gradients, exactly up to float rounding with a float32 cache
and within float16 rounding with a float16 one.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from data.embedded import TRAIN_PATH
from learner.config import ALL_PROJECTIONS, LoraConfig, ModelConfig, SFTConfig
from learner.lora import build_policy
from learner.sft import answer_loss_fn, lowest_adapted_layer, shared_prefix_len, validate_sft_config
from learner.sft_data import load_sft_examples
from memroute.core.config import ConfigError, load_config
from memroute.core.models import load_tokenizer


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    rows = TRAIN_PATH.read_text().splitlines()[:6]
    path = tmp_path_factory.mktemp("trunk") / "six.jsonl"
    path.write_text("\n".join(rows) + "\n")
    return load_sft_examples(path, load_tokenizer("tiny"), 1024)


def policy(top_layers=None, seed=0):
    torch.manual_seed(seed)
    p = build_policy(ModelConfig(name="tiny", dtype="float32"),
                     LoraConfig(rank=4, alpha=8, target_modules=list(ALL_PROJECTIONS), top_layers=top_layers),
                     seed=seed)
    # LoRA B starts at zero; give it values so the adapted layers change the output and get full gradients
    with torch.no_grad():
        for name, t in p.named_parameters():
            if "lora_B" in name:
                t.normal_(0, 0.05)
    return p


def loss_and_grads(model, fn, indices):
    model.zero_grad(set_to_none=True)
    loss = fn(indices)
    loss.backward()
    grads = {n: t.grad.clone() for n, t in model.named_parameters() if t.requires_grad}
    return loss.item(), grads


def assert_close(a, b, rtol, atol):
    (la, ga), (lb, gb) = a, b
    assert la == pytest.approx(lb, rel=rtol)
    assert ga.keys() == gb.keys() and ga
    for n in ga:
        torch.testing.assert_close(ga[n], gb[n], rtol=rtol, atol=atol, msg=n)


@pytest.mark.parametrize("pad_tokens", [None, 0, 128])  # one padded batch, each row alone, groups
def test_shared_prefix_matches_plain_forward(examples, pad_tokens):
    model = policy()
    P = shared_prefix_len(examples)
    assert 20 < P < min(ex.n_prompt for ex in examples)  # chat template + system message
    assert len({ex.n_tokens for ex in examples}) > 1  # rows of different lengths: padding to get right or avoid
    plain = answer_loss_fn(model, examples, 0, "cpu")
    shared = answer_loss_fn(model, examples, 0, "cpu", prefix_len=P, pad_tokens=pad_tokens)
    idx = [0, 2, 3, 5]
    assert_close(loss_and_grads(model, shared, idx), loss_and_grads(model, plain, idx), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("pad_tokens", [None, 0, 128])
@pytest.mark.parametrize("dtype,rtol,atol", [("float32", 1e-4, 1e-6), ("float16", 2e-2, 1e-4)])
def test_cached_trunk_matches_uncached_gradients(examples, tmp_path, dtype, rtol, atol, pad_tokens):
    from learner.trunk_cache import open_cache

    model = policy(top_layers=1)
    layer = lowest_adapted_layer(model)
    assert layer == 1
    P = shared_prefix_len(examples)
    cache = open_cache(model, [ex.input_ids for ex in examples], layer, tmp_path, P, dtype)
    plain = answer_loss_fn(model, examples, 0, "cpu")
    cached = answer_loss_fn(model, examples, 0, "cpu", cache=cache, pad_tokens=pad_tokens)
    idx = [1, 4, 5]
    ref = loss_and_grads(model, plain, idx)
    assert_close(loss_and_grads(model, cached, idx), ref, rtol=rtol, atol=atol)
    # gradients reach only the adapted layer: nothing below the cut is trained
    assert all(".layers.1." in n for n in ref[1])


def test_length_groups_batch_similar_lengths_and_bound_the_padding():
    from learner.segment import length_groups

    lengths = [50, 400, 52, 990, 60, 410]
    assert length_groups(lengths, None) == [[0, 1, 2, 3, 4, 5]]
    assert length_groups(lengths, 0) == [[0], [2], [4], [1], [5], [3]]
    # 52 adds 2 to the 50, 60 adds 2 x 8: the short three run together; 400 would add 3 x 340: a new group
    assert length_groups(lengths, 128) == [[0, 2, 4], [1, 5], [3]]
    assert length_groups([7, 7, 7], 0) == [[0, 1, 2]]  # equal lengths: no padding, one run
    for groups in (length_groups(lengths, t) for t in (0, 16, 128, 10_000)):
        assert sorted(i for g in groups for i in g) == list(range(len(lengths)))


def test_interrupted_build_resumes_and_reuses_finished_shards(examples, tmp_path, monkeypatch):
    from learner import trunk_cache

    monkeypatch.setattr(trunk_cache, "SHARD_TOKENS", 1)  # a shard per forward
    monkeypatch.setattr(trunk_cache, "BUILD_BATCH", 1)  # a forward per example
    model = policy(top_layers=1)
    ids = [ex.input_ids for ex in examples]
    P = shared_prefix_len(examples)
    rests = sorted(len(x) - P for x in ids)  # the build goes shortest first

    class Stop(Exception):
        pass

    def stop_after_three(done, total):
        if done >= sum(rests[:3]):
            raise Stop

    with pytest.raises(Stop):
        trunk_cache.open_cache(model, ids, 1, tmp_path, P, "float32", stop_after_three)
    folder = next(tmp_path.iterdir())
    first = sorted(p.name for p in folder.glob("shard_*.json"))
    assert len(first) == 2  # the third example's shard was being committed when the build was stopped
    mtimes = {p: p.stat().st_mtime_ns for p in folder.glob("shard_*")}
    seen = []
    cache = trunk_cache.open_cache(model, ids, 1, tmp_path, P, "float32", lambda d, t: seen.append(t))
    assert seen and seen[-1] == sum(rests[2:])  # only the missing examples were computed
    assert all(p.stat().st_mtime_ns == m for p, m in mtimes.items())
    fresh = trunk_cache.open_cache(model, ids, 1, tmp_path / "fresh", P, "float32")
    for x in ids:
        np.testing.assert_array_equal(cache.rest(x), fresh.rest(x))


def test_other_trunk_or_dtype_is_another_folder_and_tampering_is_refused(examples, tmp_path):
    from learner.trunk_cache import TrunkCacheError, open_cache

    ids = [ex.input_ids for ex in examples]
    P = shared_prefix_len(examples)
    a = open_cache(policy(top_layers=1), ids, 1, tmp_path, P, "float16")
    b = open_cache(policy(top_layers=1), ids, 1, tmp_path, P, "float32")
    assert a.folder != b.folder
    other = policy(top_layers=1)
    with torch.no_grad():  # a changed base weight below the cut: a different trunk
        other.get_base_model().model.layers[0].mlp.up_proj.weight.add_(0.01)
    c = open_cache(other, ids, 1, tmp_path, P, "float16")
    assert c.folder not in (a.folder, b.folder)
    assert not np.array_equal(np.asarray(c.rest(ids[0])), np.asarray(a.rest(ids[0])))

    meta = json.loads((a.folder / "meta.json").read_text())
    (a.folder / "meta.json").write_text(json.dumps({**meta, "layer": 0}))
    with pytest.raises(TrunkCacheError, match="meta.json differs"):
        open_cache(policy(top_layers=1), ids, 1, tmp_path, P, "float16")
    (a.folder / "meta.json").write_text(json.dumps(meta))
    shard = sorted(a.folder.glob("shard_*.json"))[0]
    index = json.loads(shard.read_text())
    key = next(iter(index))
    shard.write_text(json.dumps({key: [0, 10 ** 9]}))
    with pytest.raises(TrunkCacheError, match="past the"):
        open_cache(policy(top_layers=1), ids, 1, tmp_path, P, "float16")


def test_lora_below_the_cut_is_refused(examples, tmp_path):
    from learner.trunk_cache import TrunkCacheError, open_cache

    ids = [ex.input_ids for ex in examples]
    with pytest.raises(TrunkCacheError, match="not frozen"):
        open_cache(policy(top_layers=None), ids, 1, tmp_path, shared_prefix_len(examples), "float16")


def test_config_checks():
    with pytest.raises(ConfigError, match="lora.top_layers"):
        validate_sft_config(load_config(SFTConfig, None, ["trunk.cache=true"]))
    with pytest.raises(ConfigError, match="trunk.dtype"):
        validate_sft_config(load_config(SFTConfig, None, ["trunk.cache=true", "lora.top_layers=1",
                                                          "trunk.dtype=int8"]))
    with pytest.raises(ConfigError, match="init_adapter"):
        validate_sft_config(load_config(SFTConfig, None, ["init_adapter=/nonexistent/adapter"]))
    with pytest.raises(ConfigError, match="loraplus_ratio"):
        validate_sft_config(load_config(SFTConfig, None, ["optim.loraplus_ratio=0.5"]))


def test_batched_build_matches_one_example_at_a_time(examples, tmp_path, monkeypatch):
    from learner import trunk_cache

    model = policy(top_layers=1)
    ids = [ex.input_ids for ex in examples]
    P = shared_prefix_len(examples)
    batched = trunk_cache.open_cache(model, ids, 1, tmp_path / "batched", P, "float32")
    monkeypatch.setattr(trunk_cache, "BUILD_BATCH", 1)
    single = trunk_cache.open_cache(model, ids, 1, tmp_path / "single", P, "float32")
    for x in ids:
        np.testing.assert_allclose(batched.rest(x), single.rest(x), rtol=1e-4, atol=1e-5)
