"""Egress to a PSA: the URL's shape when saved, and the connection going only to the address that was vetted.

- `check_url` refuses what two URL parsers could read two ways (control characters, spaces, userinfo, query,
  fragment, bad ports) and IPv4-compatible IPv6 (`[::127.0.0.1]`), in production and on the local stack alike.
- `PublicOnlyTransport` resolves a host once and connects to that answer: a DNS name that answers a public
  address to the check and 127.0.0.1 to the connect (rebinding) never reaches loopback.
- Connecting to the vetted address still runs TLS against the host name: a local CA signs a certificate for a
  made-up public-looking name, a server on 127.0.0.1 presents it, and the fake resolver points the name there
  (loopback allowed for these checks only). The name's certificate verifies; another name's does not.
"""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from flowpilot.psa import egress
from flowpilot.psa.egress import EgressRefused, check_url, vetted_addresses
from flowpilot.psa.transport import PublicOnlyTransport

PUBLIC = "https://api-na.myconnectwise.net/v4_6_release/apis/3.0"

SHAPE_REFUSED = [
    # IPv4-compatible IPv6 (::/96): the deprecated form some stacks still route to the IPv4 address
    "https://[::127.0.0.1]/apis/3.0",
    "https://[::7f00:1]/apis/3.0",
    "https://[::a9fe:a9fe]/latest",
    "https://[::8.8.8.8]/apis/3.0",
    # ports outside 1-65535, non-numeric, empty
    "https://api-na.myconnectwise.net:0/apis/3.0",
    "https://api-na.myconnectwise.net:65536/apis/3.0",
    "https://api-na.myconnectwise.net:99999/apis/3.0",
    "https://api-na.myconnectwise.net:-1/apis/3.0",
    "https://api-na.myconnectwise.net:https/apis/3.0",
    "https://api-na.myconnectwise.net:443x/apis/3.0",
    "https://api-na.myconnectwise.net:/apis/3.0",
    # control characters and spaces anywhere (urlsplit silently drops tab, CR and LF)
    "https://api-na.myconnect\twise.net/apis/3.0",
    "https://api-na.myconnectwise.net/apis/3.0\r\nX-Injected: 1",
    "https://api-na.myconnectwise.net/apis/3.0\n",
    "https://api-na.myconnectwise.net\x00.evil.com/apis/3.0",
    "https://127.0.0.1\x00.myconnectwise.net/apis/3.0",
    "https://api-na.myconnectwise.net/apis 3.0",
    " https://api-na.myconnectwise.net/apis/3.0",
    "https://api-na.myconnectwise.net/apis/3.0\x1b[31m",
    "https://api-na.myconnectwise.net/apis/\u00a03.0",
    # userinfo, even empty
    "https://user@api-na.myconnectwise.net/apis/3.0",
    "https://:secret@api-na.myconnectwise.net/apis/3.0",
    "https://@api-na.myconnectwise.net/apis/3.0",
    "https://api-na.myconnectwise.net@127.0.0.1/apis/3.0",
    # query strings and fragments, even empty
    "https://api-na.myconnectwise.net/apis/3.0?x=1",
    "https://api-na.myconnectwise.net/apis/3.0?",
    "https://api-na.myconnectwise.net/apis/3.0#frag",
    "https://api-na.myconnectwise.net/apis/3.0#",
    "https://api-na.myconnectwise.net#@127.0.0.1/apis/3.0",
]


@pytest.mark.parametrize("url", SHAPE_REFUSED, ids=repr)
def test_url_shapes_are_refused_in_production(url: str) -> None:
    with pytest.raises(EgressRefused) as refused:
        check_url(url)
    assert refused.value.code == "invalid_base_url"


@pytest.mark.parametrize("url", [u for u in SHAPE_REFUSED if "[::" not in u], ids=repr)
def test_url_shapes_are_refused_on_the_local_stack_too(url: str) -> None:
    """The loopback allowance relaxes where a URL may point, never what it may look like."""
    with pytest.raises(EgressRefused):
        check_url(url.replace("https://", "http://"), allow_loopback=True)


