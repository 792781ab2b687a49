"""The Cohere teacher pipeline against a local fake Cohere server (tests/fake_cohere.py): no network, no model,
no Ray. Backoff is made tiny through config overrides so retries cost milliseconds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data.embedded import TEST_PATH
from data.parser import format_answer
from data.prompt import conversation_text, prompt_messages
from data.schema import make_example, read_examples
from data.teacher import client as client_mod
from data.teacher.cli import main
from data.teacher.client import BudgetExhausted, RequestFailed, TeacherClient, backoff_delay
from data.teacher.config import TeacherConfig
from data.teacher.coverage import coverage_report, length_bucket
from data.teacher.dedup import find_near_duplicates, jaccard, shingles
from data.teacher.generate import plan_specs
from data.teacher.shards import ShardStore
from memroute.core.config import load_config
from memroute.core.errors import run_command

from fake_cohere import FakeCohere  # pytest puts tests/ (no __init__.py) on sys.path

# The cohere SDK's pydantic models use APIs pydantic 2 deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

REPO = Path(__file__).resolve().parents[1]
KEY = "sk-fake-7f3a9c-SENTINEL"  # must reach the server as a bearer token and nowhere else
FAST = ["backoff_base_s=0.001", "backoff_cap_s=0.01"]


@pytest.fixture
def fake():
    with FakeCohere() as server:
        yield server


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("CO_API_KEY", KEY)


def teacher(capsys, fake, *args):
    """Run `memroute teacher ...` in-process against the fake server; (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = run_command("memroute teacher", main, [*map(str, args), f"base_url={fake.url}", *FAST])
    out, err = capsys.readouterr()
    return code, out, err


def shard_ids(folder: Path) -> list[str]:
    return [json.loads(line)["id"] for p in sorted(folder.glob("part-*.jsonl")) for line in p.read_text().splitlines()]


def plan_ids(n: int) -> list[str]:
    cfg = TeacherConfig()
    cfg.generate.n_conversations = n
    return [s.id for s in plan_specs(cfg.generate)]


def assert_key_not_written(folder: Path, *texts: str) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), f"the API key leaked into {path}"
    for text in texts:
        assert KEY not in text


# ---------------------------------------------------------------------------------------------------------
# The pipeline end to end
# ---------------------------------------------------------------------------------------------------------


def test_generate_then_label_end_to_end(tmp_path, fake, key, capsys):
    gen, lab = tmp_path / "gen", tmp_path / "lab"
    code, out, err = teacher(capsys, fake, "generate", "--n", 8, "--out", gen, "shard_size=3", "concurrency=3")
    assert code == 0, err
    rows = read_examples(gen / "conversations.jsonl")
    assert [ex.id for ex in rows] == plan_ids(8)  # plan order, deterministic ids
    assert [ex.to_dict() for ex in read_examples(gen / "conversations.parquet")] == [ex.to_dict() for ex in rows]
    assert len(list((gen / "shards").glob("part-*.parquet"))) == 3 == len(list((gen / "shards").glob("*.jsonl")))
    spec0 = plan_specs(TeacherConfig().generate)[0]
    assert rows[0].categories == list(spec0.labels) and rows[0].metadata["industry"] == spec0.industry
    assert json.loads((gen / "usage.json").read_text())["requests"] == 8

    code, out, err = teacher(capsys, fake, "label", "--data", gen / "conversations.jsonl", "--out", lab)
    assert code == 0, err
    labelled = read_examples(lab / "labelled.parquet")
    assert [ex.id for ex in labelled] == [ex.id for ex in rows]
    # The fake labeller reads the labels the fake writer planted: the teacher's labels reach the rows intact.
    assert all(ex.categories == ex.metadata["input_labels"] and ex.metadata["rationale"] for ex in labelled)
    assert all(ex.source == "cohere-teacher:command-r-plus-08-2024" for ex in labelled)
    assert json.loads((lab / "coverage.json").read_text())["rows"] == 8

    assert len(fake.requests) == 16
    assert {r["path"] for r in fake.requests} == {"/v2/chat"}
    assert {r["authorization"] for r in fake.requests} == {f"Bearer {KEY}"}
    assert {r["body"]["model"] for r in fake.requests} == {"command-r-plus-08-2024"}
    assert all(r["body"]["response_format"]["type"] == "json_object" for r in fake.requests)

    code, out, err = teacher(capsys, fake, "generate", "--n", 8, "--out", gen)  # a re-run has nothing to do
    assert code == 0 and len(fake.requests) == 16 and "8 of 8 items already done" in err
    assert_key_not_written(tmp_path, out, err)


