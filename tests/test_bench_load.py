"""The serving benchmarks' closed-loop clients and summaries (bench/load.py), with a fake sender."""

from __future__ import annotations

import threading
import time

import pytest

from bench.load import closed_loop, merge, status_counts, summarize


def test_closed_loop_honours_retry_after_and_counts_statuses():
    calls: dict[int, list[float]] = {}
    lock = threading.Lock()

    def send(item):
        with lock:
            calls.setdefault(threading.get_ident(), []).append(time.perf_counter())
        if item == "busy":
            return False, {"status": 503, "retry_after": "0.5", "message": "full"}
        if item == "boom":
            raise ConnectionError("reset")
        time.sleep(0.01)
        return True, {"status": 200, "version": 1, "parsed": True, "tokens": 3}

    res = closed_loop(send, ["ok", "busy", "boom"], clients=3, seconds=1.2)
    counts = status_counts(res["records"])
    assert set(counts) == {"200", "503", "0"}
    # the 'busy' client waits its Retry-After between requests: about 1.2 / 0.5 of them, far fewer than the others
    assert counts["503"] <= 4 < counts["200"]
    out = summarize(res)
    assert out["ok"] == counts["200"] and out["errors"] == counts["503"] + counts["0"]
    assert out["requests"] == sum(counts.values()) and out["statuses"] == counts
    assert out["parsed_share"] == 1.0 and out["answers_per_version"] == {"1": counts["200"]}
    assert 10 <= out["p50_ms"] <= out["p95_ms"] <= out["max_ms"]
    assert any("reset" in e for e in out["error_samples"])


def test_senders_without_statuses_and_merged_rounds():
    rounds = [closed_loop(lambda x: (x, {"tokens": 1}), [True, False], clients=2, seconds=0.2) for _ in range(2)]
    merged = merge(rounds)
    out = summarize(merged)
    assert merged["rounds"] == 2 and out["requests"] == len(rounds[0]["records"]) + len(rounds[1]["records"])
    assert set(out["statuses"]) == {"200", "error"} and "parsed_share" not in out
    assert out["rps"] == round(out["ok"] / merged["seconds"], 3) > 0


def test_latency_breakdown_splits_the_client_time():
    # a request of 300 ms at the client, 250 ms in the ingress: 50 ms over HTTP; 20 ms queued, 200 ms decoding,
    # so 30 ms in the ingress itself
    info = {"status": 200, "version": 0, "parsed": True, "tokens": 3, "ingress_ms": 250.0, "queue_ms": 20.0,
            "engine_ms": 200.0, "batch_size": 1}
    res = {"clients": 1, "seconds": 1.0, "during": None,
           "records": [(0.0, 0.3, True, info), (1.0, 1.3, True, info), (2.0, 2.1, False, {"status": 503})]}
    b = summarize(res)["breakdown"]
    assert b == {"client_ms": 300.0, "http_ms": 50.0, "ingress_ms": 30.0, "queue_ms": 20.0, "engine_ms": 200.0,
                 "batch_size": 1, "requests": 2}
    untimed = dict(res, records=[(0.0, 0.3, True, {"status": 200, "parsed": True, "tokens": 3})])
    assert "breakdown" not in summarize(untimed)


def test_reload_only_report_has_only_the_reload_target():
    from bench.serve_load import parse_args, targets

    steady = {"p95_ms": 1000.0, "statuses": {"200": 10}}
    phases = {"steady_8": steady, "reload_8": {"overlapping_max_ms": 2500.0, "statuses": {"200": 9}}}
    out = targets({"phases": phases}, parse_args(["--reload-only"]))
    assert list(out) == ["reload"] and out["reload"]["ratio"] == 2.5 and not out["reload"]["ok"]
    phases["reload_8"] = {"overlapping_max_ms": 1500.0, "statuses": {"200": 8, "503": 1}}
    out = targets({"phases": phases}, parse_args(["--reload-only"]))
    assert out["reload"]["failed"] == 1 and not out["reload"]["ok"]  # a 503 during a reload is a failed request
    phases["reload_8"]["statuses"] = {"200": 9}
    assert targets({"phases": phases}, parse_args(["--reload-only"]))["reload"]["ok"]


def test_one_throughput_client_is_refused_not_merged_into_the_one_client_phase(capsys):
    from bench.serve_load import parse_args

    assert parse_args(["--clients", "2"]).clients == 2
    with pytest.raises(SystemExit):
        parse_args(["--clients", "1"])
    assert "--clients must be >= 2 (got 1)" in capsys.readouterr().err


def test_expired_breakdown_splits_each_504_between_the_ingress_and_the_way_there_and_back():
    def gone(held_ms, where):
        return {"status": 504, "message": "x", "server_timing": f'ingress;dur={held_ms};desc="{where}"'}

    res = {"clients": 3, "seconds": 12.0, "during": None,
           "records": [(0.0, 10.5, False, gone(9000.0, "unanswered")),   # 1.5 s outside the ingress
                       (0.0, 10.1, False, gone(9000.0, "unanswered")),   # 1.1 s
                       (1.0, 3.0, False, gone(0.5, "arrival")),          # 2.0 s before the ingress saw it
                       (2.0, 2.5, False, {"status": 504, "message": "no header"}),
                       (0.0, 0.3, True, {"status": 200, "parsed": True, "tokens": 3})]}
    e = summarize(res)["expired"]
    assert e["count"] == 4 and e["where"] == {"arrival": 1, "unanswered": 2, "unknown": 1}
    assert e["client_ms"] == {"median": 6050.0, "max": 10500.0}
    assert e["ingress_ms"] == {"median": 9000.0, "max": 9000.0}
    assert e["outside_ingress_ms"] == {"median": 1500.0, "max": 1999.5}
    assert "expired" not in summarize(dict(res, records=res["records"][-1:]))
