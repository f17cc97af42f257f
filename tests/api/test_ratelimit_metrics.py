"""A real App serving a rate limit config directory: its whole `/metrics` through
prometheus-client's parser, exact per-limit statistics after scripted ShouldRateLimit calls,
and the directory reloaded while serving (a file added applies within 2 s; a broken one is
reported and changes nothing; a message on `<prefix>:invalidate` forces a reload)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from google.protobuf import wrappers_pb2
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from gatekeeper.app import App
from gatekeeper.clock import ManualClock
from gatekeeper.config import load_config
from gatekeeper.ratelimit import OVERFLOW
from tests.api.conftest import ADMIN, POLICY, key_of
from tests.conftest import RedisTarget
from tests.prometheus_text import Family, parse, value

Response = rls_pb2.RateLimitResponse

SHOP = """\
domain: shop
descriptors:
  - key: user
    rate_limit: {unit: minute, requests_per_unit: 5}
  - key: tenant
    value: beta
    shadow_mode: true
    rate_limit: {unit: minute, requests_per_unit: 1}
  - key: client
    detailed_metric: true
    rate_limit: {unit: minute, requests_per_unit: 10}
"""
EXTRA = """\
domain: extra
descriptors:
  - key: user
    rate_limit: {{unit: minute, requests_per_unit: {n}}}
