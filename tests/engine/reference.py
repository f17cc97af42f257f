"""A small pure-Python reference model of one customer's counters (the semantics, not the code).

Mirrors DESIGN §3 for: grants used first (earliest expiry first), hard/soft quota with overage
allowance, GCRA rate limits (burst = limit), graduated prices per billing period, a blocking
spend cap, reservations settled up/down (billable units refunded before grant units) or
expiring at their estimate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from gatekeeper.model import Customer, Policy
from gatekeeper.periods import billing_window, window_for
from gatekeeper.pricing import tiered_cost


@dataclass
class Reservation:
    at: datetime
    expires_us: int
    est: dict[str, int]
    billable: dict[str, int]
    takes: dict[str, dict[str, int]]


@dataclass
class Model:
    policy: Policy
    customer_id: str = "cust"
    reservation_ttl_s: int = 900
    quota: dict[tuple[str, str], int] = field(default_factory=dict)  # (feature, window) -> used
    billed: dict[tuple[str, str], int] = field(default_factory=dict)
    spend: dict[str, int] = field(default_factory=dict)
    grants: dict[str, int] = field(default_factory=dict)
    tat: dict[tuple[str, str], float] = field(default_factory=dict)
    reservations: dict[str, Reservation] = field(default_factory=dict)
    answered: dict[str, tuple[str, int]] = field(default_factory=dict)  # settlements given

    @property
    def customer(self) -> Customer:
        return self.policy.customers[self.customer_id]

    def _us(self, when: datetime) -> int:
        return int(when.timestamp() * 1_000_000)

    def _consume(self, feature: str, qty: int, now: datetime, at: datetime) -> dict[str, object]:
        c = self.customer
        ent = c.entitlements.metered[feature]
        rest = qty
        takes: dict[str, int] = {}
        live = [
            g
            for g in c.grants
            if g.feature == feature and (g.expires_at is None or g.expires_at > at)
        ]
        live.sort(key=lambda g: (g.expires_at is None, g.expires_at or at, g.id))
        for g in live:
            take = min(max(g.amount - self.grants.get(g.id, 0), 0), rest)
            takes[g.id] = take
            rest -= take
        win = window_for(at, ent.period, ent.anchor, c.billing_day).token
        u1 = self.quota.get((feature, win), 0) + rest
        price = self.policy.prices.get(feature)
        bwin = billing_window(at, c.billing_day).token
        b0 = self.billed.get((feature, bwin), 0) if price and len(price.tiers) > 1 else 0
        cost = tiered_cost(price.tiers, b0, rest) if price else 0
        rates = []
        for r in c.entitlements.rate_limits:
            if r.feature == feature:
                t = r.per.seconds * 1_000_000 / r.limit
                tat = max(self.tat.get((feature, r.per.value), 0.0), float(self._us(now)))
                rates.append(((feature, r.per.value), tat + qty * t, r.per.seconds * 1_000_000))
        return {
            "takes": takes,
            "billable": rest,
            "win": win,
            "u1": u1,
            "ceiling": ent.ceiling,
            "bwin": bwin,
            "cost": cost,
            "rates": rates,
            "feature": feature,
            "qty": qty,
        }

    def _apply(self, p: dict[str, object]) -> None:
        f = p["feature"]
        for gid, take in p["takes"].items():  # type: ignore[attr-defined]
            self.grants[gid] = self.grants.get(gid, 0) + take
        self.quota[(f, p["win"])] = p["u1"]  # type: ignore[index]
        self.billed[(f, p["bwin"])] = self.billed.get((f, p["bwin"]), 0) + p["billable"]  # type: ignore[index,operator]
        if p["qty"]:
            for key, tat1, _ in p["rates"]:  # type: ignore[attr-defined]
                self.tat[key] = tat1

    def decide(
        self, meters: dict[str, int], reserve: set[str], now: datetime, decision_id: str
    ) -> tuple[bool, int]:
        plans = [self._consume(f, q, now, now) for f, q in meters.items()]
        total = sum(int(p["cost"]) for p in plans)  # type: ignore[call-overload]
        bwin = billing_window(now, self.customer.billing_day).token
        cap = self.customer.effective_spend_cap
        if any(p["ceiling"] is not None and p["u1"] > p["ceiling"] for p in plans):  # type: ignore[operator]
            return False, 0
        priced = any(f in self.policy.prices for f in meters)
        if (
            priced
            and cap
            and cap.amount_nano is not None
            and self.spend.get(bwin, 0) + total > cap.amount_nano
        ):
            return False, 0
        now_us = self._us(now)
        if any(tat1 - now_us > period for p in plans for _, tat1, period in p["rates"]):  # type: ignore[attr-defined]
            return False, 0
        for p in plans:
            self._apply(p)
        if priced:
            self.spend[bwin] = self.spend.get(bwin, 0) + total
        if reserve:
            self.reservations[decision_id] = Reservation(
                at=now,
                expires_us=now_us + self.reservation_ttl_s * 1_000_000,
                est={f: meters[f] for f in reserve},
                billable={p["feature"]: p["billable"] for p in plans if p["feature"] in reserve},  # type: ignore[misc]
                takes={p["feature"]: dict(p["takes"]) for p in plans if p["feature"] in reserve},  # type: ignore[misc,call-overload]
            )
        return True, total

    def settle(self, decision_id: str, actual: dict[str, int], now: datetime) -> tuple[str, int]:
        """A retried settlement gets the first answer again (the record's real-time TTL, an
        hour past the reservation's, is not reached within a test)."""
        if decision_id in self.answered:
            return self.answered[decision_id]
        res = self.reservations.pop(decision_id, None)
        if res is None:
            return "unknown", 0
        answer = self._settle(res, actual, now)
        self.answered[decision_id] = answer
        return answer

    def _settle(self, res: Reservation, actual: dict[str, int], now: datetime) -> tuple[str, int]:
        if self._us(now) > res.expires_us:
            return "expired", 0
        total = 0
        bwin = billing_window(res.at, self.customer.billing_day).token
        for f, act in actual.items():
            if f not in res.est:
                continue
            delta = act - res.est[f]
            if delta > 0:
                p = self._consume(f, delta, now, res.at)
                self._apply(p)
                total += int(p["cost"])  # type: ignore[call-overload]
            elif delta < 0:
                total += self._refund(f, -delta, res, now)
        if total and f in self.policy.prices:
            self.spend[bwin] = self.spend.get(bwin, 0) + total
        return "settled", total

    def _refund(self, f: str, r: int, res: Reservation, now: datetime) -> int:
        c = self.customer
        ent = c.entitlements.metered[f]
        rb = min(r, res.billable[f])
        win = window_for(res.at, ent.period, ent.anchor, c.billing_day).token
        self.quota[(f, win)] = self.quota.get((f, win), 0) - rb
        price = self.policy.prices.get(f)
        cost = 0
        if price and len(price.tiers) > 1:
            bwin = billing_window(res.at, c.billing_day).token
            b_now = self.billed.get((f, bwin), 0)
            start = max(b_now - rb, 0)
            cost = -tiered_cost(price.tiers, start, b_now - start)
            self.billed[(f, bwin)] = b_now - rb
        elif price:
            cost = -tiered_cost(price.tiers, 0, rb)
        rg = r - rb
        for gid in reversed(list(res.takes[f])):
            back = min(res.takes[f][gid], rg)
            self.grants[gid] -= back
            rg -= back
        now_us = float(self._us(now))
        for rl in c.entitlements.rate_limits:
            if rl.feature == f:
                key = (f, rl.per.value)
                tat = self.tat.get(key, 0.0)
                if tat > now_us:
                    self.tat[key] = max(tat - r * rl.per.seconds * 1_000_000 / rl.limit, now_us)
        return cost