@pytest.mark.parametrize(
    "url",
    [
        PUBLIC,
        "https://api-na.myconnectwise.net:443/v4_6_release/apis/3.0/",
        "https://api-na.myconnectwise.net:65535/apis/3.0",
        "https://API-NA.MyConnectWise.net./apis/3.0",
        "https://8.8.8.8/apis/3.0",
        "https://[2606:4700:4700::1111]/apis/3.0",
    ],
)
def test_public_urls_stay_accepted(url: str) -> None:
    assert check_url(url) == url.rstrip("/")


def test_the_local_stack_accepts_the_simulator() -> None:
    assert check_url("http://127.0.0.1:8089/apis/3.0", allow_loopback=True) == "http://127.0.0.1:8089/apis/3.0"
    with pytest.raises(EgressRefused):
        check_url("http://127.0.0.1:8089/apis/3.0")


def test_an_embedded_nul_is_not_an_address() -> None:
    """inet_aton raises ValueError (not OSError) on NUL: it must read as 'not a literal', not crash."""
    assert egress.literal_address("127.0.0.1\x00") is None


@pytest.mark.parametrize("address", ["::127.0.0.1", "::7f00:1", "::a00:1", "::8.8.8.8", "::", "::1"])
def test_ipv4_compatible_ipv6_is_never_public(address: str) -> None:
    assert not egress.is_public(ipaddress.IPv6Address(address))


# ---------------------------------------------------------------------------------------------------------------
# resolve once, connect to what was vetted


class CountingResolver:
    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        return self.answers[min(len(self.calls), len(self.answers)) - 1]


def test_vetting_refuses_if_any_answer_is_not_public() -> None:
    for answers in (["8.8.8.8", "127.0.0.1"], ["10.0.0.1"], ["8.8.8.8", "::ffff:169.254.169.254"], ["fe80::1%eth0"]):
        with pytest.raises(EgressRefused):
            vetted_addresses("psa.example-msp.com", 443, resolver=CountingResolver(answers))


def test_vetting_resolves_once_and_returns_the_answer() -> None:
    resolver = CountingResolver(["8.8.8.8", "2606:4700:4700::1111"], ["127.0.0.1"])
    addresses = vetted_addresses("psa.example-msp.com", 443, resolver=resolver)
    assert [str(a) for a in addresses] == ["8.8.8.8", "2606:4700:4700::1111"]
    assert resolver.calls == [("psa.example-msp.com", 443)]


def test_vetting_refuses_names_before_resolving() -> None:
    resolver = CountingResolver(["8.8.8.8"])
    for host in ("localhost", "metadata.google.internal", "127.1", "0x7f000001"):
        with pytest.raises(EgressRefused):
            vetted_addresses(host, 443, resolver=resolver)
    assert resolver.calls == []


