"""HTTP/2 on the wire (RFC 9113) for the lean gRPC server: frame layout, the frames it writes,
header blocks it encodes and a caching HPACK decoder.

Header blocks we send never touch the HPACK dynamic table (every field is indexed from the
static table or a literal "without indexing"), so the peer's decoder needs no state from us
and the blocks of a gRPC answer are constants but for the status and metadata.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterable

import hpack

__all__ = [
    "CONNECTION_PREFACE",
    "DEFAULT_WINDOW",
    "MAX_WINDOW",
    "OK_HEADERS",
    "OK_TRAILERS",
    "ErrorCode",
    "FrameType",
    "HeaderDecoder",
    "Setting",
    "frame",
    "grpc_message_encode",
    "response_headers",
    "trailers",
]

CONNECTION_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER = struct.Struct(">HBBBL")  # length (24 bits: H + B), type, flags, stream id
DEFAULT_WINDOW = 65_535  # RFC 9113 §6.9.2: every window starts here
MAX_WINDOW = 2**31 - 1


class FrameType:
    DATA = 0
    HEADERS = 1
    PRIORITY = 2
    RST_STREAM = 3
    SETTINGS = 4
    PUSH_PROMISE = 5
    PING = 6
    GOAWAY = 7
    WINDOW_UPDATE = 8
    CONTINUATION = 9


class Flag:
    END_STREAM = 0x1
    ACK = 0x1
    END_HEADERS = 0x4
    PADDED = 0x8
    PRIORITY = 0x20


class Setting:
    HEADER_TABLE_SIZE = 1
    ENABLE_PUSH = 2
    MAX_CONCURRENT_STREAMS = 3
    INITIAL_WINDOW_SIZE = 4
    MAX_FRAME_SIZE = 5
    MAX_HEADER_LIST_SIZE = 6


class ErrorCode:
    NO_ERROR = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2
    FLOW_CONTROL_ERROR = 3
    STREAM_CLOSED = 5
    FRAME_SIZE_ERROR = 6
    REFUSED_STREAM = 7
    CANCEL = 8
    COMPRESSION_ERROR = 9
    ENHANCE_YOUR_CALM = 11


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One frame: the 9-byte header, then `payload` (at most the peer's SETTINGS_MAX_FRAME_SIZE)."""
    n = len(payload)
    return FRAME_HEADER.pack(n >> 8, n & 0xFF, kind, flags, stream_id) + payload


def parse_frame_header(data: bytes | bytearray, offset: int) -> tuple[int, int, int, int]:
    """(payload length, type, flags, stream id) of the frame header at `offset`."""
    hi, lo, kind, flags, stream_id = FRAME_HEADER.unpack_from(data, offset)
    return (hi << 8) | lo, kind, flags, stream_id & 0x7FFFFFFF


def settings_payload(pairs: Iterable[tuple[int, int]]) -> bytes:
    return b"".join(struct.pack(">HL", key, value) for key, value in pairs)


