"""Redis Cluster: the seed list, and the auto-pipeline of the decisions' Lua calls per primary.

`ClusterAutoPipeline` keeps a slot map (CLUSTER SLOTS, Redis >= 6.2) and one AutoPipeline per
primary (autopipeline.py: coalesced writes, FIFO replies, timeouts, reconnect backoff). Each
call goes to the primary serving the hash slot of its first key (CRC16 of the hash tag), so
the calls of one primary still share writes exactly as on a single node.

Redirections and failures, and why each is safe:
- `MOVED <slot> <host:port>`: the node did not run the call. The slot is pointed at the named
  node, a full map refresh is started in the background, and the call is sent there (at most
  MAX_REDIRECTS times in all).
- `ASK <slot> <host:port>` (a slot being migrated): the node did not run the call; `ASKING`
  and the call go to the named node back to back on one connection, once per redirection.
- A lost or timed-out connection: the call may have run, so it is never sent again
  (StoreUnavailable, as on a single node); the map is refreshed in the background, since the
  usual cause is a failover.
- Every other error reply is handed back as it is (NOSCRIPT is handled by scripts.py: the
  script is loaded on the node of the key and the call resent; NOSCRIPT means it did not run).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from gatekeeper.errors import StoreUnavailable
from gatekeeper.store.autopipeline import AutoPipeline
from gatekeeper.store.endpoint import Endpoint
from gatekeeper.store.resp import ErrorReply, encode_command

__all__ = ["ClusterAutoPipeline", "node_endpoint", "parse_seeds"]

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
REFRESH_MIN_INTERVAL_S = 0.1  # background refreshes at most this often
_ASKING = encode_command(("ASKING",))
_CLUSTER_SLOTS = encode_command(("CLUSTER", "SLOTS"))


def parse_seeds(url: str) -> list[Endpoint]:
    """Seed nodes from `redis[s]://[user:pass@]h1:p1,redis[s]://h2:p2` or `redis[s]://h1:p1,h2:p2`.

    The first URL's scheme, credentials and options (socket_timeout, and for rediss:// its TLS
    context: ssl_ca_certs, ssl_certfile, ssl_keyfile, ...) apply to every node, the nodes
    found in the slot map included: of the other seeds only host and port are read, and a
    scheme other than the first's is refused (one cluster is all TLS or none of it). Raises
    ValueError for a unix socket or another scheme.
    """
    parts = [p.strip() for p in url.split(",") if p.strip()]
    if not parts:
        raise ValueError("GATEKEEPER_REDIS_URL names no seed node")
    seeds: list[Endpoint] = []
    scheme = ""
    for part in parts:
        if "://" in part:
            this = part.split("://", 1)[0]
            if this not in ("redis", "rediss") or (scheme and this != scheme):
                raise ValueError(
                    "a Redis Cluster seed must be redis://host:port, rediss://host:port (all "
                    "seeds the same scheme) or host:port"
                )
            scheme = this
            ep = Endpoint.from_url(part)
            assert ep is not None and ep.path is None  # redis[s]:// is not a socket
            host, port = ep.host, ep.port
        else:
            host, sep, number = part.rpartition(":")
            if not sep or not host or not number.isdigit():
                raise ValueError("a Redis Cluster seed must be redis://host:port or host:port")
            host, port = host.strip("[]"), int(number)
            ep = Endpoint(host=host, port=port)
        seeds.append(node_endpoint(seeds[0] if seeds else ep, host, port))
    return seeds


def node_endpoint(template: Endpoint, host: str, port: int) -> Endpoint:
    """`template` (the first seed: credentials, timeouts, TLS) for the node at host:port; over
    TLS with hostname checks, the certificate is checked against that node's own host."""
    hostname = host if template.server_hostname is not None else None
    return dataclasses.replace(
        template, host=host, port=port, path=None, db=0, server_hostname=hostname
    )


def _address(reply: ErrorReply, default_host: str) -> tuple[int, str, int]:
    """`MOVED|ASK <slot> <host>:<port>` -> (slot, host, port); an empty host is the replier's."""
    _, slot, where = str(reply).split(" ", 2)
    host, _, port = where.strip().rpartition(":")
    return int(slot), host or default_host, int(port)


