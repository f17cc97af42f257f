"""Through a real Envoy (the shipped front proxies, generated): admitted, denied right, charged."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from gatekeeper.app import App
from gatekeeper.config import load_config
from gatekeeper.events import UsageEvent
from gatekeeper.model import Period
from gatekeeper.periods import window_for
from tests.conftest import RedisTarget, also_on_cluster
from tests.e2e.harness import MODES, Upstream, client, front_proxy, wait_for

POLICY = Path(__file__).with_name("policy.yaml")
pytestmark = pytest.mark.e2e


def key(customer: str) -> dict[str, str]:
    return {"x-api-key": f"gk-test-{customer}"}


class Stack:
    def __init__(
        self, app: App, upstream: Upstream, url: str, redis: Redis, mode: str, admin_url: str = ""
    ) -> None:
        self.app, self.upstream, self.url, self.redis, self.mode = app, upstream, url, redis, mode
        self.admin_url = admin_url

    async def envoy_stat(self, name: str) -> int:
        async with client() as s, s.get(f"{self.admin_url}/stats?filter=^{name}$") as r:
            text = await r.text()
        found = [line.split(": ")[1] for line in text.splitlines() if line.startswith(name + ":")]
        return int(found[0]) if found else 0

    async def events(self, customer: str) -> list[UsageEvent]:
        keys = self.app.engine._store.keys  # type: ignore[union-attr,attr-defined]
        raw = await self.redis.xrange(keys.usage_stream(keys.partition(customer)))
        return [e for e in (UsageEvent.from_fields(f) for _, f in raw) if e.customer == customer]


@pytest.fixture(params=sorted(MODES))
async def stack(
    request: pytest.FixtureRequest, redis: Redis, redis_target: RedisTarget, key_prefix: str
) -> AsyncIterator[Stack]:
    env = redis_target.env(key_prefix)
    app = await App(load_config(POLICY, env=env)).start(
        host="127.0.0.1", grpc_port=0, authz_http_port=0, http_port=0
    )
    upstream = await Upstream().start()
    try:
        with front_proxy(
            request.param,
            grpc_port=app.grpc_port,
            authz_http_port=app.authz_http_port,
            upstream_port=upstream.port,
            authz_timeout=timedelta(seconds=5),  # a 200-request burst on 2 cores must not time out
        ) as envoy:
            yield Stack(app, upstream, envoy.url, redis, request.param, envoy.admin_url)
    finally:
        await upstream.stop()
        await app.stop(0.5)


async def post(
    url: str, headers: dict[str, str], path: str = "/v1/chat/completions"
) -> tuple[int, dict[str, str], bytes]:
    async with client() as s, s.post(url + path, headers=headers, json={"prompt": "hi"}) as r:
        return r.status, {k.lower(): v for k, v in r.headers.items()}, await r.read()


async def test_a_denied_head_request_is_answered_without_breaking_the_authorizer_connection(
    stack: Stack,
) -> None:
    """Envoy forwards the client's method: a HEAD check's denial must carry no body."""
    for _ in range(3):
        async with client() as s, s.head(stack.url + "/v1/chat/completions", headers=key("x")) as r:
            assert r.status == 401
    async with client() as s, s.head(stack.url + "/v1/models", headers=key("hobbyist")) as r:
        assert r.status == 200
    if stack.mode == "http":
        cluster = "cluster.gatekeeper_authz_http"
        assert await stack.envoy_stat(f"{cluster}.upstream_cx_protocol_error") == 0


async def test_a_config_header_the_plan_has_no_value_for_is_not_the_clients_to_set(
    stack: Stack,
) -> None:
    """thrifty's plan sets no model tier: the client's own x-model-tier must not reach upstream."""
    claim = {**key("thrifty"), "x-model-tier": "large"}
    async with client() as s, s.get(stack.url + "/v1/models", headers=claim) as r:
        assert r.status == 200
    seen = stack.upstream.seen_headers[-1]
    assert seen["x-gatekeeper-customer"] == "thrifty"
    assert "x-model-tier" not in seen


async def test_healthz_passes_no_client_claim_to_the_upstream(stack: Stack) -> None:
    """ext_authz is off on /healthz, so nothing overwrites a client's x-gatekeeper-* there."""
    claim = {"x-gatekeeper-customer": "busy", "x-gatekeeper-plan": "burst", "x-model-tier": "x"}
    async with client() as s, s.get(stack.url + "/healthz", headers=claim) as r:
        assert r.status == 200
    seen = stack.upstream.seen_headers[-1]
    assert not {"x-gatekeeper-customer", "x-gatekeeper-plan", "x-model-tier"} & set(seen)


@also_on_cluster()
async def test_valid_key_is_admitted_with_headers_up_and_down(stack: Stack) -> None:
    status, headers, _ = await post(stack.url, {**key("hobbyist"), "x-gatekeeper-customer": "busy"})
    assert status == 200
    seen = stack.upstream.seen_headers[-1]
    assert seen["x-gatekeeper-customer"] == "hobbyist"  # the client's claim was stripped
    assert seen["x-model-tier"] == "small"
    assert seen["x-gatekeeper-decision-id"]
    assert headers["x-ratelimit-limit"] == "5" and headers["x-ratelimit-remaining"] == "4"
    assert headers["ratelimit-policy"] == '"quota-chat_requests";q=5;w=86400'
    assert headers["ratelimit"].startswith('"quota-chat_requests";r=4;t=')


