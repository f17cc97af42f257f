"""The policy source of a serving process: the catalog in memory, customers from the directory
through a bounded cache.

The catalog (features, prices, plans, routes) is small and held whole; a plan change swaps it,
and each cached customer is compiled again under the new catalog when it is next asked for
(lazily: a plan of 100,000 customers is not recompiled 100,000 times at once).

Customers are held in two tiers. The cache proper (`capacity`, the setting
`directory.cache_size`) holds each customer's record as stored, packed in one bytes object, and
each API key's owner as a str: atoms only, so the cyclic garbage collector never tracks it
(directory/cache.py). A smaller tier (`compiled_capacity`) holds the most recent of them
compiled, ready for the decision path; a customer in the first and not in the second is
compiled again (~60 µs, no round trip). A compiled customer is immutable, and taken off the
collector's lists when it is built (untrack.py): a full collection stops the event loop for
every object it tracks, and 4,096 compiled customers with their plan templates were ~70,000
objects, a 40–65 ms stall of every decision in flight.

Customers and API key pointers come from Redis (`store.customers`) on a miss: one round trip,
shared by every request that misses on the same customer meanwhile, never holding up the
others. A change announced on the invalidation channel drops that customer on every process; a
process that lost the channel drops everything (`clear`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from redis.exceptions import RedisError

from gatekeeper.config.customers import parse_customer
from gatekeeper.config.errors import ConfigError
from gatekeeper.directory.cache import Lru
from gatekeeper.errors import StoreUnavailable
from gatekeeper.model import ApiKey, Customer, Policy, frozen_map
from gatekeeper.store.customers import CustomerRecord, CustomerRecords
from gatekeeper.untrack import untrack

__all__ = ["COMPILED_CAPACITY", "DirectoryStats", "LiveDirectory"]

log = logging.getLogger(__name__)

COMPILED_CAPACITY = 4_096
"""Customers a process holds compiled at most (the rest of the cache holds their records): a
compiled customer and its templates take a few kB; compiling one again costs ~60 µs."""

_NO_KEYS: Mapping[str, ApiKey] = frozen_map()


@dataclass(frozen=True, slots=True)
class _Entry:
    """A customer as this process holds it: its record as stored (`raw` None = there is no
    such customer) and the customer compiled from it. The record's JSON is kept, not its parsed
    document (a third of what a cached customer cost): it is parsed again only to compile it
    under a new catalog or to answer `record()`, never on the decision path."""

    raw: bytes | None
    version: int = 0
    catalog: Policy | None = None  # what `customer` was compiled under
    customer: Customer | None = None
    keys: Mapping[str, ApiKey] = field(default_factory=lambda: _NO_KEYS)  # by SHA-256

    def record(self, customer_id: str) -> CustomerRecord | None:
        if self.raw is None:
            return None
        return CustomerRecord.from_json(customer_id, self.version, self.raw)


_ABSENT = _Entry(None)  # what is held of an id that is no customer


@dataclass(frozen=True, slots=True)
class DirectoryStats:
    """Counts since the process started. A lookup (of a customer, by id or by key) is a hit
    when answered from memory, a miss when it had to read the customer's record from Redis
    (or wait for a read already under way); a decision looks its customer up twice (identity,
    then the decision), so per decision the share that read Redis is misses / decisions."""

    size: int
    capacity: int
    hits: int
    misses: int
    evictions: int
    compile_failures: int


class LiveDirectory:
    """PolicySource over the customer directory. `capacity`: customers held at most (as
    stored); `compiled_capacity`: of those, how many are held compiled (see the module's doc);
    `unknown_key_ttl_s`: how long a key hash found in no record is remembered as unknown (a key
    created meanwhile works after at most that long)."""

    def __init__(
        self,
        *,
        catalog: Policy,
        records: CustomerRecords,
        capacity: int = 100_000,
        compiled_capacity: int = COMPILED_CAPACITY,
        unknown_key_ttl_s: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._catalog = catalog
        self._records = records
        # atoms only (directory/cache.py): the version packed before the record's JSON, b""
        # for no such customer; a key's owner, or until when it is known to have none
        self._stored: Lru[str, bytes] = Lru(capacity)
        self._customers: Lru[str, _Entry] = Lru(min(capacity, compiled_capacity))
        self._pointers: Lru[str, str | float] = Lru(capacity)
        self._unknown_ttl = unknown_key_ttl_s
        self._monotonic = monotonic
        self._filling: dict[str, asyncio.Future[_Entry]] = {}
        self._epoch = 0  # +1 per invalidation: a fill that raced one is used once, not kept
        self.compile_failures = 0
        self.hits = 0  # see DirectoryStats
        self.misses = 0

    @property
    def records(self) -> CustomerRecords:
        return self._records

    # ---- the catalog ---------------------------------------------------------------------
    def current(self) -> Policy:
        return self._catalog

    def set_catalog(self, catalog: Policy) -> None:
        """A new catalog (file reload, a plan set through the API): every held customer is
        compiled again under it when next asked for."""
        self._catalog = catalog

    # ---- customers -----------------------------------------------------------------------
    def cached_customer(self, customer_id: str) -> Customer | None:
        entry = self._customers.get(customer_id) or self._held(customer_id)
        if entry is None or entry.raw is None:
            return None
        if entry.catalog is not self._catalog:
            entry = self._compiled(customer_id, entry.version, entry.raw)
            self._customers.put(customer_id, entry)
        self.hits += 1
        return entry.customer

    async def customer(self, customer_id: str) -> Customer | None:
        return (await self._entry(customer_id)).customer

    async def record(self, customer_id: str) -> CustomerRecord | None:
        """The customer's stored record (its document in the file's shape), None if none."""
        return (await self._entry(customer_id)).record(customer_id)

    def cached_key_owner(self, sha256_hex: str) -> tuple[Customer, ApiKey] | None:
        # peeks: the decision that follows looks the customer up again (cached_customer),
        # which is what keeps it recent; a pointer costs one read when it is evicted
        owner = self._pointers.peek(sha256_hex)
        if not isinstance(owner, str):
            return None
        entry = self._customers.peek(owner) or self._held(owner)
        if entry is None or entry.raw is None:
            return None
        if entry.catalog is not self._catalog:
            return None  # compiled again on the awaited path
        key = entry.keys.get(sha256_hex)
        if key is None or entry.customer is None:
            return None  # answered (and counted) on the awaited path
        self.hits += 1
        return entry.customer, key

    async def key_owner(self, sha256_hex: str) -> tuple[Customer, ApiKey] | None:
        owner = await self._owner_id(sha256_hex)
        if owner is None:
            return None
        entry = await self._entry(owner)
        key = entry.keys.get(sha256_hex)
        return None if key is None or entry.customer is None else (entry.customer, key)

    # ---- invalidation --------------------------------------------------------------------
    def invalidate(self, customer_id: str) -> None:
        """The customer changed somewhere: ask the directory again next time."""
        self._epoch += 1
        self._stored.discard(customer_id)
        self._customers.discard(customer_id)

    def clear(self) -> None:
        """Messages may have been missed (the channel was lost): forget everything held."""
        self._epoch += 1
        self._stored.clear()
        self._customers.clear()
        self._pointers.clear()

    def stats(self) -> DirectoryStats:
        c = self._stored
        return DirectoryStats(
            len(c), c.capacity, self.hits, self.misses, c.evictions, self.compile_failures
        )

    # ---- filling -------------------------------------------------------------------------
    async def _entry(self, customer_id: str) -> _Entry:
        entry = self._customers.get(customer_id) or self._held(customer_id)
        if entry is not None:
            self.hits += 1
            if entry.raw is not None and entry.catalog is not self._catalog:
                entry = self._compiled(customer_id, entry.version, entry.raw)
                self._customers.put(customer_id, entry)
            return entry
        self.misses += 1
        pending = self._filling.get(customer_id)
        if pending is None:
            pending = asyncio.ensure_future(self._fill(customer_id))
            self._filling[customer_id] = pending
            pending.add_done_callback(lambda _: self._filling.pop(customer_id, None))
        return await asyncio.shield(pending)

    async def _fill(self, customer_id: str) -> _Entry:
        epoch = self._epoch
        try:
            stored = await self._records.get_stored(customer_id)
        except RedisError as exc:
            raise StoreUnavailable(f"directory unavailable: {exc}") from exc
        entry = _ABSENT if stored is None else self._compiled(customer_id, *stored)
        if epoch == self._epoch:  # no change announced while we read: keep it
            self._stored.put(customer_id, b"" if stored is None else _pack(*stored))
            self._customers.put(customer_id, entry)
        return entry

    def _held(self, customer_id: str) -> _Entry | None:
        """The customer compiled from the record the cache holds (None: not held), now in the
        compiled tier."""
        stored = self._stored.get(customer_id)
        if stored is None:
            return None
        entry = _ABSENT if not stored else self._compiled(customer_id, *_unpack(stored))
        self._customers.put(customer_id, entry)
        return entry

    async def _owner_id(self, sha256_hex: str) -> str | None:
        pointer = self._pointers.get(sha256_hex)
        now = self._monotonic()
        if isinstance(pointer, str):
            return pointer
        if pointer is not None and now < pointer:
            return None  # known to have no owner, for a little while
        try:
            owner = await self._records.owner_of_key(sha256_hex)
        except RedisError as exc:
            raise StoreUnavailable(f"directory unavailable: {exc}") from exc
        self._pointers.put(sha256_hex, now + self._unknown_ttl if owner is None else owner)
        return owner

    def _compiled(self, customer_id: str, version: int, raw: bytes) -> _Entry:
        catalog = self._catalog
        record = CustomerRecord.from_json(customer_id, version, raw)
        try:
            customer = parse_customer(
                record.id,
                record.doc,
                plans=catalog.plans,
                features=catalog.features,
                check_cap_ceiling=False,
            )
        except ConfigError as exc:
            # kept in the directory for an operator to fix; refused like an unknown customer
            self.compile_failures += 1
            log.error("directory entry customers.%s left out: %s", record.id, exc)
            return _Entry(raw, version, catalog, None, _NO_KEYS)
        entry = _Entry(raw, version, catalog, customer, {k.sha256: k for k in customer.api_keys})
        untrack(entry, stop=(Policy,))  # immutable: reference counting frees it (untrack.py)
        return entry


_VERSION = 8  # bytes of the version packed before a held record


def _pack(version: int, raw: bytes) -> bytes:
    return version.to_bytes(_VERSION, "big") + raw


def _unpack(held: bytes) -> tuple[int, bytes]:
    return int.from_bytes(held[:_VERSION], "big"), held[_VERSION:]
