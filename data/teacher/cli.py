"""`memroute teacher`: generate and label conversations with the Cohere teacher; score it as a baseline.

    memroute teacher generate [--n N] [--out DIR] [--dry-run] [--config FILE] [key=value ...]
    memroute teacher label    [--data FILE] [--out DIR] [--limit N] [--dry-run] [--config FILE] [key=value ...]
    memroute teacher eval     [--data FILE] [--out DIR] [--limit N] [--dry-run] [--config FILE] [key=value ...]
    memroute teacher coverage --data FILE [--out DIR] [--config FILE] [key=value ...]

The API key is read only from the environment variable named by api_key_env (default CO_API_KEY). Without it,
generate / label / eval stop before any work (exit 2); --dry-run prints the request, token and cost estimate
and needs no key. coverage works offline. A stopped or killed generate / label resumes where it stopped when
run again with the same --out (exit 1 means work is still pending).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data.embedded import TEST_PATH
from data.schema import ExampleError, read_examples
from data.teacher.client import TeacherClient
from data.teacher.config import TeacherConfig, api_key
from memroute.core.config import load_config
from memroute.core.errors import InputError, run_command


def err(msg: str) -> None:
    print(f"memroute teacher: error: {msg}", file=sys.stderr)


def read_input(path: str, limit: int | None, out_dir: Path, require_labels: bool, record: bool = True):
    """Valid rows of an input file; bad rows are listed (file:line and reason) and, unless `record` is off (a dry
    run writes nothing), kept in <out>/input_rejected.jsonl."""
    from data.atomic import write_jsonl_atomic

    rejects: list[ExampleError] = []
    examples = read_examples(path, require_labels=require_labels, rejects=rejects)
    for e in rejects:
        print(f"skipped bad input row: {e}", file=sys.stderr)
    if rejects and record:
        write_jsonl_atomic(out_dir / "input_rejected.jsonl",
                           ({"where": e.where, "field": e.field, "problem": e.problem} for e in rejects))
    examples = examples[:limit] if limit else examples
    if not examples:
        raise InputError(f"no valid rows to work on in {path}")
    return examples


def dry_run(cfg: TeacherConfig, messages, output_tokens, what: str) -> int:
    from data.teacher.estimate import estimate

    print(estimate(messages, output_tokens, cfg).line(cfg, what))
    return 0


def cmd_stage(cfg: TeacherConfig, args, stage: str) -> int:
    out = Path(args.out or Path(cfg.out_dir) / stage)
    if stage == "generate":
        from data.teacher.generate import generation_tasks

        if args.n is not None:
            cfg.generate.n_conversations = args.n
        tasks, name = generation_tasks(cfg), "conversations"
    else:
        from data.teacher.label import label_tasks

        data = args.data or str(Path(cfg.out_dir) / "generate" / "conversations.jsonl")
        tasks, name = label_tasks(read_input(data, args.limit, out, False, not cfg.dry_run), cfg), "labelled"
    if cfg.dry_run:
        from data.teacher.shards import ShardStore

        done = ShardStore(out).load(repair=False).done_ids()  # read-only: a dry run changes no file
        todo = [t for t in tasks if t.id not in done]
        return dry_run(cfg, [t.messages for t in todo], [t.est_output_tokens for t in todo],
                       f"{stage}, {len(todo)} of {len(tasks)} items pending in {out}")
    from data.teacher.stage import report, run_stage

    client = TeacherClient(cfg)
    try:
        summary, merged = run_stage(cfg, tasks, out, stage, name, client=client)
    finally:
        client.close()
    message, code = report(summary, merged, out, name, client.budget.summary())
    print(message)
    return code


def cmd_eval(cfg: TeacherConfig, args) -> int:
    data = args.data or str(TEST_PATH)
    out = Path(args.out or Path(cfg.out_dir) / "eval")
    examples = read_input(data, args.limit, out, True, not cfg.dry_run)
    if cfg.dry_run:
        from data.prompt import prompt_messages

        return dry_run(cfg, [prompt_messages(ex.conversation) for ex in examples],
                       [cfg.eval.est_output_tokens] * len(examples), f"eval of {len(examples)} rows of {data}")
    from data.metrics import metrics_table
    from data.teacher.evaluate import run_teacher_eval

    client = TeacherClient(cfg)
    try:
        metrics = run_teacher_eval(cfg, examples, data, out, client=client)
    finally:
        client.close()
    print(metrics_table(metrics, f"cohere:{cfg.model} on {Path(data).name}"))
    print(f"wrote {out}/predictions.jsonl, metrics.json, metrics.md")
    if metrics["skipped"]:
        print(f"{len(metrics['skipped'])} rows were not scored (see metrics.json 'skipped')", file=sys.stderr)
        return 1
    return 0


def cmd_coverage(cfg: TeacherConfig, args) -> int:
    from data.teacher.coverage import write_coverage

    out = Path(args.out or Path(args.data).parent)
    report = write_coverage(read_examples(args.data), cfg, out, title=f"Coverage of {args.data}")
    print((out / "coverage.md").read_text())
    print(f"wrote {out}/coverage.json and coverage.md; all targets met: {'yes' if report['all_met'] else 'no'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="memroute teacher", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    data_default = {"label": "<out_dir>/generate/conversations.jsonl", "eval": "the embedded test split"}

    def add(name: str, help_: str, data_required: bool = False) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help_, description=help_)
        s.add_argument("--config", help="YAML config (default: built-in defaults; see configs/teacher.yaml)")
        s.add_argument("--out", help="output folder (default: " +
                       ("the --data file's folder)" if name == "coverage" else f"<out_dir>/{name})"))
        if name != "generate":
            s.add_argument("--data", required=data_required,
                           help="JSONL or Parquet examples (" +
                           ("required)" if data_required else f"default: {data_default[name]})"))
        if name != "coverage":
            s.add_argument("--dry-run", action="store_true", help="print the request / token / cost estimate only")
        if name in ("label", "eval"):
            s.add_argument("--limit", type=int, help="only the first N rows (default: all)")
        s.add_argument("--print-config", action="store_true", help="print the merged config (defaults < --config < "
                       "key=value < --dry-run/--n) as YAML and exit; runs nothing, needs no API key")
        s.add_argument("overrides", nargs="*", metavar="key=value",
                       help="config overrides, e.g. concurrency=8 (default: none)")
        return s

    add("generate", "write conversations from scenario specs").add_argument(
        "--n", type=int, help="number of conversations (default: the config's generate.n_conversations)")
    add("label", "label conversations (default --data: <out_dir>/generate/conversations.jsonl)")
    add("eval", "score the teacher as a router (default --data: the embedded test split)")
    add("coverage", "coverage report of a dataset per label, industry and length bucket", data_required=True)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = load_config(TeacherConfig, args.config, args.overrides)
        if getattr(args, "dry_run", False):
            cfg.dry_run = True
        if args.print_config:
            from memroute.core.config import dump_config

            if getattr(args, "n", None) is not None:
                cfg.generate.n_conversations = args.n
            sys.stdout.write(dump_config(cfg))
            return 0
        if args.cmd == "coverage":
            return cmd_coverage(cfg, args)
        if not cfg.dry_run:
            api_key(cfg)  # before any work: reading data, planning, or touching the output folder
        if args.cmd == "eval":
            return cmd_eval(cfg, args)
        return cmd_stage(cfg, args, args.cmd)
    except KeyboardInterrupt:
        err("interrupted: committed shards are kept; run the same command again to continue")
        return 130


if __name__ == "__main__":
    sys.exit(run_command("memroute teacher", main))