# ---------------------------------------------------------------------------------------------------------
# Retries, validation, budget
# ---------------------------------------------------------------------------------------------------------


def make_client(fake, **overrides) -> TeacherClient:
    cfg = TeacherConfig(base_url=fake.url, backoff_base_s=0.001, backoff_cap_s=0.01, **overrides)
    return TeacherClient(cfg, log=lambda msg: None)


def chat(client):
    return client.chat([{"role": "user", "content": "Conversation:\nUSER: hi\n\nJSON answer?"}], max_tokens=20,
                       temperature=0.0)


def test_client_retries_429_5xx_dropped_connection_and_timeout(fake, key):
    client = make_client(fake, timeout_s=0.3)
    fake.script(["429", "500", "drop", "503", "sleep:1.0"])
    result = chat(client)
    assert json.loads(result.text)["labels"] == ["none"]
    assert len(fake.requests) == 6
    b = client.budget
    assert (b.requests, b.retries, b.input_tokens, b.output_tokens) == (6, 5, 100, 50)  # usage: billed units


def test_client_gives_up_after_max_retries(fake, key):
    client = make_client(fake, max_retries=2)
    fake.script(["500", "500", "500", "ok"])
    with pytest.raises(RequestFailed, match="gave up after 3 attempts; last: HTTP 500"):
        chat(client)
    assert len(fake.requests) == 3


def test_backoff_is_exponential_capped_and_jittered():
    for attempt in range(6):
        delays = [backoff_delay(attempt, base=0.5, cap=4.0) for _ in range(200)]
        assert 0 <= min(delays) and max(delays) <= min(4.0, 0.5 * 2 ** attempt)
        assert len(set(delays)) > 150  # jitter: not one fixed delay
    assert max(backoff_delay(5, 0.5, 4.0) for _ in range(200)) > 2.0  # grows up to the cap
    assert backoff_delay(0, 0.5, 4.0, retry_after=2.5) == 2.5 and backoff_delay(0, 0.5, 4.0, retry_after=99) == 4.0


def test_request_and_token_budgets():
    b = client_mod.Budget(max_requests=2, max_tokens=None)
    b.reserve(), b.reserve()
    with pytest.raises(BudgetExhausted, match="request budget exhausted"):
        b.reserve()
    b = client_mod.Budget(max_requests=None, max_tokens=100)
    b.reserve()
    b.record(80, 20)
    with pytest.raises(BudgetExhausted, match="token budget exhausted"):
        b.reserve()


def test_bad_key_stops_the_run_at_the_first_refusal(tmp_path, fake, key, capsys):
    fake.script(["401"])
    code, out, err = teacher(capsys, fake, "generate", "--n", 4, "--out", tmp_path / "g", "concurrency=1")
    assert code == 2 and "HTTP 401" in err and "check the key in CO_API_KEY" in err
    assert len(fake.requests) == 1
    assert_key_not_written(tmp_path, out, err)


def test_malformed_labels_are_retried_then_rejected_with_the_reason(tmp_path, fake, key, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in [json.loads(line) for line in
                                                           TEST_PATH.read_text().splitlines()[:3]]))
    fake.script(["bad_json", "unknown_label", "none_mixed", "ok"])  # row 1: two bad answers; row 2: one
    out = tmp_path / "lab"
    code, _, err = teacher(capsys, fake, "label", "--data", src, "--out", out, "concurrency=1",
                           "max_answer_attempts=2")
    assert code == 0, err  # every row is accounted for: accepted or rejected
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert len(rejected) == 1 and rejected[0]["stage"] == "label"
    assert "unknown category 'company.vibes'" in rejected[0]["reason"]
    assert rejected[0]["attempts"][0].startswith("malformed JSON") and len(rejected[0]["attempts"]) == 2
    assert rejected[0]["input"]["conversation"] and rejected[0]["raw"]
    import pyarrow.parquet as pq

    reasons = pq.read_table(out / "rejected" / "part-00000.parquet").column("reason").to_pylist()
    assert reasons == [rejected[0]["reason"]]
    assert len(read_examples(out / "labelled.jsonl")) == 2
    assert len(fake.requests) == 5
    code, _, _ = teacher(capsys, fake, "label", "--data", src, "--out", out)  # rejected rows count as done
    assert code == 0 and len(fake.requests) == 5