@pytest.fixture
def quiet_listener() -> Iterator[socket.socket]:
    """A loopback TCP listener nobody accepts on: a connection attempt leaves a connection in its backlog."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    try:
        yield listener
    finally:
        listener.close()


def _connections_waiting(listener: socket.socket) -> int:
    count = 0
    while True:
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


def test_dns_rebinding_cannot_reach_loopback(quiet_listener: socket.socket, monkeypatch: pytest.MonkeyPatch) -> None:
    """The name answers a public address first and 127.0.0.1 afterwards: only the first answer is ever used.

    The system resolver and socket.create_connection are replaced (not our code): the resolver flips, and a
    connection to any public address is recorded and refused, so the test needs no network.
    """
    port = quiet_listener.getsockname()[1]
    name = "psa.rebinding-example.com"
    lookups: list[str] = []
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.create_connection

    def flipping_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host != name:
            return real_getaddrinfo(host, *args, **kwargs)
        lookups.append(host)
        answer = "93.184.215.14" if len(lookups) == 1 else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (answer, port))]

    attempted: list[str] = []

    def guarded_connect(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        host = address[0]
        try:
            public = not ipaddress.ip_address(host).is_loopback
        except ValueError:
            public = False  # a name: the real create_connection resolves it (through the flipping resolver)
        if public:
            attempted.append(host)
            raise ConnectionRefusedError(f"test network: {host} is unreachable")
        return real_connect(address, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", flipping_getaddrinfo)
    monkeypatch.setattr(socket, "create_connection", guarded_connect)
    with httpx.Client(transport=PublicOnlyTransport(), timeout=10) as client, pytest.raises(httpx.ConnectError):
        client.get(f"https://{name}:{port}/apis/3.0/system/info")
    assert _connections_waiting(quiet_listener) == 0, "the connection went to 127.0.0.1"
    assert attempted == ["93.184.215.14"], attempted
    assert lookups == [name], "the name was resolved more than once"


def test_a_name_that_resolves_inside_is_refused_before_connecting(
    quiet_listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = quiet_listener.getsockname()[1]
    resolver = CountingResolver(["8.8.8.8", "127.0.0.1"])
    with httpx.Client(transport=PublicOnlyTransport(resolver=resolver)) as client, pytest.raises(EgressRefused):
        client.get(f"https://psa.example-msp.com:{port}/apis/3.0")
    assert _connections_waiting(quiet_listener) == 0


# ---------------------------------------------------------------------------------------------------------------
# TLS to the vetted address still verifies the host name

TLS_NAME = "psa.flowpilot-tls-test.com"


@dataclass
class TlsServer:
    port: int
    ca_file: Path
    seen_sni: list[str | None] = field(default_factory=list)
    seen_host: list[str | None] = field(default_factory=list)


def _certificates(tmp: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA, and a leaf for TLS_NAME only (no IP address in it) signed by it."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "FlowPilot test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, TLS_NAME)]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(TLS_NAME)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = tmp / "ca.pem", tmp / "leaf.pem", tmp / "leaf.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return ca_file, cert_file, key_file


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[TlsServer]:
    ca_file, cert_file, key_file = _certificates(tmp_path)
    seen_host: list[str | None] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen_host.append(self.headers.get("Host"))
            body = b'{"version": "test"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return None

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    seen_sni: list[str | None] = []

    def record_sni(_sock: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
        seen_sni.append(name)

    context.sni_callback = record_sni
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield TlsServer(server.server_address[1], ca_file, seen_sni, seen_host)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _client_for(server: TlsServer, resolver: CountingResolver) -> httpx.Client:
    trust = ssl.create_default_context(cafile=str(server.ca_file))
    transport = PublicOnlyTransport(verify=trust, resolver=resolver, allow_loopback=True)
    return httpx.Client(transport=transport, timeout=30)


def test_tls_to_the_vetted_address_verifies_the_host_name(tls_server: TlsServer) -> None:
    resolver = CountingResolver(["127.0.0.1"])
    with _client_for(tls_server, resolver) as client:
        response = client.get(f"https://{TLS_NAME}:{tls_server.port}/apis/3.0/system/info")
    assert response.status_code == 200 and response.json() == {"version": "test"}
    assert tls_server.seen_sni == [TLS_NAME], "SNI must name the host, not the address"
    assert tls_server.seen_host == [f"{TLS_NAME}:{tls_server.port}"], "the Host header must stay the name"
    assert resolver.calls == [(TLS_NAME, tls_server.port)]


def test_tls_refuses_a_certificate_for_another_name(tls_server: TlsServer) -> None:
    """Same server, same vetted address, but the URL names a host the certificate does not: refused."""
    other = "other.flowpilot-tls-test.com"
    with (
        _client_for(tls_server, CountingResolver(["127.0.0.1"])) as client,
        pytest.raises(httpx.ConnectError) as failed,
    ):
        client.get(f"https://{other}:{tls_server.port}/apis/3.0/system/info")
    assert "CERTIFICATE_VERIFY_FAILED" in str(failed.value) or "hostname" in str(failed.value).lower()
    assert tls_server.seen_host == [], "no request may be sent over an unverified connection"


def test_tls_refuses_an_untrusted_issuer(tls_server: TlsServer) -> None:
    """Verification stays on: the system trust store does not know the test CA."""
    transport = PublicOnlyTransport(resolver=CountingResolver(["127.0.0.1"]), allow_loopback=True)
    with httpx.Client(transport=transport, timeout=30) as client, pytest.raises(httpx.ConnectError):
        client.get(f"https://{TLS_NAME}:{tls_server.port}/apis/3.0/system/info")
    assert tls_server.seen_host == []
