"""The scripts' ARGV packing, decoded by the real Redis's cmsgpack (every served Redis version).

Each value must come back in Lua as what the scripts read: integers exact (as `%d` prints
them), strings byte for byte — including the separators and bytes the old \\31-joined format
had to replace.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from gatekeeper.store.argpack import array_header, pack_int, pack_str, pack_values
from gatekeeper.store.scripts import LuaScript

# Lua doubles are exact below 2^53: the range every counter, amount and timestamp lives in.
EXACT = st.integers(min_value=-(2**53), max_value=2**53)
TEXT = st.text(max_size=300)

# echo each value back, typed: ('i', '%d' of the number) or ('s', the string)
_ECHO = """
local t = cmsgpack.unpack(ARGV[1])
local out = {}
for i = 1, #t do
  local v = t[i]
  if type(v) == 'number' then out[#out + 1] = 'i' .. string.format('%d', v)
  else out[#out + 1] = 's' .. v end
end
return out
"""
_SCRIPT = LuaScript(name="echo", source=_ECHO, sha=hashlib.sha1(_ECHO.encode()).hexdigest())


async def _roundtrip(redis: Redis, values: list[str | int]) -> list[str | int]:
    packed = array_header(len(values)) + pack_values(values)
    reply = await _SCRIPT.run(redis, [], [packed])
    out: list[str | int] = []
    for item in reply:
        text = item.decode()
        out.append(int(text[1:]) if text[0] == "i" else text[1:])
    return out


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=st.lists(st.one_of(EXACT, TEXT), max_size=40))
async def test_values_arrive_in_lua_as_packed(redis: Redis, values: list[str | int]) -> None:
    assert await _roundtrip(redis, values) == values


@pytest.mark.parametrize("count", [0, 1, 15, 16, 17, 65_535, 65_536], ids=lambda n: f"{n}-values")
async def test_array_header_sizes(redis: Redis, count: int) -> None:
    values: list[str | int] = [i % 300 - 40 for i in range(count)]
    assert await _roundtrip(redis, values) == values


@pytest.mark.parametrize("length", [0, 31, 32, 255, 256, 65_535, 65_536])
async def test_string_lengths(redis: Redis, length: int) -> None:
    text = ("\x1f|é" * length)[:length]
    assert await _roundtrip(redis, [text]) == [text]


@pytest.mark.parametrize(
    "value", [0, 127, 128, -1, -32, -33, 2**31, -(2**31) - 1, 1_795_569_702_523_897]
)
async def test_integer_encodings(redis: Redis, value: int) -> None:
    assert await _roundtrip(redis, [value]) == [value]


def test_refuses_what_the_scripts_cannot_read() -> None:
    with pytest.raises(TypeError, match="0/1"):
        pack_values([True])
    with pytest.raises(TypeError, match="float"):
        pack_values([1.5])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="int64"):
        pack_int(2**63)
    assert pack_str("a") == b"\xa1a"


def test_enum_members_pack_as_their_values() -> None:
    import enum

    class Unit(enum.StrEnum):
        TOKEN = "token"

    class Flag(enum.IntEnum):
        ON = 1

    assert pack_values([Unit.TOKEN, Flag.ON]) == pack_values(["token", 1])