def test_bad_conversations_are_rejected_with_the_reason(tmp_path, fake, key, capsys):
    fake.script(["empty_conversation", "bad_roles", "text:[1, 2]", "text:{\"turns\": []}"])
    out = tmp_path / "gen"
    code, _, err = teacher(capsys, fake, "generate", "--n", 2, "--out", out, "concurrency=1",
                           "max_answer_attempts=2")
    assert code == 0, err
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    reasons = [a for row in rejected for a in row["attempts"]]
    assert "is empty: at least one turn is needed" in reasons[0]
    assert "role': must be one of ('user', 'assistant'), got 'system'" in reasons[1]
    assert reasons[2] == "answer must be a JSON object, got list"
    assert reasons[3].startswith("answer has no 'conversation' key")
    assert rejected[0]["input"]["spec"]["turns"] >= 3 and not read_examples_or_empty(out / "conversations.jsonl")


def read_examples_or_empty(path: Path):
    return read_examples(path) if path.read_text().strip() else []


@pytest.mark.parametrize("limit, kept", [("request_budget=3", 3), ("token_budget=250", 2)])
def test_budget_stops_cleanly_and_a_rerun_continues(tmp_path, fake, key, capsys, limit, kept):
    out = tmp_path / "gen"
    code, stdout, _ = teacher(capsys, fake, "generate", "--n", 5, "--out", out, "shard_size=2", "concurrency=1",
                              limit)
    assert code == 1 and "budget exhausted" in stdout and "re-run the same command" in stdout
    assert len(fake.requests) == kept
    assert sorted(shard_ids(out / "shards")) == sorted(plan_ids(5)[:kept])  # finished work kept
    assert len(read_examples(out / "conversations.jsonl")) == kept
    code, _, _ = teacher(capsys, fake, "generate", "--n", 5, "--out", out, "shard_size=2")
    assert code == 0 and len(fake.requests) == 5
    assert sorted(shard_ids(out / "shards")) == sorted(plan_ids(5))


# ---------------------------------------------------------------------------------------------------------
# Dedup and coverage
# ---------------------------------------------------------------------------------------------------------


def conv(text: str) -> list[dict]:
    return [{"role": "user", "content": text}, {"role": "assistant", "content": "Noted, thanks for the context."}]


BASE = ("Our brand voice is warm and plain spoken and we never use jargon in customer emails because the founders "
        "wanted every message to sound like a neighbour giving advice over the garden fence on a sunny afternoon")


def test_near_duplicates_are_found_and_the_first_kept():
    near = BASE.replace("sunny", "rainy")
    other = "Can you give me three subject lines for the spring sale newsletter that goes out to lapsed buyers"
    assert jaccard(shingles(BASE), shingles(BASE)) == 1.0 and 0.8 < jaccard(shingles(BASE), shingles(near)) < 1
    rows = [make_example(f"r{i}", conv(t), ["none"]) for i, t in enumerate([BASE, other, near, BASE.upper()])]
    dups = find_near_duplicates(rows, threshold=0.8)
    assert [(d.id, d.duplicate_of) for d in dups] == [("r2", "r0"), ("r3", "r0")]
    assert find_near_duplicates(rows, threshold=1.0)[0].id == "r3"  # exact (case-folded) copies only


def test_pipeline_removes_near_duplicate_conversations(tmp_path, fake, key, capsys):
    same = json.dumps({"conversation": conv(BASE) * 5})  # 10 turns: long enough for any spec
    fake.script([f"text:{same}", "ok", f"text:{same}"])
    out = tmp_path / "gen"
    code, stdout, err = teacher(capsys, fake, "generate", "--n", 3, "--out", out, "concurrency=1")
    assert code == 0, err
    ids = plan_ids(3)
    assert [ex.id for ex in read_examples(out / "conversations.jsonl")] == ids[:2]
    dup = [json.loads(line) for line in (out / "duplicates.jsonl").read_text().splitlines()]
    assert dup == [{"id": ids[2], "duplicate_of": ids[0], "similarity": 1.0}]
    assert len(shard_ids(out / "shards")) == 3  # the shard keeps it: dedup is a view, nothing is lost


