"""The subset of JSON Schema (2020-12, as OpenAPI 3.1 uses it) that the API's document uses,
checked against request bodies and parameters before a handler runs.

Keywords: `$ref` (to `#/components/schemas/…`), `type` (one or a list), `enum`, `anyOf`,
`properties`, `required`, `additionalProperties` (false or a schema), `maxProperties`,
`propertyNames`,
`items`, `maxItems`, `minLength`, `maxLength`, `pattern` (ECMA-262 semantics: ASCII classes,
`$` only at the very end), `format` (`date-time` as RFC 3339 with a timezone, `date`, `uri`),
`minimum`, `maximum`; annotations (`description`, `examples`) are ignored. A schema using any
other keyword is refused when the checker is built (`SchemaChecker.check_supported`), so the
document cannot promise a check this module does not make.

Every fault is reported, each as a FieldError naming its path in the body (`amount`,
`overrides.chat.limit`, `grants[0].id`; the body itself is `body`). Dates and date-times are
also bounded to the years 1970–9998, which every date computation here can hold.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from gatekeeper.admin.errors import FieldError

__all__ = ["FIRST_YEAR", "LAST_YEAR", "SchemaChecker", "coerce_param"]

Schema = Mapping[str, Any]

FIRST_YEAR = 1970
LAST_YEAR = 9998  # a day or a month later, with any timezone, is still a valid datetime

_ANNOTATIONS = frozenset({"description", "examples", "title", "default", "deprecated"})
_KEYWORDS = frozenset(
    {
        "$ref", "type", "enum", "anyOf", "properties", "required", "additionalProperties",
        "maxProperties", "propertyNames", "items", "maxItems", "minLength", "maxLength",
        "pattern", "format", "minimum", "maximum",
    }
) | _ANNOTATIONS  # fmt: skip
_FORMATS = frozenset({"date-time", "date", "uri"})
_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})",
    re.ASCII,
)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
# RFC 3986: ASCII only, reserved and unreserved characters, `%` only as a percent-escape.
_URI = re.compile(
    r"[A-Za-z][A-Za-z0-9+.-]*:(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*"
)
_INTEGER = re.compile(r"-?[0-9]{1,20}", re.ASCII)
_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
    "null": (type(None),),
}
_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "an object",
    "array": "an array",
    "null": "null",
}


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    """An ECMA-262 pattern as Python reads it: ASCII `\\d`/`\\w`, and a final `$` that does
    not match before a trailing newline."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern, re.ASCII)


def _is(value: object, type_name: str) -> bool:
    if isinstance(value, bool) and type_name in ("integer", "number"):
        return False
    return isinstance(value, _TYPES[type_name])


def _join(path: str, name: str) -> str:
    return name if path == "body" else f"{path}.{name}"


def _format_problem(fmt: str, text: str) -> str | None:
    if fmt == "uri":
        return None if _URI.fullmatch(text) else "expected a URI"
    if fmt == "date":
        if not _DATE.fullmatch(text):
            return "expected a date YYYY-MM-DD"
        try:
            year = date.fromisoformat(text).year
        except ValueError:
            return "not a valid date"
    else:
        if not _DATE_TIME.fullmatch(text):
            return "expected an RFC 3339 date-time with a timezone, e.g. 2027-01-31T00:00:00Z"
        try:
            year = datetime.fromisoformat(text.upper()).year
        except ValueError:
            return "not a valid date-time"
    if not FIRST_YEAR <= year <= LAST_YEAR:
        return f"expected a year from {FIRST_YEAR} to {LAST_YEAR}"
    return None


def coerce_param(schema: Schema, raw: str) -> object:
    """A query or path parameter's text as the type its schema names (integers are digits
    only: no `+`, `_`, spaces or non-ASCII digits); the text itself when it is not one, for
    the checker to refuse."""
    if schema.get("type") == "integer" and _INTEGER.fullmatch(raw):
        return int(raw)
    return raw


