"""Every Redis key name gatekeeper uses, built here and nowhere else (DESIGN.md §5).

All keys of one customer, and the usage and alert streams of its partition, share the hash
tag `{<partition>}`, so one script per decision touches one Cluster slot. Counter keys carry
their window start; a limit's amount is never part of a key (raising a limit keeps the count).
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from urllib.parse import quote

__all__ = ["KeySpace"]


@dataclass(frozen=True, slots=True)
class KeySpace:
    prefix: str = "gk"
    partitions: int = 16

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ValueError("partitions must be >= 1")

    def partition(self, customer: str) -> int:
        """Stable partition of a customer: CRC-32 of its id modulo the partition count."""
        return zlib.crc32(customer.encode()) % self.partitions

    def _base(self, partition: int) -> str:
        return f"{self.prefix}:{{{partition}}}"

    def _customer(self, customer: str) -> str:
        return f"{self._base(self.partition(customer))}"

    # partition-wide streams
    def usage_stream(self, partition: int) -> str:
        return f"{self._base(partition)}:usage"

    def alert_stream(self, partition: int) -> str:
        return f"{self._base(partition)}:alerts"

    def block_episodes(self, partition: int) -> str:
        """Sorted set: the partition's open block episodes (a quota or spend cap that refused a
        customer), scored by the end of their window; resume_due.lua announces each once it
        is over. Members are written by decide.lua."""
        return f"{self._base(partition)}:blocks"

    def dead_letter(self, partition: int) -> str:
        """Stream of usage entries the billing sink could not parse or store (never trimmed)."""
        return f"{self._base(partition)}:usage:dead"

    def all_usage_streams(self) -> list[str]:
        return [self.usage_stream(p) for p in range(self.partitions)]

    def all_alert_streams(self) -> list[str]:
        return [self.alert_stream(p) for p in range(self.partitions)]

    # per-customer state
    def quota(self, customer: str, feature: str, window_token: str) -> str:
        """Hash: u = units used in the window; a<pct> / ov = alert already fired."""
        return f"{self._customer(customer)}:q:{customer}:{feature}:{window_token}"

    def billed_units(self, customer: str, feature: str, window_token: str) -> str:
        """Hash: u = billable units in the billing period (graduated price tiers)."""
        return f"{self._customer(customer)}:b:{customer}:{feature}:{window_token}"

    def spend(self, customer: str, window_token: str) -> str:
        """Hash: u = nano-units spent in the billing period; a<pct> / ov = alerts fired."""
        return f"{self._customer(customer)}:s:{customer}:{window_token}"

    def grant(self, customer: str, grant_id: str) -> str:
        """Hash: u = units of the grant consumed."""
        return f"{self._customer(customer)}:g:{customer}:{grant_id}"

    def rate(self, customer: str, feature: str, unit: str) -> str:
        """String: GCRA theoretical arrival time in microseconds."""
        return f"{self._customer(customer)}:r:{customer}:{feature}:{unit}"

    def rate_episode(self, customer: str, feature: str, unit: str) -> str:
        """Hash: the rate limit's current run of refusals (decide.lua: 'f' the first, 'x' the
        last one written, 'm' the block episode's entry once the run is sustained); it expires
        a quiet spell after the last refusal, which ends the run."""
        return f"{self._customer(customer)}:re:{customer}:{feature}:{unit}"

    def idempotency(self, customer: str, idempotency_key: str, scope: str = "") -> str:
        """String: the first decision made under `idempotency_key` for this `scope` (the
        request's route and usage): the same key on a different request is another record."""
        digest = hashlib.sha256(f"{idempotency_key}\x1f{scope}".encode()).hexdigest()[:32]
        return f"{self._customer(customer)}:i:{customer}:{digest}"

    def reservation(self, customer: str, decision_id: str) -> str:
        """Hash: what a decision reserved, until settled or expired."""
        return f"{self._customer(customer)}:res:{customer}:{decision_id}"

    def decision_journal(self, partition: int, instance: str, bucket: int) -> str:
        """Hash: decision id -> what the admission consumed (its receipt), or "v" once voided;
        one per partition, serve process (`instance`) and few seconds of decision ids
        (store/journal.py)."""
        return f"{self._base(partition)}:j:{instance}:{bucket}"

    def customer_pattern(self, customer: str) -> str:
        """SCAN pattern for every per-customer key (inspection and tests)."""
        return f"{self._customer(customer)}:*:{customer}:*"

    # the customer directory (gatekeeper.store.customers): one record per customer in its own
    # slot, with the partition's indexes beside it, so a change to one customer is one
    # single-slot transaction, also on a Cluster
    def customer_record(self, customer: str) -> str:
        """String: JSON of the customer's record (document, source, version, webhooks)."""
        return f"{self._customer(customer)}:cust:{customer}"

    def customer_index(self, partition: int) -> str:
        """Sorted set (all scores 0, ordered by id): the partition's customer ids."""
        return f"{self._base(partition)}:customers"

    def plan_members(self, partition: int, plan: str) -> str:
        """Sorted set (scores 0): the partition's customers on `plan` (list by plan; a plan in
        use cannot be deleted)."""
        return f"{self._base(partition)}:plan:{plan}"

    def directory_audit(self, partition: int) -> str:
        """Stream: the audit records of the partition's customers (keys, caps, documents)."""
        return f"{self._base(partition)}:audit"

    def key_last_used(self, customer: str) -> str:
        """Hash: key id -> when the key was last used (epoch seconds, to the minute or so)."""
        return f"{self._customer(customer)}:keyused:{customer}"

    def key_owner(self, sha256_hex: str) -> str:
        """String: the customer id an API key hash belongs to. A pointer only: the customer's
        record says whether the key is live (so a stale pointer grants nothing). No hash tag:
        pointers spread over every slot."""
        return f"{self.prefix}:key:{sha256_hex}"

    def directory_seed(self) -> str:
        """String: digest of the policy file's customers last reconciled into the directory."""
        return f"{self._control()}:dir:seed"

    def directory_seed_lock(self) -> str:
        """String (TTL): the process reconciling the policy file's customers right now."""
        return f"{self._control()}:dir:seed:lock"

    def directory_seed_removed(self) -> str:
        """Set: ids of the policy file's customers deleted through the API (a later seed does
        not bring them back; creating the id again through the API lifts it)."""
        return f"{self._control()}:dir:seed:removed"

    def directory_seed_ids(self) -> str:
        """Set: the ids of the policy file's customers last reconciled (its size is the
        file's, not the directory's)."""
        return f"{self._control()}:dir:seed:ids"

    # envoyproxy/ratelimit-compatible fixed windows (gatekeeper.ratelimit)
    def ratelimit(self, domain: str, descriptor_key: str, window_start: int) -> str:
        """String: hits of one descriptor in the fixed window starting at `window_start` (epoch s).

        The hash tag is the domain plus the descriptor, so the descriptors of one request may
        live in different Cluster slots. `descriptor_key` must already be escaped (no `{`, `}`);
        the domain is percent-escaped here.
        """
        return f"{self.prefix}:rl:{{{quote(domain, safe='')}/{descriptor_key}}}:{window_start}"

    # process-wide control state (not per customer: read whole at start and on invalidation).
    # All in one hash slot ({ctl}) so a change and its audit record commit in one MULTI, also
    # on Redis Cluster.
    def _control(self) -> str:
        return f"{self.prefix}:{{ctl}}"

    def spend_cap_overrides(self) -> str:
        """Hash (before the directory's records; read once to migrate them): customer -> JSON
        of the cap the customer set (amount_nano, action)."""
        return f"{self._control()}:overrides:spend_cap"

    def audit_stream(self) -> str:
        """Stream: who changed what, when, before and after (caps, plans, customers, keys)."""
        return f"{self._control()}:audit"

    def directory_plans(self) -> str:
        """Hash: plan name -> JSON plan document set through the API ("null" = removed)."""
        return f"{self._control()}:dir:plans"

    def directory_customers(self) -> str:
        """Hash (before the directory's records; read once to migrate them): customer id ->
        JSON customer document set through the API ("null" = removed)."""
        return f"{self._control()}:dir:customers"

    def api_tokens(self) -> str:
        """Hash: SHA-256 of an API token -> JSON token record (role, customer, revoked)."""
        return f"{self._control()}:dir:tokens"

    def customer_webhooks(self) -> str:
        """Hash (before the directory's records; read once to migrate them): customer id ->
        JSON list of the customer's own webhook endpoints."""
        return f"{self._control()}:dir:webhooks"

    def forward_dead_letter(self) -> str:
        """Stream: CloudEvent batches the ingest endpoint refused for good, with the reason."""
        return f"{self.prefix}:forward:dead"

    def invalidate_channel(self) -> str:
        """Pub/sub channel: any message makes every process reload policy and overrides."""
        return f"{self.prefix}:invalidate"

    # stream consumers (gatekeeper.store.consumers)
    def consumer_heartbeat(self, group: str, consumer: str) -> str:
        """String (TTL, a few seconds): "1" while `consumer` of `group` runs, "0" once it
        stopped gracefully. Every heartbeat shares the `{live}` slot, so one MGET reads the
        heartbeats of a whole group, also on a Cluster."""
        return f"{self.prefix}:{{live}}:hb:{group}:{consumer}"

    def consumer_registry(self, group: str) -> str:
        """Sorted set: the consumers of `group` that keep a heartbeat, scored by their last
        beat (epoch ms; members silent for a day are dropped). A consumer missing here never
        kept one (an older gatekeeper): a missing heartbeat says nothing about it."""
        return f"{self.prefix}:{{live}}:consumers:{group}"

    # alert notifier (gatekeeper.notify)
    def alert_dead_letter(self, partition: int) -> str:
        """Stream of alert deliveries given up on (endpoint, alert id, reason; never trimmed)."""
        return f"{self._base(partition)}:alerts:dead"

    def delivery_log(self) -> str:
        """Stream of webhook delivery attempts, all partitions (trimmed to a bounded length)."""
        return f"{self.prefix}:notify:log"

    def alert_mutes(self, customer: str) -> str:
        """Set: alert kinds the customer muted (acked and logged as suppressed, not delivered)."""
        return f"{self._customer(customer)}:mute:{customer}:kinds"

    def alert_delivered(self, customer: str, endpoint_id: str, alert_id: str) -> str:
        """String (TTL): the alert (or digest) id reached the endpoint; never deliver it again."""
        return f"{self._customer(customer)}:nd:{customer}:{endpoint_id}:{alert_id}"

    def notify_state(self, customer: str) -> str:
        """String (TTL): end of the customer's open digest window, epoch microseconds."""
        return f"{self._customer(customer)}:nw:{customer}:window"

    def forecast_alerted(
        self, customer: str, kind: str, feature: str | None, window_token: str
    ) -> str:
        """String (TTL): a forecast/anomaly alert of this kind fired for the feature (None =
        spend) in the period starting at `window_token`."""
        subject = feature or "$spend"
        return f"{self._customer(customer)}:fa:{customer}:{kind}:{subject}:{window_token}"

    def customer_denials(self, customer: str, day: str) -> str:
        """Hash (TTL 2 days): the customer's denials on one UTC day (YYYY-MM-DD) by reason
        (quota, rate, spend_cap, not_entitled, ...), summed over every serving process."""
        return f"{self._customer(customer)}:denied:{customer}:{day}"

    # decision statistics of every serving process (gatekeeper.stats)
    def stats_second(self, epoch_second: int) -> str:
        """Hash (TTL): decisions in one wall-clock second, summed over every process.

        Fields: `o:<outcome>` decisions by outcome, `c:<customer>` decisions and `d:<customer>`
        denials of the busiest customers of each process in that second.
        """
        return f"{self.prefix}:stats:{epoch_second}"
