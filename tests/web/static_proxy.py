"""A stand-in for the local stack's console serving, used only while the stack does not serve `web/` itself.

Serves `web/` at `/` with the console's Content-Security-Policy and proxies every other path (the API
routes, `redirect_path`s) to the local stack, so the browser sees one origin, as in AWS behind CloudFront.
"""

from __future__ import annotations

import mimetypes
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
WEB_ROOT = Path(__file__).resolve().parents[2] / "web"
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "host"}


def _static_file(path: str) -> Path | None:
    relative = "index.html" if path in {"", "/"} else path.lstrip("/")
    candidate = (WEB_ROOT / relative).resolve()
    if WEB_ROOT not in candidate.parents or not candidate.is_file():
        return None
    return candidate


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _serve(self) -> None:
        path = urlsplit(self.path).path
        file = _static_file(path) if self.command == "GET" else None
        if file is not None:
            data = file.read_bytes()
            kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
            if file.suffix in {".js", ".mjs"}:
                kind = "text/javascript"
            self._send(200, {"Content-Type": kind, "Cache-Control": "no-cache"}, data)
            return
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        upstream = self.server.client.request(self.command, self.path, content=body, headers=headers)
        answer = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
        self._send(upstream.status_code, answer, upstream.content)

    def _send(self, status: int, headers: dict[str, str], data: bytes) -> None:
        self.send_response(status)
        for name, value in {**headers, **SECURITY_HEADERS}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    client: httpx.Client


class ConsoleProxy:
    def __init__(self, api_url: str) -> None:
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.client = httpx.Client(base_url=api_url, timeout=60)
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="console-proxy", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.httpd.client.close()
