"""The decision journal: what makes a decision whose reply was lost reversible.

A process that sent a decision to Redis and got no reply (the connection dropped, the call
timed out, a failover) cannot tell whether Redis applied it, and has already answered the
request as its failure mode says. Billed must equal answered 200, so the question is settled
once Redis answers again:

- every admission decide.lua makes leaves a receipt (what it consumed) in this process's
  journal of the customer's partition, one hash per few seconds of decision ids
  (KeySpace.decision_journal: in the partition's hash slot, also on a Cluster);
- a decision answered as an error is *lost*: its call (KEYS, ARGV) is kept here, and void.lua,
  run with that same call, gives back what it consumed if it was applied, or marks it so it
  can never apply later (a write still on its way);
- a decision admitted offline (fail-open) is *kept*: the offline backlog records it under the
  same id, and decide.lua applies an id once (a call that did land is not counted twice).

A journal is deleted once no call of its ids can still be in flight (its ids are older than
twice the store's call timeout, plus a bucket) and no lost or kept decision of it is still
unresolved, so Redis holds the receipts of the last ~20 s of admissions. A process that dies
leaves its journals to a one-day expiry: what it had not resolved stays billed (a lost
decision lives in this process only; docs/scaling.md says so).
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gatekeeper.store.keys import KeySpace

__all__ = ["DecisionJournal", "LostCall"]

log = logging.getLogger(__name__)

BUCKET_S = 5  # seconds of decision ids per journal hash
DEFAULT_LIMIT = 100_000  # lost decisions held at once (a call is ~0.5 KB)


@dataclass(frozen=True, slots=True)
class LostCall:
    """A decide.lua call whose reply never came: enough to run void.lua with the same call."""

    decision_id: str
    customer: str
    keys: tuple[str, ...]
    argv: bytes


class DecisionJournal:
    def __init__(
        self,
        keys: KeySpace,
        *,
        call_timeout_s: float,
        instance: str | None = None,
        bucket_s: int = BUCKET_S,
        limit: int = DEFAULT_LIMIT,
        now: Callable[[], float] = time.time,
    ) -> None:
        """`call_timeout_s`: the longest a call may wait for its reply before it fails (the
        store's timeout); `now`: wall-clock seconds (decision ids carry wall-clock ms)."""
        self._ks = keys
        # unique per process and start (48 random bits: pods all run as pid 1): a restarted
        # process never shares a journal
        self.instance = instance or f"{os.getpid():x}.{secrets.token_hex(6)}"
        self._bucket_ms = bucket_s * 1000
        # a call may wait a lookup and its own timeout after its id is made: 2 x the timeout
        self._lag = math.ceil(2 * call_timeout_s / bucket_s) + 1
        self._now = now
        self._keys: dict[tuple[int, int], str] = {}  # (partition, bucket) -> journal key
        self._lost: dict[str, LostCall] = {}  # decision id -> call, oldest first
        self._pins: dict[str, int] = {}  # decision id -> bucket: lost or kept, unresolved
        self.limit = limit
        self.dropped = 0  # lost beyond `limit`: never voided (billed though not answered 200)
        self.voided = 0  # lost decisions found applied and given back
        self.unapplied = 0  # lost decisions found never applied (marked so they never will)

    def bucket(self, decision_id: str) -> int:
        """The journal bucket of a decision id: its wall-clock milliseconds (engine ids: 12
        hex digits first) over the bucket length; 0 for an id of another shape (tests)."""
        if len(decision_id) == 32:
            try:
                return int(decision_id[:12], 16) // self._bucket_ms
            except ValueError:
                pass
        return 0

    def key(self, partition: int, decision_id: str) -> str:
        """The journal a decision of `partition` writes (hot path: one dict lookup)."""
        where = (partition, self.bucket(decision_id))
        found = self._keys.get(where)
        if found is None:
            found = self._keys[where] = self._ks.decision_journal(
                partition, self.instance, where[1]
            )
        return found

    # lost and kept decisions
    def lost(self, call: LostCall) -> bool:
        """Hold `call` to be voided; False (logged, counted) when `limit` are held already."""
        if call.decision_id in self._lost:
            return True
        if len(self._lost) >= self.limit:
            self.dropped += 1
            log.error(
                "%d lost decisions held already: decision %s of %s will not be voided if it "
                "was applied",
                self.limit,
                call.decision_id,
                call.customer,
            )
            return False
        self._lost[call.decision_id] = call
        self._pins[call.decision_id] = self.bucket(call.decision_id)
        return True

    def keep(self, decision_id: str) -> None:
        """A lost decision answered 200 after all (fail-open): not voided; its journal stays
        until `resolved` (the offline backlog recorded it)."""
        if self._lost.pop(decision_id, None) is not None:
            return
        self._pins.setdefault(decision_id, self.bucket(decision_id))

    def resolved(self, decision_id: str) -> None:
        self._lost.pop(decision_id, None)
        self._pins.pop(decision_id, None)

    def unresolved(self) -> list[LostCall]:
        """The lost decisions still to void, oldest first."""
        return list(self._lost.values())

    @property
    def pending(self) -> int:
        return len(self._lost)

    # retiring journals
    def retirable(self) -> list[str]:
        """Journal keys no reply can still be lost from and no unresolved decision needs."""
        last = int(self._now() * 1000) // self._bucket_ms - self._lag
        if self._pins:
            last = min(last, min(self._pins.values()) - 1)
        return [key for (_, bucket), key in self._keys.items() if bucket <= last]

    def retired(self, keys: Iterable[str]) -> None:
        gone = set(keys)
        self._keys = {where: key for where, key in self._keys.items() if key not in gone}

    def every_key(self) -> list[str]:
        """Every journal this process wrote (at a graceful stop, once nothing is in flight)."""
        return list(self._keys.values())
