"""Import customers into the directory: validate each against the catalog, merge it with the
stored record, write what changed in pipelined chunks.

Semantics (README "Bulk import and backup"):

- a customer that does not exist is created (source `api`) with everything the line gives,
  its own `spend_cap` and `api_keys` included;
- an existing customer gets `plan`, `billing_day`, `overrides`, `grants` and `description`
  replaced by the line's (a field the line leaves out is removed, as `PUT /v1/customers/{id}`
  does); its API keys are kept, the line's keys are added by id (a key id it already holds
  with the same hash is left as stored, with another hash it refuses the line); its own spend
  cap and webhooks are kept (a line's `spend_cap` only counts when it creates the customer);
- a line that leaves the record as it is writes nothing, so running the same file again
  writes nothing twice and an interrupted import is resumed by running it again;
- every write is one compare-and-set of the record with a `customer.import` audit entry and
  the invalidation message (`CustomerRecords.change_many`);
- a line that cannot be imported (bad document, unknown plan, duplicate id in the file, a key
  hash another customer holds) is reported with its line number and left out; the rest is
  imported.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from gatekeeper.clock import Clock
from gatekeeper.config.customers import parse_customer
from gatekeeper.config.errors import ConfigError
from gatekeeper.config.yamlsrc import key_path
from gatekeeper.directory.bulk import Entry, LineError, Refused
from gatekeeper.model import Policy
from gatekeeper.store.customers import (
    BULK_CHUNK,
    CustomerRecord,
    CustomerRecords,
    DirectoryConflict,
    RecordChange,
    Source,
)
from gatekeeper.store.directory import AuditRecord

__all__ = ["REPLACED_FIELDS", "ImportResult", "Importer", "Outcome"]

REPLACED_FIELDS = ("plan", "billing_day", "overrides", "grants", "description")
AUDIT_WHAT = "customer.import"


class Outcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class ImportResult:
    """Customers created, updated, left as they were and refused (CSV: customers, not rows)."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    refused: int = 0

    @property
    def imported(self) -> int:
        return self.created + self.updated

    def summary(self) -> str:
        return f"imported {self.imported}, unchanged {self.unchanged}, refused {self.refused}"


@dataclass(frozen=True, slots=True)
class _Decision:
    outcome: Outcome
    errors: tuple[LineError, ...] = ()


