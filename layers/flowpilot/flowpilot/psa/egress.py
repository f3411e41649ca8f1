"""Where a PSA provider may connect: public internet addresses only, so a saved PSA URL can't reach our network.

Checked twice: when a connection is saved (`check_url`: the URL's shape, and its host in every spelling an
address can take) and when a connection is opened (`vetted_addresses`: the host name is resolved once, every
address it resolves to is checked, and `psa/transport.py` connects only to those addresses, so a DNS answer
that changes between the check and the connect cannot reach inside). No httpx import at load: the API
functions that only validate URLs don't pay for it.

`rules` is what the layer applies, and in AWS it is always `EgressRules()`. The local stack and the tests
replace it (`devstack/loopback.py`) to reach the ConnectWise simulator on loopback; nothing in the layer does.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from flowpilot.errors import InvalidInput

if TYPE_CHECKING:
    import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]
_BLOCKED_NAMES = {"localhost", "metadata", "metadata.google.internal", "instance-data"}
_BLOCKED_SUFFIXES = (".localhost", ".internal", ".local", ".localdomain", ".home.arpa")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# ::a.b.c.d, the deprecated IPv4-compatible form: some stacks still route it to the IPv4 address.
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


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
    except (OSError, ValueError):  # ValueError: an embedded NUL
        return None


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if address in _IPV4_COMPATIBLE:
            return False
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


def _refuse(message: str) -> EgressRefused:
    return EgressRefused(message, code="invalid_base_url")


def check_url(url: str, *, allow_loopback: bool = False) -> str:
    """The PSA URL, normalised, or `invalid_base_url`: https to a public host, and nothing a parser reads two ways.

    `allow_loopback` (the local stack only) also takes http and any host, for the ConnectWise simulator; the
    URL's shape is checked the same either way.
    """
    if any(not char.isprintable() or char.isspace() for char in url):
        # urlsplit drops tabs and newlines silently, and a client may not: the two would disagree on the host.
        raise _refuse("The PSA URL must not contain spaces or control characters.")
    parts = urlsplit(url)
    schemes = {"http", "https"} if allow_loopback else {"https"}
    if parts.scheme.lower() not in schemes or not parts.hostname:
        raise _refuse("The PSA URL must be an https:// URL with a host.")
    if "@" in parts.netloc:
        raise _refuse("The PSA URL must not carry credentials.")
    if "?" in url or "#" in url:
        raise _refuse("The PSA URL must not have a query string or a fragment.")
    try:
        port = parts.port
    except ValueError:
        raise _refuse("The PSA URL's port must be a number from 1 to 65535.") from None
    if (port is not None and not 1 <= port <= 65535) or parts.netloc.endswith(":"):
        raise _refuse("The PSA URL's port must be a number from 1 to 65535.")
    if not allow_loopback:
        check_host(parts.hostname)
    return url.rstrip("/")


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, as the system resolver answers (one lookup)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def vetted_addresses(
    host: str, port: int, *, resolver: Resolver = resolve, allow_loopback: bool = False
) -> list[IPAddress]:
    """The addresses to connect to for `host`, resolved once; refused if any of them is not public.

    `allow_loopback` also admits loopback addresses (and names): tests of the connection path only.
    Raises OSError when the name does not resolve, EgressRefused when it names or reaches a non-public address.
    """
    if not allow_loopback:
        check_host(host)
    addresses = []
    for answer in resolver(host.strip("[]"), port):
        try:
            address = ipaddress.ip_address(answer.split("%", 1)[0])
        except ValueError:
            raise EgressRefused(f"{host} resolves to {answer!r}, which is not an IP address.") from None
        if not (is_public(address) or (allow_loopback and address.is_loopback)):
            raise EgressRefused(f"{host} resolves to a non-public address; refusing to connect.")
        addresses.append(address)
    if not addresses:
        raise OSError(f"{host} resolves to no address")
    return addresses


class EgressRules:
    """Where PSA providers may connect: https to public hosts only, each connection to the address it vetted."""

    def check_url(self, url: str) -> str:
        """The PSA URL an account saves, normalised, or `invalid_base_url`."""
        return check_url(url)

    def transport(self) -> httpx.BaseTransport | None:
        """The transport of the PSA connection pool (None: httpx's own)."""
        from flowpilot.psa.transport import PublicOnlyTransport

        return PublicOnlyTransport()


rules: EgressRules = EgressRules()
