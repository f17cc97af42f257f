"""A sample upstream that behaves like a small LLM API (OpenAI-style shapes), for the demo.

- POST /v1/chat/completions: a fake completion after a latency that grows with its length; the
  tokens used are in the body's `usage` and in `x-usage-total-tokens` (plus prompt/completion
  headers) — the header the demo policy settles the reserved tokens from.
- POST /v1/embeddings: a small fake vector per input; tokens in `usage` and the same headers.
- GET /v1/models, GET /healthz.
Tokens are estimated as ~4 characters each, as tokenizers roughly do for English.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from typing import Any

from aiohttp import web

__all__ = ["MODELS", "LlmUpstream", "estimate_tokens", "serve_app"]

MODELS = ("demo-small", "demo-large")
_WORDS = (
    "gatekeeper", "meters", "every", "token", "exactly", "once", "while", "Envoy", "forwards",
    "the", "request", "and", "customers", "see", "usage", "against", "limits", "in", "real", "time",
)  # fmt: skip


def estimate_tokens(text: str) -> int:
    """~4 characters per token, at least 1 for non-empty text."""
    return max(1, (len(text) + 3) // 4) if text else 0


async def serve_app(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve `app` on host:port (0 = any free port); returns the runner and the bound port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]


def _text_of(messages: Any) -> str:
    if not isinstance(messages, list):
        return ""
    parts = [m.get("content", "") for m in messages if isinstance(m, dict)]
    return " ".join(p for p in parts if isinstance(p, str))


class LlmUpstream:
    """The demo's upstream server. `latency_per_token_s` simulates generation speed."""

    def __init__(
        self, *, rng: random.Random | None = None, latency_per_token_s: float = 0.0002
    ) -> None:
        self._rng = rng or random.Random()
        self._latency_per_token_s = latency_per_token_s
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.hits: Counter[str] = Counter()
        self.tokens = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/embeddings", self.embeddings)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/healthz", self.healthz)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> LlmUpstream:
        self._runner, self.port = await serve_app(self.app(), host, port)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @staticmethod
    async def _json(request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise web.HTTPBadRequest(text='{"error": "body must be JSON"}') from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text='{"error": "body must be a JSON object"}')
        return body

    def _usage_headers(self, prompt: int, completion: int) -> dict[str, str]:
        self.tokens += prompt + completion
        return {
            "x-usage-prompt-tokens": str(prompt),
            "x-usage-completion-tokens": str(completion),
            "x-usage-total-tokens": str(prompt + completion),
        }

    async def chat(self, request: web.Request) -> web.Response:
        self.hits["chat"] += 1
        body = await self._json(request)
        max_tokens = body.get("max_tokens", 256)
        if not isinstance(max_tokens, int) or max_tokens < 1:
            max_tokens = 256
        prompt = estimate_tokens(_text_of(body.get("messages")))
        completion = self._rng.randint(max(1, max_tokens // 4), max_tokens)
        await asyncio.sleep(0.02 + completion * self._latency_per_token_s)
        words = [self._rng.choice(_WORDS) for _ in range(max(1, completion * 3 // 4))]
        model = body.get("model") if body.get("model") in MODELS else MODELS[0]
        return web.json_response(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": " ".join(words) + "."},
                        "finish_reason": "length" if completion == max_tokens else "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                },
            },
            headers=self._usage_headers(prompt, completion),
        )

    async def embeddings(self, request: web.Request) -> web.Response:
        self.hits["embeddings"] += 1
        body = await self._json(request)
        inputs = body.get("input", "")
        texts = [inputs] if isinstance(inputs, str) else [str(x) for x in inputs or []]
        tokens = sum(estimate_tokens(t) for t in texts)
        await asyncio.sleep(0.005 + tokens * self._latency_per_token_s / 10)
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": [round(self._rng.uniform(-1, 1), 4) for _ in range(8)],
            }
            for i in range(len(texts))
        ]
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": "demo-embed",
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
            headers=self._usage_headers(tokens, 0),
        )

    async def models(self, request: web.Request) -> web.Response:
        self.hits["models"] += 1
        return web.json_response(
            {
                "object": "list",
                "data": [{"id": m, "object": "model", "owned_by": "demo"} for m in MODELS],
            }
        )

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})
