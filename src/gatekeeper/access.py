"""Who may call the HTTP API: roles, bearer tokens (stored only as SHA-256) and the caller.

Roles: `admin` (operator, may change anything), `read` (operator, read-only), `customer`
(one customer's own data; may set its own spend cap, alert thresholds, webhook endpoints and
manage its own API keys). A customer's API key is also a customer token for its own customer.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

__all__ = [
    "Actor",
    "Role",
    "TokenRecord",
    "new_secret",
    "secret_hash",
]


class Role(StrEnum):
    ADMIN = "admin"
    READ = "read"
    CUSTOMER = "customer"


def new_secret(prefix: str) -> str:
    """A new random bearer secret: `prefix` + 43 URL-safe characters (256 bits)."""
    return f"{prefix}{secrets.token_urlsafe(32)}"


def secret_hash(secret: str) -> str:
    """Lower-case hex SHA-256: the only form in which keys and tokens are stored."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """An API token (never the token itself): who it is for and what it may do."""

    id: str
    role: Role
    sha256: str
    customer: str | None  # customer tokens only
    created_at: datetime
    created_by: str
    name: str = ""
    revoked: bool = False

    def to_json(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "role": self.role.value,
                "sha256": self.sha256,
                "customer": self.customer,
                "created_at": self.created_at.isoformat(),
                "created_by": self.created_by,
                "name": self.name,
                "revoked": self.revoked,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, raw: str) -> TokenRecord:
        data = json.loads(raw)
        return cls(
            id=data["id"],
            role=Role(data["role"]),
            sha256=data["sha256"],
            customer=data.get("customer"),
            created_at=datetime.fromisoformat(data["created_at"]),
            created_by=data.get("created_by", ""),
            name=data.get("name", ""),
            revoked=bool(data.get("revoked", False)),
        )


@dataclass(frozen=True, slots=True)
class Actor:
    """The authenticated caller of one API request."""

    role: Role
    customer_id: str | None
    credential: str  # token id, key id, or "bootstrap" for GATEKEEPER_ADMIN_TOKEN

    @property
    def operator(self) -> bool:
        return self.role is not Role.CUSTOMER

    @property
    def may_write(self) -> bool:
        """May change operator-owned data (plans, customers, anyone's keys)."""
        return self.role is Role.ADMIN

    @property
    def name(self) -> str:
        """For the audit log: `admin:<credential>`, `read:...`, `customer:<id>:<credential>`."""
        if self.role is Role.CUSTOMER:
            return f"customer:{self.customer_id}:{self.credential}"
        return f"{self.role.value}:{self.credential}"

    def may_see(self, customer_id: str) -> bool:
        return self.operator or self.customer_id == customer_id

    def may_manage(self, customer_id: str) -> bool:
        """May change the customer's self-service settings (cap, thresholds, hooks, keys)."""
        return self.role is Role.ADMIN or (
            self.role is Role.CUSTOMER and self.customer_id == customer_id
        )
