"""The contract's example (and its packaged demo copy) parse cleanly, with the right values."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from gatekeeper.config import LoadedConfig, load_config
from gatekeeper.model import Anchor, CapAction, Enforcement, FeatureType, Period, RateUnit
from gatekeeper.settings import FailureMode

REPO = Path(__file__).parents[2]
EXAMPLE = REPO / ".." / "shared" / "reference" / "gatekeeper.example.yaml"
DEMO = REPO / "src" / "gatekeeper" / "data" / "demo.yaml"


def _example() -> LoadedConfig:
    if not EXAMPLE.exists():
        pytest.skip(
            f"reference example not found at {EXAMPLE.resolve()} (../shared is not checked out)"
        )
    return load_config(EXAMPLE, env={})


@pytest.fixture(params=["example", "demo-file", "demo-packaged"])
def loaded(request: pytest.FixtureRequest) -> LoadedConfig:
    if request.param == "example":
        return _example()
    if request.param == "demo-file":
        return load_config(DEMO, env={})
    return load_config(None, env={})


def test_demo_is_a_copy_of_the_reference_example() -> None:
    if not EXAMPLE.exists():
        pytest.skip(f"reference example not found at {EXAMPLE.resolve()}")
    assert DEMO.read_text() == EXAMPLE.read_text()


def test_features_and_prices(loaded: LoadedConfig) -> None:
    policy = loaded.policy
    assert policy.version == 1 and policy.currency == "USD"
    assert {f.name: f.type for f in policy.features.values()} == {
        "api_access": FeatureType.BOOLEAN,
        "chat_requests": FeatureType.METERED,
        "llm_tokens": FeatureType.METERED,
        "model_tier": FeatureType.CONFIG,
    }
    assert policy.features["llm_tokens"].unit == "token"
    assert policy.features["model_tier"].header == "x-model-tier"
    chat = policy.prices["chat_requests"]
    assert chat.is_flat and chat.per == 1
    assert chat.tiers[0].unit_price_nano == 2_000_000 and chat.tiers[0].up_to is None
    tokens = policy.prices["llm_tokens"]
    assert tokens.per == 1_000_000
    assert [(t.up_to, t.unit_price_nano, t.unit_price) for t in tokens.tiers] == [
        (10_000_000, 600, "0.60"),
        (None, 400, "0.40"),
    ]


def test_plans(loaded: LoadedConfig) -> None:
    pro = loaded.policy.plans["pro"]
    chat = pro.metered["chat_requests"]
    assert chat.limit == 100_000 and chat.period is Period.MONTH
    assert chat.anchor is Anchor.BILLING_DAY and chat.enforcement is Enforcement.SOFT
    assert chat.overage_allowance == 20_000 and chat.alert_thresholds == (80, 100)
    assert chat.ceiling == 120_000
    assert pro.access == frozenset({"api_access"})
    assert dict(pro.config_values) == {"model_tier": "large"}
    assert [(r.feature, r.limit, r.per) for r in pro.rate_limits] == [
        ("chat_requests", 50, RateUnit.SECOND),
        ("llm_tokens", 200_000, RateUnit.MINUTE),
    ]
    assert pro.spend_cap is not None
    assert pro.spend_cap.amount_nano == 500 * 10**9
    assert pro.spend_cap.max_customer_cap_nano == 5000 * 10**9
    assert pro.spend_cap.action is CapAction.BLOCK
    assert pro.spend_cap.alert_thresholds == (50, 90, 100)
    free = loaded.policy.plans["free"]
    assert free.metered["chat_requests"].period is Period.DAY
    assert free.metered["chat_requests"].ceiling == 100
    assert free.spend_cap is None


def test_customers(loaded: LoadedConfig) -> None:
    acme = loaded.policy.customers["acme"]
    chat = acme.entitlements.metered["chat_requests"]
    assert chat.limit == 250_000  # the override
    assert chat.period is Period.MONTH and chat.anchor is Anchor.BILLING_DAY  # kept from the plan
    assert chat.enforcement is Enforcement.SOFT and chat.overage_allowance == 20_000
    assert acme.entitlements.metered["llm_tokens"].limit == 20_000_000
    assert acme.billing_day == 15
    assert acme.spend_cap is not None and acme.spend_cap.amount_nano == 250_000_000_000
    cap = acme.effective_spend_cap
    assert cap is not None and cap.amount_nano == 250_000_000_000
    assert cap.max_customer_cap_nano == 5_000_000_000_000
    (grant,) = acme.grants
    assert grant.feature == "llm_tokens" and grant.amount == 1_000_000
    assert grant.expires_at == datetime(2027, 1, 31, tzinfo=UTC)
    assert len(grant.id) == 12
    assert [(k.id, k.revoked) for k in acme.api_keys] == [
        ("acme-prod", False),
        ("acme-staging", True),
    ]
    hobbyist = loaded.policy.customers["hobbyist"]
    assert hobbyist.billing_day is None and hobbyist.plan == "free"
    assert hobbyist.entitlements == loaded.policy.plans["free"]


def test_key_index(loaded: LoadedConfig) -> None:
    hit = loaded.policy.key_owner(
        "e4a3df34a21d530256ac8118ee47c8592b5ac446c20fff4055befeedc20548ff"
    )
    assert hit is not None
    customer, key = hit
    assert customer.id == "acme" and key.id == "acme-prod"
    assert loaded.policy.key_owner("0" * 64) is None


def test_routes(loaded: LoadedConfig) -> None:
    first, embeddings, models = loaded.policy.routes
    assert first.match.method == "POST" and first.match.path_prefix == "/v1/chat/completions"
    assert first.requires == ("api_access",)
    chat, tokens = first.meters
    assert chat.feature == "chat_requests" and chat.cost == 1
    assert tokens.reserve == 2000 and tokens.settle_header == "x-usage-total-tokens"
    (meter,) = embeddings.meters
    assert meter.cost_header == "x-token-count" and meter.default_cost == 500
    assert models.match.method == "GET" and models.meters == ()


def test_settings(loaded: LoadedConfig) -> None:
    settings = loaded.settings
    assert settings.server.grpc_port == 9191 and settings.server.http_port == 8080
    assert settings.server.workers == 1
    assert settings.failure_mode is FailureMode.CLOSED
    assert settings.redis.partitions == 16 and settings.redis.url is None
    assert settings.billing.dsn is None
    (hook,) = settings.alerts.webhooks
    assert hook.url == "http://127.0.0.1:9999/hooks"
    assert hook.secret_env == "GATEKEEPER_WEBHOOK_SECRET"
    assert hook.kinds == ("threshold", "overage", "forecast", "anomaly", "spend_cap")
    assert settings.alerts.digest_window_s == 60
    assert settings.ratelimit_config is None


def test_source_is_recorded() -> None:
    assert load_config(None, env={}).source == "<gatekeeper/data/demo.yaml>"
    assert load_config(DEMO, env={}).source == str(DEMO)
