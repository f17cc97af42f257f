"""`gatekeeper envoy-config` flags: bad input is exit 2 naming the flag; options round-trip."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest

from gatekeeper.cli import main
from gatekeeper.envoyconfig.args import to_argv
from gatekeeper.envoyconfig.command import parse_options
from gatekeeper.envoyconfig.options import Address, EnvoyConfigOptions, Mode, RouteFeature


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--upstream", "nohost"], "--upstream"),
        (["--listen", "127.0.0.1:70000"], "--listen"),
        (["--grpc-port", "0"], "--grpc-port"),
        (["--authz-timeout", "fast"], "--authz-timeout"),
        (["--authz-timeout", "0s"], "--authz-timeout"),
        (["--rate-limit-timeout", "0.0005s"], "--rate-limit-timeout"),
        (["--route-feature", "/v1/images=chat:5"], "--mode grpc"),
        (["--mode", "grpc", "--route-feature", "images"], "--route-feature"),
        (["--plan-headers", "X Bad"], "header name"),
        (["--rate-limit", "--rate-limit-descriptors", "client"], "--rate-limit-descriptors"),
        (["--rate-limit", "--rate-limit-descriptors", ""], "--rate-limit-descriptor"),
        (["--sidecar", "--admin", "none"], "--sidecar"),
        (["--no-ext-authz", "--no-settlement"], "nothing for gatekeeper to do"),
        (["--unmetered", "healthz"], "healthz"),
        (["--otel-collector", "collector"], "--otel-collector"),
    ],
)
def test_bad_input_is_exit_2_naming_it(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["envoy-config", *argv], env={}) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err


def test_unknown_mode_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["envoy-config", "--mode", "thrift"], env={}) == 2
    assert "--mode" in capsys.readouterr().err


def test_unwritable_out_is_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["envoy-config", "--out", "/nonexistent/dir/envoy.yaml"], env={}) == 1
    assert "/nonexistent/dir/envoy.yaml" in capsys.readouterr().err


def test_help_lists_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["envoy-config", "--help"], env={}) == 0
    out = capsys.readouterr().out
    for flag in ("--mode", "--upstream", "--gatekeeper", "--listen", "--admin", "--settlement",
                 "--rate-limit", "--rate-limit-domain", "--failure-mode-allow", "--authz-timeout",
                 "--rate-limit-timeout", "--otel-collector", "--sidecar", "--out"):  # fmt: skip
        assert flag in out


def test_defaults_are_the_shipped_front_proxy() -> None:
    assert parse_options([]) == EnvoyConfigOptions()
    assert parse_options(["--sidecar"]).listen == Address("0.0.0.0", 10000)


@pytest.mark.parametrize(
    "options",
    [
        EnvoyConfigOptions(),
        EnvoyConfigOptions(
            mode=Mode.GRPC,
            listen=Address("::1", 0),
            admin=None,
            upstream=Address("api.internal", 443),
            gatekeeper_host="gatekeeper.svc",
            grpc_port=19191,
            authz_timeout=timedelta(milliseconds=1500),
            failure_mode_allow=True,
            route_features=(RouteFeature("/a", "f", 3), RouteFeature("/b", "g")),
            settlement=False,
            rate_limit=True,
            rate_limit_domain="api",
            rate_limit_descriptors=(("customer", "x-gatekeeper-customer"), ("p", "x-plan")),
            rate_limit_timeout=timedelta(seconds=1),
            plan_headers=(),
            unmetered_prefixes=("/healthz", "/status"),
            otel_collector=Address("10.0.0.5", 4318),
        ),
        EnvoyConfigOptions(ext_authz=False, settlement=False, rate_limit=True),
        EnvoyConfigOptions(
            sidecar=True,
            listen=Address("0.0.0.0", 8080),
            authz_http_port=9000,
            authz_request_headers=("x-token-count", "x-customer"),
        ),
    ],
)
def test_to_argv_gives_the_options_back(options: EnvoyConfigOptions) -> None:
    assert parse_options(to_argv(options)) == options


def test_stdout_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["envoy-config", "--mode", "grpc"], env={}) == 0
    assert "static_resources:" in capsys.readouterr().out


def test_serve_and_the_worker_never_import_envoy_data_plane() -> None:
    code = (
        "import sys, gatekeeper.cli, gatekeeper.serve, gatekeeper.app, gatekeeper.envoyconfig\n"
        "heavy = ('envoy_data_plane', 'betterproto2')\n"
        "print([m for m in sys.modules if m.split('.')[0] in heavy])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