class Importer:
    """Imports a stream of entries; `report` hears every refused line, in line order within
    each batch. `result` tells what was done so far (also after an interruption).

    Raises redis errors as they come (what was written stays written: run the import again).
    """

    def __init__(
        self,
        *,
        records: CustomerRecords,
        catalog: Policy,
        clock: Clock,
        actor: str,
        report: Callable[[LineError], None],
        max_keys: int = 100,
        batch: int = BULK_CHUNK,
    ) -> None:
        self._records = records
        self._catalog = catalog
        self._clock = clock
        self._actor = actor
        self._report = report
        self._max_keys = max_keys
        self._batch = max(1, min(batch, BULK_CHUNK))  # one change_many chunk: all or nothing
        self._channel = records.keys.invalidate_channel()
        self._tally: Counter[Outcome] = Counter()
        self._seen: set[str] = set()  # ids of the file so far (duplicates are refused)

    @property
    def result(self) -> ImportResult:
        t = self._tally
        return ImportResult(
            t[Outcome.CREATED], t[Outcome.UPDATED], t[Outcome.UNCHANGED], t[Outcome.REFUSED]
        )

    async def run(self, entries: Iterable[Entry | Refused]) -> ImportResult:
        batch: list[Entry] = []
        refused: list[LineError] = []
        for item in entries:
            if isinstance(item, Refused):
                self._tally[Outcome.REFUSED] += 1
                refused += item.errors
            elif item.customer in self._seen:
                self._tally[Outcome.REFUSED] += 1
                refused.append(
                    LineError(
                        item.line,
                        "id",
                        f"duplicate customer id '{item.customer}': an earlier line of this "
                        "file has it (only the first is imported)",
                    )
                )
            else:
                self._seen.add(item.customer)
                batch.append(item)
                if len(batch) >= self._batch:
                    refused += await self._import(batch)
                    self._flush(refused)
                    batch, refused = [], []
        if batch:
            refused += await self._import(batch)
        self._flush(refused)
        return self.result

    def _flush(self, errors: list[LineError]) -> None:
        for error in sorted(errors, key=lambda e: e.line):
            self._report(error)

    async def _import(self, batch: Sequence[Entry]) -> list[LineError]:
        """Write `batch` (at most one chunk); a key hash conflict is narrowed down by halves
        to the entry at fault. Returns the errors of the entries refused."""
        by_id = {entry.customer: entry for entry in batch}
        try:
            decisions = await self._records.change_many(
                list(by_id),
                lambda customer, before: self._compute(by_id[customer], before),
                channel=self._channel,
            )
        except DirectoryConflict:
            if len(batch) > 1:
                half = len(batch) // 2
                return await self._import(batch[:half]) + await self._import(batch[half:])
            decisions = [_Decision(Outcome.REFUSED, await self._conflict(batch[0]))]
        errors: list[LineError] = []
        for decision in decisions:
            self._tally[decision.outcome] += 1
            errors += decision.errors
        return errors

    async def _conflict(self, entry: Entry) -> tuple[LineError, ...]:
        """Why `entry` could not be written: the key hashes another customer holds."""
        errors = []
        for index, key in enumerate(entry.doc.get("api_keys") or ()):
            owner = await self._records.owner_of_key(str(key["sha256"]))
            if owner is not None and owner != entry.customer:
                line, field = entry.locate(f"api_keys[{index}].sha256")
                errors.append(LineError(line, field, f"the key hash belongs to customer '{owner}'"))
        if not errors:
            errors.append(
                LineError(entry.line, "", "changed concurrently too often: run the import again")
            )
        return tuple(errors)

    # ---- one customer ----------------------------------------------------------------------
    def _compute(self, entry: Entry, before: CustomerRecord | None) -> RecordChange[_Decision]:
        """What `entry` does to the customer's record `before` (None: not stored yet)."""
        errors = self._validate(entry, entry.doc)
        if errors:
            return _refused(errors)
        after, errors = self._merge(entry, before)
        if errors:
            return _refused(errors)
        if before is not None:
            if after == before.doc:
                return RecordChange(_Decision(Outcome.UNCHANGED), None, write=False)
            errors = self._validate(entry, after)  # the kept keys and cap beside the line's
            if errors:
                return _refused(errors)
        now = self._clock.now()
        record = CustomerRecord(
            entry.customer,
            after,
            Source.API,
            updated_at=now.isoformat(),
            webhooks=before.webhooks if before is not None else (),
        )
        old = None if before is None else dict(before.doc)
        audit = AuditRecord(self._actor, AUDIT_WHAT, f"customer:{entry.customer}", old, after, now)
        outcome = Outcome.CREATED if before is None else Outcome.UPDATED
        return RecordChange(_Decision(outcome), record, audit)

    def _validate(self, entry: Entry, doc: Mapping[str, Any]) -> list[LineError]:
        try:
            parse_customer(
                entry.customer,
                doc,
                plans=self._catalog.plans,
                features=self._catalog.features,
                source="<import>",
                # an own cap above the plan's ceiling is enforced at the ceiling, as the API
                # keeps it: a backup of such a customer imports as it was exported
                check_cap_ceiling=False,
            )
        except ConfigError as exc:
            prefix = key_path("customers", entry.customer)
            errors = []
            for issue in exc.issues:
                path = issue.path[len(prefix) + 1 :] if issue.path.startswith(prefix) else ""
                line, field = entry.locate(path)
                errors.append(LineError(line, field, issue.message))
            return errors
        return []

    def _merge(
        self, entry: Entry, before: CustomerRecord | None
    ) -> tuple[dict[str, Any], list[LineError]]:
        """The document to store: the line's, with the stored customer's keys, own spend cap
        and webhooks kept (see the module's docstring)."""
        line_keys: list[Mapping[str, Any]] = list(entry.doc.get("api_keys") or ())
        if before is None:
            after = dict(entry.doc)
            keys = [dict(key) for key in line_keys]
            errors: list[LineError] = []
        else:
            after = {k: v for k, v in entry.doc.items() if k in REPLACED_FIELDS}
            if "spend_cap" in before.doc:
                after["spend_cap"] = before.doc["spend_cap"]
            keys, errors = self._add_keys(entry, before, line_keys)
        if len(keys) > self._max_keys:
            errors.append(
                LineError(
                    entry.line,
                    "api_keys",
                    f"the customer would hold {len(keys)} API keys; at most {self._max_keys} "
                    "(revoked ones count)",
                )
            )
        if keys:
            after["api_keys"] = keys
        else:
            after.pop("api_keys", None)
        return after, errors

    def _add_keys(
        self, entry: Entry, before: CustomerRecord, line_keys: Sequence[Mapping[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[LineError]]:
        keys = [dict(key) for key in before.doc.get("api_keys") or ()]
        by_id = {str(key.get("id")): key for key in keys}
        by_hash = {str(key.get("sha256")): str(key.get("id")) for key in keys}
        errors = []
        for index, key in enumerate(line_keys):
            kid, digest = str(key["id"]), str(key["sha256"])
            stored = by_id.get(kid)
            if stored is not None:
                if stored.get("sha256") != digest:
                    line, field = entry.locate(f"api_keys[{index}].sha256")
                    errors.append(
                        LineError(
                            line,
                            field,
                            f"the customer's key '{kid}' has another hash: an import adds "
                            "keys and never replaces one (rotate or revoke it through the API)",
                        )
                    )
                continue  # the stored key stays as it is (label, expiry, revoked)
            if digest in by_hash:
                line, field = entry.locate(f"api_keys[{index}].sha256")
                errors.append(
                    LineError(line, field, f"the customer's key '{by_hash[digest]}' has this hash")
                )
                continue
            added = dict(key)
            keys.append(added)
            by_id[kid], by_hash[digest] = added, kid
        return keys, errors


def _refused(errors: Sequence[LineError]) -> RecordChange[_Decision]:
    return RecordChange(_Decision(Outcome.REFUSED, tuple(errors)), None, write=False)
