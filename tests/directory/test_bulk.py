"""Reading bulk files (JSON Lines, CSV) into customer documents with line numbers, and the
export line import reads back."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.directory.bulk import (
    BulkFormat,
    Entry,
    FileError,
    LineError,
    Refused,
    detect_format,
    export_line,
    read_csv,
    read_jsonl,
)
from gatekeeper.store.customers import CustomerRecord, Source
from tests.directory.support import jsonl, sha


def _jsonl(data: bytes) -> list[Entry | Refused]:
    return list(read_jsonl(io.BytesIO(data)))


def _csv(text: str | bytes) -> list[Entry | Refused]:
    data = text.encode() if isinstance(text, str) else text
    return list(read_csv(io.BytesIO(data)))


def _errors(items: list[Entry | Refused]) -> list[LineError]:
    return [e for item in items if isinstance(item, Refused) for e in item.errors]


# ---- JSON Lines --------------------------------------------------------------------------------
def test_jsonl_one_customer_per_line_blank_lines_skipped_export_fields_ignored() -> None:
    data = jsonl(
        [
            {"id": "acme", "plan": "pro", "api_keys": [{"id": "k1", "sha256": sha("a")}]},
            "",
            {"id": "beta", "plan": "free", "source": "file", "updated_at": "2026-01-01"},
        ]
    )
    items = _jsonl(data)
    assert items == [
        Entry(1, "acme", {"plan": "pro", "api_keys": [{"id": "k1", "sha256": sha("a")}]}, (1,)),
        Entry(3, "beta", {"plan": "free"}),
    ]


def test_jsonl_bad_lines_are_refused_with_their_numbers_and_the_rest_read() -> None:
    data = (
        b'{"id": "a", "plan": "pro"}\n'
        b'{"id": "b", "plan": \n'  # truncated
        b'["not", "an", "object"]\n'
        b'{"plan": "pro"}\n'
        b'{"id": "bad id!", "plan": "pro"}\n'
        b'{"id": 7, "plan": "pro"}\n'
        b'{"id": "c", "description": "caf\xe9"}\n'  # latin-1, not UTF-8
        b'{"id": "d", "plan": "free"}'  # no newline at the end
    )
    items = _jsonl(data)
    assert [i.customer for i in items if isinstance(i, Entry)] == ["a", "d"]
    errors = _errors(items)
    assert [(e.line, e.field) for e in errors] == [
        (2, ""), (3, ""), (4, "id"), (5, "id"), (6, "id"), (7, ""),
    ]  # fmt: skip
    assert errors[0].reason.startswith("not JSON: Expecting value at column")
    assert errors[1].reason == "expected a JSON object, got an array"
    assert errors[2].reason.startswith("missing")
    assert "customer ids match" in errors[3].reason
    assert errors[4].reason == "expected a string, got a number"
    assert errors[5].reason.startswith("not UTF-8")


def test_jsonl_byte_order_mark_is_skipped() -> None:
    assert _jsonl(b'\xef\xbb\xbf{"id": "a", "plan": "pro"}\n') == [Entry(1, "a", {"plan": "pro"})]


# ---- CSV ---------------------------------------------------------------------------------------
def test_csv_rows_with_the_same_id_add_keys_and_empty_cells_are_absent() -> None:
    text = (
        "id,plan,billing_day,description,key_id,key_sha256,key_expires_at,overrides,grants\n"
        f'acme,pro,15,Acme Inc,k1,{sha("1")},,"{{""chat_requests"": {{""limit"": 5}}}}",\n'
        f"acme,,,,k2,{sha('2')},2027-01-31T00:00:00Z,,\n"
        "beta,free,,,,,,,\n"
        '  gamma , free ,,,,,,,"[{""feature"": ""llm_tokens"", ""amount"": 10}]"\n'
    )
    items = _csv(text)
    assert items == [
        Entry(
            2,
            "acme",
            {
                "plan": "pro",
                "billing_day": 15,
                "description": "Acme Inc",
                "overrides": {"chat_requests": {"limit": 5}},
                "api_keys": [
                    {"id": "k1", "sha256": sha("1")},
                    {"id": "k2", "sha256": sha("2"), "expires_at": "2027-01-31T00:00:00Z"},
                ],
            },
            (2, 3),
            csv=True,
        ),
        Entry(4, "beta", {"plan": "free"}, csv=True),
        Entry(
            5,
            "gamma",
            {"plan": "free", "grants": [{"feature": "llm_tokens", "amount": 10}]},
            csv=True,
        ),
    ]
    acme = items[0]
    assert isinstance(acme, Entry)
    assert acme.locate("api_keys[1].sha256") == (3, "key_sha256")
    assert acme.locate("api_keys[0].expires_at") == (2, "key_expires_at")
    assert acme.locate("overrides.chat_requests.limit") == (2, "overrides.chat_requests.limit")


def test_csv_bad_rows_refuse_their_customer_with_line_numbers() -> None:
    text = (
        "id,plan,billing_day,key_id,key_sha256,overrides\n"
        "a,pro,15,,,\n"
        "b,pro,fifteen,,,\n"  # 3
        "c,pro,,,,{not json}\n"  # 4
        "d,pro,,,,[1]\n"  # 5
        "e,pro,,k1,,\n"  # 6: a key without its hash
        "f,pro,,,\n"  # 7: a cell short
        "g,pro,,,,\n"
        "g,free,,,,\n"  # 9: differs from line 8
        'h,pro,"multi\nline",,,\n'  # 10-11: a quoted cell over two lines
        "i!,pro,,,,\n"  # 12
        "j,pro,,,,\n"
    )
    items = _csv(text)
    assert [i.customer for i in items if isinstance(i, Entry)] == ["a", "j"]
    refused = [i for i in items if isinstance(i, Refused)]
    assert [r.customer for r in refused] == ["b", "c", "d", "e", "f", "g", "h", "i!"]
    assert [(e.line, e.field) for e in _errors(items)] == [
        (3, "billing_day"), (4, "overrides"), (5, "overrides"), (6, "key_sha256"), (7, ""),
        (9, "plan"), (10, "billing_day"), (12, "id"),
    ]  # fmt: skip
    errors = _errors(items)
    assert errors[0].reason == "expected a whole number, got 'fifteen'"
    assert errors[2].reason == "expected JSON an object, got an array"
    assert errors[4].reason == "expected 6 cells, got 5"
    assert errors[5].reason == "differs from line 8 of the same customer"


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("", "empty file"),
        ("id,plan,colour\n", "unknown column 'colour'"),
        ("plan,billing_day\n", "no 'id' column"),
        ("id,plan,plan\n", "column 'plan' appears twice"),
        ("id,key_id\n", "key_id and key_sha256 go together"),
    ],
)
def test_a_bad_csv_header_refuses_the_file(header: str, message: str) -> None:
    with pytest.raises(FileError, match=message):
        _csv(header + "a,pro\n" if header else "")


def test_csv_non_utf8_row_is_refused_alone() -> None:
    items = _csv(b"id,plan,description\na,pro,caf\xe9\nb,pro,ok\n")
    assert [i.customer for i in items if isinstance(i, Entry)] == ["b"]
    assert [(e.line, e.reason) for e in _errors(items)] == [(2, "not UTF-8 (byte 10)")]


def test_format_from_extension_or_option() -> None:
    assert detect_format("x/customers.jsonl") is BulkFormat.JSONL
    assert detect_format("customers.NDJSON") is BulkFormat.JSONL
    assert detect_format("customers.csv") is BulkFormat.CSV
    assert detect_format("customers.txt", "csv") is BulkFormat.CSV
    with pytest.raises(FileError, match="--format"):
        detect_format("customers.txt")
    with pytest.raises(FileError, match="unknown format"):
        detect_format("customers.csv", "xml")


# ---- round trips -------------------------------------------------------------------------------
_text = (
    st.text(
        st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\u2028\u2029"),
        min_size=1,
        max_size=20,
    )
    .map(str.strip)
    .filter(bool)
)
_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,15}", fullmatch=True)
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**12), 10**12) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=6,
)
_keys = st.lists(
    st.fixed_dictionaries(
        {"id": _ids, "sha256": st.binary(min_size=4, max_size=4).map(lambda b: sha(b.hex()))},
        optional={"label": _text, "expires_at": st.just("2027-01-31T00:00:00Z")},
    ),
    max_size=3,
)
_docs = st.fixed_dictionaries(
    {"plan": _ids},
    optional={
        "billing_day": st.integers(1, 31),
        "description": _text,
        "overrides": st.dictionaries(_text, _json, max_size=3),
        "grants": st.lists(st.dictionaries(_text, _json, max_size=3), max_size=2),
        "api_keys": _keys.filter(bool),
    },
)
_files = st.dictionaries(_ids, _docs, min_size=1, max_size=5)


def _csv_file(customers: Mapping[str, Mapping[str, Any]]) -> str:
    """The CSV a user would write for `customers`: one row per key (at least one row)."""
    out = io.StringIO()
    columns = ["id", "plan", "billing_day", "description", "key_id", "key_sha256", "key_label",
               "key_expires_at", "overrides", "grants"]  # fmt: skip
    writer = csv.DictWriter(out, columns)
    writer.writeheader()
    for cid, doc in customers.items():
        first: dict[str, object] = {"id": cid, "plan": doc["plan"]}
        first["billing_day"] = doc.get("billing_day", "")
        first["description"] = doc.get("description", "")
        for name in ("overrides", "grants"):
            first[name] = json.dumps(doc[name]) if name in doc else ""
        rows = [first]
        for index, key in enumerate(doc.get("api_keys") or ()):
            if index:
                rows.append({"id": cid})
            rows[-1].update({f"key_{k}": v for k, v in key.items()})
        writer.writerows(rows)
    return out.getvalue()


@settings(max_examples=150, deadline=None)
@given(_files)
def test_csv_reads_back_the_documents_it_was_written_from(
    customers: dict[str, dict[str, Any]],
) -> None:
    items = _csv(_csv_file(customers))
    assert all(isinstance(i, Entry) for i in items), items
    assert {i.customer: dict(i.doc) for i in items if isinstance(i, Entry)} == customers


@settings(max_examples=150, deadline=None)
@given(_files)
def test_export_lines_read_back_as_the_same_documents(customers: dict[str, dict[str, Any]]) -> None:
    records = [CustomerRecord(cid, doc, Source.FILE, 3, "2026-12-07T10:00:00+00:00")
               for cid, doc in customers.items()]  # fmt: skip
    data = "".join(export_line(r) + "\n" for r in records).encode()
    items = _jsonl(data)
    assert {i.customer: dict(i.doc) for i in items if isinstance(i, Entry)} == customers
    first = json.loads(data.splitlines()[0])
    assert next(iter(first)) == "id" and first["source"] == "file"
