"""Units of gatekeeper bench: wrk output parsing, RESP framing, the correctness checker, reports."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from gatekeeper.benchmark import report
from gatekeeper.benchmark.command import cpu_times, steal_note
from gatekeeper.benchmark.correctness import Tally, hard_violations, normalize, spend_violations
from gatekeeper.benchmark.directory_load import (
    ZipfMix,
    api_key,
    catalog_text,
    customer_id,
    policy_file_text,
)
from gatekeeper.benchmark.loadgen import WrkResult, connections_for_rate, parse_wrk, wrk_script
from gatekeeper.benchmark.model import Check, Comparison, Figure, Results, Target
from gatekeeper.benchmark.options import labels
from gatekeeper.benchmark.resp import command_bytes, parse_monitor_line, reply_end
from gatekeeper.benchmark.scenarios.envoy import median_run, paired_added
from gatekeeper.config.loader import parse_config

REPO = Path(__file__).resolve().parents[2]

WRK_OUTPUT = """\
Running 1s test @ http://127.0.0.1:10000/v1/chat
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.02ms  413.00us   7.43ms   86.00%
  5923 requests in 1.00s, 1.10MB read
  Non-2xx or 3xx responses: 3
WRK_JSON {"requests":5923,"duration_us":1000000,"connect":0,"read":1,"write":0,"status":3,\
"timeout":2,"p50":1020,"p90":1500,"p99":5420,"p999":7430,"max":7430,"mean":1020.5}
Requests/sec:   5923.00
"""


def test_parse_wrk_reads_the_done_hook_line() -> None:
    r = parse_wrk(WRK_OUTPUT)
    assert r.requests == 5923
    assert r.rps == pytest.approx(5923.0)
    assert (r.p50_ms, r.p99_ms, r.p999_ms) == (1.02, 5.42, 7.43)
    assert r.non_2xx == 3
    assert r.errors == 3  # read + timeout


def test_parse_wrk_without_the_marker_says_so() -> None:
    with pytest.raises(ValueError, match="WRK_JSON"):
        parse_wrk("Running 1s test\nunable to connect to 127.0.0.1:1 Connection refused\n")


def test_wrk_script_sets_request_and_delay() -> None:
    script = wrk_script("POST", {"x-api-key": 'a"b'}, delay_ms=3)
    assert 'wrk.method = "POST"' in script
    assert 'wrk.headers["x-api-key"] = "a\\"b"' in script
    assert "function delay() return 3 end" in script
    assert "function done(" in script
    assert "function delay" not in wrk_script("GET", {})


def test_connections_for_rate() -> None:
    # 2 ms wait + 0.5 ms answer = 400 requests/s per connection
    assert connections_for_rate(2000, 0.5, 2) == 5
    assert connections_for_rate(10, 0.5, 2) == 1


def _run(requests: int, p99_ms: float) -> WrkResult:
    return WrkResult(requests, 1.0, 0, 0, 1.0, 2.0, p99_ms, p99_ms, p99_ms)


def test_median_run_is_the_middle_round_with_its_own_latencies() -> None:
    rounds = [_run(9000, 9.0), _run(7000, 7.0), _run(8000, 8.0)]
    assert median_run(rounds) is rounds[2]  # 8000 req/s, and the p99 of that same run
    assert median_run(rounds[:1]) is rounds[0]
    assert median_run(rounds[:2]).requests == 7000  # even count: the lower middle


def test_added_latency_is_the_median_of_each_rounds_difference() -> None:
    # round 2 is slow for both (a neighbour on the host): pairing cancels it out
    alone = [_run(20000, 1.0), _run(15000, 3.0), _run(20000, 1.2)]
    runs = [_run(5000, 1.5), _run(4000, 3.6), _run(5000, 2.4)]
    p50, p99, p999 = paired_added(runs, alone) or (0.0, 0.0, 0.0)
    assert p50 == 0.0  # _run gives every run p50 = 1.0
    assert p99 == pytest.approx(0.6)  # differences 0.5, 0.6, 1.2
    assert p999 == pytest.approx(0.6)
    assert paired_added(runs[:1], alone[:1]) is None  # one round: nothing to pair
    assert paired_added(runs, alone[:2]) is None


def test_steal_note_is_the_stolen_share_of_cpu_time() -> None:
    assert steal_note((100, 10_000), (150, 11_000)) == (
        "CPU time stolen by the hypervisor during the run: 5.0 %"
    )
    assert steal_note(None, (1, 2)) is None
    assert steal_note((5, 100), (5, 100)) is None
    now = cpu_times()
    if Path("/proc/stat").exists():
        assert now is not None and 0 <= now[0] <= now[1]


def test_resp_reply_framing() -> None:
    reply = b"*3\r\n:1\r\n$3\r\nabc\r\n*2\r\n+OK\r\n$-1\r\n"
    assert reply_end(reply) == len(reply)
    assert reply_end(reply[:-3]) == -1
    assert reply_end(reply + reply, len(reply)) == 2 * len(reply)
    assert command_bytes(["GET", "k"]) == b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"


def test_monitor_line_unescapes_arguments() -> None:
    line = '+1700000000.1 [0 127.0.0.1:5555] "evalsha" "ab" "1" "k" "1\\x1fx\\"y\\\\"'
    client, args = parse_monitor_line(line) or ("", [])
    assert client == "127.0.0.1:5555"
    assert args == ["evalsha", "ab", "1", "k", '1\x1fx"y\\']
    lua = parse_monitor_line('+1.2 [0 lua] "XADD" "s"')
    assert lua is not None and lua[0] == "lua"
    assert parse_monitor_line("+OK") is None


def test_hard_limit_checker_passes_an_exact_run() -> None:
    tally = Tally(sent=60, admitted=20, denied=40, other=0)
    assert hard_violations(tally, limit=20, counter=20, event_quantity=20) == ()


def test_hard_limit_checker_catches_a_planted_overshoot_and_a_lost_event() -> None:
    tally = Tally(sent=60, admitted=21, denied=39, other=0)
    found = hard_violations(tally, limit=20, counter=21, event_quantity=20)
    assert any(v.startswith("overshoot: 21 admitted") for v in found)
    assert any(v.startswith("overshoot: counter at 21") for v in found)
    assert any(v.startswith("lost: usage events hold 20") for v in found)


def test_hard_limit_checker_catches_errors_and_unanswered_charges() -> None:
    assert hard_violations(Tally(60, 19, 40, 1), limit=20, counter=20, event_quantity=20) == (
        "counter 20 != 19 admitted answers",
        "1 answers neither 200 nor 429 (errors)",
    )
    found = hard_violations(Tally(60, 18, 42, 0), limit=20, counter=18, event_quantity=18)
    assert found == ("under-admitted: 18 of 20 allowed",)


def test_spend_checker() -> None:
    ok = Tally(sent=30, admitted=9, denied=21, other=0)
    assert spend_violations(ok, cap_nano=10, spent_nano=9, event_amount_nano=9, events=9) == ()
    over = Tally(sent=30, admitted=11, denied=19, other=0)
    found = spend_violations(over, cap_nano=10, spent_nano=11, event_amount_nano=10, events=10)
    assert [v.split(":")[0] for v in found] == [
        "overshoot",
        "lost",
        "10 request events != 11 admitted answers",
    ]


def test_normalize_leaves_out_the_reset_time() -> None:
    headers = {
        "RateLimit-Policy": '"requests";q=20;w=86400',
        "RateLimit": '"requests";r=0;t=3600',
        "X-RateLimit-Remaining": "0",
        "Retry-After": "3600",
    }
    body = json.dumps({"type": "https://gatekeeper.dev/problems/quota-exhausted"}).encode()
    a = normalize(429, headers, body, with_values=True)
    b = normalize(429, {**headers, "RateLimit": '"requests";r=0;t=3599', "Retry-After": "3599"},
                  body, with_values=True)  # fmt: skip
    assert a == b
    assert "quota-exhausted" in a and 'ratelimit="requests";r=0' in a
    assert normalize(429, {**headers, "X-RateLimit-Remaining": "1"}, body, with_values=True) != a


def _results(violating: bool) -> Results:
    lab = labels(1)
    alone = Figure("envoy", f"{lab['alone']} @ saturation (8 conns)", 10_000, "req/s", 1, 2, 3)
    http = Figure("envoy", f"{lab['gk-http']} @ saturation (8 conns)", 3_000, "req/s", 2, 4, 6,
                  baseline=alone.name, ratio=0.3)  # fmt: skip
    one = Figure("envoy", f"{lab['gk-http']} @ 1 conn", 1_000, "req/s", 0.5, 0.9, 1.5,
                 added_p99_ms=0.4)  # fmt: skip
    check = Check("gk-http", "1 conn", "hard-000", "hard", 20, 60, 21 if violating else 20, 39,
                  0, 20, 20, 20, ("overshoot: 21 admitted past a hard limit of 20",)
                  if violating else ())  # fmt: skip
    comparison = Comparison("hard", "gk-http", "gk-grpc", ("200",), ("200",))
    return Results(figures=[alone, http, one], checks=[check], comparisons=[comparison])


def test_report_formats_table_markdown_json_and_targets() -> None:
    results = _results(violating=False)
    ts = report.targets(results, labels(1))
    met = {t.name: t.met for t in ts}
    assert met["HTTP path ≥ 25 % of Envoy alone (saturation)"] is True
    assert met["HTTP path added p99 at 1 connection ≤ 1.0 ms"] is True
    assert met["gRPC mode ≥ 80 % of no-op grpc.aio (saturation)"] is None  # not measured
    text = report.table(results, ts)
    assert "correctness: 0 violation(s)" in text
    assert "0.30" in text
    md = report.markdown(results, ts, {"cpu": "2 cores"}, "gatekeeper bench")
    assert md.startswith("# gatekeeper bench") and "| envoy | Envoy alone @ saturation" in md
    doc = json.loads(report.summary_json(results, ts, {"cpu": "2 cores"}, "gatekeeper bench"))
    assert doc["correctness"]["overshoot"] == 0 and doc["correctness"]["lost"] == 0
    assert doc["figures"][1]["ratio"] == 0.3


def test_report_shows_a_violation() -> None:
    results = _results(violating=True)
    assert results.violations() == [
        "gk-http 1 conn hard-000: overshoot: 21 admitted past a hard limit of 20"
    ]
    doc = json.loads(report.summary_json(results, [], {}, "x"))
    assert doc["correctness"]["overshoot"] == 1
    assert "correctness: 1 violation(s)" in report.table(results, [])


def test_packaged_rate_limit_bootstrap_is_a_copy_of_envoy_dir() -> None:
    # the bench runs envoy/rate-limit.yaml from the package (gatekeeper/data/envoy)
    packaged = REPO / "src" / "gatekeeper" / "data" / "envoy" / "rate-limit.yaml"
    assert packaged.read_bytes() == (REPO / "envoy" / "rate-limit.yaml").read_bytes()


def test_a_target_missed_by_a_hair_does_not_read_as_met() -> None:
    """0.247 of Envoy alone printed as "0.25 NOT met" read as a contradiction: three decimals."""
    lab = labels(1)
    alone = Figure("envoy", f"{lab['alone']} @ saturation (8 conns)", 10_000, "req/s", 1, 2, 3)
    http = Figure("envoy", f"{lab['gk-http']} @ saturation (8 conns)", 2_470, "req/s", 2, 4, 6)
    results = Results(figures=[alone, http])
    ts = report.targets(results, lab)
    row = next(line for line in report.table(results, ts).splitlines() if "25 %" in line)
    assert "0.247" in row and "NOT met" in row


def test_a_scenarios_own_targets_follow_issue_6s_and_small_values_keep_decimals() -> None:
    ready = Figure("control-plane", "serve ready, 1,000 customers", 2.345, "s")
    missed = Target("serve ready ≤ 5 s, 1,000,000 customers", 6.2, "≤ 5 s", False)
    results = Results(figures=[ready], targets=[missed])
    ts = report.targets(results, labels(1))
    assert ts[-1] == missed
    text = report.table(results, ts)
    assert "2.35" in text  # seconds keep two decimals; large values none
    row = next(line for line in text.splitlines() if line.startswith("serve ready ≤ 5 s"))
    assert "6.200" in row and "NOT met" in row


def test_zipf_mix_is_a_seeded_permutation_of_the_customers_hot_first() -> None:
    mix = ZipfMix(1_000)
    assert sorted(mix.rank_id(r) for r in range(1, 1_001)) == sorted(
        customer_id(i) for i in range(1_000)
    )
    draws = mix.draw(10_000)
    assert draws == ZipfMix(1_000).draw(10_000)  # same seed, same customers
    hottest = mix.rank_id(1)
    assert draws.count(hottest) > draws.count(mix.rank_id(10)) > draws.count(mix.rank_id(500))
    assert len(set(draws)) > 300  # a long tail, not a handful of customers


def test_the_generated_policy_file_is_valid_and_holds_each_customers_key() -> None:
    loaded = parse_config(policy_file_text(3))
    assert sorted(loaded.policy.customers) == ["c0", "c1", "c2"]
    owner = loaded.policy.key_owner(hashlib.sha256(api_key("c2").encode()).hexdigest())
    assert owner is not None and owner[0].id == "c2"
    assert parse_config(catalog_text()).policy.customers == {}
