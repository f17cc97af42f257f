"""Who the demo's traffic generator plays, and how fast (see data/demo-customers.yaml)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SCENARIO", "DemoCustomer"]


@dataclass(frozen=True, slots=True)
class DemoCustomer:
    """One simulated client. `key` is the plaintext demo API key (the policy holds its hash)."""

    id: str
    key: str
    story: str
    chat_per_s: float  # POST /v1/chat/completions
    embeddings_per_s: float = 0.0  # POST /v1/embeddings
    models_per_s: float = 0.0  # GET /v1/models
    max_tokens: int = 400  # asked per completion; the upstream answers with up to this many


SCENARIO: tuple[DemoCustomer, ...] = (
    DemoCustomer(
        "acme", "demo-acme-key", "pro plan, steady, inside its limits",
        chat_per_s=3.0, embeddings_per_s=1.0, models_per_s=0.2,
    ),
    DemoCustomer(
        "hobbyist", "demo-hobbyist-key", "free plan: 2/s rate limit, 100 chats a day (hard)",
        chat_per_s=3.0, max_tokens=120,
    ),
    DemoCustomer(
        "initech", "demo-initech-key", "pro plan, own spend cap $0.50",
        chat_per_s=4.0, max_tokens=600,
    ),
    DemoCustomer(
        "unknown", "demo-not-a-key", "a key gatekeeper does not know", chat_per_s=0.2,
    ),
)  # fmt: skip
