"""Reading a JSON request body within bounds, before anything else holds it.

Bounds (each refusal is a problem answer naming `body`, never a 500): at most MAX_BODY_BYTES
(aiohttp's `client_max_size`; more is a 413), UTF-8, at most MAX_JSON_DEPTH objects and arrays
inside one another, numbers of at most MAX_NUMBER_CHARS characters and finite (no NaN or
Infinity), and strings that are valid Unicode (no lone surrogates, which no store can encode).
"""

from __future__ import annotations

import json
import math

from aiohttp import web

from gatekeeper.admin.errors import InputError

__all__ = [
    "BODY",
    "MAX_BODY_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_NUMBER_CHARS",
    "parse_json",
    "read_body",
]

MAX_BODY_BYTES = 1024 * 1024  # 1 MiB: a plan or a customer is a few kilobytes
MAX_JSON_DEPTH = 64  # objects and arrays inside one another, more than any document here needs
MAX_NUMBER_CHARS = 40  # characters of one JSON number (money and counts need far fewer)

# The parsed body, once read (the API's guard reads and validates it before the handler).
BODY = web.RequestKey("gatekeeper.body", object)


class _BadNumber(ValueError):
    pass


def _bounded_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise _BadNumber(f"a number of more than {MAX_NUMBER_CHARS} characters")
    return int(text)


def _bounded_float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise _BadNumber(f"a number of more than {MAX_NUMBER_CHARS} characters")
    value = float(text)
    if not math.isfinite(value):
        raise _BadNumber(f"the number {text} is out of range")
    return value


def _no_constant(name: str) -> object:
    raise _BadNumber(f"{name} is not a JSON number")


def _too_deep(text: str) -> bool:
    """More than MAX_JSON_DEPTH brackets open at once (brackets inside strings may count too:
    a false alarm needs a string of dozens of unbalanced brackets, never a real document).
    Checked before parsing: the parser itself recurses once per level."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return False
    depth = 0
    for char in text:
        if char in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        elif char in "]}":
            depth -= 1
    return False


def _unicode_ok(value: object) -> bool:
    """Every string (and key) encodes as UTF-8: JSON's `\\ud800` escapes can name a lone
    surrogate, which Redis, SQLite and the audit log could not store."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_unicode_ok(k) and _unicode_ok(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_unicode_ok(item) for item in value)
    return True


def parse_json(raw: bytes) -> object:
    """The JSON document in `raw`; InputError naming `body` when it is not one within the
    bounds above."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError.one("body", "expected a JSON document in UTF-8") from None
    if _too_deep(text):
        raise InputError.one("body", f"nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = json.loads(
            text, parse_int=_bounded_int, parse_float=_bounded_float, parse_constant=_no_constant
        )
    except json.JSONDecodeError:
        raise InputError.one("body", "expected a JSON document") from None
    except _BadNumber as exc:
        raise InputError.one("body", str(exc)) from None
    if not _unicode_ok(value):
        raise InputError.one("body", "a string holds an unpaired surrogate (not Unicode text)")
    return value


async def read_body(request: web.Request, *, required: bool = True) -> object:
    """The request's JSON body, read once (later calls answer the same object).

    An absent or empty body is a 422 naming `body` where the OpenAPI document marks it required
    (never read as `{}`: an empty PUT would empty a plan); else `{}`. More than the app's
    `client_max_size` raises aiohttp's 413 (the API's middleware answers it as a problem).
    """
    if BODY in request:
        return request[BODY]
    try:
        raw = await request.read() if request.can_read_body else b""
    except web.RequestPayloadError:  # gzip or deflate that does not inflate, a broken chunk
        raise InputError.one("body", "could not be read as its headers describe it") from None
    if not raw:  # absent (whitespace alone is not JSON, and refused as such)
        if required:
            raise InputError.one("body", "required: a JSON object")
        value: object = {}
    else:
        value = parse_json(raw)
    request[BODY] = value
    return value
