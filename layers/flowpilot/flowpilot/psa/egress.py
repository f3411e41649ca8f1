"""Where a PSA provider may connect: public internet addresses only, so a saved PSA URL can't reach our network.

Checked twice: when a connection is saved (the URL's host, in every spelling an IPv4 address can take) and
when a request is sent (every address the host name resolves to, `psa/transport.py`), so a DNS name pointing
inside fails too. No httpx here: the API functions that only validate URLs don't pay for importing it.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from flowpilot.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_BLOCKED_NAMES = {"localhost", "metadata", "metadata.google.internal", "instance-data"}
_BLOCKED_SUFFIXES = (".localhost", ".internal", ".local", ".localdomain", ".home.arpa")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class EgressRefused(InvalidInput):
    code = "psa_address_refused"


def literal_address(host: str) -> IPAddress | None:
    """The address a host string denotes by itself, including legacy IPv4 forms (127.1, 0x7f000001, 2130706433)."""
    host = host.strip("[]").rstrip(".")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        # inet_aton accepts what C resolvers (and so HTTP clients) accept: octal, hex, and short forms.
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo or (None, None))[1]
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None and not is_public(embedded):
            return False
    return address.is_global and not address.is_multicast


def check_host(host: str) -> None:
    """Refuse a host that names or spells a non-public address (DNS names are checked when connecting)."""
    name = host.strip("[]").rstrip(".").lower()
    address = literal_address(name)
    if address is not None:
        if not is_public(address):
            raise EgressRefused(f"{host} is not a public internet address.", code="invalid_base_url")
        return
    if not name or name in _BLOCKED_NAMES or name.endswith(_BLOCKED_SUFFIXES) or "." not in name:
        raise EgressRefused(f"{host} is not a public host name.", code="invalid_base_url")


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise EgressRefused("The PSA URL must be an https:// URL with a host.", code="invalid_base_url")
    if parts.username or parts.password:
        raise EgressRefused("The PSA URL must not carry credentials.", code="invalid_base_url")
    check_host(parts.hostname)
    return url.rstrip("/")
