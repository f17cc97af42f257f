"""A tiny protobuf writer: just what an OTLP `ExportTraceServiceRequest` needs.

Wire format (protobuf encoding spec): a field is a tag varint `(number << 3) | wire type`
followed by its value — varint (0), fixed64 (1, little-endian), length-delimited (2: a varint
length, then the bytes) or fixed32 (5). Negative int64 values are varints of their 64-bit
two's complement (10 bytes). Default values (0, "", b"") are omitted, as proto3 encoders do.
A nested message is its encoded bytes written length-delimited.
"""

from __future__ import annotations

import functools
import struct

__all__ = ["Writer", "varint"]

_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5
_U64 = (1 << 64) - 1


def varint(value: int) -> bytes:
    """Base-128 varint of `value` (a negative value as its 64-bit two's complement)."""
    if 0 <= value < 0x80:
        return _SMALL[value]
    value &= _U64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL = [bytes((i,)) for i in range(0x80)]


@functools.cache  # field numbers x wire types: a few dozen entries
def _tag(number: int, wire: int) -> bytes:
    return varint((number << 3) | wire)


class Writer:
    """Appends fields to a buffer; `bytes()` is the encoded message. Not thread-safe."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def __bytes__(self) -> bytes:
        return bytes(self._buf)

    def raw(self, encoded_fields: bytes) -> None:
        """Fields already encoded (e.g. a repeated field built by another Writer)."""
        self._buf += encoded_fields

    def varint(self, number: int, value: int, *, always: bool = False) -> None:
        """int32/int64/uint32/uint64/enum/bool field (skipped when 0 unless `always`: a
        oneof member, where 0 is a value)."""
        if value or always:
            self._buf += _tag(number, _VARINT)
            self._buf += varint(value)

    def fixed64(self, number: int, value: int) -> None:
        """fixed64 field, unsigned (skipped when 0)."""
        if value:
            self._buf += _tag(number, _FIXED64)
            self._buf += struct.pack("<Q", value & _U64)

    def fixed32(self, number: int, value: int) -> None:
        """fixed32 field, unsigned (skipped when 0)."""
        if value:
            self._buf += _tag(number, _FIXED32)
            self._buf += struct.pack("<I", value & 0xFFFFFFFF)

    def double(self, number: int, value: float, *, always: bool = False) -> None:
        """double field (skipped when +0.0 unless `always`)."""
        packed = struct.pack("<d", value)
        if always or packed != b"\x00" * 8:
            self._buf += _tag(number, _FIXED64)
            self._buf += packed

    def bytes_(self, number: int, value: bytes) -> None:
        """bytes field (skipped when empty)."""
        if value:
            self.message(number, value)

    def string(self, number: int, value: str) -> None:
        """string field, UTF-8 (skipped when empty)."""
        if value:
            self.message(number, value.encode("utf-8", "replace"))

    def message(self, number: int, encoded: bytes) -> None:
        """A nested message (or bytes) written length-delimited, even when empty: a present
        empty sub-message is not the same as an absent one (e.g. an AnyValue "")."""
        self._buf += _tag(number, _LEN)
        self._buf += varint(len(encoded))
        self._buf += encoded
