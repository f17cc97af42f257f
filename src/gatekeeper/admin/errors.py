"""Errors a caller of the admin service can cause, each naming what is at fault."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["AdminError", "Conflict", "FieldError", "InputError", "NotFound"]


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str  # a path into the request body: `overrides.chat_requests.limit`, `amount`
    message: str


class AdminError(Exception):
    """Base: refused, nothing changed."""


class InputError(AdminError):
    """The request body is invalid (HTTP 422); `errors` names every field at fault."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = tuple(errors)
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in self.errors))

    @classmethod
    def one(cls, field: str, message: str) -> InputError:
        return cls([FieldError(field, message)])


class NotFound(AdminError):
    """No such thing, or the caller may not see it (HTTP 404)."""


class Conflict(AdminError):
    """Valid on its own but clashes with the current state (HTTP 409)."""
