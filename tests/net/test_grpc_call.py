"""Inflating compressed gRPC request messages within a bound."""

from __future__ import annotations

import gzip
import zlib

import pytest

from gatekeeper.net.grpc_call import InflatedTooLarge, decompress


def test_gzip_and_deflate_messages_inflate() -> None:
    assert decompress(gzip.compress(b"hello" * 100), "gzip", 500) == b"hello" * 100
    assert decompress(zlib.compress(b"x" * 10), "deflate", 10) == b"x" * 10


def test_a_bomb_stops_at_the_limit() -> None:
    bomb = gzip.compress(b"\0" * (64 << 20))  # 64 MiB in ~64 KB
    with pytest.raises(InflatedTooLarge):
        decompress(bomb, "gzip", 1 << 20)


@pytest.mark.parametrize(
    ("payload", "encoding"),
    [(gzip.compress(b"abc" * 1000)[:-12], "gzip"), (b"not gzip", "gzip"), (b"x", "snappy")],
)
def test_truncated_corrupt_or_unknown_is_an_error(payload: bytes, encoding: str) -> None:
    with pytest.raises((ValueError, zlib.error)):
        decompress(payload, encoding, 1 << 20)
