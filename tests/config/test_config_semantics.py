"""How values are read and merged: raw-text money, overrides, YAML features, defaults."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekeeper.config import ConfigError, LoadedConfig, parse_config
from gatekeeper.model import Enforcement, Period, RateUnit
from gatekeeper.money import MAX_SCRIPT_NANO, format_nano

HEAD = """\
version: 1
currency: USD
features:
  api_access: {type: boolean}
  chat_requests: {type: metered, unit: request}
  llm_tokens: {type: metered, unit: token}
  model_tier: {type: config}
"""

PLANS = """\
plans:
  pro: &pro
    entitlements:
      api_access: true
      model_tier: large
      chat_requests: {limit: 100, enforcement: soft, overage_allowance: 10, period: month}
    rate_limits: [{feature: chat_requests, limit: 5, per: second}]
    spend_cap: {amount: "100.00", max_customer_cap: "500.00", alert_thresholds: [50, 100]}
  pro_eu:
    <<: *pro
    description: same as pro
"""


def _load(body: str) -> LoadedConfig:
    return parse_config(HEAD + body, source="t.yaml", env={})


def test_unquoted_prices_are_read_from_the_source_text() -> None:
    policy = _load(
        "prices:\n"
        "  chat_requests: {unit_price: 0.1}\n"
        "  llm_tokens: {unit_price: 0.000000003}\n"  # a float would be 3e-09
    ).policy
    assert policy.prices["chat_requests"].tiers[0].unit_price_nano == 100_000_000
    assert policy.prices["llm_tokens"].tiers[0].unit_price_nano == 3
    assert policy.prices["llm_tokens"].tiers[0].unit_price == "0.000000003"


@given(
    per_unit=st.integers(min_value=0, max_value=10**7),
    per=st.sampled_from([1, 7, 1000, 1_000_000]),
)
def test_exact_prices_round_trip(per_unit: int, per: int) -> None:
    quoted = per_unit * per
    text = f'prices:\n  llm_tokens: {{per: {per}, unit_price: "{format_nano(quoted)}"}}\n'
    if quoted >= MAX_SCRIPT_NANO:
        return
    tier = _load(text).policy.prices["llm_tokens"].tiers[0]
    assert tier.unit_price_nano == per_unit


def test_yaml_merge_keys_and_aliases() -> None:
    plans = _load(PLANS).policy.plans
    assert plans["pro_eu"].metered == plans["pro"].metered
    assert plans["pro_eu"].spend_cap == plans["pro"].spend_cap


def test_overrides_merge_field_by_field() -> None:
    body = PLANS + (
        "customers:\n"
        "  big:\n"
        "    plan: pro\n"
        "    overrides:\n"
        "      chat_requests: {enforcement: hard}\n"  # drops the inherited allowance
        "      llm_tokens: {limit: 1000}\n"  # not in the plan: added with defaults
        "      api_access: false\n"
        "      model_tier: xl\n"
        "      rate_limits: [{feature: llm_tokens, limit: 100, per: minute}]\n"
        "      spend_cap: {max_customer_cap: 900}\n"
        "    spend_cap: {amount: 800}\n"
        "  free_tokens:\n"
        "    plan: pro\n"
        "    overrides: {chat_requests: true}\n"
    )
    customers = _load(body).policy.customers
    plan = customers["big"].entitlements
    chat = plan.metered["chat_requests"]
    assert (chat.limit, chat.enforcement, chat.overage_allowance) == (100, Enforcement.HARD, None)
    tokens = plan.metered["llm_tokens"]
    assert (tokens.limit, tokens.period, tokens.enforcement) == (
        1000,
        Period.MONTH,
        Enforcement.HARD,
    )
    assert plan.access == frozenset()
    assert dict(plan.config_values) == {"model_tier": "xl"}
    assert [(r.feature, r.per) for r in plan.rate_limits] == [("llm_tokens", RateUnit.MINUTE)]
    assert plan.spend_cap is not None
    assert plan.spend_cap.amount_nano == 100 * 10**9  # kept from the plan
    assert plan.spend_cap.max_customer_cap_nano == 900 * 10**9
    assert plan.spend_cap.alert_thresholds == (50, 100)
    cap = customers["big"].effective_spend_cap
    assert cap is not None and cap.amount_nano == 800 * 10**9
    unlimited = customers["free_tokens"].entitlements.metered["chat_requests"]
    assert unlimited.limit is None and unlimited.ceiling is None


def test_customer_cap_without_a_plan_cap_is_free() -> None:
    body = "plans:\n  basic: {}\ncustomers:\n  c1: {plan: basic, spend_cap: {amount: 123.45}}\n"
    cap = _load(body).policy.customers["c1"].spend_cap
    assert cap is not None and cap.amount_nano == 123_450_000_000 and cap.action is None


def test_grant_ids_are_derived_from_content_and_stable() -> None:
    body = (
        "plans:\n  basic: {}\ncustomers:\n  c1:\n    plan: basic\n    grants:\n"
        "      - {feature: llm_tokens, amount: 5, expires_at: 2027-01-31T01:00:00+01:00}\n"
        '      - {feature: llm_tokens, amount: 6, expires_at: "2027-01-31T00:00:00Z"}\n'
        "      - {feature: llm_tokens, amount: 7}\n"
    )
    first, second, third = _load(body).policy.customers["c1"].grants
    stamp = "2027-01-31T00:00:00+00:00"
    assert first.expires_at is not None and first.expires_at.isoformat() == stamp
    assert first.id == hashlib.sha256(f"llm_tokens|5|{stamp}".encode()).hexdigest()[:12]
    assert second.id == hashlib.sha256(f"llm_tokens|6|{stamp}".encode()).hexdigest()[:12]
    assert third.expires_at is None
    assert third.id == hashlib.sha256(b"llm_tokens|7|").hexdigest()[:12]


def test_routes_normalise_method_and_headers() -> None:
    body = (
        "routes:\n"
        "  - match: {method: post, path_regex: '/v1/[a-z]+'}\n"
        "    meters: [{feature: llm_tokens, cost_header: X-Token-Count}]\n"
        "  - match: {method: '*', path_prefix: /}\n"
    )
    first, second = _load(body).policy.routes
    assert first.match.method == "POST" and first.meters[0].cost_header == "x-token-count"
    assert second.match.method is None


def test_config_feature_default_header_and_scalar_values() -> None:
    body = "plans:\n  p:\n    entitlements: {model_tier: 2.50}\n"
    policy = _load(body).policy
    assert policy.features["model_tier"].header == "x-gatekeeper-model-tier"
    assert policy.plans["p"].config_values["model_tier"] == "2.50"  # raw text, not 2.5


def test_numeric_ids_keep_their_text() -> None:
    body = "plans:\n  basic: {}\ncustomers:\n  0042: {plan: basic}\n"
    assert list(_load(body).policy.customers) == ["0042"]


def test_errors_are_not_cascaded_from_a_broken_feature() -> None:
    text = HEAD.replace("{type: metered, unit: token}", "{type: meterd}") + (
        "prices:\n  llm_tokens: {unit_price: 1}\n"
        "plans:\n  p:\n    entitlements: {llm_tokens: {limit: 5}}\n"
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, env={})
    assert [i.path for i in caught.value.issues] == ["features.llm_tokens.type"]


def test_environment_is_never_read_implicitly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEKEEPER_SERVER_GRPC_PORT", "not-a-port")
    assert parse_config(HEAD).settings.server.grpc_port == 9191
