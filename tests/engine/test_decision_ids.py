"""Decision ids: time-ordered, unique, never shared between a process and its forked child."""

from __future__ import annotations

import os
import re

from gatekeeper.engine import DecisionIds


def test_ids_are_32_hex_chars_unique_across_pool_refills() -> None:
    ids = DecisionIds()
    made = [ids() for _ in range(2000)]  # 5 pools
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in made)
    assert len(set(made)) == len(made)
    assert len({i[12:] for i in made}) == len(made)  # the random part alone is unique too
    assert made == sorted(made, key=lambda i: i[:12])  # millisecond prefix never goes back


def test_a_forked_child_draws_fresh_random_bits() -> None:
    ids = DecisionIds()
    ids()  # the pool is filled: the child must not reuse the rest of it
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.write(write, ids()[12:].encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 20
    assert child != ids()[12:]
