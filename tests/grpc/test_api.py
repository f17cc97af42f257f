"""gatekeeper.v1.Gatekeeper over real gRPC: Check, Report, GetUsage, WatchUsage, health."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from redis.asyncio import Redis

from gatekeeper.app import App
from gatekeeper.config import load_config
from gatekeeper.v1 import gatekeeper_pb2 as pb
from gatekeeper.v1 import gatekeeper_pb2_grpc as pb_grpc
from tests.conftest import RedisTarget

POLICY = Path(__file__).parents[1] / "e2e" / "policy.yaml"


@pytest.fixture(params=["lean", "grpcio"])  # both servers of the gRPC port
async def app(
    request: pytest.FixtureRequest, redis: Redis, redis_target: RedisTarget, key_prefix: str
) -> AsyncIterator[App]:
    env = {
        "GATEKEEPER_REDIS_URL": redis_target.url,
        "GATEKEEPER_REDIS_KEY_PREFIX": key_prefix,
        "GATEKEEPER_SERVER_GRPC_TRANSPORT": request.param,
    }
    application = await App(load_config(POLICY, env=env)).start(
        host="127.0.0.1", grpc_port=0, authz_http_port=0, http_port=0
    )
    yield application
    await application.stop(0.2)


@pytest.fixture
async def stub(app: App) -> AsyncIterator[pb_grpc.GatekeeperStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
        yield pb_grpc.GatekeeperStub(channel)


async def test_check_report_and_usage(stub: pb_grpc.GatekeeperStub) -> None:
    r = await stub.Check(
        pb.CheckRequest(
            api_key="gk-test-hobbyist",
            requires=["api_access"],
            meters=[
                pb.Meter(feature="chat_requests", quantity=1),
                pb.Meter(feature="llm_tokens", quantity=2000, reserve=True),
            ],
        )
    )
    assert r.allowed and r.outcome == pb.ALLOWED and r.http_status == 200
    assert r.customer_id == "hobbyist" and r.reservation_id == r.decision_id
    assert r.cost_nano == 2_000_000 + 2000 * 600 and r.currency == "USD"
    assert dict(r.config_headers) == {"x-model-tier": "small"}
    rep = await stub.Report(
        pb.ReportRequest(
            customer_id="hobbyist", reservation_id=r.reservation_id, actual={"llm_tokens": 500}
        )
    )
    assert (rep.status, dict(rep.deltas), rep.cost_delta_nano) == (
        "settled",
        {"llm_tokens": -1500},
        -900_000,
    )
    again = await stub.Report(
        pb.ReportRequest(
            customer_id="hobbyist", reservation_id=r.reservation_id, actual={"llm_tokens": 500}
        )
    )
    assert again == rep  # idempotent per reservation: a retry gets the same answer, moves nothing
    usage = await stub.GetUsage(pb.GetUsageRequest(customer_id="hobbyist"))
    by = {(lim.kind, lim.feature): lim for lim in usage.limits}
    assert by[("quota", "chat_requests")].used == 1 and by[("quota", "llm_tokens")].used == 500
    assert by[("quota", "chat_requests")].window_seconds == 86400


async def test_denials_are_answers_not_errors(stub: pb_grpc.GatekeeperStub) -> None:
    r = await stub.Check(pb.CheckRequest(api_key="wrong"))
    assert (r.allowed, r.outcome, r.http_status) == (False, pb.UNKNOWN_CUSTOMER, 401)
    problem = json.loads(r.problem_json)  # the RFC 9457 body the HTTP edge answers
    assert problem["status"] == 401 and problem["type"].endswith("unauthorized")
    r = await stub.Check(pb.CheckRequest(customer_id="outsider", requires=["api_access"]))
    assert (r.outcome, r.http_status, r.feature) == (pb.NOT_ENTITLED, 403, "api_access")
    for _ in range(5):
        await stub.Check(
            pb.CheckRequest(
                customer_id="hobbyist", meters=[pb.Meter(feature="chat_requests", quantity=1)]
            )
        )
    r = await stub.Check(
        pb.CheckRequest(
            customer_id="hobbyist", meters=[pb.Meter(feature="chat_requests", quantity=1)]
        )
    )
    assert (r.outcome, r.http_status, r.denied_by.remaining) == (pb.QUOTA_EXHAUSTED, 429, 0)
    assert json.loads(r.problem_json)["feature"] == "chat_requests" and r.retry_after_seconds > 0


async def test_get_usage_of_unknown_customer_is_not_found(stub: pb_grpc.GatekeeperStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetUsage(pb.GetUsageRequest(customer_id="nobody"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_watch_usage_streams_new_events(stub: pb_grpc.GatekeeperStub) -> None:
    call = stub.WatchUsage(pb.WatchUsageRequest(customer_id="busy"))
    received: list[pb.UsageEvent] = []

    async def read() -> None:
        async for event in call:
            received.append(event)
            if len(received) == 2:
                return

    reader = asyncio.create_task(read())
    await asyncio.sleep(0.3)  # the watch starts at "now"
    await stub.Check(
        pb.CheckRequest(
            customer_id="hobbyist", meters=[pb.Meter(feature="chat_requests", quantity=1)]
        )
    )
    await stub.Check(
        pb.CheckRequest(customer_id="busy", meters=[pb.Meter(feature="chat_requests", quantity=3)])
    )
    await stub.Check(
        pb.CheckRequest(customer_id="busy", meters=[pb.Meter(feature="llm_tokens", quantity=7)])
    )
    await asyncio.wait_for(reader, 10)
    call.cancel()
    assert [(e.customer_id, e.feature, e.quantity) for e in received] == [
        ("busy", "chat_requests", 3),
        ("busy", "llm_tokens", 7),
    ]


async def test_health_and_reflection(app: App) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "envoy.service.auth.v3.Authorization", "gatekeeper.v1.Gatekeeper"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

        refl = reflection_pb2_grpc.ServerReflectionStub(channel)

        async def ask() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        async for response in refl.ServerReflectionInfo(ask()):
            names = {s.name for s in response.list_services_response.service}
            assert {
                "gatekeeper.v1.Gatekeeper",
                "envoy.service.auth.v3.Authorization",
                "envoy.service.accesslog.v3.AccessLogService",
            } <= names
            break


async def test_policy_reloads_on_invalidation_message(
    redis: Redis, redis_target: RedisTarget, key_prefix: str, tmp_path: Path
) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(POLICY.read_text())
    env = {"GATEKEEPER_REDIS_URL": redis_target.url, "GATEKEEPER_REDIS_KEY_PREFIX": key_prefix}
    app = await App(load_config(policy_file, env=env)).start(
        host="127.0.0.1", grpc_port=0, authz_http_port=0, http_port=0
    )

    async def revoked() -> bool:
        former = await app.policy.customer("former")
        assert former is not None
        return former.api_keys[0].revoked

    try:
        assert await revoked()
        policy_file.write_text(POLICY.read_text().replace("revoked: true", "revoked: false"))
        await asyncio.sleep(0.2)  # the listener subscribes after start
        await redis.publish(f"{key_prefix}:invalidate", "keys")
        from tests.e2e.harness import wait_for

        async def unrevoked() -> bool:
            return not await revoked()

        assert await wait_for(unrevoked)
        policy_file.write_text("version: 2\n")  # a broken file keeps the policy in force
        await redis.publish(f"{key_prefix}:invalidate", "keys")
        await asyncio.sleep(0.3)
        assert await app.policy.customer("former") is not None and app.healthy
    finally:
        await app.stop(0.2)
