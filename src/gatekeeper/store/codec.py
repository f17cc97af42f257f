"""Encode a DecisionPlan as KEYS/ARGV for decide.lua / settle.lua, and decode their replies.

ARGV[1] is one MessagePack array (store/argpack.py). The positional layout here is the one read
by read_meter/read_spend in lua/common.lua: change both together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from gatekeeper.clock import to_us
from gatekeeper.engine.plan import DecisionPlan, MeterPlan, SpendPlan
from gatekeeper.engine.ports import DecideReply, ReplyRow, SettleReply
from gatekeeper.errors import StoreUnavailable
from gatekeeper.periods import Window
from gatekeeper.store.argpack import array_header, pack_int, pack_values
from gatekeeper.store.keys import KeySpace
from gatekeeper.store.resp import bulk_strings, reply_text

__all__ = [
    "Body",
    "Encoded",
    "compile_body",
    "decode_decide",
    "decode_settle",
    "encode",
]

# usage stream, alert stream, idempotency record, reservation record, decision journal,
# block episodes
FIXED_KEYS = 6


class Encoded(NamedTuple):
    """One script call's KEYS and ARGV (a NamedTuple: built per decision on the hot path)."""

    keys: list[str]
    argv: list[bytes]  # one MessagePack array (argpack)
    counters_resp: bytes = b""  # keys[FIXED_KEYS:] as RESP bulk strings


class _Builder:
    def __init__(self, first_key: int) -> None:
        self.keys: list[str] = []
        self.args: list[str | int | None] = []  # None marks a meter's quantity
        self._index: dict[str, int] = {}
        self._first = first_key

    def key(self, name: str) -> int:
        """1-based KEYS index of `name`, adding it once."""
        if name not in self._index:
            self.keys.append(name)
            self._index[name] = self._first + len(self.keys) - 1
        return self._index[name]

    def add(self, *values: str | int | None) -> None:
        self.args.extend(values)


def _window_us(window: Window) -> tuple[int, int]:
    return to_us(window.start), to_us(window.end)


def _meter(b: _Builder, ks: KeySpace, customer: str, m: MeterPlan) -> None:
    b.add(m.feature, m.unit, None, int(m.emit), int(m.reserve), len(m.grants))
    for g in m.grants:
        expires = to_us(g.expires_at) if g.expires_at else -1  # -1: no expiry (lua: 400 days)
        b.add(b.key(ks.grant(customer, g.grant_id)), g.amount, expires, g.grant_id)
    q = m.quota
    if q is None:
        b.add(0, -1, -1, 0, 0, 0, 0)
    else:
        start_us, end_us = _window_us(q.window)
        b.add(
            b.key(ks.quota(customer, m.feature, q.window.token)),
            -1 if q.limit is None else q.limit,
            -1 if q.ceiling is None else q.ceiling,
            end_us,
            start_us,
            end_us,
            len(q.thresholds),
            *q.thresholds,
        )
    b.add(len(m.rates))
    for r in m.rates:
        b.add(
            b.key(ks.rate(customer, m.feature, r.unit)),
            b.key(ks.rate_episode(customer, m.feature, r.unit)),
            r.limit,
            r.window_s * 1_000_000,
            r.unit,
        )
    if m.billing is None:
        b.add(0, 0)
    else:
        b.add(
            b.key(ks.billed_units(customer, m.feature, m.billing.token)),
            to_us(m.billing.end),
        )
    b.add(len(m.tiers))
    for t in m.tiers:
        b.add(-1 if t.up_to is None else t.up_to, t.unit_price_nano)


def _spend(b: _Builder, ks: KeySpace, customer: str, s: SpendPlan | None) -> None:
    if s is None:
        b.add(0, -1, 0, 0, 0, 0, 0)
        return
    start_us, end_us = _window_us(s.window)
    b.add(
        b.key(ks.spend(customer, s.window.token)),
        -1 if s.cap is None else s.cap,
        int(s.block),
        end_us,
        start_us,
        end_us,
        len(s.thresholds),
        *s.thresholds,
    )


@dataclass(frozen=True, slots=True)
class Body:
    """What a plan's KEYS/ARGV do not owe to `now` or quantities: built once per plan template.

    `counters` are KEYS[FIXED_KEYS + 1..]; the values of ARGV[1] after the head are
    pieces[0], quantity of meter 1, pieces[1], ..., quantity of meter n, pieces[n] (each
    piece already packed).
    """

    partition: int
    usage_stream: str
    alert_stream: str
    block_episodes: str
    counters: tuple[str, ...]
    counters_resp: bytes  # the counters as RESP bulk strings (auto-pipelined calls)
    pieces: tuple[bytes, ...]
    fields: int  # values in the pieces
    who: bytes  # the plan's customer id and plan name, packed (decide.lua's head has both)

    def packed(self, head: bytes, head_fields: int, quantities: Sequence[int]) -> bytes:
        """ARGV[1]: the array of `head` (`head_fields` values, packed), then this body's."""
        parts = [array_header(head_fields + self.fields + len(quantities)), head, self.pieces[0]]
        for q, piece in zip(quantities, self.pieces[1:], strict=True):
            parts.append(pack_int(q))
            parts.append(piece)
        return b"".join(parts)


