"""ShouldRateLimit over real gRPC (grpc.aio server, xds-protos stub), counters in real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import grpc
import pytest
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from google.protobuf import wrappers_pb2
from redis.exceptions import ConnectionError as RedisConnectionError

from gatekeeper.clock import ManualClock
from gatekeeper.grpc.ratelimit_servicer import add_to_server
from gatekeeper.ratelimit import Counter, RateLimitConfig, RateLimitService

Response = rls_pb2.RateLimitResponse
Unit = rls_pb2.RateLimitResponse.RateLimit.Unit


async def _serve(service: RateLimitService) -> tuple[grpc.aio.Server, grpc.aio.Channel]:
    server = grpc.aio.server()
    add_to_server(server, service)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, grpc.aio.insecure_channel(f"127.0.0.1:{port}")


@pytest.fixture
async def stub(service: RateLimitService) -> AsyncIterator[rls_pb2_grpc.RateLimitServiceStub]:
    server, channel = await _serve(service)
    try:
        yield rls_pb2_grpc.RateLimitServiceStub(channel)
    finally:
        await channel.close()
        await server.stop(None)


def descriptor(
    *entries: tuple[str, str],
    hits: int | None = None,
    limit: tuple[int, int] | None = None,
) -> ratelimit_pb2.RateLimitDescriptor:
    message = ratelimit_pb2.RateLimitDescriptor(
        entries=[ratelimit_pb2.RateLimitDescriptor.Entry(key=k, value=v) for k, v in entries]
    )
    if hits is not None:
        message.hits_addend.CopyFrom(wrappers_pb2.UInt64Value(value=hits))
    if limit is not None:
        message.limit.requests_per_unit, message.limit.unit = limit
    return message


async def test_should_rate_limit_answers_per_descriptor(
    stub: rls_pb2_grpc.RateLimitServiceStub,
) -> None:
    request = rls_pb2.RateLimitRequest(
        domain="messaging",
        descriptors=[
            descriptor(("from_number", "+1")),
            descriptor(("model", "gpt"), hits=999),
            descriptor(("path", "/health")),
            descriptor(("nothing", "here")),
        ],
        hits_addend=4,
    )
    response = await stub.ShouldRateLimit(request)
    assert response.overall_code == Response.OK
    sender, tokens, health, none = response.statuses
    assert sender.code == Response.OK
    assert (sender.current_limit.requests_per_unit, sender.current_limit.unit) == (4, Unit.MINUTE)
    assert sender.limit_remaining == 0
    assert sender.duration_until_reset.seconds == 60
    assert (tokens.limit_remaining, tokens.current_limit.requests_per_unit) == (1, 1000)
    assert health.limit_remaining == 2**32 - 1 and not health.HasField("current_limit")
    assert none.code == Response.OK and not none.HasField("current_limit")
    assert not none.HasField("duration_until_reset")

    again = await stub.ShouldRateLimit(
        rls_pb2.RateLimitRequest(
            domain="messaging", descriptors=[descriptor(("from_number", "+1"))]
        )
    )
    assert again.overall_code == Response.OVER_LIMIT
    assert again.statuses[0].code == Response.OVER_LIMIT


async def test_named_limit_and_envoy_override(stub: rls_pb2_grpc.RateLimitServiceStub) -> None:
    response = await stub.ShouldRateLimit(
        rls_pb2.RateLimitRequest(
            domain="messaging",
            descriptors=[
                descriptor(("plan", "free")),
                descriptor(("anything", "x"), limit=(7, Unit.YEAR)),
            ],
        )
    )
    free, override = response.statuses
    assert free.current_limit.name == "free_plan"
    assert (override.current_limit.requests_per_unit, override.current_limit.unit) == (
        7,
        Unit.YEAR,
    )
    assert override.limit_remaining == 6


@pytest.mark.parametrize(
    "request_",
    [
        rls_pb2.RateLimitRequest(domain="", descriptors=[descriptor(("a", "b"))]),
        rls_pb2.RateLimitRequest(domain="messaging"),
        rls_pb2.RateLimitRequest(
            domain="messaging", descriptors=[descriptor(("a", "b"), limit=(1, Unit.UNKNOWN))]
        ),
    ],
)
async def test_malformed_request_is_invalid_argument(
    stub: rls_pb2_grpc.RateLimitServiceStub, request_: rls_pb2.RateLimitRequest
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ShouldRateLimit(request_)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT


class _DownStore:
    async def hit(self, counters: Sequence[Counter]) -> list[int]:
        raise RedisConnectionError("connection refused")


async def test_store_down_is_unavailable(messaging: RateLimitConfig) -> None:
    server, channel = await _serve(RateLimitService(messaging, _DownStore(), ManualClock()))
    try:
        stub = rls_pb2_grpc.RateLimitServiceStub(channel)
        request = rls_pb2.RateLimitRequest(
            domain="messaging", descriptors=[descriptor(("from_number", "+1"))]
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ShouldRateLimit(request)
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
        # Requests that touch no counter do not need the store.
        fine = rls_pb2.RateLimitRequest(domain="elsewhere", descriptors=[descriptor(("a", "b"))])
        assert (await stub.ShouldRateLimit(fine)).overall_code == Response.OK
    finally:
        await channel.close()
        await server.stop(None)
