"""Encode a DecisionPlan as KEYS/ARGV for decide.lua / settle.lua, and decode their replies.

The positional layout here is the one read by read_meter/read_spend in lua/common.lua: change
both together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from gatekeeper.engine.plan import DecisionPlan, MeterPlan, SpendPlan
from gatekeeper.engine.ports import DecideReply, ReplyRow, SettleReply
from gatekeeper.periods import Window
from gatekeeper.store.keys import KeySpace

__all__ = ["SEPARATOR", "Encoded", "clean", "decode_decide", "decode_settle", "encode", "to_us"]

_FIXED_KEYS = 4  # usage stream, alert stream, idempotency record, reservation record


def to_us(when: datetime) -> int:
    """Microseconds since the epoch (exact integer arithmetic, no float)."""
    delta = when.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


SEPARATOR = "\x1f"  # ASCII unit separator: ends every field of the packed ARGV[1]


@dataclass(frozen=True, slots=True)
class Encoded:
    keys: list[str]
    args: list[str | int]

    def packed(self) -> list[str]:
        """ARGV as the scripts read it: one string, every field terminated by SEPARATOR."""
        return [SEPARATOR.join(map(str, self.args)) + SEPARATOR]


def clean(text: str) -> str:
    """A free-text field (request id, idempotency key) made safe for the packed ARGV."""
    return text.replace(SEPARATOR, " ")


class _Builder:
    def __init__(self, fixed: list[str]) -> None:
        self.keys = list(fixed)
        self.args: list[str | int] = []
        self._index: dict[str, int] = {}

    def key(self, name: str) -> int:
        """1-based KEYS index of `name`, adding it once."""
        if name not in self._index:
            self.keys.append(name)
            self._index[name] = len(self.keys)
        return self._index[name]

    def add(self, *values: str | int) -> None:
        self.args.extend(values)


def _ttl_ms(now: datetime, end: datetime, grace_s: int) -> int:
    return max(int((end - now).total_seconds() * 1000), 0) + grace_s * 1000


def _window_us(window: Window) -> tuple[int, int]:
    return to_us(window.start), to_us(window.end)


def _meter(b: _Builder, ks: KeySpace, plan: DecisionPlan, m: MeterPlan, grace_s: int) -> None:
    customer, now = plan.customer_id, plan.now
    b.add(m.feature, m.unit, m.quantity, int(m.emit), int(m.reserve), len(m.grants))
    for g in m.grants:
        ttl = _ttl_ms(now, g.expires_at, grace_s) if g.expires_at else 400 * 86_400_000
        b.add(b.key(ks.grant(customer, g.grant_id)), g.amount, ttl, g.grant_id)
    q = m.quota
    if q is None:
        b.add(0, -1, -1, 0, 0, 0, 0)
    else:
        start_us, end_us = _window_us(q.window)
        b.add(
            b.key(ks.quota(customer, m.feature, q.window.token)),
            -1 if q.limit is None else q.limit,
            -1 if q.ceiling is None else q.ceiling,
            _ttl_ms(now, q.window.end, grace_s),
            start_us,
            end_us,
            len(q.thresholds),
            *q.thresholds,
        )
    b.add(len(m.rates))
    for r in m.rates:
        b.add(b.key(ks.rate(customer, m.feature, r.unit)), r.limit, r.window_s * 1_000_000, r.unit)
    if m.billing is None:
        b.add(0, 0)
    else:
        b.add(
            b.key(ks.billed_units(customer, m.feature, m.billing.token)),
            _ttl_ms(now, m.billing.end, grace_s),
        )
    b.add(len(m.tiers))
    for t in m.tiers:
        b.add(-1 if t.up_to is None else t.up_to, t.unit_price_nano)


def _spend(
    b: _Builder, ks: KeySpace, plan: DecisionPlan, s: SpendPlan | None, grace_s: int
) -> None:
    if s is None:
        b.add(0, -1, 0, 0, 0, 0, 0)
        return
    start_us, end_us = _window_us(s.window)
    b.add(
        b.key(ks.spend(plan.customer_id, s.window.token)),
        -1 if s.cap is None else s.cap,
        int(s.block),
        _ttl_ms(plan.now, s.window.end, grace_s),
        start_us,
        end_us,
        len(s.thresholds),
        *s.thresholds,
    )


def encode(
    plan: DecisionPlan,
    ks: KeySpace,
    *,
    head: Sequence[str | int],
    idempotency_key: str | None,
    decision_id: str,
    grace_s: int,
) -> Encoded:
    """KEYS and ARGV for one script call: `head` is the script-specific leading ARGV."""
    partition = ks.partition(plan.customer_id)
    idem = (
        ks.idempotency(plan.customer_id, idempotency_key)
        if idempotency_key
        else ks.usage_stream(partition)
    )
    fixed = [
        ks.usage_stream(partition),
        ks.alert_stream(partition),
        idem,
        ks.reservation(plan.customer_id, decision_id),
    ]
    b = _Builder(fixed)
    assert len(fixed) == _FIXED_KEYS
    b.add(*head, len(plan.meters))
    for m in plan.meters:
        _meter(b, ks, plan, m, grace_s)
    _spend(b, ks, plan, plan.spend, grace_s)
    return Encoded(keys=b.keys, args=b.args)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def decode_decide(reply: Sequence[bytes | str]) -> DecideReply:
    """Parse decide.lua's {'N'|'R', payload}."""
    marker, payload = _text(reply[0]), _text(reply[1])
    f = payload.split("|")
    n_rows = int(f[9])
    rows = tuple(
        ReplyRow(
            kind=f[i],
            meter=int(f[i + 1]),
            rate=int(f[i + 2]),
            limit=int(f[i + 3]),
            used=int(f[i + 4]),
            remaining=int(f[i + 5]),
            reset_us=int(f[i + 6]),
        )
        for i in range(10, 10 + 7 * n_rows, 7)
    )
    return DecideReply(
        replayed=marker == "R",
        admitted=f[0] == "A",
        decision_id=f[1],
        deny_kind=f[2],
        deny_meter=int(f[3]),
        deny_rate=int(f[4]),
        retry_after_us=int(f[5]),
        cost_nano=int(f[6]),
        overage_meters=tuple(int(x) for x in f[7].split(",") if x),
        reserved=f[8] == "1",
        rows=rows,
    )


def decode_settle(reply: Sequence[bytes | str]) -> SettleReply:
    """Parse settle.lua's {'S', total, feature, delta, ...} | {'E'} | {'X'}."""
    marker = _text(reply[0])
    if marker != "S":
        return SettleReply(status="expired" if marker == "E" else "unknown")
    pairs = [_text(x) for x in reply[2:]]
    deltas = {pairs[i]: int(pairs[i + 1]) for i in range(0, len(pairs), 2)}
    return SettleReply(status="settled", cost_delta_nano=int(_text(reply[1])), deltas=deltas)
