"""Loading envoyproxy/ratelimit YAML: good files, directories, and one bad fixture per failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatekeeper.config.errors import ConfigError
from gatekeeper.ratelimit import (
    ENV_VAR,
    RateLimit,
    RateLimitConfig,
    Unit,
    config_files,
    load_ratelimit_config,
    parse_ratelimit_documents,
    ratelimit_config_path,
)

from .conftest import BAD, CONFIGS


def test_messaging_fixture_loads_into_frozen_tree(messaging: RateLimitConfig) -> None:
    (domain,) = messaging.domains
    assert domain.domain == "messaging"
    assert domain.sources == (str(CONFIGS / "messaging.yaml"),)
    first = domain.descriptors[0]
    assert (first.key, first.value) == ("from_number", "")
    assert first.rate_limit == RateLimit(4, Unit.MINUTE)
    child = first.descriptors[0]
    assert (child.key, child.rate_limit) == ("to_number", RateLimit(2, Unit.HOUR))
    assert domain.descriptors[1].value == "+15550100"
    by_value = {d.value: d for d in domain.descriptors if d.key == "path"}
    assert by_value["/v1/images/*"].is_wildcard
    assert by_value["/health"].rate_limit == RateLimit(0, None, unlimited=True)
    with pytest.raises(AttributeError):
        first.key = "other"  # type: ignore[misc]


def test_flags_names_and_replaces(messaging: RateLimitConfig) -> None:
    d = {(x.key, x.value): x for x in messaging.domains[0].descriptors}
    assert d[("tenant", "beta")].rate_limit == RateLimit(1, Unit.MINUTE, shadow_mode=True)
    assert d[("plan", "free")].rate_limit == RateLimit(5, Unit.HOUR, name="free_plan")
    assert d[("account", "partner")].rate_limit.replaces == ("free_plan",)  # type: ignore[union-attr]
    vip = d[("account", "vip")].rate_limit
    assert vip is not None and vip.unlimited and vip.replaces == ("free_plan",)
    assert d[("client", "")].rate_limit.detailed_metric  # type: ignore[union-attr]
    assert d[("region", "")].value_to_metric
    assert d[("bucket", "files*")].share_threshold
    assert d[("quota", "")].rate_limit.quota_mode  # type: ignore[union-attr]
    assert d[("export", "weekly")].rate_limit == RateLimit(7, Unit.WEEK)  # `unit: WEEK`


def test_directory_loads_every_yaml_file_recursively_skipping_hidden() -> None:
    files = config_files(CONFIGS / "dir")
    assert [f.relative_to(CONFIGS / "dir").as_posix() for f in files] == [
        "nested/billing.yml",
        "search.yaml",
    ]  # not README.txt, .hidden.yaml, nor the ..data copy a ConfigMap mount has
    config = load_ratelimit_config(CONFIGS / "dir")
    assert sorted(d.domain for d in config.domains) == ["billing", "search"]
    billing = config.domain("billing")
    assert billing is not None
    assert billing.descriptors[0].rate_limit == RateLimit(1_000_000, Unit.MONTH)


@pytest.mark.parametrize(
    ("unit", "seconds"),
    [
        (Unit.SECOND, 1),
        (Unit.MINUTE, 60),
        (Unit.HOUR, 3600),
        (Unit.DAY, 86_400),
        (Unit.WEEK, 604_800),
        (Unit.MONTH, 2_592_000),  # 30 days, as upstream's UnitToDivider
        (Unit.YEAR, 31_536_000),  # 365 days
    ],
)
def test_unit_lengths_match_upstream(unit: Unit, seconds: int) -> None:
    assert unit.seconds == seconds


def test_scalar_values_keep_their_source_text() -> None:
    text = """
domain: 42
descriptors:
  - key: status
    value: 200
    rate_limit: {unit: second, requests_per_unit: 1}
  - key: flag
    value: true
    rate_limit: {unit: second, requests_per_unit: 1}
