"""Is a TCP port on 127.0.0.1 free? Checked before anything starts, so a taken port is named
clearly instead of surfacing as a child's bind error."""

from __future__ import annotations

import socket
from collections.abc import Sequence

__all__ = ["first_taken"]


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # like the servers that will bind it: a port in TIME_WAIT is free, a listener is not
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def first_taken(ports: Sequence[tuple[int, str]]) -> tuple[int, str] | None:
    """The first (port, what) whose port is in use; port 0 (any free port) is never taken."""
    for port, what in ports:
        if port and not _free(port):
            return port, what
    return None