class ClusterAutoPipeline:
    """The auto-pipeline (autopipeline.py) over a Redis Cluster: one per primary, routed by slot.

    `execute(data, key)` raises StoreUnavailable like AutoPipeline.execute (never after a
    call may have run and then been resent); error replies come back as ErrorReply values.
    """

    def __init__(self, seeds: Sequence[Endpoint], *, connections_per_node: int = 1) -> None:
        if not seeds:
            raise ValueError("at least one seed node is needed")
        self._seeds = tuple(seeds)
        self._per_node = connections_per_node
        self._nodes: dict[tuple[str, int], AutoPipeline] = {}
        self._slots: list[AutoPipeline | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
        self._refreshing: asyncio.Task[None] | None = None
        self._next_refresh = 0.0
        self._closed = False
        self.refreshes = 0  # slot maps read so far (tests, metrics)
        self.redirects = 0  # MOVED and ASK replies followed so far

    async def execute(self, data: bytes, key: str | bytes | None = None) -> Any:
        """Send one encoded command to the primary of `key`'s slot (any primary when None)."""
        node = await self._primary_of(key)
        try:
            reply = await node.execute(data)
        except StoreUnavailable:
            self._refresh_soon()  # most likely a failover: find the new primary for next calls
            raise
        if type(reply) is ErrorReply:
            return await self._redirected(reply, data, node)
        return reply

    async def command(self, *args: bytes | str | int, key: str | bytes | None = None) -> Any:
        return await self.execute(encode_command(args), key)

    async def execute_then(
        self, data: bytes, then: bytes, key: str | bytes | None = None
    ) -> tuple[Any, Any]:
        """`data` to the primary of `key`'s slot with `then` right behind it on the same
        connection. A call redirected (MOVED, ASK: it did not run there) is followed as
        `execute` does, without `then`: its second reply is then None."""
        node = await self._primary_of(key)
        try:
            reply, after = await node.execute_pair(data, then)
        except StoreUnavailable:
            self._refresh_soon()
            raise
        if type(reply) is ErrorReply:
            return await self._redirected(reply, data, node), None
        return reply, after

    async def execute_many(
        self, data: Sequence[bytes], keys: Sequence[str | bytes | None]
    ) -> list[Any]:
        """Many encoded commands, each routed (and redirected) as `execute` does; replies in
        order."""
        replies = await asyncio.gather(*map(self.execute, data, keys), return_exceptions=True)
        for reply in replies:  # error replies are values; anything raised is raised here
            if isinstance(reply, BaseException) and not isinstance(reply, ErrorReply):
                raise reply
        return list(replies)

    @property
    def in_flight(self) -> int:
        return sum(node.in_flight for node in self._nodes.values())

    @property
    def primaries(self) -> list[str]:
        """host:port of every primary in the slot map."""
        seen = {id(n): n for n in self._slots if n is not None}
        return sorted(n.endpoint.where for n in seen.values())

    async def refresh(self) -> None:
        """Read the slot map now (sharing a refresh already running). Raises StoreUnavailable
        when no known node answers CLUSTER SLOTS."""
        task = self._refreshing
        if task is None or task.done():
            task = asyncio.get_running_loop().create_task(self._refresh())
            task.add_done_callback(_observe)
            self._refreshing = task
        await asyncio.shield(task)

    async def aclose(self) -> None:
        self._closed = True
        if self._refreshing is not None:
            self._refreshing.cancel()
        nodes, self._nodes = list(self._nodes.values()), {}
        self._slots = [None] * REDIS_CLUSTER_HASH_SLOTS
        for node in nodes:
            await node.aclose()

    async def _redirected(self, reply: ErrorReply, data: bytes, node: AutoPipeline) -> Any:
        for _ in range(MAX_REDIRECTS):
            message = str(reply)
            if message.startswith("MOVED "):
                slot, host, port = _address(reply, node.endpoint.host)
                node = self._node(host, port)
                self._slots[slot] = node
                self._refresh_soon()
                self.redirects += 1
                reply = await node.execute(data)
            elif message.startswith("ASK "):
                _, host, port = _address(reply, node.endpoint.host)
                node = self._node(host, port)
                self.redirects += 1
                asked, reply = await node.execute_pair(_ASKING, data)
                if type(asked) is ErrorReply:  # ASKING refused: the call did not run
                    return asked
            else:
                return reply
            if type(reply) is not ErrorReply:
                return reply
        return reply

    async def _primary_of(self, key: str | bytes | None) -> AutoPipeline:
        """The primary serving `key`'s slot (slot 0's for None), the map read if unknown."""
        slot = 0 if key is None else key_slot(key.encode() if isinstance(key, str) else key)
        node = self._slots[slot]
        if node is None:
            await self.refresh()
            node = self._slots[slot]
            if node is None:
                raise StoreUnavailable(f"redis unavailable: cluster slot {slot} is not served")
        return node

    def _node(self, host: str, port: int) -> AutoPipeline:
        node = self._nodes.get((host, port))
        if node is None:
            endpoint = node_endpoint(self._seeds[0], host, port)
            node = AutoPipeline(endpoint, connections=self._per_node)
            self._nodes[host, port] = node
        return node

    def _refresh_soon(self) -> None:
        if self._closed or (self._refreshing is not None and not self._refreshing.done()):
            return
        loop = asyncio.get_running_loop()
        if loop.time() < self._next_refresh:
            return
        self._next_refresh = loop.time() + REFRESH_MIN_INTERVAL_S
        task = loop.create_task(self._refresh())
        task.add_done_callback(_observe)
        self._refreshing = task

    async def _refresh(self) -> None:
        if self._closed:
            raise StoreUnavailable("redis unavailable: client closed")
        known = {id(n): n for n in self._slots if n is not None}
        candidates = [n.endpoint for n in known.values()] + list(self._seeds)
        last = "no seed node"
        for endpoint in candidates:
            asked = self._node(endpoint.host, endpoint.port)
            try:
                reply = await asked.execute(_CLUSTER_SLOTS)
            except StoreUnavailable as exc:
                last = f"{endpoint.where}: {exc}"
                continue
            if isinstance(reply, ErrorReply):
                last = f"{endpoint.where}: {reply}"
                continue
            self._install(reply, endpoint.host)
            return
        raise StoreUnavailable(f"redis unavailable: no cluster node answered ({last})")

    def _install(self, reply: list[Any], default_host: str) -> None:
        slots: list[AutoPipeline | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
        for entry in reply:
            start, end, primary = int(entry[0]), int(entry[1]), entry[2]
            raw_host = primary[0]
            host = raw_host.decode() if isinstance(raw_host, bytes) else str(raw_host)
            node = self._node(host or default_host, int(primary[1]))
            slots[start : end + 1] = [node] * (end + 1 - start)
        self._slots = slots
        self.refreshes += 1
        # Nodes that serve no slot now (seeds that are replicas, old primaries) keep their
        # AutoPipeline until aclose(): a call may still be waiting on one, and there are only
        # as many as the cluster has nodes.


def _observe(task: asyncio.Task[Any]) -> None:
    """A background refresh's failure is logged (the next call that needs the map raises)."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.warning("redis cluster slot map refresh failed: %s", exc)