"""
    config = parse_ratelimit_documents([("inline.yaml", text)])
    domain = config.domain("42")
    assert domain is not None
    assert [d.value for d in domain.descriptors] == ["200", "true"]


# (fixture, line, YAML path, message fragment): one per failure kind.
BAD_CASES = [
    ("yaml_syntax.yaml", 5, "", "YAML syntax error"),
    ("not_a_mapping.yaml", 1, "", "mapping with 'domain'"),
    ("empty_file.yaml", None, "domain", "cannot have empty domain"),
    ("empty_domain.yaml", 1, "domain", "cannot have empty domain"),
    ("empty_key.yaml", 3, "descriptors[0].key", "descriptor has empty key"),
    (
        "duplicate_key.yaml",
        8,
        "descriptors[0].descriptors[1]",
        "duplicate descriptor composite key 'd.a.b_x' (first at line 5)",
    ),
    ("duplicate_mapping_key.yaml", 4, "descriptors[0].key", "duplicate key 'key'"),
    (
        "unknown_key.yaml",
        4,
        "descriptors[0].rate_limit.requests_per_unt",
        "did you mean 'requests_per_unit'",
    ),
    ("bad_unit.yaml", 4, "descriptors[0].rate_limit.unit", "invalid rate limit unit 'minutes'"),
    ("missing_unit.yaml", 4, "descriptors[0].rate_limit.unit", "invalid rate limit unit ''"),
    (
        "unlimited_with_unit.yaml",
        4,
        "descriptors[0].rate_limit.unit",
        "should not specify rate limit unit when unlimited",
    ),
    (
        "replaces_empty.yaml",
        8,
        "descriptors[0].rate_limit.replaces[0]",
        "should not have an empty replaces entry",
    ),
    (
        "replaces_self.yaml",
        9,
        "descriptors[0].rate_limit.replaces[0]",
        "replaces should not contain name of same descriptor",
    ),
    (
        "share_threshold_without_wildcard.yaml",
        3,
        "descriptors[0].share_threshold",
        "only be used with wildcard values",
    ),
    ("non_map_list.yaml", 3, "descriptors[0]", "must be a mapping"),
    ("descriptors_not_list.yaml", 2, "descriptors", "must be a list of descriptors"),
    (
        "bad_requests_per_unit.yaml",
        4,
        "descriptors[0].rate_limit.requests_per_unit",
        "must be an integer from 0 to 4294967295",
    ),
    ("bad_flag.yaml", 4, "descriptors[0].shadow_mode", "must be true or false"),
    ("bad_metadata.yaml", 4, "descriptors[0].metadata", "must be a mapping"),
]


@pytest.mark.parametrize(("name", "line", "path", "fragment"), BAD_CASES, ids=lambda x: str(x))
def test_each_bad_fixture_fails_with_file_line_path_and_reason(
    name: str, line: int | None, path: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_ratelimit_config(BAD / name)
    (issue,) = caught.value.issues
    assert issue.source == str(BAD / name)
    assert (issue.line, issue.path) == (line, path)
    assert fragment in issue.message


def test_every_bad_fixture_is_covered() -> None:
    files = {p.name for p in BAD.iterdir() if p.is_file()} - {"many_errors.yaml"}
    assert files == {case[0] for case in BAD_CASES}


def test_all_errors_are_reported_not_just_the_first() -> None:
    with pytest.raises(ConfigError) as caught:
        load_ratelimit_config(BAD / "many_errors.yaml")
    assert [(i.line, i.path) for i in caught.value.issues] == [
        (4, "descriptors[0].rate_limit.unit"),
        (4, "descriptors[0].rate_limit.requests_per_unit"),
        (5, "descriptors[1].key"),
        (7, "descriptors[2].colour"),
    ]
    assert str(BAD / "many_errors.yaml") + ":4: descriptors[0]" in str(caught.value)


def test_errors_of_several_files_are_all_reported_file_by_file(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("domain: a\ndescriptors:\n  - key: ''\n")
    (tmp_path / "b.yaml").write_text("domain: b\ndescriptors:\n  - key: x\n    rate_limit: 1\n")
    with pytest.raises(ConfigError) as caught:
        load_ratelimit_config(tmp_path)
    assert [(Path(str(i.source)).name, i.line) for i in caught.value.issues] == [
        ("a.yaml", 3),
        ("b.yaml", 4),
    ]


def test_duplicate_domain_across_files_names_both() -> None:
    with pytest.raises(ConfigError) as caught:
        load_ratelimit_config(BAD / "duplicate_domain")
    (issue,) = caught.value.issues
    assert issue.source == str(BAD / "duplicate_domain" / "b.yaml")
    assert issue.path == "domain"
    assert "duplicate domain 'shared'" in issue.message
    assert str(BAD / "duplicate_domain" / "a.yaml") in issue.message


def test_merge_domains_merges_but_still_rejects_a_repeated_key() -> None:
    with pytest.raises(ConfigError) as caught:
        load_ratelimit_config(BAD / "duplicate_domain", merge_domains=True)
    (issue,) = caught.value.issues
    assert "duplicate descriptor composite key 'shared.a'" in issue.message
    merged = parse_ratelimit_documents(
        [
            ("one.yaml", "domain: s\ndescriptors:\n  - {key: a, rate_limit: {unlimited: true}}\n"),
            ("two.yaml", "domain: s\ndescriptors:\n  - {key: b, rate_limit: {unlimited: true}}\n"),
        ],
        merge_domains=True,
    )
    (domain,) = merged.domains
    assert [d.key for d in domain.descriptors] == ["a", "b"]
    assert domain.sources == ("one.yaml", "two.yaml")


def test_missing_path_and_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_ratelimit_config(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match=r"no \*\.yaml"):
        load_ratelimit_config(tmp_path)


def test_config_path_from_environment_wins_over_settings() -> None:
    assert ratelimit_config_path({ENV_VAR: "/etc/rl"}, "/from/settings") == "/etc/rl"
    assert ratelimit_config_path({ENV_VAR: ""}, "/from/settings") == "/from/settings"
    assert ratelimit_config_path({}) is None