@pytest.mark.parametrize(
    "headers", [{}, key("nobody"), key("former"), {"authorization": "Bearer nope"}]
)
async def test_missing_unknown_or_revoked_key_is_401(stack: Stack, headers: dict[str, str]) -> None:
    status, h, body = await post(stack.url, headers)
    assert status == 401 and h["content-type"] == "application/problem+json"
    problem = json.loads(body)
    assert problem["status"] == 401 and "former" not in body.decode()
    assert stack.upstream.hits == 0


async def test_bearer_token_is_accepted(stack: Stack) -> None:
    status, _, _ = await post(stack.url, {"authorization": "Bearer gk-test-hobbyist"})
    assert status == 200


async def test_not_entitled_is_403_with_feature(stack: Stack) -> None:
    status, h, body = await post(stack.url, key("outsider"))
    problem = json.loads(body)
    assert (status, problem["feature"], problem["status"]) == (403, "api_access", 403)
    assert h["content-type"] == "application/problem+json"


@also_on_cluster()
async def test_quota_exhausted_is_429_with_retry_after(stack: Stack) -> None:
    for _ in range(5):
        assert (await post(stack.url, key("hobbyist")))[0] == 200
    status, h, body = await post(stack.url, key("hobbyist"))
    problem = json.loads(body)
    assert status == 429 and int(h["retry-after"]) > 0
    assert (problem["feature"], problem["limit"], problem["remaining"]) == ("chat_requests", 5, 0)
    assert problem["reset"].endswith("T00:00:00Z")
    assert h["x-ratelimit-remaining"] == "0"
    assert stack.upstream.hits == 5


@also_on_cluster()
async def test_spend_cap_is_402(stack: Stack) -> None:
    tokens = {**key("thrifty"), "x-token-count": "5000"}  # 5000 x 0.0000006 = 0.003 USD
    assert (await post(stack.url, tokens, "/v1/embeddings"))[0] == 200
    status, h, body = await post(stack.url, tokens, "/v1/embeddings")
    problem = json.loads(body)
    assert status == 402 and (problem["cap"], problem["spent"]) == ("0.005", "0.003")
    assert h["content-type"] == "application/problem+json"


@pytest.mark.parametrize("count", ["lots", "-1", str(2**63), "9" * 5000])
async def test_malformed_cost_header_is_400(stack: Stack, count: str) -> None:
    status, _, body = await post(
        stack.url, {**key("busy"), "x-token-count": count}, "/v1/embeddings"
    )
    assert status == 400 and "x-token-count" in json.loads(body)["detail"]


async def test_context_extensions_choose_feature_and_cost(stack: Stack) -> None:
    if stack.mode != "grpc":
        pytest.skip("Envoy sends context_extensions only in gRPC mode")
    async with client() as s, s.get(stack.url + "/v1/images/1", headers=key("busy")) as r:
        assert r.status == 200
        assert r.headers["x-ratelimit-remaining"] == "45"  # cost 5 from the route's context


@also_on_cluster()
async def test_200_concurrent_requests_against_hard_limit_of_50(stack: Stack) -> None:
    async def one() -> int:
        return (await post(stack.url, key("busy")))[0]

    statuses = await asyncio.gather(*(one() for _ in range(200)))
    assert statuses.count(200) == 50 and statuses.count(429) == 150
    assert stack.upstream.hits == 50


@also_on_cluster()
async def test_tokens_are_settled_from_the_upstream_header(stack: Stack) -> None:
    reported = [17, 2500, 1999, 0, 4321]
    for n in reported:
        status, _, _ = await post(stack.url, {**key("busy"), "x-test-tokens": str(n)})
        assert status == 200

    async def settled() -> bool:
        kinds = [e.kind.value for e in await stack.events("busy") if e.feature == "llm_tokens"]
        return kinds.count("adjustment") == len(reported)

    assert await wait_for(settled, timeout_s=10)
    token_events = [e for e in await stack.events("busy") if e.feature == "llm_tokens"]
    assert (
        sum(e.quantity for e in token_events)
        == sum(reported)
        == sum(stack.upstream.tokens_reported)
    )
    keys = stack.app.engine._store.keys  # type: ignore[union-attr,attr-defined]
    window = window_for(datetime.now(UTC), Period.MONTH)
    counter = await stack.redis.hget(keys.quota("busy", "llm_tokens", window.token), "u")
    assert int(counter) == sum(reported)
    price = {e.decision_id: 0 for e in token_events}
    for e in token_events:
        price[e.decision_id] += e.amount_nano
    assert all(total == 600 * n for total, n in zip(price.values(), reported, strict=True))


async def test_5xx_response_is_not_charged(stack: Stack) -> None:
    stack.upstream.status = 503
    status, _, _ = await post(stack.url, {**key("busy"), "x-test-tokens": "900"})
    assert status == 503

    async def settled() -> list[Any]:
        return [e for e in await stack.events("busy") if e.kind.value == "adjustment"]

    assert await wait_for(settled, timeout_s=10)
    token_events = [e for e in await stack.events("busy") if e.feature == "llm_tokens"]
    assert sum(e.quantity for e in token_events) == 0