def _integer(value: int, prefix_bits: int, first: int = 0) -> bytes:
    """RFC 7541 §5.1 integer with an N-bit prefix; `first` holds the bits above the prefix."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(raw: bytes) -> bytes:
    return _integer(len(raw), 7) + raw  # never Huffman-coded: cheaper to write than to save


def _literal(name: bytes, value: bytes) -> bytes:
    """A literal header field without indexing, new name (RFC 7541 §6.2.2)."""
    return b"\x00" + _string(name) + _string(value)


_STATUS_200 = b"\x88"  # static table index 8
# content-type: literal without indexing, name from static index 31
_CONTENT_TYPE = _integer(31, 4) + _string(b"application/grpc")
OK_HEADERS = _STATUS_200 + _CONTENT_TYPE  # the opening block of an answer without metadata
_UNRESERVED = frozenset(range(0x20, 0x7F)) - {ord("%")}


def grpc_message_encode(message: str) -> bytes:
    """grpc-message is percent-encoded UTF-8 (gRPC over HTTP/2: 'Percent-Encoded')."""
    raw = message.encode()
    if all(b in _UNRESERVED for b in raw):
        return raw
    return b"".join(bytes((b,)) if b in _UNRESERVED else b"%%%02X" % b for b in raw)


def _metadata(pairs: Iterable[tuple[str, str | bytes]]) -> bytes:
    out = []
    for key, value in pairs:
        name = key.lower().encode()
        if name.endswith(b"-bin"):
            raw = value if isinstance(value, bytes) else value.encode()
            encoded = base64.b64encode(raw).rstrip(b"=")
        else:
            encoded = value.encode() if isinstance(value, str) else value
        out.append(_literal(name, encoded))
    return b"".join(out)


def response_headers(metadata: Iterable[tuple[str, str | bytes]] = ()) -> bytes:
    """The header block that opens a gRPC answer: :status 200, content-type, `metadata`."""
    return OK_HEADERS + _metadata(metadata)


OK_TRAILERS = _literal(b"grpc-status", b"0")  # the closing block of a plain OK answer


def trailers(
    code: int,
    message: str = "",
    metadata: Iterable[tuple[str, str | bytes]] = (),
    *,
    headers_only: bool = False,
) -> bytes:
    """The header block that ends a gRPC answer with status `code`. `headers_only`: a
    Trailers-Only answer (no message was sent), which carries :status and content-type too."""
    block = OK_TRAILERS if code == 0 else _literal(b"grpc-status", str(code).encode())
    if message:
        block += _literal(b"grpc-message", grpc_message_encode(message))
    block += _metadata(metadata)
    return OK_HEADERS + block if headers_only else block


class HeaderDecoder:
    """HPACK decoding for one connection (`hpack.Decoder` keeps its dynamic table).

    A client that sends the same headers on every call (Envoy does) sends, once its dynamic
    table holds them, the same block byte for byte: indexed fields and literals *without*
    indexing (Envoy never indexes `:path`). Such a block changes nothing in the table, so it
    decodes to the same list until the table changes — and only a block with a literal *with*
    incremental indexing or a table size update can change it. Blocks that change nothing are
    cached; the cache is dropped whenever any other block is decoded.
    """

    __slots__ = ("_cache", "_decoder")

    def __init__(self, max_header_list_size: int) -> None:
        self._decoder = hpack.Decoder()
        self._decoder.max_header_list_size = max_header_list_size
        self._cache: dict[bytes, list[tuple[str, str]]] = {}

    def decode(self, block: bytes) -> list[tuple[str, str]]:
        """The block's (name, value) list; the same list object for a cached block (do not
        mutate it). Raises hpack.HPACKError (a connection error, COMPRESSION_ERROR)."""
        cached = self._cache.get(block)
        if cached is not None:
            return cached
        changes_table = _changes_table(block)
        if changes_table:
            self._cache.clear()
        headers = [(str(k), str(v)) for k, v in self._decoder.decode(block)]
        if not changes_table and len(self._cache) < 64:
            self._cache[block] = headers
        return headers


def _read_integer(block: bytes, i: int, prefix_bits: int) -> tuple[int, int]:
    """(value, index just past it) of the RFC 7541 §5.1 integer starting at `i`."""
    limit = (1 << prefix_bits) - 1
    value = block[i] & limit
    i += 1
    if value < limit:
        return value, i
    shift = 0
    while True:
        byte = block[i]
        i += 1
        value += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


def _changes_table(block: bytes) -> bool:
    """Whether decoding `block` may change the dynamic table: it has a literal with incremental
    indexing or a size update — or it is malformed (never cached; the decoder will say why)."""
    i, n = 0, len(block)
    try:
        while i < n:
            first = block[i]
            if first & 0x80:  # indexed field
                _, i = _read_integer(block, i, 7)
            elif first & 0xE0 == 0:  # 0000xxxx literal without indexing, 0001xxxx never indexed
                name_index, i = _read_integer(block, i, 4)
                if name_index == 0:  # literal name
                    length, i = _read_integer(block, i, 7)
                    i += length
                length, i = _read_integer(block, i, 7)
                i += length
            else:  # 01xxxxxx literal with incremental indexing, 001xxxxx size update
                return True
    except IndexError:
        return True
    return i != n