def test_coverage_counts_against_targets(tmp_path, capsys):
    cfg = load_config(TeacherConfig, None, ["coverage.per_label=2", "coverage.per_industry=1",
                                            "coverage.per_length_bucket=1", "generate.industries=[retail, travel]"])
    rows = [make_example("a", conv("x"), ["user.role_context"], metadata={"industry": "retail"}),
            make_example("b", conv("y") * 3, ["user.role_context", "company.brand_core"],
                         metadata={"industry": "retail"}),
            make_example("c", conv("z") * 5, ["none"])]
    report = coverage_report(rows, cfg)
    assert report["label"]["rows"]["user.role_context"] == {"count": 2, "target": 2, "short_by": 0}
    assert report["label"]["rows"]["company.brand_core"]["short_by"] == 1 and not report["label"]["met"]
    assert report["industry"]["rows"] == {"retail": {"count": 2, "target": 1, "short_by": 0},
                                          "travel": {"count": 0, "target": 1, "short_by": 1},
                                          "unknown": {"count": 1, "target": 1, "short_by": 0}}
    assert {k: r["count"] for k, r in report["length"]["rows"].items()} == {
        "1-4 turns": 1, "5-8 turns": 1, "9+ turns": 1}
    assert length_bucket(4, (4, 8)) == "1-4 turns" and length_bucket(5, (4, 8)) == "5-8 turns"

    code = main(["coverage", "--data", str(TEST_PATH), "--out", str(tmp_path)])
    assert code == 0
    written = json.loads((tmp_path / "coverage.json").read_text())
    gold = read_examples(TEST_PATH)
    assert written["rows"] == len(gold)
    assert written["label"]["rows"]["none"]["count"] == sum(ex.categories == ["none"] for ex in gold)
    assert "| user.role_context |" in (tmp_path / "coverage.md").read_text()


# ---------------------------------------------------------------------------------------------------------
# Dry run and the missing key
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("args, requests", [
    (["generate", "--n", 10], 10),
    (["label", "--data", TEST_PATH], 46),
    (["eval", "--limit", 5], 5),
])
def test_dry_run_needs_no_key_and_sends_nothing(tmp_path, fake, monkeypatch, capsys, args, requests):
    monkeypatch.delenv("CO_API_KEY", raising=False)
    code, out, err = teacher(capsys, fake, *args, "--out", tmp_path / "x", "--dry-run")
    assert code == 0, err
    assert f": {requests} requests, ~" in out and "estimated cost $" in out and "no request was sent" in out
    assert fake.requests == [] and not (tmp_path / "x").exists()


def test_dry_run_warns_when_the_estimate_exceeds_the_budget(tmp_path, fake, monkeypatch, capsys):
    monkeypatch.delenv("CO_API_KEY", raising=False)
    code, out, _ = teacher(capsys, fake, "generate", "--n", 10, "--dry-run", "request_budget=4")
    assert code == 0 and "exceeds request_budget=4" in out


@pytest.mark.parametrize("cmd", [["generate"], ["label"], ["eval"]])
def test_every_api_command_without_a_key_fails_at_once(tmp_path, fake, monkeypatch, capsys, cmd):
    monkeypatch.delenv("CO_API_KEY", raising=False)
    monkeypatch.setenv("MY_TEACHER_KEY", "  ")  # blank counts as missing
    code, out, err = teacher(capsys, fake, *cmd, "--out", tmp_path / "x")
    assert code == 2 and "set the environment variable CO_API_KEY" in err and "Traceback" not in err
    code, out, err = teacher(capsys, fake, *cmd, "--out", tmp_path / "x", "api_key_env=MY_TEACHER_KEY")
    assert code == 2 and "set the environment variable MY_TEACHER_KEY" in err
    assert fake.requests == [] and not (tmp_path / "x").exists()  # no work started
    if cmd != ["generate"]:  # the key is checked before the input is read
        code, out, err = teacher(capsys, fake, *cmd, "--out", tmp_path / "x", "--data", tmp_path / "missing.jsonl")
        assert code == 2 and "CO_API_KEY" in err and "missing.jsonl" not in err