class SchemaChecker:
    """Checks values against schemas of one OpenAPI document's `components/schemas`."""

    def __init__(self, components: Mapping[str, Schema]) -> None:
        self._components = components

    def check_supported(self, schema: object, where: str = "#") -> None:
        """Raises ValueError naming the first keyword or format this checker does not know."""
        if isinstance(schema, list):
            for i, item in enumerate(schema):
                self.check_supported(item, f"{where}/{i}")
            return
        if not isinstance(schema, Mapping):
            return
        for key, sub in schema.items():
            if key not in _KEYWORDS:
                raise ValueError(f"{where}: JSON Schema keyword {key!r} is not checked")
            if key == "format" and sub not in _FORMATS:
                raise ValueError(f"{where}: format {sub!r} is not checked")
            if key == "$ref" and self._resolve(sub) is None:
                raise ValueError(f"{where}: unresolved $ref {sub!r}")
            if key in ("properties",):
                for name, prop in sub.items():
                    self.check_supported(prop, f"{where}/properties/{name}")
            elif key in ("items", "additionalProperties", "anyOf", "propertyNames"):
                self.check_supported(sub, f"{where}/{key}")

    def _resolve(self, ref: str) -> Schema | None:
        prefix = "#/components/schemas/"
        return self._components.get(ref[len(prefix) :]) if ref.startswith(prefix) else None

    def errors(self, schema: Schema, value: object, path: str = "body") -> list[FieldError]:
        """Every fault of `value` against `schema` (empty: valid)."""
        return list(self._check(schema, value, path))

    def _check(self, schema: Schema, value: object, path: str) -> Iterator[FieldError]:
        if "$ref" in schema:
            target = self._resolve(schema["$ref"])
            assert target is not None  # check_supported refused unresolved references
            yield from self._check(target, value, path)
        if "anyOf" in schema:
            yield from self._any_of(schema["anyOf"], value, path)
        if "type" in schema:
            types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            if not any(_is(value, t) for t in types):
                yield FieldError(path, "expected " + " or ".join(_NAMES[t] for t in types))
                return
        if "enum" in schema and value not in schema["enum"]:
            choices = ", ".join("null" if c is None else str(c) for c in schema["enum"])
            yield FieldError(path, f"expected one of: {choices}")
            return
        if isinstance(value, str):
            yield from self._string(schema, value, path)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            if "minimum" in schema and value < schema["minimum"]:
                yield FieldError(path, f"must be at least {schema['minimum']}")
            if "maximum" in schema and value > schema["maximum"]:
                yield FieldError(path, f"must be at most {schema['maximum']}")
        elif isinstance(value, dict):
            yield from self._object(schema, value, path)
        elif isinstance(value, list):
            if "maxItems" in schema and len(value) > schema["maxItems"]:
                yield FieldError(path, f"at most {schema['maxItems']} items")
            if "items" in schema:
                for i, item in enumerate(value):
                    yield from self._check(schema["items"], item, f"{path}[{i}]")

    def _any_of(self, branches: list[Schema], value: object, path: str) -> Iterator[FieldError]:
        found = [self.errors(branch, value, path) for branch in branches]
        if any(not errs for errs in found):
            return
        # Report the faults of the branch whose type the value has (a string against a
        # pattern, not "expected a string or null"); else that no type fits.
        for branch, errs in zip(branches, found, strict=True):
            if self._type_fits(branch, value):
                yield from errs
                return
        messages = [errs[0].message.removeprefix("expected ") for errs in found]
        yield FieldError(path, "expected " + " or ".join(messages))

    def _type_fits(self, schema: Schema, value: object) -> bool:
        if "$ref" in schema:
            target = self._resolve(schema["$ref"])
            return target is not None and self._type_fits(target, value)
        types = schema.get("type")
        if types is None:
            return True
        return any(_is(value, t) for t in (types if isinstance(types, list) else [types]))

    @staticmethod
    def _string(schema: Schema, value: str, path: str) -> Iterator[FieldError]:
        if "minLength" in schema and len(value) < schema["minLength"]:
            yield FieldError(path, f"at least {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            yield FieldError(path, f"at most {schema['maxLength']} characters")
            return  # a pattern or a format of a huge string says nothing more
        if "pattern" in schema and not _regex(schema["pattern"]).search(value):
            example = f" (e.g. {schema['examples'][0]!r})" if schema.get("examples") else ""
            yield FieldError(path, f"does not match {schema['pattern']}{example}")
        if "format" in schema:
            problem = _format_problem(schema["format"], value)
            if problem is not None:
                yield FieldError(path, problem)

    def _object(self, schema: Schema, value: dict[str, Any], path: str) -> Iterator[FieldError]:
        props: Mapping[str, Schema] = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                described = props.get(name, {}).get("description")
                message = f"required ({described})" if described else "required"
                yield FieldError(_join(path, name), message)
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            yield FieldError(path, f"at most {schema['maxProperties']} entries")
        extra = schema.get("additionalProperties", True)
        names: Schema | None = schema.get("propertyNames")
        for name, item in value.items():
            where = _join(path, name)
            if names is not None:
                yield from self._check(names, name, where)
            if name in props:
                yield from self._check(props[name], item, where)
            elif extra is False:
                expected = ", ".join(props) or "none"
                yield FieldError(where, f"unknown field (expected one of: {expected})")
            elif isinstance(extra, Mapping):
                yield from self._check(extra, item, where)
