"""The local HTTP server: Werkzeug's threaded WSGI server in front of the gateway, and the web console's files.

It owns everything HTTP-level that API Gateway and CloudFront do before a function runs: request framing
(Content-Length, chunked bodies, size limit), path and method checks, the security headers on every
response, static files from `web/` at `/`, one log line per request, and a bounded drain on stop. Every
refusal is the API's JSON error shape `{"error": {"code", "message"}}`.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote_to_bytes, urlsplit
from wsgiref.types import StartResponse, WSGIEnvironment

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from devstack import gateway, template

MAX_BODY = 10 * 1024 * 1024  # API Gateway's payload limit
MAX_PATH = 2048
DRAIN_SECONDS = 30.0  # longer than WRITEBACK_WAIT_SECONDS (20 s): a post in flight gets its answer
WEB_ROOT = template.ROOT / "web"

# The one copy of the console's policy; CloudFront's response-headers policy in template.yaml must match it.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
}
# Headers that describe the connection, not the request: API Gateway does not pass them to a function.
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "te", "upgrade", "content-length"}
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_DIGITS = re.compile(r"[0-9]+")

log = logging.getLogger("devstack.api")


@dataclass
class Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    label: str = ""  # what the request line logs: the route, the file, or the refused path

    @classmethod
    def error(cls, status: int, code: str, message: str, **headers: str) -> Reply:
        body = json.dumps({"error": {"code": code, "message": message}}).encode()
        return cls(status, {"Content-Type": "application/json", **headers}, body)


class _Refused(Exception):
    def __init__(self, reply: Reply):
        super().__init__(reply.body.decode())
        self.reply = reply


def _refuse(status: int, code: str, message: str, **headers: str) -> _Refused:
    return _Refused(Reply.error(status, code, message, **headers))


def _printable(text: str, limit: int = 200) -> str:
    """A path as it can go into one log line (no control characters, bounded)."""
    text = _CONTROL_CHARS.sub("?", text)
    return text if len(text) <= limit else text[:limit] + "…"


class LocalApp:
    """The WSGI application: API routes of template.yaml through the gateway, else the console's files."""

    def __init__(self, web_root: Path | None = None, about: dict[str, str] | None = None):
        self.web_root = web_root or WEB_ROOT
        # What `GET /__devstack` tells local tools (`make invoke`): where this stack's moto listens.
        self.about = about if about is not None else {}

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        method = str(environ.get("REQUEST_METHOD", "")).upper()
        try:
            reply = self.respond(environ, method)
        except _Refused as refused:
            reply = refused.reply
        except Exception:
            log.exception("the local server failed on %s", _printable(str(environ.get("RAW_URI", ""))))
            reply = Reply.error(500, "internal_error", "The local server failed; see its console.")
        if not reply.label:
            reply.label = _printable(str(environ.get("RAW_URI", "")).split("?", 1)[0])
        headers = {k: v for k, v in reply.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers.update(SECURITY_HEADERS)
        headers["Content-Length"] = str(len(reply.body))
        phrase = HTTPStatus(reply.status).phrase if reply.status in HTTPStatus._value2member_map_ else "Unknown"
        start_response(f"{reply.status} {phrase}", list(headers.items()))
        elapsed_ms = (time.perf_counter() - started) * 1000
        log.info("%s %s %d %.0f ms", _printable(method, 20), reply.label, reply.status, elapsed_ms)
        # HEAD: the GET answer's headers (Content-Length included), no body.
        return [b""] if method == "HEAD" else [reply.body]

    def respond(self, environ: WSGIEnvironment, method: str) -> Reply:
        raw_path, raw_query = _split_target(environ)
        path = _decoded_path(raw_path)
        body = _read_body(environ)  # framing is checked for every request, before any routing
        allowed = gateway.allowed_methods(raw_path)
        if allowed:
            return self._api(method, raw_path, raw_query, body, environ, allowed)
        if path == "/__devstack" and method in {"GET", "HEAD"}:
            return Reply(200, {"Content-Type": "application/json"}, json.dumps(self.about).encode(), label=path)
        return self._static(method, path)

    def _api(
        self,
        method: str,
        raw_path: str,
        raw_query: str,
        body: bytes | None,
        environ: WSGIEnvironment,
        allowed: list[str],
    ) -> Reply:
        call_method = "GET" if method == "HEAD" and "GET" in allowed else method
        if call_method not in allowed:
            allow = ", ".join([*allowed, "HEAD"] if "GET" in allowed else allowed)
            message = f"{method} is not allowed here; use {allow}."
            reply = Reply.error(405, "method_not_allowed", _printable(message), Allow=allow)
            reply.label = _printable(raw_path)
            return reply
        try:
            query = dict(parse_qsl(raw_query, keep_blank_values=True, errors="strict", max_num_fields=100))
        except (UnicodeDecodeError, ValueError) as error:
            raise _refuse(400, "invalid_query", "The query string is not valid UTF-8 form encoding.") from error
        text: str | bytes | None = None
        if body:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                text = body  # the gateway base64-encodes it, as API Gateway does for binary bodies
        headers = _headers(environ, body)
        response = gateway.call(call_method, raw_path, raw_body=text, query=query, headers=headers, dev_identity=True)
        label = response.route.split(" ", 1)[-1] if response.route else raw_path
        return Reply(response.status, response.headers, response.text.encode(), label=label)

    def _static(self, method: str, path: str) -> Reply:
        file = self._file(path)
        if file is None:
            return Reply.error(404, "not_found", f"No route or file {_printable(path)}.")
        if method not in {"GET", "HEAD"}:
            return Reply.error(405, "method_not_allowed", "Files are read with GET or HEAD.", Allow="GET, HEAD")
        content_type = CONTENT_TYPES.get(file.suffix.lower()) or mimetypes.guess_type(file.name)[0]
        headers = {"Content-Type": content_type or "application/octet-stream", "Cache-Control": "no-cache"}
        return Reply(200, headers, file.read_bytes(), label=path)

    def _file(self, path: str) -> Path | None:
        """The file under the web root that `path` names; None for anything else (no listings, no escapes)."""
        segments = ["index.html"] if path == "/" else path.split("/")[1:]
        for segment in segments:
            # Empty, dot and hidden segments, and separators of other systems, never name a console file.
            if not segment or segment.startswith(".") or "\\" in segment or ":" in segment:
                return None
        root = self.web_root.resolve()
        candidate = root.joinpath(*segments).resolve()
        if not candidate.is_relative_to(root) or not candidate.is_file():
            return None
        return candidate


def _split_target(environ: WSGIEnvironment) -> tuple[str, str]:
    """The request target's raw path and query, as the client sent them (still percent-encoded)."""
    target = str(environ.get("RAW_URI") or environ.get("PATH_INFO") or "")
    target = target.encode("latin-1").decode("utf-8", "replace")  # undo the WSGI encoding dance
    if target.lower().startswith(("http://", "https://")):
        parts = urlsplit(target)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    raw_path, _, raw_query = target.partition("?")
    if not raw_path.startswith("/"):
        raise _refuse(400, "invalid_path", "The request path must start with '/'.")
    if len(raw_path) > MAX_PATH:
        raise _refuse(414, "uri_too_long", f"The path is longer than {MAX_PATH} characters.")
    return raw_path, raw_query


def _decoded_path(raw_path: str) -> str:
    try:
        path = unquote_to_bytes(raw_path).decode("utf-8")
    except UnicodeDecodeError as error:
        raise _refuse(400, "invalid_path", "The path is not valid UTF-8 once percent-decoded.") from error
    if _CONTROL_CHARS.search(path) or "\ufffd" in raw_path:
        raise _refuse(400, "invalid_path", "The path holds control characters or undecodable bytes.")
    return path


def _read_body(environ: WSGIEnvironment) -> bytes | None:
    """The request body, framed exactly as HTTP/1.1 says, or a JSON refusal."""
    stream = environ["wsgi.input"]
    lengths = environ.get("devstack.content_lengths") or []
    encoding = str(environ.get("HTTP_TRANSFER_ENCODING", "")).strip().lower()
    if encoding:
        if encoding != "chunked":
            raise _refuse(400, "unsupported_transfer_encoding", "Only Transfer-Encoding: chunked is supported.")
        if lengths:
            # Both framings at once is how request smuggling starts; RFC 9112 lets a server refuse it.
            raise _refuse(400, "invalid_content_length", "Send Content-Length or chunked encoding, not both.")
        try:
            data: bytes = stream.read(MAX_BODY + 1)
        except TimeoutError as error:
            raise _stalled("The chunked body stopped arriving.") from error
        except OSError as error:
            raise _refuse(400, "invalid_chunked_body", "The chunked body is malformed.") from error
        if len(data) > MAX_BODY:
            raise _refuse(413, "payload_too_large", "The body is over 10 MB.")
        return data or None
    if not lengths:
        return None
    if len(set(lengths)) > 1 or not _DIGITS.fullmatch(lengths[0].strip()):
        raise _refuse(400, "invalid_content_length", "Content-Length must be one non-negative integer.")
    length = int(lengths[0])
    if length > MAX_BODY:
        raise _refuse(413, "payload_too_large", "The body is over 10 MB.")
    if length == 0:
        return None
    try:
        data = stream.read(length)
    except TimeoutError as error:  # the client sent part of the body and then nothing
        raise _stalled(f"The body stopped arriving before its {length} bytes.") from error
    if len(data) < length:
        raise _refuse(400, "incomplete_body", f"The body ended after {len(data)} of {length} bytes.")
    return data


def _stalled(message: str) -> _Refused:
    return _refuse(408, "request_timeout", f"{message} Nothing was done; send the request again.")


def _headers(environ: WSGIEnvironment, body: bytes | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = key[5:].replace("_", "-").lower()
            if name not in _HOP_BY_HOP:
                headers[name] = str(value)
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = str(environ["CONTENT_TYPE"])
    if body:
        headers["content-length"] = str(len(body))
    return headers


class _RequestHandler(WSGIRequestHandler):
    # A client that connects and sends nothing (or half a body) gives its thread back after this long.
    timeout = 60

    def make_environ(self) -> WSGIEnvironment:
        environ = super().make_environ()
        # Werkzeug keeps only the last of repeated Content-Length headers; disagreeing copies are refused.
        environ["devstack.content_lengths"] = self.headers.get_all("Content-Length") or []
        return environ

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol-level refusals (bad request line, headers too large) in the API's JSON shape, not HTML."""
        phrase = HTTPStatus(code).phrase if code in HTTPStatus._value2member_map_ else "Error"
        codes = {414: "uri_too_long", 431: "headers_too_large", 505: "http_version_not_supported"}
        reply = Reply.error(code, codes.get(code, "bad_request"), message or phrase)
        log.info("%s %s %d", _printable(str(getattr(self, "command", None) or "-"), 20), "(malformed request)", code)
        self.send_response(code, phrase)
        for name, value in {**reply.headers, **SECURITY_HEADERS}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if getattr(self, "command", None) != "HEAD" and code >= 200 and code not in {204, 304}:
            self.wfile.write(reply.body)
        self.close_connection = True

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """The application logs one line per request, with its route and duration."""

    def log_error(self, format: str, *args: Any) -> None:
        log.debug(format, *args)


class _Server(ThreadedWSGIServer):
    # Werkzeug's default of 128 is enough for 40 clients; bursts from load tools are bigger.
    request_queue_size = 1024

    def __init__(self, host: str, port: int, app: LocalApp):
        self._inflight = 0
        self._idle = threading.Condition()
        super().__init__(host, port, app, handler=_RequestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Counted here, in the accepting thread, so a stop that follows at once still waits for it.
        with self._idle:
            self._inflight += 1
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._done()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._done()

    def _done(self) -> None:
        with self._idle:
            self._inflight -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._inflight == 0, timeout=timeout)

    @property
    def inflight(self) -> int:
        with self._idle:
            return self._inflight


class LocalApi:
    """The server on its own thread: `start`, `url`, and `stop`, which lets requests in flight finish."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 3000,
        web_root: Path | None = None,
        about: dict[str, str] | None = None,
    ):
        self.app = LocalApp(web_root, about)
        try:
            self.httpd = _Server(host, port, self.app)
        except SystemExit as error:  # Werkzeug exits on a busy port; say which knob picks another
            raise OSError(f"cannot listen on {host}:{port} (in use?): choose another port with API_PORT") from error
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="local-api", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self.thread.start()

    def stop(self, drain_seconds: float = DRAIN_SECONDS) -> bool:
        """Stop accepting, then wait up to `drain_seconds` for requests in flight; True if all finished."""
        self.httpd.shutdown()  # serve_forever returns and closes the listening socket
        self.thread.join(timeout=5)
        drained = self.httpd.wait_idle(drain_seconds)
        if not drained:
            log.warning("stopped with %d request(s) still running after %.0f s", self.httpd.inflight, drain_seconds)
        return drained