"""
STATS = {
    "gatekeeper_ratelimit_hits_total": "total",
    "gatekeeper_ratelimit_within_limit_total": "within",
    "gatekeeper_ratelimit_near_limit_total": "near",
    "gatekeeper_ratelimit_over_limit_total": "over",
    "gatekeeper_ratelimit_shadow_mode_total": "shadow",
}


@dataclass
class Served:
    app: App
    folder: Path
    stub: rls_pb2_grpc.RateLimitServiceStub
    http: aiohttp.ClientSession

    async def scrape(self) -> str:
        async with self.http.get(f"http://127.0.0.1:{self.app.http_port}/metrics") as response:
            assert response.status == 200
            return await response.text()

    async def ask(self, domain: str, *entries: tuple[str, str], hits: int | None = None) -> Any:
        descriptor = ratelimit_pb2.RateLimitDescriptor(
            entries=[ratelimit_pb2.RateLimitDescriptor.Entry(key=k, value=v) for k, v in entries]
        )
        if hits is not None:
            descriptor.hits_addend.CopyFrom(wrappers_pb2.UInt64Value(value=hits))
        request = rls_pb2.RateLimitRequest(domain=domain, descriptors=[descriptor])
        return await self.stub.ShouldRateLimit(request, timeout=5)


async def serve(
    target: RedisTarget, prefix: str, folder: Path, **env: str
) -> AsyncIterator[Served]:
    settings = {
        "GATEKEEPER_REDIS_URL": target.url,
        "GATEKEEPER_REDIS_KEY_PREFIX": prefix,
        "GATEKEEPER_ADMIN_TOKEN": ADMIN,
        "GATEKEEPER_RATELIMIT_CONFIG": str(folder),
        **env,
    }
    # a fixed instant: every call of a test falls in one window, whatever the wall clock does
    clock = ManualClock(datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC))
    app = await App(load_config(POLICY, env=settings), clock=clock).start(
        host="127.0.0.1", grpc_port=0, authz_http_port=0, http_port=0
    )
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel,
            aiohttp.ClientSession() as http,
        ):
            yield Served(app, folder, rls_pb2_grpc.RateLimitServiceStub(channel), http)
    finally:
        await app.stop(0)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    folder = tmp_path / "ratelimit"
    folder.mkdir()
    (folder / "shop.yaml").write_text(SHOP)
    return folder


@pytest.fixture
async def served(
    redis: Redis, redis_target: RedisTarget, key_prefix: str, folder: Path
) -> AsyncIterator[Served]:  # `redis` deletes the prefix's keys afterwards
    async for one in serve(
        redis_target, key_prefix, folder, GATEKEEPER_FAILURE_MODE="open"
    ):  # fail-open: the backlog's metrics too
        yield one


def stats(families: dict[str, Family], domain: str) -> dict[str, dict[str, float]]:
    """descriptor -> {total, within, near, over, shadow} of `domain`, from a scrape."""
    found: dict[str, dict[str, float]] = {}
    for name, short in STATS.items():
        for (_, labels), number in families[name].samples.items():
            label = dict(labels)
            if label["domain"] == domain:
                found.setdefault(label["descriptor"], {})[short] = number
    return found


async def test_the_whole_exposition_parses_with_prometheus_client(served: Served) -> None:
    async with served.http.post(
        f"http://127.0.0.1:{served.app.authz_http_port}/v1/chat/completions",
        headers={"x-api-key": key_of("hobbyist")},
    ) as response:
        assert response.status == 200
    await served.ask("shop", ("client", 'a "quoted"\\ value\nwith a newline'))
    await served.ask("shop", ("user", "u1"))
    text = await served.scrape()

    families = list(text_string_to_metric_families(text))
    ours = parse(text)  # the strict in-repo parser agrees on every family
    assert len(families) == len(ours)
    declared = {
        line.split()[2]: line.split()[3] for line in text.splitlines() if line.startswith("# TYPE")
    }
    helped = {line.split()[2] for line in text.splitlines() if line.startswith("# HELP")}
    assert set(declared) == helped == set(ours)
    for family in families:
        assert family.documentation, family.name
        assert family.type in ("counter", "gauge", "histogram"), family.name
        if family.type == "counter":
            # prometheus-client names a counter family without `_total`; its samples have it
            assert declared[family.name + "_total"] == "counter"
            assert {s.name for s in family.samples} <= {family.name + "_total"}
        elif family.type == "histogram":
            assert declared[family.name] == "histogram"
            suffixes = {s.name.removeprefix(family.name) for s in family.samples}
            assert suffixes == {"_bucket", "_sum", "_count"}
        else:
            assert declared[family.name] == "gauge"
            assert {s.name for s in family.samples} <= {family.name}
        for sample in family.samples:
            assert sample.value == sample.value  # not NaN
    by_name = {f.name: f for f in families}
    hits = by_name["gatekeeper_ratelimit_hits"]
    clients = {s.labels["descriptor"]: s.value for s in hits.samples}
    assert clients['client_a "quoted"\\ value\nwith a newline'] == 1  # escaped, round-tripped
    assert clients["user"] == 1
    assert by_name["gatekeeper_ratelimit_config_valid"].samples[0].value == 1
    assert by_name["gatekeeper_decisions"].type == "counter"


async def test_per_limit_statistics_after_scripted_calls(
    redis: Redis, redis_target: RedisTarget, key_prefix: str, folder: Path
) -> None:
    # the config has 2 series of its own (user, tenant_beta): room for one more from requests
    async for served in serve(
        redis_target, key_prefix, folder, GATEKEEPER_RATELIMIT_METRIC_SERIES="3"
    ):
        before = parse(await served.scrape())
        assert stats(before, "shop") == {
            "user": dict.fromkeys(STATS.values(), 0),
            "tenant_beta": dict.fromkeys(STATS.values(), 0),
        }
        codes = [(await served.ask("shop", ("user", "u1"))).overall_code for _ in range(7)]
        assert codes == [Response.OK] * 5 + [Response.OVER_LIMIT] * 2
        shadowed = [(await served.ask("shop", ("tenant", "beta"))).overall_code for _ in range(3)]
        assert shadowed == [Response.OK] * 3
        await served.ask("shop", ("client", "acme"))
        await served.ask("shop", ("client", "acme"))
        await served.ask("shop", ("client", "bob"), hits=3)  # past the cap: overflow
        await served.ask("shop", ("nothing", "here"))  # no limit: no statistics
        after = parse(await served.scrape())

    def counts(total: int, within: int, near: int, over: int, shadow: int) -> dict[str, float]:
        return {"total": total, "within": within, "near": near, "over": over, "shadow": shadow}

    assert stats(after, "shop") == {
        # limit 5, near-limit threshold floor(5 x 0.8) = 4: hit 5 near, hits 6 and 7 over
        "user": counts(7, 5, 1, 2, 0),
        # limit 1 in shadow mode (threshold 0): hit 1 within and near, 2 and 3 over, shadowed
        "tenant_beta": counts(3, 1, 1, 2, 2),
        "client_acme": counts(2, 2, 0, 0, 0),  # detailed_metric: named by the value
        OVERFLOW: counts(3, 3, 0, 0, 0),  # bob's 3 hits: no room for a series of his own
    }
    assert value(after, "gatekeeper_ratelimit_stats_overflow_total") == 1
    assert value(after, "gatekeeper_ratelimit_requests_total", code="OVER_LIMIT") == 2
    assert value(after, "gatekeeper_ratelimit_requests_total", code="OK") == 5 + 3 + 3 + 1


async def wait_for(condition: Any, within: float = 2.0, step: float = 0.05) -> float:
    """Await `condition()` until it is true; the seconds it took. Fails after `within`."""
    started = time.monotonic()
    async with asyncio.timeout(within):
        while not await condition():
            await asyncio.sleep(step)
    return time.monotonic() - started


async def test_the_served_directory_reloads(served: Served, redis: Redis, key_prefix: str) -> None:
    async def extra_limit() -> int | None:
        status = (await served.ask("extra", ("user", "u1"), hits=0)).statuses[0]
        return status.current_limit.requests_per_unit if status.HasField("current_limit") else None

    async def limited(n: int) -> bool:
        return await extra_limit() == n

    async def scraped(name: str, number: float) -> bool:
        return value(parse(await served.scrape()), name) == number

    assert await extra_limit() is None  # no such domain yet
    assert value(parse(await served.scrape()), "gatekeeper_ratelimit_config_reloads_total") == 0

    # a file added while serving applies within 2 s
    (served.folder / "extra.yaml").write_text(EXTRA.format(n=1))
    took = await wait_for(lambda: limited(1), within=2.0)
    assert took < 2.0
    first = await served.ask("extra", ("user", "u1"))
    second = await served.ask("extra", ("user", "u1"))
    assert (first.overall_code, second.overall_code) == (Response.OK, Response.OVER_LIMIT)
    families = parse(await served.scrape())
    assert value(families, "gatekeeper_ratelimit_config_reloads_total") == 1
    assert value(families, "gatekeeper_ratelimit_config_valid") == 1

    # a broken file is reported (log, metrics) and changes nothing
    config = served.app.ratelimit.config if served.app.ratelimit else None
    (served.folder / "broken.yaml").write_text("domain: broken\ndescriptors:\n  - value: x\n")
    await wait_for(lambda: scraped("gatekeeper_ratelimit_config_reload_failures_total", 1))
    families = parse(await served.scrape())
    assert value(families, "gatekeeper_ratelimit_config_valid") == 0
    assert value(families, "gatekeeper_ratelimit_config_reloads_total") == 1
    assert served.app.ratelimit is not None and served.app.ratelimit.config is config
    assert await extra_limit() == 1
    assert (await served.ask("extra", ("user", "u1"))).overall_code == Response.OVER_LIMIT
    assert served.app.healthy  # a rejected config is not a dead watcher

    (served.folder / "broken.yaml").unlink()
    await wait_for(lambda: scraped("gatekeeper_ratelimit_config_valid", 1))

    # a change polling cannot see (same size, mtime and inode) applies on an invalidation
    path = served.folder / "extra.yaml"
    stamp = path.stat().st_mtime_ns
    path.write_text(EXTRA.format(n=7))
    os.utime(path, ns=(stamp, stamp))
    await asyncio.sleep(1.2)  # two polls and more: still the old limit
    assert await extra_limit() == 1
    await redis.publish(f"{key_prefix}:invalidate", "reload")
    await wait_for(lambda: limited(7), within=2.0)
    # the counter kept its count: 3 hits so far, this is the 4th of 7 (the key is not the limit)
    assert (await served.ask("extra", ("user", "u1"))).statuses[0].limit_remaining == 3
