"""`memroute eval` on the vLLM engine: in process (the default) and as Ray Data batch inference over Parquet."""

import json

import pytest

from actors.evaluate import EvalConfig, run_eval
from data.embedded import TEST_PATH
from data.schema import read_examples, write_examples


@pytest.mark.slow
def test_ray_data_batch_inference_matches_the_in_process_engine(ray_local, tmp_path):
    examples = read_examples(TEST_PATH)[:6]
    shards = tmp_path / "shards"
    shards.mkdir()
    write_examples(shards / "part-0.parquet", examples[:4])  # a folder of two Parquet shards
    write_examples(shards / "part-1.parquet", examples[4:])
    data = tmp_path / "six.jsonl"
    write_examples(data, examples)
    common = dict(model="tiny", dtype="float32", max_new_tokens=8, kv_cache_gib=1, samples=0)
    local = run_eval(EvalConfig(data=str(data), out=str(tmp_path / "vllm"), **common))
    from actors.batch_route import route_ray_data
    from actors.evaluate import engine_config

    by_id = route_ray_data(engine_config(EvalConfig(**common)), None, str(shards), max_tokens=8)
    preds = [json.loads(line) for line in (tmp_path / "vllm" / "predictions.jsonl").read_text().splitlines()]
    assert local["n"] == 6 and sorted(by_id) == sorted(ex.id for ex in examples)
    assert {p["id"]: p["raw"] for p in preds} == by_id  # greedy, same engine, same weights: the same answers
    # the ray-data backend of `memroute eval` (a JSONL dataset becomes one Parquet shard)
    remote = run_eval(EvalConfig(data=str(data), out=str(tmp_path / "rd"), backend="ray-data", **common))
    assert remote["mean_f1"] == local["mean_f1"] and remote["n"] == 6

