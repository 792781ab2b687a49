import json
import os
from pathlib import Path

import pytest

from data.atomic import write_jsonl_atomic
from data.schema import ExampleError, derive_horizon, make_example, read_examples, write_examples

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def row(i=0, **over):
    base = {"id": f"t-{i}", "conversation": [{"role": "user", "content": "We report to the CMO."},
                                            {"role": "assistant", "content": "Understood."}],
            "categories": ["user.role_context"], "persistence_horizon": "medium", "memory_scope": "user",
            "source": "test", "metadata": {"k": 1}}
    base.update(over)
    return base


def write_lines(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_round_trip_jsonl_and_parquet(tmp_path):
    src = write_lines(tmp_path / "a.jsonl", [row(0), row(1, categories=["none"], persistence_horizon="short",
                                                      memory_scope="none")])
    examples = read_examples(src)
    for suffix in (".jsonl", ".parquet"):
        out = write_examples(tmp_path / f"b{suffix}", examples)
        again = read_examples(out)
        assert [e.to_dict() for e in again] == [e.to_dict() for e in examples]
    assert not list(tmp_path.glob(".*tmp")), "no temp files left behind"


@pytest.mark.parametrize("over, field, words", [
    ({"categories": ["user.role_context", "company.vibes"]}, "categories", "unknown category 'company.vibes'"),
    ({"categories": ["none", "user.role_context"]}, "categories", "exclusive"),
    ({"categories": []}, "categories", "is empty"),
    ({"categories": ["user.role_context", "user.role_context"]}, "categories", "duplicate"),
    ({"conversation": []}, "conversation", "is empty"),
    ({"conversation": [{"role": "manager", "content": "hi"}]}, "conversation[0].role", "manager"),
    ({"conversation": [{"role": "user", "content": "  "}]}, "conversation[0].content", "non-empty"),
    ({"conversation": "USER: hi"}, "conversation", "list of turns"),
    ({"id": ""}, "id", "non-empty"),
    ({"persistence_horizon": "forever"}, "persistence_horizon", "forever"),
    ({"memory_scope": "team"}, "memory_scope", "team"),
])
def test_validation_names_file_line_and_field(tmp_path, over, field, words):
    path = write_lines(tmp_path / "bad.jsonl", [row(0), row(1, **over)])
    with pytest.raises(ExampleError) as err:
        read_examples(path)
    assert err.value.where == f"{path}:2" and err.value.field == field
    assert words in str(err.value) and str(path) in str(err.value)


def test_non_utf8_and_truncated_last_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(row(0)).encode() + b"\n" + json.dumps(row(1)).encode()[:-3] + b"\xe9\xff\"}\n")
    with pytest.raises(ExampleError, match=r"latin1.jsonl:2: .*not valid UTF-8"):
        read_examples(path)
    path = tmp_path / "cut.jsonl"
    path.write_text(json.dumps(row(0)) + "\n" + json.dumps(row(1))[:40], encoding="utf-8")
    with pytest.raises(ExampleError, match=r"cut.jsonl:2: .*truncated"):
        read_examples(path)
    path = tmp_path / "mid.jsonl"
    path.write_text(json.dumps(row(0))[:40] + "\n" + json.dumps(row(1)) + "\n", encoding="utf-8")
    with pytest.raises(ExampleError, match=r"mid.jsonl:1: .*malformed JSON"):
        read_examples(path)


def test_rejects_are_collected_when_asked(tmp_path):
    path = write_lines(tmp_path / "mixed.jsonl", [row(0), row(1, categories=["x"]), row(2)])
    rejects = []
    good = read_examples(path, rejects=rejects)
    assert [e.id for e in good] == ["t-0", "t-2"] and len(rejects) == 1 and rejects[0].where.endswith(":2")
    # lines that are not JSON, not UTF-8, or repeat an id are rejects too: reading goes on past them
    lines = [json.dumps(row(0)), '{"id": broken', json.dumps(row(1)), json.dumps(row(0)), json.dumps(row(2))]
    path = tmp_path / "broken.jsonl"
    path.write_bytes("\n".join(lines).encode() + b"\n\xff\xfe\n")
    rejects = []
    good = read_examples(path, rejects=rejects)
    assert [e.id for e in good] == ["t-0", "t-1", "t-2"]
    assert [(e.where.rsplit(":", 1)[1], e.field) for e in rejects] == [("2", "<row>"), ("4", "id"), ("6", "<row>")]
    assert "malformed JSON" in rejects[0].problem and "first at line 1" in rejects[1].problem
    assert "not valid UTF-8" in rejects[2].problem


