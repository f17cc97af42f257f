"""Customers' own webhook endpoints never reach internal addresses (SSRF): the worker resolves
the host and dead-letters a delivery whose address is loopback, private, link-local,
unspecified, multicast or reserved, so a DNS name pointing inside cannot get around the check
made at registration. The operator's own endpoints (settings) may target anything, and
`allow_private_customer_webhooks` lifts the rule for customers' endpoints too."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest
from redis.asyncio import Redis

from gatekeeper.notify import DeliveryOutcome, MemoryDeliveryLog, generate_secret
from gatekeeper.notify.addresses import internal_address, url_host_problem
from tests.engine.harness import make_harness
from tests.notify.helpers import customers_policy, endpoint, make_notifier, req, wall_clock
from tests.notify.receiver import WebhookReceiver


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.0.0.1",
        "172.16.5.4",
        "172.31.255.255",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.100.100.200",  # shared address space (another cloud's metadata)
        "0.0.0.0",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:169.254.169.254",
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    ],
)
def test_internal_addresses(address: str) -> None:
    assert internal_address(ipaddress.ip_address(address)), address


@pytest.mark.parametrize(
    "address", ["93.184.215.14", "8.8.8.8", "172.32.0.1", "2606:4700:4700::1111"]
)
def test_public_addresses(address: str) -> None:
    assert not internal_address(ipaddress.ip_address(address)), address


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hooks",
        "http://localhost/hooks",
        "http://LocalHost.:8080/",
        "http://api.localhost/",
        "http://[::1]:8080/",
        "http://[fe80::1%25eth0]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/",
        "http://0.0.0.0/",
        "http://127.1/",  # legacy numeric forms the resolver would map onto 127.0.0.1
        "http://2130706433/",
        "http://0x7f.0.0.1/",
        "http://[::ffff:10.0.0.1]/",
    ],
)
def test_urls_naming_internal_hosts_are_refused(url: str) -> None:
    assert url_host_problem(url) is not None, url


@pytest.mark.parametrize(
    "url",
    ["https://hooks.example.com/gk", "http://93.184.215.14:8080/x", "https://[2606:4700::1]/"],
)
def test_urls_naming_public_hosts_pass(url: str) -> None:
    assert url_host_problem(url) is None, url


async def _two_alerts(redis: Redis, prefix: str) -> None:
    h = make_harness(redis, customers_policy(["acme"]), prefix)
    assert (await h.engine.decide(req("acme", 40))).allowed  # crosses 50 % and 80 %


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
async def test_a_customer_endpoint_resolving_inside_is_dead_lettered(
    redis: Redis, key_prefix: str, host: str
) -> None:
    async with asyncio.timeout(30):
        secret = generate_secret()
        operator = await WebhookReceiver([secret]).start()
        inside = await WebhookReceiver([secret]).start()
        clock, log = wall_clock(), MemoryDeliveryLog()
        own = endpoint(inside.url.replace("127.0.0.1", host), secret, customer="acme")
        n = make_notifier(
            redis, key_prefix, [endpoint(operator.url, secret), own], clock=clock, log=log
        )
        try:
            await _two_alerts(redis, key_prefix)
            await n.drain()
            clock.advance(60)
            await n.drain()
            assert len(operator.accepted) == 2  # the operator's endpoint may be internal
            assert inside.requests == []  # never connected to
            assert n.dead_lettered == 2
            dead = [r for r in log.records if r.outcome is DeliveryOutcome.DEAD_LETTERED]
            assert len(dead) == 2 and all(r.attempt == 1 for r in dead)  # no retries
            assert all("internal address" in (r.error or "") for r in dead), dead
        finally:
            await n.aclose()
            await operator.stop()
            await inside.stop()


async def test_the_setting_allows_private_customer_endpoints(redis: Redis, key_prefix: str) -> None:
    async with asyncio.timeout(30):
        secret = generate_secret()
        inside = await WebhookReceiver([secret]).start()
        clock = wall_clock()
        own = endpoint(inside.url.replace("127.0.0.1", "localhost"), secret, customer="acme")
        n = make_notifier(
            redis, key_prefix, [own], clock=clock, allow_private_customer_webhooks=True
        )
        try:
            await _two_alerts(redis, key_prefix)
            await n.drain()
            for _ in range(50):  # `localhost` may try ::1 (refused) before 127.0.0.1
                if len(inside.accepted) == 2:
                    break
                clock.advance(2)
                await n.drain()
            assert len(inside.accepted) == 2 and n.dead_lettered == 0
        finally:
            await n.aclose()
            await inside.stop()
