"""The metrics registry and its text exposition (format 0.0.4), byte for byte where it matters."""

from __future__ import annotations

import math

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gatekeeper.metrics import Registry, render
from tests.prometheus_text import parse, value


def test_counter_gauge_and_reading_render_exactly() -> None:
    registry = Registry()
    requests = registry.counter("app_requests_total", "Requests by path.", ("path",))
    requests.labels("/a").inc()
    requests.labels("/a").inc(2)
    requests.labels("/b").inc()
    temperature = registry.gauge("app_temperature", "Degrees.")
    temperature.set(21.5)
    temperature.inc(-1.25)
    counts = {"ok": 3}
    registry.counter_reading(
        "app_done_total", "Read at scrape time.", lambda: {(k,): v for k, v in counts.items()},
        ("code",),
    )  # fmt: skip
    registry.gauge_reading("app_up", "One number.", lambda: 1)
    counts["err"] = 4  # read when scraped, not when registered

    assert registry.render() == (
        "# HELP app_requests_total Requests by path.\n"
        "# TYPE app_requests_total counter\n"
        'app_requests_total{path="/a"} 3\n'
        'app_requests_total{path="/b"} 1\n'
        "# HELP app_temperature Degrees.\n"
        "# TYPE app_temperature gauge\n"
        "app_temperature 20.25\n"
        "# HELP app_done_total Read at scrape time.\n"
        "# TYPE app_done_total counter\n"
        'app_done_total{code="ok"} 3\n'
        'app_done_total{code="err"} 4\n'
        "# HELP app_up One number.\n"
        "# TYPE app_up gauge\n"
        "app_up 1\n"
    )


def test_label_values_and_help_are_escaped() -> None:
    registry = Registry()
    nasty = 'a\\b"c\nd'
    registry.counter("x_total", "Help with \\ and\nnewline.", ("v",)).labels(nasty).inc()
    text = registry.render()
    assert text.splitlines() == [
        "# HELP x_total Help with \\\\ and\\nnewline.",
        "# TYPE x_total counter",
        'x_total{v="a\\\\b\\"c\\nd"} 1',
    ]
    assert value(parse(text), "x_total", v=nasty) == 1  # round trip through a strict parser


def test_histogram_buckets_are_cumulative_with_inf_sum_and_count() -> None:
    registry = Registry()
    latency = registry.histogram("op_seconds", "Latency.", (0.001, 0.01, 0.1), ("op",))
    fast = latency.labels("read")
    for seconds in (0.0005, 0.001, 0.002, 0.05, 0.5, 3.0):
        fast.observe(seconds)
    latency.labels("write")  # a series with no observation yet

    lines = registry.render().splitlines()
    assert lines == [
        "# HELP op_seconds Latency.",
        "# TYPE op_seconds histogram",
        'op_seconds_bucket{op="read",le="0.001"} 2',  # le is inclusive: 0.001 counts here
        'op_seconds_bucket{op="read",le="0.01"} 3',
        'op_seconds_bucket{op="read",le="0.1"} 4',
        'op_seconds_bucket{op="read",le="+Inf"} 6',
        'op_seconds_sum{op="read"} 3.5535',
        'op_seconds_count{op="read"} 6',
        'op_seconds_bucket{op="write",le="0.001"} 0',
        'op_seconds_bucket{op="write",le="0.01"} 0',
        'op_seconds_bucket{op="write",le="0.1"} 0',
        'op_seconds_bucket{op="write",le="+Inf"} 0',
        'op_seconds_sum{op="write"} 0',
        'op_seconds_count{op="write"} 0',
    ]
    parse(registry.render())


def test_numbers_render_in_prometheus_spelling() -> None:
    registry = Registry()
    for name, number in (("a", math.inf), ("b", -math.inf), ("c", math.nan), ("d", 1e-7)):
        registry.gauge_reading(name, name, lambda n=number: n)  # type: ignore[misc]
    samples = [line for line in registry.render().splitlines() if not line.startswith("#")]
    assert samples == ["a +Inf", "b -Inf", "c NaN", "d 1e-07"]


def test_a_failing_reading_drops_only_its_own_metric() -> None:
    registry = Registry()
    registry.gauge_reading("broken", "Raises.", lambda: 1 / 0)
    registry.gauge_reading("fine", "Works.", lambda: 2)
    assert registry.render() == "# HELP fine Works.\n# TYPE fine gauge\nfine 2\n"


@pytest.mark.parametrize(
    "make",
    [
        lambda r: r.counter("requests", "no _total"),
        lambda r: r.gauge("bad-name", "dash"),
        lambda r: r.gauge("g", "reserved label", ("__x",)),
        lambda r: r.histogram("h", "le is the bucket's", (1.0,), ("le",)),
        lambda r: r.histogram("h", "not increasing", (1.0, 1.0)),
        lambda r: r.histogram("h", "no bounds", ()),
        lambda r: r.gauge("h_count", "collides with histogram h"),
    ],
)
def test_invalid_metrics_are_refused(make: object) -> None:
    registry = Registry()
    registry.histogram("h", "taken", (1.0,))
    with pytest.raises(ValueError):
        make(registry)  # type: ignore[operator]


def test_label_count_must_match() -> None:
    counter = Registry().counter("c_total", "c", ("a", "b"))
    with pytest.raises(ValueError):
        counter.labels("only-one")
    with pytest.raises(ValueError):
        counter.inc()  # labelled: needs .labels(...)


def test_render_of_nothing_is_empty() -> None:
    assert render([]) == ""
    assert Registry().render() == ""


def test_every_kind_parses_with_prometheus_client() -> None:
    """The reference parser (prometheus-client's) reads every kind, escape and special value
    back as written."""
    registry = Registry()
    nasty = 'a\\b"c\nd'
    registry.counter("k_total", "Help with \\ and\nnewline.", ("v",)).labels(nasty).inc(3)
    registry.counter("empty_total", "Labelled, no series yet.", ("v",))
    registry.gauge("g", "Special values.", ("kind",)).labels("inf").set(math.inf)
    registry.gauge_reading("big", "Large and small.", lambda: 1e20)
    registry.gauge_reading("small", "Fractions.", lambda: 0.000125)
    latency = registry.histogram("h_seconds", "Latency.", (0.001, 0.1), ("op",))
    latency.labels("read").observe(0.05)
    registry.counter_reading("r_total", "Read.", lambda: {("x",): 2}, ("code",))

    families = {f.name: f for f in text_string_to_metric_families(registry.render())}
    assert {name: f.type for name, f in families.items()} == {
        "k": "counter",
        "empty": "counter",
        "g": "gauge",
        "big": "gauge",
        "small": "gauge",
        "h_seconds": "histogram",
        "r": "counter",
    }
    assert families["k"].documentation == "Help with \\ and\nnewline."
    (sample,) = families["k"].samples
    assert (sample.name, sample.labels, sample.value) == ("k_total", {"v": nasty}, 3)
    assert families["empty"].samples == []
    assert families["g"].samples[0].value == math.inf
    assert families["big"].samples[0].value == 1e20
    assert families["small"].samples[0].value == 0.000125
    buckets = [(s.labels.get("le"), s.value) for s in families["h_seconds"].samples]
    assert buckets == [("0.001", 0), ("0.1", 1), ("+Inf", 1), (None, 0.05), (None, 1)]
    assert families["r"].samples[0].value == 2
