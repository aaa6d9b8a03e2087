"""Who sent a request: the TCP peer, or the client a trusted proxy names.

Behind a load balancer every TCP peer is the balancer. Forwarded headers are only
believed from the proxies an operator lists (``trusted_proxies``): from those, the client
is the right-most ``X-Forwarded-For`` entry that is not itself a trusted proxy (entries to
its left were written by the client and can be anything). A request that carries a
forwarding header but did not come from a trusted proxy was forwarded by someone we do
not know: it is never treated as local, so a same-host proxy nobody configured cannot turn
every client into "loopback" (exempt from registration limits, shown the status page).
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass

FORWARDING_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")
MAX_FORWARDED_ENTRIES = 32  # a header with more hops than this is not from a real chain of proxies


@dataclass(frozen=True)
class ClientAddress:
    address: str  # the client's IP as we believe it ("" when unknown, e.g. a unix socket)
    via_untrusted_proxy: bool = False

    @property
    def is_local(self) -> bool:
        return not self.via_untrusted_proxy and _is_loopback(self.address)


def _ip(text: str):
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


@functools.lru_cache(maxsize=65536)
def _is_loopback(address: str) -> bool:
    # Asked for every request body read (the per-address caps): parsing the address each time
    # was 4% of a check-in's CPU. Addresses repeat; the cache is bounded.
    ip = _ip(address)
    return ip is not None and ip.is_loopback


def parse_networks(entries) -> tuple:
    """CIDRs or single addresses; a clear ValueError for anything else."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(str(entry).strip(), strict=False))
        except ValueError:
            raise ValueError(f"trusted proxy {entry!r} is not an IP address or CIDR") from None
    return tuple(networks)


def _trusted(ip, networks: tuple) -> bool:
    return ip is not None and any(ip.version == n.version and ip in n for n in networks)


def client_address(peer: str | None, headers, trusted: tuple) -> ClientAddress:
    """`headers`: a case-insensitive multidict (aiohttp's request.headers); `trusted`: parse_networks()."""
    peer = peer or ""
    if not trusted or not _trusted(_ip(peer), trusted):
        return ClientAddress(peer, via_untrusted_proxy=any(name in headers for name in FORWARDING_HEADERS))
    # Several X-Forwarded-For lines read as one list, in order (HAProxy adds its own line).
    hops = [h.strip() for value in headers.getall("X-Forwarded-For", []) for h in value.split(",")
            if h.strip()][-MAX_FORWARDED_ENTRIES:]
    for hop in reversed(hops):
        ip = _ip(hop)
        if ip is None:
            return ClientAddress(peer, via_untrusted_proxy=True)  # garbage where an address should be
        if not _trusted(ip, trusted):
            return ClientAddress(str(ip))
    return ClientAddress(str(_ip(hops[0])) if hops else peer)
