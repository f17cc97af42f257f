"""Which webhook targets are internal: customers' own endpoints may not reach them (SSRF).

Internal: loopback, private (RFC 1918, fc00::/7), link-local (169.254.0.0/16, fe80::/10),
shared (100.64.0.0/10, used for some clouds' metadata), unspecified, multicast and reserved
addresses, also when carried inside an IPv6 address (IPv4-mapped, 6to4, NAT64).

`url_host_problem` judges a URL by its host text alone (literal addresses, the legacy numeric
forms a resolver maps onto them, and `localhost`): the API refuses such customer endpoints at
registration. Names are resolved at delivery and every address judged with `internal_address`
(notify/http.py), so a DNS name that points inside cannot get around the first check.
The operator's own endpoints (settings) are never judged.
"""

from __future__ import annotations

import re
import socket
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from urllib.parse import urlsplit

__all__ = ["BlockedAddress", "internal_address", "literal_address", "url_host_problem"]

IPAddress = IPv4Address | IPv6Address

_V4 = tuple(
    ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network", unspecified
        "10.0.0.0/8",
        "100.64.0.0/10",  # shared address space (carrier NAT, some cloud metadata)
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast
    )
)
_V6 = tuple(
    ip_network(n)
    for n in (
        "::/8",  # unspecified, loopback, IPv4-compatible
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
_NAT64 = ip_network("64:ff9b::/96")
_NUMERIC_HOST = re.compile(r"[0-9a-fx.]+", re.IGNORECASE)


class BlockedAddress(OSError):
    """A customer's webhook host is (or resolves to) an internal address: never retried."""


def _embedded_v4(addr: IPv6Address) -> IPv4Address | None:
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr in _NAT64:
        return IPv4Address(int(addr) & 0xFFFFFFFF)
    return None


def internal_address(addr: IPAddress) -> bool:
    """True for an address a customer's webhook must not reach."""
    if isinstance(addr, IPv6Address):
        inner = _embedded_v4(addr)
        if inner is not None and internal_address(inner):
            return True
        if any(addr in net for net in _V6):
            return True
    elif any(addr in net for net in _V4):
        return True
    return (
        addr.is_private
        or addr.is_loopback
        or addr.is_link_local
        or addr.is_multicast
        or addr.is_reserved
        or addr.is_unspecified
    )


def literal_address(host: str) -> IPAddress | None:
    """The address a host names literally (IPv6 zone ignored; legacy IPv4 forms such as
    `127.1`, `2130706433` or `0x7f.0.0.1` read as the resolver would), else None."""
    try:
        return ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    if _NUMERIC_HOST.fullmatch(host):
        try:
            return IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def url_host_problem(url: str) -> str | None:
    """Why a customer's webhook URL names an internal host, judged by its text; None if not."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return "the URL's host cannot be read"
    if not host:
        return "the URL has no host"
    name = host.rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return f"{host} is an internal address (loopback); webhooks must reach a public address"
    addr = literal_address(name)
    if addr is not None and internal_address(addr):
        return (
            f"{host} is an internal address (loopback, private, link-local, unspecified, "
            "multicast or reserved); webhooks must reach a public address"
        )
    return None
