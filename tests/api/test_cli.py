"""`gatekeeper keys create|revoke|list` and `gatekeeper usage` against a live API."""

from __future__ import annotations

import asyncio
import sys

from tests.api.conftest import ADMIN, Api, key_of
from tests.api.test_admin import authz


async def gk(api: Api, *argv: str, token: str | None = ADMIN) -> tuple[int, str, str]:
    env = {"GATEKEEPER_API_URL": api.base, "PATH": ""}
    if token is not None:
        env["GATEKEEPER_API_TOKEN"] = token
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gatekeeper", *argv, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_keys_create_list_revoke(api: Api) -> None:
    code, out, err = await gk(api, "keys", "create", "busy", "--id", "cli-key")
    assert code == 0, err
    key = out.split(": ", 1)[1].split()[0]
    assert key.startswith("gk_") and "shown once" in out
    assert await authz(api.app, key) == 200
    code, out, _ = await gk(api, "keys", "list", "busy")
    assert code == 0 and "cli-key" in out and "active" in out and key not in out
    code, out, _ = await gk(api, "keys", "revoke", "busy", "cli-key")
    assert code == 0 and "revoked" in out
    assert await authz(api.app, key) == 401


async def test_usage_table_and_errors(api: Api) -> None:
    await authz(api.app, key_of("hobbyist"))
    code, out, err = await gk(api, "usage", "hobbyist", token=key_of("hobbyist"))
    assert code == 0, err
    line = next(x for x in out.splitlines() if "chat_requests" in x and "quota" in x)
    assert "1 / 5" in line and "remaining 4" in line
    code, _, err = await gk(api, "usage", "busy", token=key_of("hobbyist"))
    assert code == 2 and "404" in err
    code, _, err = await gk(api, "usage", "hobbyist", token="wrong")
    assert code == 2 and "401" in err
    api_down = Api(api.app, api.session, "http://127.0.0.1:1")
    code, _, err = await gk(api_down, "usage", "hobbyist")
    assert code == 1 and "cannot reach" in err
