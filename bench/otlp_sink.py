"""An OTLP/HTTP sink for benches: accepts `POST /v1/traces`, counts, discards.

    python bench/otlp_sink.py --port PORT

`GET /count` answers `<requests> <bytes>` received so far. Prints `ready` once listening.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_MAX_BODY = 64 * 1024 * 1024


class _Sink(ThreadingHTTPServer):
    daemon_threads = True
    requests = 0
    bytes = 0


class _Handler(BaseHTTPRequestHandler):
    server: _Sink
    protocol_version = "HTTP/1.1"  # keep-alive, as a collector does

    def do_POST(self) -> None:
        length = min(int(self.headers.get("content-length") or 0), _MAX_BODY)
        self.rfile.read(length)
        self.server.requests += 1
        self.server.bytes += length
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        body = f"{self.server.requests} {self.server.bytes}".encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    server = _Sink(("127.0.0.1", args.port), _Handler)
    print("ready", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever(poll_interval=0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
