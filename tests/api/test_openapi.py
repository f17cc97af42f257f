"""The OpenAPI document: valid OpenAPI 3.1, in step with the routes, and a property-based run
of schemathesis against the live API finds no server error and no answer outside the document."""

from __future__ import annotations

import asyncio
import re
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


# Every check but positive_data_acceptance: the policy-shaped objects (a plan's entitlements, a
# customer's overrides and grants) are free-form in the document and checked by check-config's
# parser, so a schema-valid plan naming an unknown feature is rightly a 422.
CHECKS = ("all",)
EXCLUDED = ("positive_data_acceptance",)


async def _schemathesis(
    api: Api, token: str, workdir: Path, examples: int, customer: str | None = None
) -> tuple[int, str]:
    """One run, valid and invalid data alike (`--mode all`: positive and negative)."""
    workdir.mkdir(parents=True, exist_ok=True)
    if customer is not None:  # a customer's key reaches only its own customer's paths
        (workdir / "schemathesis.toml").write_text(
            f'[parameters]\n"path.customer" = "{customer}"\n'
        )
    cli = Path(sys.executable).with_name("schemathesis")
    proc = await asyncio.create_subprocess_exec(
        str(cli), "run", f"{api.base}/v1/openapi.json",
        "--url", api.base,
        "-H", f"Authorization: Bearer {token}",
        "--mode", "all",
        "--checks", ",".join(CHECKS),
        "--exclude-checks", ",".join(EXCLUDED),
        "--max-examples", str(examples),
        "--seed", "20261124",
        "--request-timeout", "10",
        "--generation-database", "none",
        "--no-color",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=workdir,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=300)
    return proc.returncode or 0, out.decode(errors="replace")


async def test_schemathesis_finds_no_server_error(api: Api, tmp_path: Path) -> None:
    """Positive and negative data, as an operator and as a customer's own key: no 5xx, every
    answer in the document, every invalid request refused (4xx)."""
    runs = ((ADMIN, None), (key_of("hobbyist"), "hobbyist"))
    for i, (token, customer) in enumerate(runs):
        code, out = await _schemathesis(api, token, tmp_path / str(i), 30, customer)
        assert code == 0, out[-6000:]
        cases = re.search(r"(\d+) generated, (\d+) passed", out)
        assert cases is not None and int(cases[2]) > 100, out[-3000:]
        assert "Server error" not in out, out[-3000:]
