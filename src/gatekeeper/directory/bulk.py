"""Bulk files of customers: JSON Lines and CSV read into customer documents with their line
numbers, and records written back as JSON Lines (the export, which import reads).

JSON Lines: one customer per line, the policy file's customer shape plus `id`
(`{"id": "acme", "plan": "pro", "api_keys": [{"id": "k1", "sha256": "…"}]}`); blank lines are
skipped; `source` and `updated_at` (written by the export) are ignored.

CSV: a header row naming some of `COLUMNS` (`id` required); one row per customer, or several
consecutive rows with the same id, each adding one API key (customer cells on the later rows
empty or repeating the first row's); `overrides` and `grants` cells hold JSON text; an empty
cell is an absent field.

Nothing here validates a customer against the catalog (the importer does); what is checked is
what only the file can tell: its syntax, the id, the cells. The reader streams: it holds one
line (one customer's rows for CSV) at a time.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import PurePath
from typing import Any

from gatekeeper.config.customers import CUSTOMER_ID
from gatekeeper.store.customers import CustomerRecord

__all__ = [
    "COLUMNS",
    "IGNORED_FIELDS",
    "BulkFormat",
    "Entry",
    "FileError",
    "LineError",
    "Refused",
    "detect_format",
    "export_line",
    "read_csv",
    "read_entries",
    "read_jsonl",
]

COLUMNS = (
    "id",
    "plan",
    "billing_day",
    "description",
    "key_id",
    "key_sha256",
    "key_label",
    "key_expires_at",
    "overrides",
    "grants",
)
_CUSTOMER_COLUMNS = ("plan", "billing_day", "description", "overrides", "grants")
_KEY_COLUMNS = {"key_id": "id", "key_sha256": "sha256", "key_label": "label",
                "key_expires_at": "expires_at"}  # fmt: skip
IGNORED_FIELDS = frozenset({"source", "updated_at"})  # written by the export, not imported
_ID_RULE = "customer ids match ^[A-Za-z0-9][A-Za-z0-9._-]*$ (at most 128 characters)"
_KEY_FIELD = re.compile(r"api_keys\[(\d+)\]\.(\w+)")


class BulkFormat(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"


_SUFFIXES = {".jsonl": BulkFormat.JSONL, ".ndjson": BulkFormat.JSONL, ".csv": BulkFormat.CSV}


class FileError(ValueError):
    """A file that cannot be read at all (unknown format, bad CSV header): nothing imported."""


def detect_format(path: str, explicit: str | None = None) -> BulkFormat:
    """`explicit` (`jsonl`/`csv`), else by extension (.jsonl, .ndjson, .csv). Raises FileError."""
    if explicit:
        try:
            return BulkFormat(explicit)
        except ValueError:
            raise FileError(f"unknown format {explicit!r} (jsonl or csv)") from None
    found = _SUFFIXES.get(PurePath(path).suffix.lower())
    if found is None:
        raise FileError(
            f"{path}: cannot tell the format from the name (.jsonl, .ndjson or .csv): "
            "give --format jsonl|csv"
        )
    return found


@dataclass(frozen=True, slots=True)
class LineError:
    """Why (part of) a line is refused; `field` is a path in the customer's document (a CSV
    column for CSV-only problems), "" for the line as a whole."""

    line: int
    field: str
    reason: str


@dataclass(frozen=True, slots=True)
class Refused:
    """A customer (or an unreadable line) the file itself refuses; `customer` when known."""

    errors: tuple[LineError, ...]
    customer: str | None = None

    @property
    def line(self) -> int:
        return self.errors[0].line


@dataclass(frozen=True, slots=True)
class Entry:
    """One customer read from the file: its document (the policy file's shape, plain JSON
    data, `id` taken out) and where it came from.

    `key_lines[i]` is the line of the document's `api_keys[i]` (CSV: each key has its row).
    """

    line: int
    customer: str
    doc: Mapping[str, Any]
    key_lines: tuple[int, ...] = ()
    csv: bool = False

    def locate(self, path: str) -> tuple[int, str]:
        """The line and field to name for an issue at `path` (relative to the document)."""
        match = _KEY_FIELD.match(path)
        if match is None:
            return self.line, path
        index = int(match.group(1))
        line = self.key_lines[index] if index < len(self.key_lines) else self.line
        if not self.csv:
            return line, path
        column = {v: k for k, v in _KEY_COLUMNS.items()}.get(match.group(2))
        return line, column or path


# ---- reading -----------------------------------------------------------------------------------
def read_entries(lines: Iterable[bytes], fmt: BulkFormat) -> Iterator[Entry | Refused]:
    """The customers of a file given as raw lines (a binary file object), in file order."""
    return read_jsonl(lines) if fmt is BulkFormat.JSONL else read_csv(lines)


def read_jsonl(lines: Iterable[bytes]) -> Iterator[Entry | Refused]:
    for number, raw in enumerate(lines, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield _refuse(number, "", f"not UTF-8 (byte {exc.start + 1})")
            continue
        if number == 1:
            text = text.removeprefix("\ufeff")
        if not text.strip():
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            yield _refuse(number, "", f"not JSON: {exc.msg} at column {exc.colno}")
            continue
        if not isinstance(data, dict):
            yield _refuse(number, "", f"expected a JSON object, got {_kind(data)}")
            continue
        cid = data.pop("id", None)
        problem = _id_problem(cid)
        if problem:
            yield _refuse(number, "id", problem)
            continue
        assert isinstance(cid, str)
        for ignored in IGNORED_FIELDS:
            data.pop(ignored, None)
        keys = data.get("api_keys")
        count = len(keys) if isinstance(keys, list) else 0
        yield Entry(number, cid, data, key_lines=(number,) * count)


def read_csv(lines: Iterable[bytes]) -> Iterator[Entry | Refused]:
    """Raises FileError for a missing or bad header (before yielding anything)."""
    bad: dict[int, int] = {}  # line number → byte offset of the first byte that is not UTF-8
    reader = csv.reader(_decoded(lines, bad), strict=True)
    header = _header(reader)
    group: _Group | None = None
    while True:
        first = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            if group is not None:
                yield group.finish()
                group = None
            yield _refuse(first, "", f"not CSV: {exc}")
            continue
        if not any(cell.strip() for cell in row):
            continue
        broken = [(n, bad.pop(n)) for n in range(first, reader.line_num + 1) if n in bad]
        if broken:
            problem: LineError | None = LineError(
                broken[0][0], "", f"not UTF-8 (byte {broken[0][1]})"
            )
        elif len(row) != len(header):
            problem = LineError(first, "", f"expected {len(header)} cells, got {len(row)}")
        else:
            problem = None
        cells = dict(zip(header, (c.strip() for c in row), strict=False))
        cid = cells.get("id", "")
        if group is not None and group.customer != cid:
            yield group.finish()
            group = None
        if problem is not None:
            if group is None:
                group = _Group(cid, first)
            group.errors.append(problem)
            continue
        if group is None:
            group = _Group(cid, first)
        group.add(first, cells)
    if group is not None:
        yield group.finish()


def _decoded(lines: Iterable[bytes], bad: dict[int, int]) -> Iterator[str]:
    for number, raw in enumerate(lines, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad[number] = exc.start + 1
            text = raw.decode("utf-8", errors="replace")
        yield text.removeprefix("\ufeff") if number == 1 else text


def _header(reader: Any) -> list[str]:
    try:
        row = next(reader)
    except StopIteration:
        raise FileError("line 1: empty file: expected a header row (id,plan,…)") from None
    except csv.Error as exc:
        raise FileError(f"line 1: not CSV: {exc}") from None
    header = [cell.strip() for cell in row]
    unknown = [name for name in header if name not in COLUMNS]
    if unknown:
        raise FileError(f"line 1: unknown column {unknown[0]!r} (columns: {', '.join(COLUMNS)})")
    seen = {name for name in header if header.count(name) > 1}
    if seen:
        raise FileError(f"line 1: column {sorted(seen)[0]!r} appears twice")
    if "id" not in header:
        raise FileError("line 1: the header has no 'id' column")
    if ("key_sha256" in header and "key_id" not in header) or (
        "key_id" in header and "key_sha256" not in header
    ):
        raise FileError("line 1: key_id and key_sha256 go together")
    return header


@dataclass(slots=True)
class _Group:
    """The consecutive rows of one CSV customer."""

    customer: str
    line: int
    doc: dict[str, Any] = field(default_factory=dict)
    first: dict[str, tuple[int, str]] = field(default_factory=dict)  # column → (line, cell)
    keys: list[dict[str, Any]] = field(default_factory=list)
    key_lines: list[int] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)
    bad_id: bool = False

    def __post_init__(self) -> None:
        problem = _id_problem(self.customer)
        if problem:
            self.errors.append(LineError(self.line, "id", problem))
            self.bad_id = True

    def add(self, line: int, cells: Mapping[str, str]) -> None:
        if self.bad_id:
            return  # nothing more to say about the rows of a customer without a valid id
        for column in _CUSTOMER_COLUMNS:
            cell = cells.get(column, "")
            if not cell:
                continue
            if column in self.first:
                where, earlier = self.first[column]
                if earlier != cell:
                    self.errors.append(
                        LineError(line, column, f"differs from line {where} of the same customer")
                    )
                continue
            self.first[column] = (line, cell)
            value = _cell(column, cell)
            if isinstance(value, LineError):
                self.errors.append(LineError(line, value.field, value.reason))
            else:
                self.doc[column] = value
        key = {name: cells[column] for column, name in _KEY_COLUMNS.items() if cells.get(column)}
        if key and not ("id" in key and "sha256" in key):
            missing = "key_sha256" if "id" in key else "key_id"
            self.errors.append(LineError(line, missing, "empty, but the row has an API key"))
        elif key:
            self.keys.append(key)
            self.key_lines.append(line)

    def finish(self) -> Entry | Refused:
        if self.errors:
            return Refused(tuple(self.errors), self.customer or None)
        doc = dict(self.doc)
        if self.keys:
            doc["api_keys"] = self.keys
        return Entry(self.line, self.customer, doc, tuple(self.key_lines), csv=True)


def _cell(column: str, cell: str) -> object:
    """A cell's value, or a LineError (line 0: the caller's) saying why it has none."""
    if column == "billing_day":
        try:
            return int(cell)
        except ValueError:
            return LineError(0, column, f"expected a whole number, got {cell[:20]!r}")
    if column in ("overrides", "grants"):
        want, kind = (dict, "an object") if column == "overrides" else (list, "an array")
        try:
            value = json.loads(cell)
        except json.JSONDecodeError as exc:
            return LineError(0, column, f"not JSON: {exc.msg} at column {exc.colno}")
        if not isinstance(value, want):
            return LineError(0, column, f"expected JSON {kind}, got {_kind(value)}")
        return value
    return cell


def _id_problem(cid: object) -> str:
    if cid is None or cid == "":
        return "missing: every customer needs an id"
    if not isinstance(cid, str):
        return f"expected a string, got {_kind(cid)}"
    if not CUSTOMER_ID.fullmatch(cid):
        return _ID_RULE
    return ""


def _refuse(line: int, field_: str, reason: str) -> Refused:
    return Refused((LineError(line, field_, reason),))


_KINDS = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
          int: "a number", float: "a number", type(None): "null"}  # fmt: skip


def _kind(value: object) -> str:
    return _KINDS.get(type(value), "a value")


# ---- writing -----------------------------------------------------------------------------------
def export_line(record: CustomerRecord) -> str:
    """One record as a JSON line import reads back (`id` first, then the document's fields in
    name order, then `source` and `updated_at`, which import ignores); no trailing newline."""
    data: dict[str, Any] = {"id": record.id}
    data.update(sorted(record.doc.items()))
    data["source"] = record.source.value
    data["updated_at"] = record.updated_at
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)