def test_memroute_teacher_without_a_key_as_a_user_runs_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CO_API_KEY"}
    proc = subprocess.run([sys.executable, "-m", "memroute", "teacher", "generate", "--out", str(tmp_path / "g")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "set the environment variable CO_API_KEY" in proc.stderr
    assert "teacher" in subprocess.run([sys.executable, "-m", "memroute", "--help"], cwd=REPO, capture_output=True,
                                       text=True, timeout=60).stdout


def test_config_file_mirrors_the_defaults():
    assert load_config(TeacherConfig, REPO / "configs" / "teacher.yaml") == TeacherConfig()


# ---------------------------------------------------------------------------------------------------------
# Kill and resume
# ---------------------------------------------------------------------------------------------------------


def test_killed_run_resumes_with_nothing_lost_or_duplicated(tmp_path, key, capsys):
    out, n = tmp_path / "gen", 12
    with FakeCohere(delay=0.05) as fake:
        fake.hold_after = 5  # requests 0-4 are answered (two shards of 2 commit); the 6th hangs until the kill
        proc = subprocess.Popen(
            [sys.executable, "-m", "data.teacher.cli", "generate", "--n", str(n), "--out", str(out),
             "shard_size=2", "concurrency=1", f"base_url={fake.url}", *FAST],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 50
        while len(fake.requests) < 6 and proc.poll() is None:  # the 6th request: shards 0 and 1 are committed
            assert time.monotonic() < deadline, "the run never got to its third shard"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL  # killed mid-way, not finished
        done_at_kill = shard_ids(out / "shards")
        assert sorted(done_at_kill) == sorted(plan_ids(n)[:4])  # the 5th row was answered but not committed
        sent_before = len(fake.requests)
        fake.hold_after, fake.delay = None, 0.0
        fake.release.set()
        code, _, err = teacher(capsys, fake, "generate", "--n", n, "--out", out, "shard_size=2")
        assert code == 0, err
        assert len(fake.requests) - sent_before == n - 4  # only the unfinished work is redone
    ids = shard_ids(out / "shards")
    assert len(ids) == n and sorted(ids) == sorted(plan_ids(n))  # every row exactly once
    assert [ex.id for ex in read_examples(out / "conversations.parquet")] == plan_ids(n)
    assert not list(out.rglob(".*.tmp"))


def test_an_interrupted_commit_is_cleaned_up_and_redone(tmp_path):
    store = ShardStore(tmp_path)
    rows = [make_example("a", conv("x"), ["none"]), make_example("b", conv("y"), ["none"])]
    store.write_shard(rows[:1], [])
    # A kill between the Parquet twin and the JSONL commit marker of shard 1, with a temp file left over:
    store.write_shard(rows[1:], [])
    (tmp_path / "shards" / "part-00001.jsonl").unlink()
    (tmp_path / "shards" / ".part-00001.jsonl.abc.tmp").write_text("half a row")
    dry = ShardStore(tmp_path).load(repair=False)  # a dry run only reads
    assert dry.done_ids() == {"a"} and (tmp_path / "shards" / "part-00001.parquet").exists()
    store = ShardStore(tmp_path).load()
    assert store.done_ids() == {"a"}
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == ["part-00000.jsonl", "part-00000.parquet"]
    assert store.write_shard(rows[1:], []) == 1
    assert ShardStore(tmp_path).load().done_ids() == {"a", "b"}


# ---------------------------------------------------------------------------------------------------------
# The teacher as a router
# ---------------------------------------------------------------------------------------------------------


def test_eval_scores_the_fake_teacher_with_the_one_prompt_and_parser(tmp_path, fake, key, capsys):
    gold = read_examples(TEST_PATH)[:5]
    assert gold[4].categories != ["none"]
    for ex in gold[:3]:  # right answers, in a drifted form the parser accepts
        fake.router_answers[conversation_text(ex.conversation)] = "Categories: " + format_answer(ex.categories)
    fake.router_answers[conversation_text(gold[3].conversation)] = "I would rather not say."
    # gold[4] gets the fake's default answer, "none": wrong
    out = tmp_path / "eval"
    code, stdout, err = teacher(capsys, fake, "eval", "--limit", 5, "--out", out)
    assert code == 0, err
    sent = sorted(json.dumps(r["body"]["messages"]) for r in fake.requests)
    assert sent == sorted(json.dumps(prompt_messages(ex.conversation)) for ex in gold)  # the one prompt, as is
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 5 and metrics["exact_match"] == pytest.approx(0.6)
    assert metrics["parse_failure_rate"] == pytest.approx(0.2)
    assert metrics["none_precision"] == 0.0 and metrics["skipped"] == {}
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [p["predicted"] for p in preds[:3]] == [ex.categories for ex in gold[:3]]
    assert preds[3]["predicted"] == [] and preds[4]["predicted"] == ["none"]
    assert {p["model"] for p in preds} == {"cohere:command-r-plus-08-2024"}
    assert "mean F1" in (out / "metrics.md").read_text() and "mean F1" in stdout
    assert_key_not_written(tmp_path, stdout, err)
