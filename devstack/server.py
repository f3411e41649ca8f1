"""The local HTTP API: serves exactly the routes of template.yaml through each function's lambda_handler."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from devstack import gateway

MAX_BODY = 10 * 1024 * 1024  # API Gateway's payload limit


class _ApiHandler(BaseHTTPRequestHandler):
    server_version = "FlowPilotLocalApi/1.0"
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        if length > MAX_BODY:
            self._send(
                413,
                {"content-type": "application/json"},
                json.dumps({"error": {"code": "payload_too_large", "message": "Body over 10 MB."}}),
            )
            return
        raw = self.rfile.read(length) if length else None
        try:
            body_text: str | bytes | None = raw.decode("utf-8") if raw is not None else None
        except UnicodeDecodeError:
            body_text = raw
        response = gateway.call(
            self.command,
            parts.path,
            raw_body=body_text,
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers={k: v for k, v in self.headers.items()},
        )
        self._send(response.status, response.headers, response.text)

    def _send(self, status: int, headers: dict[str, str], text: str) -> None:
        data = text.encode()
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in {"content-length", "connection"}:
                self.send_header(name, value)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        message: str = format % args
        print("  api  " + message, flush=True)


class LocalApi:
    def __init__(self, host: str = "127.0.0.1", port: int = 3000):
        self.httpd = ThreadingHTTPServer((host, port), _ApiHandler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="local-api", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
