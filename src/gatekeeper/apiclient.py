"""`gatekeeper keys ...` and `gatekeeper usage CUSTOMER`: an operator's daily tasks, done
through the same HTTP API as everything else (so access control and audit apply).

API base: `--api` or GATEKEEPER_API_URL (default http://127.0.0.1:8080). Token: `--token` or
GATEKEEPER_API_TOKEN, else GATEKEEPER_ADMIN_TOKEN. Exit 0 ok; 2 when the API refuses the input
or the token (4xx, its problem detail printed); 1 when it cannot be reached or fails (5xx).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gatekeeper.money import format_money, parse_nano

__all__ = ["KEYS", "USAGE", "ApiClient", "ApiError"]

DEFAULT_API = "http://127.0.0.1:8080"
EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


class ApiError(Exception):
    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True, slots=True)
class ApiClient:
    base: str
    token: str | None
    timeout_s: float = 10.0

    def call(self, method: str, path: str, body: object = None) -> Any:
        """The decoded JSON answer (None for 204). Raises ApiError."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base.rstrip("/") + path, data=data, method=method)
        request.add_header("accept", "application/json")
        if data is not None:
            request.add_header("content-type", "application/json")
        if self.token:
            request.add_header("authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            with contextlib.suppress(json.JSONDecodeError, AttributeError):
                detail = json.loads(detail).get("detail", detail)
            code = EXIT_BAD_INPUT if 400 <= exc.code < 500 else EXIT_FAILURE
            raise ApiError(code, f"{method} {path}: {exc.code} {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiError(EXIT_FAILURE, f"cannot reach the API at {self.base}: {reason}") from None
        return json.loads(raw) if raw else None


def _client(args: argparse.Namespace, env: Mapping[str, str]) -> ApiClient:
    token = args.token or env.get("GATEKEEPER_API_TOKEN") or env.get("GATEKEEPER_ADMIN_TOKEN")
    return ApiClient(args.api or env.get("GATEKEEPER_API_URL") or DEFAULT_API, token)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api", help=f"API base URL (default $GATEKEEPER_API_URL or {DEFAULT_API})"
    )
    parser.add_argument(
        "--token", help="bearer token (default $GATEKEEPER_API_TOKEN, else $GATEKEEPER_ADMIN_TOKEN)"
    )
    parser.add_argument("--json", action="store_true", help="print the API's JSON answer")


def _keys_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="create an API key (printed once)")
    create.add_argument("customer")
    create.add_argument("--id", help="key id (default: generated)")
    revoke = actions.add_parser("revoke", help="revoke an API key")
    revoke.add_argument("customer")
    revoke.add_argument("key_id")
    listing = actions.add_parser("list", help="list a customer's API keys (never the keys)")
    listing.add_argument("customer")
    for sub in (create, revoke, listing):
        _common(sub)


def _path(customer: str) -> str:
    return "/v1/customers/" + urllib.parse.quote(customer, safe="")


def run_keys(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    client = _client(args, env)
    try:
        if args.action == "create":
            body = {} if args.id is None else {"id": args.id}
            answer = client.call("POST", _path(args.customer) + "/api-keys", body)
            lines = [
                f"key {answer['id']} for {args.customer}: {answer['key']}",
                "(shown once: gatekeeper stores only its SHA-256)",
            ]
        elif args.action == "revoke":
            quoted = urllib.parse.quote(args.key_id, safe="")
            answer = client.call("DELETE", _path(args.customer) + f"/api-keys/{quoted}")
            lines = [f"key {answer['id']} of {args.customer} revoked"]
        else:
            answer = client.call("GET", _path(args.customer) + "/api-keys")
            lines = [
                f"{k['id']:<24} {k.get('label') or '':<12} "
                f"{'revoked' if k['revoked'] else 'active':<8} {k.get('created_at') or '-'}"
                for k in answer["api_keys"]
            ] or [f"{args.customer} has no API keys"]
    except ApiError as exc:
        print(f"gatekeeper keys: {exc}", file=sys.stderr)
        return exc.exit_code
    print(json.dumps(answer, indent=2) if args.json else "\n".join(lines))
    return EXIT_OK


def _usage_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("customer")
    _common(parser)


def format_usage(usage: Mapping[str, Any]) -> str:
    """A table of the usage view: feature, used / limit, remaining, reset; then spend."""
    lines = [f"{usage['customer']} (plan {usage['plan']}) at {usage['at']}"]
    for f in usage["features"]:
        limit = "unlimited" if f["limit"] is None else f"{f['limit']:,}"
        remaining = "-" if f["remaining"] is None else f"{f['remaining']:,}"
        unit = f" {f['unit']}" if f.get("unit") else ""
        lines.append(
            f"  {f['feature']:<18} {f['kind']:<5} {f['used']:>12,} / {limit:<12}{unit:<9} "
            f"remaining {remaining:<12} resets {f['reset']}"
        )
    spend = usage.get("spend")
    if spend:
        currency = spend.get("currency") or usage.get("currency") or "USD"

        def money(amount: str | None, none: str) -> str:
            return none if amount is None else format_money(parse_nano(amount), currency)

        cap = money(spend["cap"], "no cap")
        lines.append(
            f"  {'spend':<18} {'':<5} {money(spend['spent'], '-'):>12} / {cap:<21} "
            f"remaining {money(spend['remaining'], '-'):<12} resets {spend['reset']}"
        )
    return "\n".join(lines)


def run_usage(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    try:
        usage = _client(args, env).call("GET", _path(args.customer) + "/usage")
    except ApiError as exc:
        print(f"gatekeeper usage: {exc}", file=sys.stderr)
        return exc.exit_code
    print(json.dumps(usage, indent=2) if args.json else format_usage(usage))
    return EXIT_OK


KEYS = ("keys", "create, revoke or list a customer's API keys (via the API)", _keys_arguments,
        run_keys)  # fmt: skip
USAGE = ("usage", "a customer's live usage vs limits and spend vs cap (via the API)",
         _usage_arguments, run_usage)  # fmt: skip
