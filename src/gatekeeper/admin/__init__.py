"""Run-time administration: plans, customers, API keys, tokens and customer webhooks, changed
through the API, validated like the policy file, audited, and applied on every process."""

from gatekeeper.admin.errors import AdminError, Conflict, InputError, NotFound
from gatekeeper.admin.service import AdminService, IssuedSecret

__all__ = ["AdminError", "AdminService", "Conflict", "InputError", "IssuedSecret", "NotFound"]