def compile_body(plan: DecisionPlan, ks: KeySpace, *, grace_s: int) -> Body:
    """The now-independent part of `plan`'s KEYS and ARGV (valid for every plan that differs
    from it only in `now` and meter quantities within the same windows)."""
    customer = plan.customer_id
    b = _Builder(first_key=FIXED_KEYS + 1)
    b.add(grace_s * 1000, len(plan.meters))
    for m in plan.meters:
        _meter(b, ks, customer, m)
    _spend(b, ks, customer, plan.spend)
    pieces: list[bytes] = []
    run: list[str | int] = []
    fields = 0
    for value in b.args:
        if value is None:
            pieces.append(pack_values(run))
            run = []
        else:
            run.append(value)
            fields += 1
    pieces.append(pack_values(run))
    partition = ks.partition(customer)
    return Body(
        partition=partition,
        usage_stream=ks.usage_stream(partition),
        alert_stream=ks.alert_stream(partition),
        block_episodes=ks.block_episodes(partition),
        counters=tuple(b.keys),
        counters_resp=bulk_strings(b.keys),
        pieces=tuple(pieces),
        fields=fields,
        who=pack_values((customer, plan.plan)),
    )


def encode(
    plan: DecisionPlan,
    ks: KeySpace,
    *,
    head: bytes,
    head_fields: int,
    idempotency_key: str | None,
    decision_id: str,
    grace_s: int,
    body: Body | None = None,
    idempotency_scope: str = "",
    journal: str | None = None,
) -> Encoded:
    """KEYS and ARGV for one script call: `head` is the script-specific leading ARGV
    (`head_fields` values, packed).

    `body` is compile_body(plan) when the caller has it already (plan templates). `journal`:
    the decision journal the call writes (KEYS[5]; None: a call that writes none)."""
    body = body or compile_body(plan, ks, grace_s=grace_s)
    customer = plan.customer_id
    keys = [
        body.usage_stream,
        body.alert_stream,
        (
            ks.idempotency(customer, idempotency_key, idempotency_scope)
            if idempotency_key
            else body.usage_stream
        ),
        ks.reservation(customer, decision_id),
        journal or body.usage_stream,
        body.block_episodes,
        *body.counters,
    ]
    packed = body.packed(head, head_fields, [m.quantity for m in plan.meters])
    return Encoded(keys=keys, argv=[packed], counters_resp=body.counters_resp)


# a reply row's kind as hiredis (bytes) or a decoding client (str) gives it
_ROW_KINDS = {b"q": "q", b"r": "r", b"s": "s", "q": "q", "r": "r", "s": "s"}


def decode_decide(reply: Sequence[bytes | str | int]) -> DecideReply:
    """Parse decide.lua's flat array (hot path: positional; hiredis gives the numbers as ints).

    marker N|R, outcome, decision_id, deny_kind, deny_meter, deny_rate, retry_after_us,
    cost_nano, overage (comma list), reserved, n_rows, then n_rows x 7 row fields."""
    if len(reply) == 2:  # an idempotency record written by an earlier version
        return _decode_text(reply)  # type: ignore[arg-type]
    if reply[0] in (b"V", "V"):  # voided before it ran: its caller gave up on it already
        raise StoreUnavailable(f"decision {reply_text(reply[2])} was voided before it ran")  # type: ignore[arg-type]
    overage = reply_text(reply[8])  # type: ignore[arg-type]
    # numbers arrive as integer replies (Lua numbers): ints already, from hiredis and redis-py
    rows = [
        ReplyRow(_ROW_KINDS[reply[i]], *reply[i + 1 : i + 7])  # type: ignore[arg-type,index]
        for i in range(11, 11 + 7 * reply[10], 7)  # type: ignore[operator]
    ]
    return DecideReply(
        reply[0] in (b"R", "R"),  # replayed
        reply[1] in (b"A", "A"),  # admitted
        reply_text(reply[2]),  # type: ignore[arg-type]  # decision_id
        reply_text(reply[3]),  # type: ignore[arg-type]  # deny_kind
        reply[4],  # type: ignore[arg-type]  # deny_meter
        reply[5],  # type: ignore[arg-type]  # deny_rate
        reply[6],  # type: ignore[arg-type]  # retry_after_us
        reply[7],  # type: ignore[arg-type]  # cost_nano
        tuple(map(int, overage.split(","))) if overage else (),  # overage_meters
        reply[9] == 1,  # reserved
        tuple(rows),
    )


def _decode_text(reply: Sequence[bytes | str]) -> DecideReply:
    """decide.lua's earlier {'N'|'R', '|'-joined payload}: still replayed from idempotency
    records written before an upgrade (they live `idempotency_ttl_s`)."""
    payload = reply[1]
    f = (payload.decode() if isinstance(payload, bytes) else payload).split("|")
    n_rows = int(f[9])
    # a row: kind, meter, rate, limit, used, remaining, reset_us
    rows = [ReplyRow(f[i], *map(int, f[i + 1 : i + 7])) for i in range(10, 10 + 7 * n_rows, 7)]
    return DecideReply(
        reply[0] in (b"R", "R"),  # replayed
        f[0] == "A",  # admitted
        f[1],  # decision_id
        f[2],  # deny_kind
        int(f[3]),  # deny_meter
        int(f[4]),  # deny_rate
        int(f[5]),  # retry_after_us
        int(f[6]),  # cost_nano
        tuple(map(int, f[7].split(","))) if f[7] else (),  # overage_meters
        f[8] == "1",  # reserved
        tuple(rows),
    )


def decode_settle(reply: Sequence[bytes | str]) -> SettleReply:
    """Parse settle.lua's {'S', total, feature, delta, ...} | {'E'} | {'X'}."""
    marker = reply_text(reply[0])
    if marker != "S":
        return SettleReply(status="expired" if marker == "E" else "unknown")
    pairs = [reply_text(x) for x in reply[2:]]
    deltas = {pairs[i]: int(pairs[i + 1]) for i in range(0, len(pairs), 2)}
    return SettleReply(status="settled", cost_delta_nano=int(reply_text(reply[1])), deltas=deltas)
