"""The httpx transport PSA providers use outside the local stack: it connects only to vetted public addresses.

The host name is resolved once per new connection (`egress.vetted_addresses`) and the socket is opened to one
of those very addresses, so a DNS answer that changes after the check (rebinding) is never used. TLS still
runs against the host name: SNI and certificate verification name the host, and the Host header is untouched,
because httpcore starts TLS with the request's origin host, not with the address the backend connected to.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable

import httpcore
import httpx

from flowpilot.psa.egress import Resolver, resolve, vetted_addresses


class VettedNetworkBackend(httpcore.NetworkBackend):
    """httpcore's network backend, except that a host name is resolved and vetted here, and only once."""

    def __init__(self, *, resolver: Resolver = resolve, allow_loopback: bool = False) -> None:
        self._resolver = resolver
        self._allow_loopback = allow_loopback
        self._sockets = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = vetted_addresses(host, port, resolver=self._resolver, allow_loopback=self._allow_loopback)
        except OSError as error:
            raise httpcore.ConnectError(f"cannot resolve {host}") from error
        failure: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in addresses:
            try:
                return self._sockets.connect_tcp(str(address), port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                failure = error
        assert failure is not None  # vetted_addresses never returns an empty list
        raise failure

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("PSA connections are TCP to public addresses only")

    def sleep(self, seconds: float) -> None:
        self._sockets.sleep(seconds)


class PublicOnlyTransport(httpx.HTTPTransport):
    """An httpx transport whose connections go only to the public addresses its host name resolved to.

    `verify`, `resolver` and `allow_loopback` exist for tests (a local CA, a fake DNS, a server on 127.0.0.1).
    """

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | bool = True,
        resolver: Resolver = resolve,
        allow_loopback: bool = False,
    ) -> None:
        ssl_context = httpx.create_ssl_context(verify=verify)
        super().__init__(verify=ssl_context)
        # httpx's own pool and limits (httpx.HTTPTransport's defaults), on the vetting network backend.
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=VettedNetworkBackend(resolver=resolver, allow_loopback=allow_loopback),
        )
