"""One bad policy file per failure kind (tests/config/bad/*.yaml), each naming what it must report.

Each fixture starts with lines `# expect: <path> | <substring of message> | <line or ->`.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest

from gatekeeper.config import ConfigError, ConfigIssue, load_config, parse_config

BAD = Path(__file__).parent / "bad"
_EXPECT = re.compile(r"# expect: (?P<path>.*?) \| (?P<text>.*?) \| (?P<line>\d+|-)\s*$")


def _expectations(path: Path) -> list[tuple[str, str, int | None]]:
    found = []
    for line in path.read_text().splitlines():
        match = _EXPECT.match(line)
        if match:
            number = None if match["line"] == "-" else int(match["line"])
            found.append((match["path"].strip(), match["text"], number))
    return found


def _issues(path: Path) -> tuple[ConfigIssue, ...]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert caught.value.source == str(path)
    return caught.value.issues


FIXTURES = sorted(BAD.glob("*.yaml"))


def test_there_is_a_fixture_per_failure_kind() -> None:
    assert len(FIXTURES) >= 23


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f.stem for f in FIXTURES])
def test_bad_fixture_reports_expected_issues(fixture: Path) -> None:
    expected = _expectations(fixture)
    assert expected, f"{fixture.name} has no '# expect:' lines"
    issues = _issues(fixture)
    for path, text, line in expected:
        hits = [i for i in issues if i.path == path and text in i.message and i.line == line]
        listing = "\n".join(str(i) for i in issues)
        assert hits, f"expected {path!r} | {text!r} | line {line} among:\n{listing}"
    # Nothing unexpected either: every issue is one the fixture announces.
    announced = {path for path, _, _ in expected}
    assert {i.path for i in issues} <= announced


def test_issue_and_error_formatting() -> None:
    fixture = BAD / "unknown_top_key.yaml"
    (issue,) = _issues(fixture)
    assert str(issue) == f"{fixture}:6: plan: unknown key 'plan'; did you mean 'plans'?"
    assert ConfigIssue("a.b", None, "bad").__str__() == "a.b: bad"
    error = ConfigError(
        [ConfigIssue("a", 1, "x", "f.yaml"), ConfigIssue("b", 2, "y", "f.yaml")], source="f.yaml"
    )
    assert str(error) == "f.yaml:1: a: x\nf.yaml:2: b: y"


MANY_ERRORS = """\
version: 1
currency: USD
features:
  api_access: {type: boolean}
  chat_requests: {type: metered, unit: request}
prices:
  chat_requests: {unit_price: "0.001", per: 3}
plans:
  pro:
    entitlements:
      chat_requests: {limit: 10, period: weekly, enforcment: soft}
    rate_limits:
      - {feature: api_access, limit: 0, per: second}
customers:
  acme:
    plan: pr
    billing_day: 0
routes:
  - match: {path_prefix: /v1}
    meters: [{feature: api_access, cost: 1}]
settings:
  server: {grpc_port: abc}
"""


def test_several_errors_are_all_reported_in_line_order() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(MANY_ERRORS, source="many.yaml", env={"GATEKEEPER_REDIS_PARTITIONS": "0"})
    got = [(i.path, i.line) for i in caught.value.issues]
    assert got == [
        ("prices.chat_requests.unit_price", 7),
        ("plans.pro.entitlements.chat_requests.enforcment", 11),
        ("plans.pro.entitlements.chat_requests.period", 11),
        ("plans.pro.rate_limits[0].limit", 13),
        ("customers.acme.plan", 16),
        ("customers.acme.billing_day", 17),
        ("routes[0].meters[0].feature", 20),
        ("settings.server.grpc_port", 22),
        ("GATEKEEPER_REDIS_PARTITIONS", None),
    ]
    text = str(caught.value)
    assert "did you mean 'enforcement'?" in text and "did you mean 'pro'?" in text
    assert text.splitlines()[-1].startswith("environment: GATEKEEPER_REDIS_PARTITIONS: ")


def test_missing_file() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(BAD / "no-such-file.yaml", env={})
    (issue,) = caught.value.issues
    assert "cannot read file" in issue.message and issue.line is None


def test_config_error_pickles() -> None:
    error = ConfigError([ConfigIssue("a", 1, "x", "f.yaml")], source="f.yaml")
    copy = pickle.loads(pickle.dumps(error))
    assert copy.issues == error.issues and copy.source == "f.yaml" and str(copy) == str(error)
