"""ARGV[1] of the Lua scripts: one MessagePack array of integers and strings.

The scripts decode it with Redis's built-in `cmsgpack.unpack` (C), so numbers arrive as
numbers and no field is split or converted in Lua: measured on the decision script, one
bulk string of \\31-separated decimal fields parsed in Lua cost ~40 % of the script's time
(`string.gmatch` + `tonumber` per field); this format removed most of it (see bench/README.md).

Only what the scripts need is encoded: int (int64 range; Lua reads it as a double, exact below
2^53 — every counter, amount and microsecond timestamp is) and str (UTF-8). Values are packed
once per plan template where they do not change (codec.Body), so the array header is written
last, when the count is known.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

__all__ = ["array_header", "pack_int", "pack_str", "pack_values"]

_INT64 = struct.Struct(">q")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def array_header(count: int) -> bytes:
    """The header of an array of `count` values (the values follow it)."""
    if count < 16:
        return bytes((0x90 | count,))
    if count < 1 << 16:
        return b"\xdc" + _U16.pack(count)
    return b"\xdd" + _U32.pack(count)


def pack_int(value: int) -> bytes:
    if 0 <= value < 128:
        return bytes((value,))  # positive fixint
    if -32 <= value < 0:
        return bytes((value & 0xFF,))  # negative fixint
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError(f"integer out of the int64 range: {value}")
    return b"\xd3" + _INT64.pack(value)


def pack_str(value: str) -> bytes:
    raw = value.encode()
    n = len(raw)
    if n < 32:
        return bytes((0xA0 | n,)) + raw
    if n < 1 << 8:
        return b"\xd9" + bytes((n,)) + raw
    if n < 1 << 16:
        return b"\xda" + _U16.pack(n) + raw
    return b"\xdb" + _U32.pack(n) + raw


def pack_values(values: Iterable[str | int]) -> bytes:
    """The values, each packed, concatenated (no array header). bool is refused: the scripts
    compare flags with 1. (On the hot path: short strings and small ints inline.)"""
    out = bytearray()
    for value in values:
        if type(value) is str:  # exact types: bool (an int) must not pass as a number
            raw = value.encode()
            if len(raw) < 32:
                out.append(0xA0 | len(raw))
                out += raw
            else:
                out += pack_str(value)
        elif type(value) is int:
            if 0 <= value < 128:
                out.append(value)
            else:
                out += pack_int(value)
        elif isinstance(value, bool):
            raise TypeError("pack flags as 0/1 ints, not bool")
        elif isinstance(value, str):  # subclasses (StrEnum)
            out += pack_str(value)
        elif isinstance(value, int):  # subclasses (IntEnum)
            out += pack_int(int(value))
        else:
            raise TypeError(f"cannot pack {type(value).__name__} for a script: {value!r}")
    return bytes(out)
