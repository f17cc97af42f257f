"""HTTP/2 wire pieces: the blocks we encode decode as meant; the caching decoder decodes every
sequence of blocks exactly as a plain HPACK decoder does."""

from __future__ import annotations

import urllib.parse

import hpack
from hpack import NeverIndexedHeaderTuple
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.net.h2.wire import HeaderDecoder, grpc_message_encode, response_headers, trailers

names = st.sampled_from(["x-request-id", "grpc-timeout", "te", "x-b", "user-agent", "x-c-bin"])
values = st.text(alphabet="abc0123456789-", max_size=12)
header_lists = st.lists(st.tuples(names, values, st.booleans()), max_size=6)
# three blocks Envoy 1.40 sent for three ext_authz Checks (:path as a literal never indexed)
ENVOY_BLOCKS = [
    bytes.fromhex(
        "83049f60b5773fa5d05b3b98855c76a675fbb2bc36a673d86f63498f5317a7293aff418798692f5296b2"
        "d98640027465864d833505b11f40899acac8b24d494f6a7f846c00053f5f8b1d75d0620d263d4c4d6564"
        "408cf2b16aee7f4b1aa496ca8747834d9697408bf2b4a7b3c0ec90b22d29ec870be25c0b89717f4096f2"
        "b16aee7f4b17cd65224b22d6765926a4a7b52b528f836c0007"
    ),
    bytes.fromhex(
        "83049f60b5773fa5d05b3b98855c76a675fbb2bc36a673d86f63498f5317a7293affc486c3c2c1c0bfbe"
    ),
    bytes.fromhex(
        "83049f60b5773fa5d05b3b98855c76a675fbb2bc36a673d86f63498f5317a7293affc486c3c2c1c0bfbe"
    ),
]


def test_envoys_repeated_block_is_decoded_once() -> None:
    plain, cached = hpack.Decoder(), HeaderDecoder(1 << 16)
    answers = [cached.decode(block) for block in ENVOY_BLOCKS]
    assert answers == [[(str(k), str(v)) for k, v in plain.decode(b)] for b in ENVOY_BLOCKS]
    assert answers[2] is answers[1]  # the cache answered
    assert (":path", "/envoy.service.auth.v3.Authorization/Check") in answers[2]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(header_lists, st.booleans()), min_size=1, max_size=30))
def test_the_cache_never_changes_what_a_block_decodes_to(
    sequence: list[tuple[list[tuple[str, str, bool]], bool]],
) -> None:
    """Repeated header lists (as Envoy sends) hit the cache; new values and table evictions
    in between must still decode exactly as hpack.Decoder does."""
    encoder = hpack.Encoder()
    encoder.header_table_size = 256  # small: evictions happen
    plain, cached = hpack.Decoder(), HeaderDecoder(1 << 16)
    fixed = [(":method", "POST"), (":path", "/envoy.service.auth.v3.Authorization/Check")]
    for extra, repeat in sequence:
        # some fields never indexed (as Envoy sends :path): blocks that leave the table alone
        fields = fixed + [NeverIndexedHeaderTuple(k, v) if n else (k, v) for k, v, n in extra]
        for _ in range(3 if repeat else 1):
            block = encoder.encode(fields)
            assert cached.decode(block) == [(str(k), str(v)) for k, v in plain.decode(block)]


@given(
    st.integers(min_value=0, max_value=16),
    st.text(max_size=40),
    st.lists(st.tuples(st.sampled_from(["x-a", "x-long-name-" + "n" * 140]), values), max_size=3),
)
def test_our_blocks_decode_with_a_standard_decoder(
    code: int, message: str, metadata: list[tuple[str, str]]
) -> None:
    decoder = hpack.Decoder()
    head = decoder.decode(response_headers(metadata))
    assert head[:2] == [(":status", "200"), ("content-type", "application/grpc")]
    assert head[2:] == metadata
    for headers_only in (False, True):
        block = decoder.decode(trailers(code, message, metadata, headers_only=headers_only))
        fields = dict(block)
        assert fields["grpc-status"] == str(code)
        assert urllib.parse.unquote(fields.get("grpc-message", "")) == (message if message else "")
        assert (":status" in fields) is headers_only
        reserved = (":status", "content-type", "grpc-status", "grpc-message")
        assert [(k, v) for k, v in block if k not in reserved] == metadata


def test_grpc_message_is_percent_encoded_only_where_needed() -> None:
    assert grpc_message_encode("plain text") == b"plain text"
    assert grpc_message_encode("100 %") == b"100 %25"
    assert grpc_message_encode("é\n") == b"%C3%A9%0A"
