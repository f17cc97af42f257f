"""The JSON Schema subset checker: what the document promises is what it checks."""

from __future__ import annotations

import pytest

from gatekeeper.http.routes import PATH_PARAMS
from gatekeeper.http.schema_check import SchemaChecker, coerce_param
from gatekeeper.http.schemas import COMPONENTS, ID, ref

CHECKER = SchemaChecker(COMPONENTS)


def test_every_component_uses_only_checked_keywords() -> None:
    for name, schema in COMPONENTS.items():
        CHECKER.check_supported(schema, name)
    for schema in PATH_PARAMS.values():
        CHECKER.check_supported(schema)


@pytest.mark.parametrize(
    "schema",
    [{"type": "string", "minItems": 1}, {"format": "email"}, {"$ref": "#/components/schemas/X"}],
)
def test_an_unchecked_keyword_is_refused_up_front(schema: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        CHECKER.check_supported(schema)


def test_patterns_read_as_ecma_262() -> None:
    assert CHECKER.errors(ID, "key-1") == []
    assert CHECKER.errors(ID, "key-1\n") != []  # `$` is the very end
    assert CHECKER.errors({"type": "string", "pattern": r"^\d+$"}, "\u0665") != []  # ASCII \d


def test_every_fault_is_named_once() -> None:
    errors = CHECKER.errors(
        ref("NewCustomer"), {"plan": 1, "extra": True, "metadata": {"a": 2, "b": "x" * 600}}
    )
    assert {(e.field, e.message.split(" ")[0]) for e in errors} == {
        ("id", "required"),
        ("plan", "expected"),
        ("extra", "unknown"),
        ("metadata.a", "expected"),
        ("metadata.b", "at"),
    }


def test_nullable_values_report_the_inner_fault() -> None:
    [error] = CHECKER.errors(ref("CapInput"), {"amount": "1e2"})
    assert error.field == "amount" and "25.00" in error.message
    [error] = CHECKER.errors(ref("CapInput"), {"amount": 3})
    assert error.field == "amount" and error.message == "expected a string or null"
    assert CHECKER.errors(ref("CapInput"), {"amount": None, "action": None}) == []


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("2026-01-31T00:00:00Z", True),
        ("2026-01-31T00:00:00.123456789+01:00", True),
        ("2026-01-31T00:00:00", False),  # no timezone
        ("2026-01-31", False),
        ("2026-02-30T00:00:00Z", False),
        ("9999-12-31T23:59:59-01:00", False),  # beyond what a datetime holds in UTC
        ("0001-01-01T00:00:00Z", False),
    ],
)
def test_date_times_are_rfc_3339_within_bounded_years(text: str, ok: bool) -> None:
    assert (CHECKER.errors({"type": "string", "format": "date-time"}, text) == []) is ok


def test_integer_parameters_are_ascii_digits_only() -> None:
    schema = {"type": "integer", "minimum": 1}
    assert coerce_param(schema, "12") == 12
    for text in ("+5", "5_0", " 5", "\u0665", "1" * 30):
        assert CHECKER.errors(schema, coerce_param(schema, text)) != []
