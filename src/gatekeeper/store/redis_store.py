"""DecisionStore on Redis: one EVALSHA per decision, one HGET + one EVALSHA per settlement.

The EVALSHAs go through the client's auto-pipeline when it has one (connection.py), else
through redis-py; either way a store failure is a StoreUnavailable. A decision whose reply
was lost is held in the decision journal (journal.py) and voided by `void_lost` unless the
caller keeps it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, cast

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gatekeeper.clock import from_us, to_us
from gatekeeper.engine.plan import DecisionPlan
from gatekeeper.engine.ports import DecideReply, SettleReply
from gatekeeper.errors import StoreUnavailable
from gatekeeper.settings import RedisSettings
from gatekeeper.store.argpack import pack_int, pack_str, pack_values
from gatekeeper.store.autopipeline import Pipelined
from gatekeeper.store.batch import raise_errors, run_batch
from gatekeeper.store.codec import (
    FIXED_KEYS,
    Body,
    compile_body,
    decode_decide,
    decode_settle,
    encode,
)
from gatekeeper.store.connection import autopipeline_of
from gatekeeper.store.journal import DecisionJournal, LostCall
from gatekeeper.store.keys import KeySpace
from gatekeeper.store.resp import bulk_strings, encode_command
from gatekeeper.store.scripts import LuaScript, load_script
from gatekeeper.untrack import untrack

__all__ = ["RedisDecisionStore", "ScriptSpan", "ScriptTracer"]

log = logging.getLogger(__name__)

# decide.lua's leading ARGV values: now, decision id, customer, plan, request id, idempotency
# key, idempotency flag, idempotency TTL, reservation TTL, currency, mode
DECIDE_HEAD_FIELDS = 11
MODE_DECIDE, MODE_PEEK = 0, 2  # decide.lua's modes (engine.engine's MODE_*)
VOID_BATCH = 256  # lost decisions voided at once (one round trip for the batch)
_DEFAULT_CALL_TIMEOUT_S = 30.0  # a client without a socket timeout: assume calls end by then


class ScriptSpan(Protocol):
    """A span around one script call (gatekeeper.tracing.RedisSpan)."""

    @property
    def traceparent(self) -> str: ...  # the decision span's W3C context, for the streams

    def end(self, error: BaseException | None = None) -> None: ...


class ScriptTracer(Protocol):
    """Spans for script calls (gatekeeper.tracing.Tracing); given only when tracing is on."""

    def redis(self, script: str) -> ScriptSpan | None: ...


class RedisDecisionStore:
    def __init__(
        self,
        *,
        redis: Redis,
        settings: RedisSettings,
        autopipeline: Pipelined | None = None,
        tracer: ScriptTracer | None = None,
    ) -> None:
        """`tracer`: tracing on — each decision's EVALSHA is a child span of the decision
        span, and the decision's traceparent rides in its usage and alert events (ARGV[2])."""
        self._redis = redis
        self._tracer = tracer
        if autopipeline is None:
            autopipeline = autopipeline_of(redis)
        self._pipe = autopipeline
        self._settings = settings
        self.keys = KeySpace(prefix=settings.key_prefix, partitions=settings.partitions)
        self._decide: LuaScript = load_script("decide")
        self._settle: LuaScript = load_script("settle")
        self._void: LuaScript = load_script("void")
        self.journal = DecisionJournal(self.keys, call_timeout_s=_call_timeout(redis))
        self._tails: dict[tuple[str, int], bytes] = {}  # _head_tail() without a key
        # settings.redis.wait_replicas: WAIT right behind each call (the auto-pipeline's)
        self._wait = (
            encode_command(("WAIT", settings.wait_replicas, settings.wait_timeout_ms))
            if settings.wait_replicas > 0 and autopipeline is not None
            else None
        )
        self.unreplicated = 0  # calls answered without wait_replicas replicas' acknowledgement

    @property
    def decide_script(self) -> LuaScript:
        return self._decide

    async def decide(
        self,
        plan: DecisionPlan,
        *,
        decision_id: str,
        request_id: str,
        idempotency_key: str | None,
        idempotency_scope: str = "",
        mode: int = 0,
    ) -> DecideReply:
        body = self._body(plan)
        journal = None if mode == MODE_PEEK else self.journal.key(body.partition, decision_id)
        head = b"".join(
            (
                pack_int(to_us(plan.now)),
                pack_str(decision_id),
                body.who,
                pack_str(request_id),
                self._head_tail(idempotency_key, plan.currency, mode),
            )
        )
        enc = encode(
            plan,
            self.keys,
            head=head,
            head_fields=DECIDE_HEAD_FIELDS,
            idempotency_key=idempotency_key,
            decision_id=decision_id,
            grace_s=self._settings.period_grace_s,
            body=body,
            idempotency_scope=idempotency_scope,
            journal=journal,
        )
        try:
            if self._tracer is None:
                reply = await self._call(self._decide, enc.keys, enc.argv, enc.counters_resp)
            else:
                reply = await self._traced_call(self._tracer, enc.keys, enc.argv, enc.counters_resp)
        except StoreUnavailable as exc:
            # a fail-open replay (force) that lost its reply is replayed again, not voided
            if mode == MODE_DECIDE and exc.sent and exc.transient:
                assert journal is not None
                lost = LostCall(decision_id, plan.customer_id, tuple(enc.keys), enc.argv[0])
                if self.journal.lost(lost):
                    exc.decision_id = decision_id
            raise
        return decode_decide(reply)

    def keep_lost(self, decision_id: str) -> None:
        """The caller answered lost decision `decision_id` 200 (fail-open) and records it
        itself, under the same id: never void it (`recorded` once it is)."""
        self.journal.keep(decision_id)

    def recorded(self, decision_id: str) -> None:
        self.journal.resolved(decision_id)

    async def void_lost(self) -> list[str]:
        """Void every lost decision (void.lua), VOID_BATCH calls at a time, until done or the
        store fails (StoreUnavailable, raised once the batch is in: what did not get through
        stays for the next try). The customers whose counters went down, once per decision
        voided."""
        refunded: list[str] = []
        pending = self.journal.unresolved()
        for start in range(0, len(pending), VOID_BATCH):
            batch = pending[start : start + VOID_BATCH]
            replies = await asyncio.gather(*map(self._void_one, batch), return_exceptions=True)
            failed: BaseException | None = None
            for call, reply in zip(batch, replies, strict=True):
                if isinstance(reply, BaseException):
                    failed = failed or reply
                    continue
                if reply:
                    refunded.append(call.customer)
                self.journal.resolved(call.decision_id)
            if failed is not None:
                raise failed
        return refunded

    async def _void_one(self, call: LostCall) -> bool:
        """void.lua with the lost call's own KEYS and ARGV; True when it had run (and is now
        given back)."""
        keys = list(call.keys)
        reply = await self._call(self._void, keys, [call.argv], bulk_strings(keys[FIXED_KEYS:]))
        marker = reply[0].decode() if isinstance(reply[0], bytes) else reply[0]
        if marker == "V":
            self.journal.voided += 1
            log.info("voided decision %s of %s: it ran, and was not answered 200",
                     call.decision_id, call.customer)  # fmt: skip
            return True
        if marker == "N":
            self.journal.unapplied += 1
        return False

    async def retire_journals(self, *, every: bool = False) -> int:
        """Delete the journals no lost reply can still need (`every`: all of them, at a stop
        once nothing is in flight); how many. Raises StoreUnavailable."""
        keys = self.journal.every_key() if every else self.journal.retirable()
        if not keys:
            return 0
        try:
            replies = await run_batch(self._redis, [(("DEL", k), k) for k in keys])
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise StoreUnavailable(f"redis unavailable: {exc}") from exc
        raise_errors(replies)
        self.journal.retired(keys)
        return len(keys)

    async def _traced_call(
        self, tracer: ScriptTracer, keys: list[str], args: list[bytes], counters_resp: bytes
    ) -> list[bytes]:
        """decide.lua in a CLIENT span; ARGV[2] = the decision's traceparent (decide.lua adds
        it to the events it appends). Untraced when no decision span is recording."""
        span = tracer.redis(self._decide.name)
        if span is None:
            return await self._call(self._decide, keys, args, counters_resp)
        try:
            reply = await self._call(
                self._decide, keys, [*args, span.traceparent.encode()], counters_resp
            )
        except BaseException as exc:
            span.end(exc)
            raise
        span.end()
        return reply

    def _head_tail(self, idempotency_key: str | None, currency: str, mode: int) -> bytes:
        """decide.lua's head after the request id: idempotency key and flag, the two TTLs,
        currency, mode (packed; the same for every call without a key)."""
        if idempotency_key is None:
            found = self._tails.get((currency, mode))
            if found is not None:
                return found
        s = self._settings
        tail = pack_values(
            (
                idempotency_key or "",
                int(idempotency_key is not None),
                s.idempotency_ttl_s * 1000,
                s.reservation_ttl_s * 1000,
                currency,
                mode,
            )
        )
        if idempotency_key is None:
            self._tails[currency, mode] = tail
        return tail

    def _body(self, plan: DecisionPlan) -> Body:
        """The plan's counters as KEYS/ARGV, from its template's memo when it has one."""
        memo = plan.memo
        if memo is not None and memo.owner is self and isinstance(memo.value, Body):
            return memo.value
        body = compile_body(plan, self.keys, grace_s=self._settings.period_grace_s)
        if memo is not None:
            untrack(body)  # held as long as the template: immutable (untrack.py)
            memo.owner, memo.value = self, body
        return body

    async def reservation_time(self, customer_id: str, decision_id: str) -> datetime | None:
        try:
            raw = await self._redis.hget(self.keys.reservation(customer_id, decision_id), "t")
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise StoreUnavailable(f"redis unavailable: {exc}") from exc
        if raw is None:
            return None
        us = int(raw)
        return from_us(us)

    async def grants_used(self, customer_id: str, grant_ids: Sequence[str]) -> list[int]:
        """One round trip: the grants' counters share the customer's hash slot."""
        if not grant_ids:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for grant_id in grant_ids:
            pipe.hget(self.keys.grant(customer_id, grant_id), "u")
        try:
            replies = await pipe.execute()
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise StoreUnavailable(f"redis unavailable: {exc}") from exc
        return [0 if raw is None else int(raw) for raw in replies]

    async def settle(
        self, plan: DecisionPlan, *, decision_id: str, request_id: str, now: datetime
    ) -> SettleReply:
        head: list[str | int] = [
            to_us(now),
            decision_id,
            plan.customer_id,
            plan.plan,
            request_id,
            plan.currency,
        ]
        enc = encode(
            plan,
            self.keys,
            head=pack_values(head),
            head_fields=len(head),
            idempotency_key=None,
            decision_id=decision_id,
            grace_s=self._settings.period_grace_s,
        )
        # settle.lua reads KEYS[3] as the reservation record (again in the unused fixed keys)
        reservation = enc.keys[3]
        keys = [enc.keys[0], enc.keys[1], *[reservation] * (FIXED_KEYS - 2)]
        keys += enc.keys[FIXED_KEYS:]
        reply = await self._call(self._settle, keys, enc.argv, enc.counters_resp)
        return decode_settle(reply)

    @property
    def autopipelined(self) -> bool:
        return self._pipe is not None

    async def _call(
        self, script: LuaScript, keys: list[str], args: list[bytes], counters_resp: bytes
    ) -> list[bytes]:
        """Run `script`; `counters_resp` is keys[FIXED_KEYS:] already RESP-encoded."""
        n_tail = len(keys) - FIXED_KEYS
        if self._pipe is not None and self._wait is not None:
            reply, acked = await script.run_pipelined_then(
                self._pipe, keys, args, self._wait, tail=counters_resp, n_tail=n_tail
            )
            if not isinstance(acked, int) or acked < self._settings.wait_replicas:
                self.unreplicated += 1
            return cast(list[bytes], reply)
        if self._pipe is not None:
            reply = await script.run_pipelined(
                self._pipe, keys, args, tail=counters_resp, n_tail=n_tail
            )
            return cast(list[bytes], reply)
        try:
            result: list[bytes] = await script.run(self._redis, keys, args)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise StoreUnavailable(f"redis unavailable: {exc}") from exc
        except RedisError as exc:
            raise StoreUnavailable(f"redis error in {script.name}: {exc}", transient=False) from exc
        return result


def _call_timeout(redis: Redis) -> float:
    """How long a call of `redis` may wait for its reply (its socket timeout)."""
    pool = getattr(redis, "connection_pool", None)  # a RedisCluster has no pool: its own kwargs
    kwargs = getattr(pool, "connection_kwargs", None) or getattr(redis, "connection_kwargs", {})
    timeout = kwargs.get("socket_timeout")
    return float(timeout) if timeout else _DEFAULT_CALL_TIMEOUT_S
