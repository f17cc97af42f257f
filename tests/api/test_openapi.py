"""The OpenAPI document: valid OpenAPI 3.1, in step with the routes, and a property-based run
of schemathesis against the live API finds no server error and no answer outside the document."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from openapi_spec_validator import validate

from tests.api.conftest import ADMIN, Api, key_of


async def test_document_is_valid_and_matches_the_routes(api: Api) -> None:
    status, document = await api.call("GET", "/v1/openapi.json", token=None)
    assert status == 200
    validate(document)
    documented = {
        (method.upper(), path) for path, ops in document["paths"].items() for method in ops
    }
    app = api.app.http_runner.app  # type: ignore[union-attr]
    served = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/v1/")
        and route.method != "HEAD"
        and route.resource.canonical != "/v1/openapi.json"
        and not route.resource.canonical.endswith("/stream")
    }
    assert documented == served
    for path, ops in document["paths"].items():
        for op in ops.values():
            names = {p["name"] for p in op["parameters"] if p["in"] == "path"}
            assert names == {part[1:-1] for part in path.split("/") if part.startswith("{")}


async def test_unknown_api_paths_and_methods_answer_problem_json(api: Api) -> None:
    async with api.session.get(
        api.base + "/v1/no-such-thing", headers={"authorization": f"Bearer {ADMIN}"}
    ) as r:
        assert r.status == 404 and r.content_type == "application/problem+json"
        body = await r.json(content_type=None)
        assert body["status"] == 404 and "/v1/no-such-thing" in body["detail"]
    async with api.session.delete(
        api.base + "/v1/openapi.json", headers={"authorization": f"Bearer {ADMIN}"}
    ) as r:
        assert r.status == 405 and r.content_type == "application/problem+json"
        assert "GET" in r.headers["Allow"]
    async with api.session.get(api.base + "/v1/no-such-thing") as r:
        assert r.status == 401  # without a token nothing tells which paths exist


async def _schemathesis(api: Api, token: str, tmp_path: Path, examples: int) -> tuple[int, str]:
    cli = Path(sys.executable).with_name("schemathesis")
    proc = await asyncio.create_subprocess_exec(
        str(cli), "run", f"{api.base}/v1/openapi.json",
        "--url", api.base,
        "-H", f"Authorization: Bearer {token}",
        "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                    "response_schema_conformance",
        "--max-examples", str(examples),
        "--seed", "20261124",
        "--request-timeout", "10",
        "--generation-database", "none",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=300)
    return proc.returncode or 0, out.decode(errors="replace")


async def test_schemathesis_finds_no_server_error(api: Api, tmp_path: Path) -> None:
    for token in (ADMIN, key_of("hobbyist")):
        code, out = await _schemathesis(api, token, tmp_path, examples=25)
        assert code == 0, out[-6000:]
        assert "passed" in out and "0 passed" not in out, out[-3000:]
