"""RFC 9457 problem+json answers of the HTTP API."""

from __future__ import annotations

import json
from collections.abc import Sequence

from aiohttp import web

from gatekeeper.admin.errors import FieldError

__all__ = ["PROBLEM", "invalid", "invalid_fields", "problem"]

PROBLEM = "application/problem+json"


def problem(status: int, title: str, detail: str, **extra: object) -> web.Response:
    body = {
        "type": f"https://gatekeeper.dev/problems/{title.lower().replace(' ', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
        **extra,
    }
    return web.Response(status=status, text=json.dumps(body), content_type=PROBLEM)


def invalid_fields(errors: Sequence[FieldError]) -> web.Response:
    """422 naming every field at fault."""
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
    return problem(
        422,
        "Invalid input",
        detail,
        errors=[{"field": e.field, "message": e.message} for e in errors],
    )


def invalid(field: str, message: str) -> web.Response:
    return invalid_fields([FieldError(field, message)])
