"""The `memroute` command end to end, as a user runs it (subprocesses, real files, the tiny model)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from data.embedded import TEST_PATH, TRAIN_PATH

REPO = Path(__file__).resolve().parents[1]


def memroute(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "memroute", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"memroute {args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_help_lists_every_command():
    out = memroute("--help").stdout
    for name in ("quickstart", "model", "data", "eval"):
        assert name in out
    bad = memroute("nope", check=False)
    assert bad.returncode == 2 and "unknown command 'nope'" in bad.stderr


def test_data_validate_stats_convert(tmp_path):
    assert "ok" in memroute("data", "validate", TRAIN_PATH, TEST_PATH).stdout
    stats = json.loads(memroute("data", "stats", TRAIN_PATH, "--json").stdout)
    assert stats["rows"] > 0 and set(stats["label_counts"]) >= {"none", "user.role_context"}
    table = memroute("data", "stats", TRAIN_PATH).stdout  # markdown for people
    assert f"| rows | {stats['rows']} |" in table and "| user.role_context |" in table
    parquet = tmp_path / "test.parquet"
    memroute("data", "convert", TEST_PATH, parquet)
    refused = memroute("data", "convert", TEST_PATH, tmp_path / "out.csv", check=False)
    assert refused.returncode == 2 and "unknown dataset format '.csv'" in refused.stderr
    assert not (tmp_path / "out.csv").exists()
    (tmp_path / "notes.md").write_text("# not metrics\n")
    refused = memroute("data", "table", f"x={tmp_path / 'notes.md'}", check=False)
    assert refused.returncode == 2 and f"{tmp_path / 'notes.md'} is not a metrics.json file" in refused.stderr
    assert "ok" in memroute("data", "validate", parquet).stdout
    bad = tmp_path / "bad.jsonl"
    lines = TEST_PATH.read_text().splitlines()
    row = json.loads(lines[1])
    row["categories"] = ["company.vibes"]
    bad.write_text("\n".join([lines[0], json.dumps(row), lines[2]]) + "\n")
    proc = memroute("data", "validate", bad, check=False)
    assert proc.returncode == 1
    assert f"{bad}:2: field 'categories': unknown category 'company.vibes'" in proc.stdout
    assert f"{bad}: 3 rows, 1 bad" in proc.stdout


def test_data_validate_lists_every_bad_row(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    lines = TEST_PATH.read_text().splitlines()[:3]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([lines[0], '{"id": "x", broken', lines[1], lines[0], "[1, 2", lines[2]]) + "\n")
    proc = memroute("data", "validate", empty, bad, TEST_PATH, check=False)
    assert proc.returncode == 1
    out = proc.stdout
    assert f"FAIL {empty}: the file is empty (0 bytes)" in out
    first_id = json.loads(lines[0])["id"]
    assert f"{bad}:2: field '<row>': malformed JSON" in out  # a broken line no longer stops the file
    assert f"{bad}:4: field 'id': duplicate id '{first_id}', first at line 1" in out
    assert f"{bad}:5: field '<row>': malformed JSON" in out
    assert f"{bad}: 6 rows, 3 bad" in out
    assert f"ok   {TEST_PATH}: " in out  # the files after a bad one are still checked


def test_eval_majority_and_score(tmp_path):
    out = tmp_path / "maj"
    memroute("eval", "--backend", "majority", "--out", out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == len(TEST_PATH.read_text().splitlines())
    assert metrics["parse_failure_rate"] == 0.0 and 0.0 < metrics["mean_f1"] < 1.0
    scored = memroute("data", "score", out / "predictions.jsonl", "--data", TEST_PATH).stdout
    assert f"{metrics['mean_f1']:.3f}" in scored
    cmp = json.loads(memroute("data", "compare", out / "predictions.jsonl", out / "predictions.jsonl",
                              "--data", TEST_PATH, "--json").stdout)
    assert cmp["delta"] == 0.0
    table = memroute("data", "compare", out / "predictions.jsonl", out / "predictions.jsonl", "--data", TEST_PATH).stdout
    assert "| mean F1 |" in table and "+0.000" in table
    assert json.loads(memroute("data", "score", out / "predictions.jsonl", "--data", TEST_PATH, "--json").stdout)[
        "mean_f1"] == metrics["mean_f1"]


def test_score_and_compare_break_down_by_source(tmp_path):
    rows = [json.loads(line) for line in TEST_PATH.read_text().splitlines()[:6]]
    for i, row in enumerate(rows):
        row["source"] = "long" if i < 4 else "diverse"
    data = tmp_path / "two_sources.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    gold, wrong = tmp_path / "gold.jsonl", tmp_path / "wrong.jsonl"
    gold.write_text("".join(json.dumps({"id": r["id"], "predicted": r["categories"]}) + "\n" for r in rows))
    # wrong only on the "long" part: the breakdown must put the whole difference there
    wrong.write_text("".join(json.dumps({"id": r["id"], "predicted": r["categories"] if r["source"] == "diverse"
                                         else (["none"] if r["categories"] != ["none"] else ["user.role_context"])})
                             + "\n" for r in rows))
    scored = json.loads(memroute("data", "score", wrong, "--data", data, "--json").stdout)
    assert scored["per_source"]["long"]["mean_f1"] == 0.0 and scored["per_source"]["diverse"]["mean_f1"] == 1.0
    assert scored["per_source"]["long"]["n"] == 4
    cmp = json.loads(memroute("data", "compare", wrong, gold, "--data", data, "--json").stdout)
    assert cmp["per_source"]["long"]["delta"] == 1.0 and cmp["per_source"]["diverse"]["delta"] == 0.0
    table = memroute("data", "compare", wrong, gold, "--data", data).stdout
    assert "| long | 4 | 0.000 / 1.000 | +1.000" in table and "| diverse | 2 | 1.000 / 1.000 | +0.000" in table


def test_eval_tfidf_baseline(tmp_path):
    out = tmp_path / "tfidf"
    proc = memroute("eval", "--backend", "tfidf", "--out", out)
    assert proc.stdout.startswith("## tfidf on test.jsonl")
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert preds and all(p["model"].startswith("tfidf-logreg(C=") and p["predicted"] for p in preds)


@pytest.mark.slow
def test_eval_with_the_tiny_model(tmp_path):
    out = tmp_path / "tiny"
    proc = memroute("eval", "--model", "tiny", "--limit", "4", "--max-new-tokens", "8", "--out", out)
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 4 and all(p["model"] == "tiny" and isinstance(p["raw"], str) for p in preds)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 4 and metrics["config"]["model"] == "tiny"
    assert "mean F1" in (out / "metrics.md").read_text() and "mean F1" in proc.stdout


@pytest.mark.parametrize("args, words", [
    (["--data", "/nonexistent/x.jsonl", "--backend", "majority"], "dataset not found: /nonexistent/x.jsonl"),
    (["--model", "/nonexistent/model", "--limit", "1"], "/nonexistent/model"),
    (["--model", "tiny", "--adapter", "/nonexistent/adapter", "--limit", "1"], "LoRA adapter not found"),
])
def test_eval_bad_input_is_a_clear_error(tmp_path, args, words):
    proc = memroute("eval", "--out", tmp_path / "x", *args, check=False)
    assert proc.returncode == 2 and words in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists(), "nothing written on a failed run"
