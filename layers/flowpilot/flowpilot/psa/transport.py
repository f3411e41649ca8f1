"""The httpx transport PSA providers use outside the local stack: it refuses non-public addresses."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import httpx

from flowpilot.psa.egress import EgressRefused, check_host, is_public


class PublicOnlyTransport(httpx.HTTPTransport):
    """An httpx transport that resolves the host first and refuses to connect to any non-public address."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        check_host(host)
        try:
            infos = socket.getaddrinfo(host, request.url.port or 443, proto=socket.IPPROTO_TCP)
        except OSError as error:
            raise httpx.ConnectError(f"cannot resolve {host}", request=request) from error
        for info in infos:
            address: Any = ipaddress.ip_address(str(info[4][0]).split("%")[0])
            if not is_public(address):
                raise EgressRefused(f"{host} resolves to a non-public address; refusing to connect.")
        return super().handle_request(request)
