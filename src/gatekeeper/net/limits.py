"""What one client may make a server hold or do: the limits every gatekeeper server obeys
(the HTTP/1.1 ext_authz port, the gRPC port), read from the policy file's `settings.net`
section and `GATEKEEPER_NET_<FIELD>` (docs/configuration.md, docs/hostile-clients.md).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["NetLimits"]


@dataclass(frozen=True, slots=True)
class NetLimits:
    # bytes of one request's header section (HTTP/1.1 request line and fields; HTTP/2
    # HEADERS + CONTINUATION block), checked as they arrive: HTTP/1.1 431, HTTP/2 GOAWAY
    max_header_bytes: int = 65_536
    # header fields of one request: HTTP/1.1 431, HTTP/2 the stream is answered 431
    max_header_count: int = 256
    # bytes of one request body (HTTP/1.1: 413) or one gRPC request message on the wire
    # (RESOURCE_EXHAUSTED)
    max_body_bytes: int = 4_194_304
    # bytes one compressed gRPC request message may inflate to (RESOURCE_EXHAUSTED past it)
    max_decompressed_bytes: int = 4_194_304
    # open HTTP/2 streams per connection (SETTINGS_MAX_CONCURRENT_STREAMS; more are refused)
    max_concurrent_streams: int = 1_024
    # HTTP/1.1 requests received and not yet answered per connection; past it the socket is
    # not read until answers leave
    max_pipelined_requests: int = 128
    # request bytes one connection holds before its handlers consume them (the HTTP/2
    # connection receive window); answer bytes past the socket's buffer pause reading
    max_buffered_bytes: int = 16_777_216
    # HTTP/2 streams a client may end early per second on one connection: its RST_STREAMs
    # and the streams refused past max_concurrent_streams (GOAWAY ENHANCE_YOUR_CALM past it:
    # rapid reset, CVE-2023-44487)
    max_resets_per_s: int = 200
    # PING frames per second per connection (GOAWAY ENHANCE_YOUR_CALM past it)
    max_pings_per_s: int = 50
    # SETTINGS frames per second per connection (GOAWAY ENHANCE_YOUR_CALM past it)
    max_settings_per_s: int = 50
    # a connection that sends nothing for this long is closed when nothing is in progress on
    # it (no request being answered) or when it does not read its answers either
    idle_timeout_s: int = 300
    # a request's header section (and HTTP/2's connection preface) must arrive within this
    # (slowloris)
    header_timeout_s: int = 10
    # open connections per server (port); more are closed as they arrive
    max_connections: int = 10_000
