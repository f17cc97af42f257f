"""HTTP API on 8080 (aiohttp): `/v1` admin and customer API, its OpenAPI document at
`/v1/openapi.json`, health (`/healthz`, `/readyz`) and Prometheus `/metrics`.

Health and metrics live outside `/v1`: no token, not in the OpenAPI document. Every `/v1`
call but the document needs a bearer token (see `auth.py`); access per operation is in the
route table (`routes.py`). A customer token asking for another customer gets 404, never
the data. Before a handler runs, its path and query parameters and its JSON body are checked
against the published document (`schema_check.py`, bounds in `bodies.py`). Errors are
problem+json: 401, 403, 404, 409, 413, 422 (naming each field), 503; anything else a handler
raises is a bug: logged with its traceback, counted, and answered 500 without details.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from importlib import metadata

from aiohttp import web
from redis.exceptions import RedisError

from gatekeeper.access import Role
from gatekeeper.admin import AdminError, Conflict, InputError, NotFound
from gatekeeper.admin.errors import FieldError
from gatekeeper.billing.protocol import BillingStoreError
from gatekeeper.errors import StoreUnavailable
from gatekeeper.http.auth import ACTOR, Authenticator, bearer
from gatekeeper.http.bodies import MAX_BODY_BYTES, read_body
from gatekeeper.http.handlers import Handlers
from gatekeeper.http.problems import invalid_fields, problem
from gatekeeper.http.routes import PATH_PARAMS, Access, Operation, openapi_document, operations
from gatekeeper.http.schema_check import SchemaChecker, coerce_param
from gatekeeper.http.schemas import ref
from gatekeeper.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

__all__ = ["build_api"]

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ACCESS_KEY = "gatekeeper.access"


def _version() -> str:
    try:
        return metadata.version("gatekeeper")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


def _forbidden(op_access: Access, request: web.Request) -> web.Response | None:
    """403/404 when the caller may not use this operation (before the handler runs)."""
    actor = request[ACTOR]
    customer = request.match_info.get("customer")
    if customer is not None and not actor.may_see(customer):
        return problem(404, "Not found", f"no customer {customer!r}")
    if op_access is Access.OPERATOR and not actor.operator:
        return problem(403, "Forbidden", "operators only")
    if op_access is Access.ADMIN and actor.role is not Role.ADMIN:
        return problem(403, "Forbidden", "admin operators only")
    if op_access is Access.MANAGE and actor.role is Role.READ:
        return problem(403, "Forbidden", "read-only tokens may not change anything")
    return None


async def _invalid_input(
    op: Operation, request: web.Request, checker: SchemaChecker
) -> list[FieldError]:
    """Every fault of the request's path, query and body against the operation's document
    (the body is read here, within its bounds, and handed to the handler parsed)."""
    errors: list[FieldError] = []
    for name, raw in request.match_info.items():
        schema = PATH_PARAMS.get(name)
        if schema is not None:
            errors += checker.errors(schema, raw, name)
    for param in op.query:
        text = request.query.get(param.name)
        if text is not None:
            errors += checker.errors(param.schema, coerce_param(param.schema, text), param.name)
    if op.body is not None:
        body = await read_body(request, required=op.body_required)
        errors += checker.errors(ref(op.body), body)
    return errors


def _guard(op: Operation, checker: SchemaChecker) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        refused = _forbidden(op.access, request)
        if refused is not None:
            return refused
        errors = await _invalid_input(op, request, checker)
        if errors:
            return invalid_fields(errors)
        return await op.handler(request)

    return handle


def build_api(
    *,
    handlers: Handlers,
    authenticator: Authenticator,
    ready: Callable[[], bool],
    metrics: Callable[[], str] | None = None,
    extra: Callable[[web.Application], None] | None = None,
    failures: dict[str, int] | None = None,
) -> web.Application:
    """The aiohttp application; `extra` adds routes (dashboard, streams) behind the same auth.
    `metrics` renders the Prometheus text served at `/metrics` (None: no such route).
    `failures` counts, by route, requests whose handler raised an unexpected exception."""
    ops = operations(handlers)
    document = openapi_document(ops, _version())
    checker = SchemaChecker(document["components"]["schemas"])
    for name, schema in document["components"]["schemas"].items():
        checker.check_supported(schema, f"#/components/schemas/{name}")
    for path_ops in document["paths"].values():
        for op_doc in path_ops.values():
            for param in op_doc["parameters"]:
                checker.check_supported(param["schema"])
    failed = {} if failures is None else failures

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except InputError as exc:
            return invalid_fields(exc.errors)
        except NotFound as exc:
            return problem(404, "Not found", str(exc))
        except Conflict as exc:
            return problem(409, "Conflict", str(exc))
        except PermissionError as exc:
            return problem(403, "Forbidden", str(exc))
        except AdminError as exc:  # pragma: no cover - every subclass is mapped above
            return problem(400, "Bad request", str(exc))
        except (StoreUnavailable, RedisError, BillingStoreError, OSError) as exc:
            log.error("%s %s: store unavailable: %r", request.method, request.path, exc)
            return problem(503, "Unavailable", "a store is unavailable; try again")
        except web.HTTPRequestEntityTooLarge:
            return problem(413, "Payload too large", f"a body is at most {MAX_BODY_BYTES} bytes")
        except web.HTTPException as exc:  # the router's 404 / 405 on the API: problem+json too
            if exc.status < 400 or not request.path.startswith("/v1/"):
                raise
            detail = f"{request.method} {request.path}: {exc.reason.lower()}"
            answer = problem(exc.status, exc.reason, detail)
            if "Allow" in exc.headers:
                answer.headers["Allow"] = exc.headers["Allow"]
            return answer
        except Exception:  # a bug: never the exception's text to the client
            route = request.match_info.route.resource
            path = route.canonical if route is not None else "(unrouted)"  # bounded labels
            name = f"{request.method} {path}"
            failed[name] = failed.get(name, 0) + 1
            log.exception("%s %s: unexpected error", request.method, request.path)
            return problem(500, "Internal error", "an unexpected error; it has been logged")

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/v1/") or request.path == "/v1/openapi.json":
            return await handler(request)
        secret = bearer(request)
        actor = None if secret is None else await authenticator.actor(secret)
        if actor is None:
            return problem(
                401,
                "Unauthorized",
                "send a valid bearer token (operator token, customer token or API key)",
            )
        request[ACTOR] = actor
        return await handler(request)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        ok = ready()
        return web.json_response({"ready": ok}, status=200 if ok else 503)

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(document)

    async def scrape(request: web.Request) -> web.Response:
        assert metrics is not None
        return web.Response(text=metrics(), headers={"Content-Type": METRICS_CONTENT_TYPE})

    app = web.Application(middlewares=[errors, authenticate], client_max_size=MAX_BODY_BYTES)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if metrics is not None:
        app.router.add_get("/metrics", scrape)
    app.router.add_get("/v1/openapi.json", openapi)
    for op in ops:
        app.router.add_route(op.method, op.path, _guard(op, checker))
    if extra is not None:
        extra(app)
    return app