def test_duplicate_ids_and_missing_file(tmp_path):
    with pytest.raises(ExampleError, match=r"dup.jsonl:3: field 'id': duplicate id 't-0', first at line 1"):
        read_examples(write_lines(tmp_path / "dup.jsonl", [row(0), row(1), row(0)]))
    with pytest.raises(FileNotFoundError, match="dataset not found"):
        read_examples(tmp_path / "nope.jsonl")


def test_corrupt_parquet_is_named(tmp_path):
    path = tmp_path / "x.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(ExampleError, match="cannot be read as Parquet"):
        read_examples(path)


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "keep.jsonl"
    write_examples(target, read_examples(write_lines(tmp_path / "a.jsonl", [row(0)])))
    before = target.read_bytes()

    def rows_then_crash():
        yield row(5)
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        write_jsonl_atomic(target, rows_then_crash())
    assert target.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["a.jsonl", "keep.jsonl"]


def test_make_example_derives_horizon_and_scope():
    ex = make_example("x", row()["conversation"], ["user.strategic_approach", "company.brand_core"])
    assert ex.categories == ["company.brand_core", "user.strategic_approach"]
    assert (ex.persistence_horizon, ex.memory_scope) == ("long", "mixed")
    assert derive_horizon(["company.brand_core", "company.tools_config"]) == "mixed"
    assert derive_horizon(["none"]) == "none"


@pytest.mark.skipif(not SHARED.exists(), reason=f"reference corpus not found at {SHARED}")
def test_reference_corpus_reads_cleanly():
    train, test = read_examples(SHARED / "train.jsonl"), read_examples(SHARED / "test.jsonl")
    assert (len(train), len(test)) == (1800, 201)
    assert not {e.id for e in train} & {e.id for e in test}


def test_split_holds_out_a_seeded_part_and_never_overwrites(tmp_path, capsys):
    from data.cli import main
    from memroute.core.errors import InputError

    src = write_lines(tmp_path / "all.jsonl", [row(i) for i in range(10)])
    rest, held = tmp_path / "rest.jsonl", tmp_path / "held.jsonl"
    assert main(["split", str(src), "--holdout", "3", "--seed", "7", "--rest", str(rest), "--held-out", str(held)]) == 0
    kept_ids = [ex.id for ex in read_examples(rest)]
    held_ids = [ex.id for ex in read_examples(held)]
    assert len(held_ids) == 3 and len(kept_ids) == 7
    assert sorted(kept_ids + held_ids, key=lambda s: int(s[2:])) == [f"t-{i}" for i in range(10)]
    assert kept_ids == sorted(kept_ids, key=lambda s: int(s[2:]))  # each part keeps the file's order

    again = tmp_path / "again"
    again.mkdir()
    main(["split", str(src), "--holdout", "3", "--seed", "7", "--rest", str(again / "r.jsonl"),
          "--held-out", str(again / "h.jsonl")])
    assert [ex.id for ex in read_examples(again / "h.jsonl")] == held_ids  # same seed, same part
    other = tmp_path / "other"
    other.mkdir()
    main(["split", str(src), "--holdout", "3", "--seed", "8", "--rest", str(other / "r.jsonl"),
          "--held-out", str(other / "h.jsonl")])
    assert [ex.id for ex in read_examples(other / "h.jsonl")] != held_ids

    before = held.read_bytes()
    with pytest.raises(InputError, match="exists: nothing was written"):
        main(["split", str(src), "--holdout", "2", "--rest", str(tmp_path / "new.jsonl"), "--held-out", str(held)])
    assert held.read_bytes() == before and not (tmp_path / "new.jsonl").exists()
    with pytest.raises(InputError, match="name the same file"):
        main(["split", str(src), "--holdout", "2", "--rest", str(tmp_path / "s.jsonl"), "--held-out",
              str(tmp_path / "s.jsonl"), "--force"])
    assert not (tmp_path / "s.jsonl").exists()
    with pytest.raises(InputError, match="between 1 and 9"):
        main(["split", str(src), "--holdout", "10", "--rest", str(tmp_path / "a.jsonl"), "--held-out",
              str(tmp_path / "b.jsonl")])
