"""The local HTTP server on loopback: framing, methods, paths, static files, headers, drain, Logger keys.

The gateway is replaced by a recorder here (no AWS): what is under test is what the server does before and
after a function runs. `tests/integration/test_newcomer.py` covers the same server in front of the real stack.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack import gateway, server, template
from devstack.gateway import ApiResponse


class Recorder:
    """Stands in for `gateway.call`: records what reached it, answers 200 (or waits, when told to)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def __call__(self, method: str, path: str, **kw: Any) -> ApiResponse:
        self.calls.append({"method": method, "path": path, **kw})
        self.entered.set()
        assert self.release.wait(timeout=60), "the test never released the request"
        body = kw.get("raw_body")
        echo = body.decode("latin-1") if isinstance(body, bytes) else body
        text = json.dumps({"method": method, "path": path, "body": echo})
        return ApiResponse(200, {"content-type": "application/json"}, text, route=f"{method} /ai-sessions")


@pytest.fixture
def web(tmp_path: Path) -> Path:
    root = tmp_path / "web"
    (root / "js" / "views").mkdir(parents=True)
    (root / "css").mkdir()
    (root / "index.html").write_text("<!doctype html><title>console</title>")
    (root / "js" / "app.js").write_text("export const answer = 42;\n")
    (root / "js" / "views" / "list.mjs").write_text("export default 1;\n")
    (root / "css" / "app.css").write_text("body { margin: 0 }\n")
    (root / ".env").write_text("SECRET=1\n")
    (tmp_path / "outside.txt").write_text("not for the web\n")
    return root


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    fake = Recorder()
    monkeypatch.setattr(gateway, "call", fake)
    return fake


@pytest.fixture
def api(web: Path, recorder: Recorder) -> Iterator[server.LocalApi]:
    local = server.LocalApi(port=0, web_root=web, about={"moto_endpoint": "http://127.0.0.1:1"})
    local.start()
    try:
        yield local
    finally:
        recorder.release.set()
        local.stop(drain_seconds=10)


def exchange(api: server.LocalApi, raw: bytes, head_request: bool = False) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes and read one answer, framed by its Content-Length as HTTP clients do."""
    host, port = api.httpd.server_address[:2]
    with socket.create_connection((str(host), int(port)), timeout=30) as sock:
        sock.sendall(raw)
        received = b""
        while b"\r\n\r\n" not in received and (data := sock.recv(65536)):
            received += data
        head, _, body = received.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = 0 if head_request else int(headers.get("content-length", "0"))
        while len(body) < length and (data := sock.recv(65536)):
            body += data
    return int(status_line.split()[1]), headers, body


def request(api: server.LocalApi, method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b""):
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return exchange(api, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body, head_request=method == "HEAD")


def assert_json_error(status: int, headers: dict[str, str], body: bytes, expected_status: int, code: str) -> None:
    assert status == expected_status, body
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["error"]["code"] == code
    assert_security_headers(headers)


def assert_security_headers(headers: dict[str, str]) -> None:
    assert headers["content-security-policy"] == server.CONTENT_SECURITY_POLICY
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"


# --- request framing ---


def test_chunked_body_reaches_the_function_whole(api: server.LocalApi, recorder: Recorder) -> None:
    payload = b'{"title": "VPN drops", "problem": "p\xc3\xa9"}'
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (payload[:7], payload[7:30], payload[30:]))
    status, _, body = request(
        api,
        "POST",
        "/ai-sessions",
        {"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        chunked + b"0\r\n\r\n",
    )
    assert status == 200, body
    assert recorder.calls[-1]["raw_body"] == payload.decode()
    assert recorder.calls[-1]["headers"]["content-length"] == str(len(payload))
    assert "transfer-encoding" not in recorder.calls[-1]["headers"]


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Length": "abc"},
        {"Content-Length": "-1"},
        {"Content-Length": "+2"},
        {"Content-Length": "0x10"},
        {"Content-Length": "2, 2"},
    ],
)
def test_bad_content_length_is_a_json_400(api: server.LocalApi, recorder: Recorder, headers: dict[str, str]) -> None:
    status, got, body = request(api, "POST", "/ai-sessions", {"Content-Type": "application/json", **headers}, b"{}")
    assert_json_error(status, got, body, 400, "invalid_content_length")
    assert recorder.calls == []


def test_disagreeing_content_lengths_are_refused(api: server.LocalApi, recorder: Recorder) -> None:
    raw = b"POST /ai-sessions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}x"
    assert_json_error(*exchange(api, raw), 400, "invalid_content_length")
    assert recorder.calls == []


def test_chunked_plus_content_length_is_refused(api: server.LocalApi, recorder: Recorder) -> None:
    headers = {"Transfer-Encoding": "chunked", "Content-Length": "7"}
    assert_json_error(
        *request(api, "POST", "/ai-sessions", headers, b"2\r\n{}\r\n0\r\n\r\n"), 400, "invalid_content_length"
    )
    assert recorder.calls == []


def test_malformed_chunks_are_a_json_400(api: server.LocalApi, recorder: Recorder) -> None:
    headers = {"Transfer-Encoding": "chunked", "Content-Type": "application/json"}
    assert_json_error(
        *request(api, "POST", "/ai-sessions", headers, b"zz\r\n{}\r\n0\r\n\r\n"), 400, "invalid_chunked_body"
    )
    assert recorder.calls == []


@pytest.mark.parametrize(
    ("headers", "partial"),
    [
        ({"Content-Length": "100"}, b'{"kind": "'),
        ({"Transfer-Encoding": "chunked"}, b'40\r\n{"kind": "'),
    ],
    ids=["content-length", "chunked"],
)
def test_a_body_that_stops_arriving_is_a_json_408(
    api: server.LocalApi, recorder: Recorder, monkeypatch: pytest.MonkeyPatch, headers: dict[str, str], partial: bytes
) -> None:
    """Part of a body, then silence: once the server's read times out, a JSON 408 (it was a 500)."""
    monkeypatch.setattr(server._RequestHandler, "timeout", 0.5)
    status, answer_headers, body = request(
        api, "POST", "/ai-sessions/x/evidence", {**headers, "Content-Type": "application/json"}, partial
    )
    assert_json_error(status, answer_headers, body, 408, "request_timeout")
    assert recorder.calls == []


def test_oversized_body_is_a_json_413_without_reading_it(api: server.LocalApi, recorder: Recorder) -> None:
    headers = {"Content-Type": "application/json", "Content-Length": str(server.MAX_BODY + 1)}
    assert_json_error(*request(api, "POST", "/ai-sessions", headers), 413, "payload_too_large")
    assert recorder.calls == []


def test_oversized_chunked_body_is_a_json_413(api: server.LocalApi, recorder: Recorder) -> None:
    chunk = b"x" * (1024 * 1024)
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(11)) + b"0\r\n\r\n"
    headers = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    assert_json_error(*request(api, "POST", "/ai-sessions", headers, body), 413, "payload_too_large")
    assert recorder.calls == []


def test_a_bad_request_line_is_json_not_html(api: server.LocalApi) -> None:
    status, headers, body = exchange(api, b"GET /ai-sessions extra HTTP/1.1\r\nHost: x\r\n\r\n")
    assert_json_error(status, headers, body, 400, "bad_request")


def test_an_unparseable_version_still_gets_json(api: server.LocalApi) -> None:
    host, port = api.httpd.server_address[:2]
    with socket.create_connection((str(host), int(port)), timeout=30) as sock:
        sock.sendall(b"GET /ai-sessions HTTP/abc\r\n\r\n")
        answer = b"".join(iter(lambda: sock.recv(65536), b""))
    # No version to answer in, so no status line (HTTP/0.9 style); what comes is still the JSON error.
    assert json.loads(answer)["error"]["code"] == "bad_request"


def test_an_overlong_path_is_a_json_414(api: server.LocalApi) -> None:
    assert_json_error(*request(api, "GET", "/" + "a" * 5000), 414, "uri_too_long")


# --- methods and paths ---


@pytest.mark.parametrize("method", ["OPTIONS", "DELETE", "BREW", "TRACE"])
def test_other_methods_on_a_route_are_a_json_405_naming_the_allowed(
    api: server.LocalApi, recorder: Recorder, method: str
) -> None:
    status, headers, body = request(api, method, "/ai-sessions")
    assert_json_error(status, headers, body, 405, "method_not_allowed")
    assert headers["allow"] == "GET, POST, HEAD"
    assert recorder.calls == []


def test_head_is_get_without_the_body(api: server.LocalApi, recorder: Recorder) -> None:
    status, headers, body = request(api, "HEAD", "/ai-sessions?limit=5")
    assert status == 200
    assert body == b""
    assert int(headers["content-length"]) > 0
    assert recorder.calls[-1]["method"] == "GET"
    assert recorder.calls[-1]["query"] == {"limit": "5"}


@pytest.mark.parametrize("target", ["/ai-sessions/%ff", "/ai-sessions/a%00b", "/%C3%28", "/a%0d%0aSet-Cookie:x"])
def test_undecodable_or_control_paths_are_a_json_400(api: server.LocalApi, recorder: Recorder, target: str) -> None:
    assert_json_error(*request(api, "GET", target), 400, "invalid_path")
    assert recorder.calls == []


def test_a_query_that_is_not_utf8_is_a_json_400(api: server.LocalApi, recorder: Recorder) -> None:
    assert_json_error(*request(api, "GET", "/ai-sessions?status=%ff"), 400, "invalid_query")
    assert recorder.calls == []


def test_unknown_paths_are_a_json_404(api: server.LocalApi) -> None:
    assert_json_error(*request(api, "GET", "/nowhere/at/all"), 404, "not_found")
    assert_json_error(*request(api, "POST", "/ai-sessions/x/y/z"), 404, "not_found")


def test_api_paths_go_to_the_gateway_still_encoded(api: server.LocalApi, recorder: Recorder) -> None:
    status, headers, _ = request(api, "GET", "/ai-sessions/ses%5Fabc", {"X-Dev-Account-Id": "acct-x"})
    assert status == 200
    assert_security_headers(headers)
    assert recorder.calls[-1]["path"] == "/ai-sessions/ses%5Fabc"  # as API Gateway's rawPath
    assert recorder.calls[-1]["headers"]["x-dev-account-id"] == "acct-x"


# --- static files of the console ---


def test_the_console_is_served_at_the_root_with_the_security_headers(api: server.LocalApi) -> None:
    status, headers, body = request(api, "GET", "/")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert body == b"<!doctype html><title>console</title>"
    assert_security_headers(headers)


@pytest.mark.parametrize(
    ("target", "content_type"),
    [
        ("/js/app.js", "text/javascript; charset=utf-8"),
        ("/js/views/list.mjs", "text/javascript; charset=utf-8"),
        ("/css/app.css", "text/css; charset=utf-8"),
        ("/index.html", "text/html; charset=utf-8"),
    ],
)
def test_files_have_their_content_type(api: server.LocalApi, web: Path, target: str, content_type: str) -> None:
    status, headers, body = request(api, "GET", target)
    assert status == 200
    assert headers["content-type"] == content_type
    assert body == (web / target.lstrip("/")).read_bytes()
    assert_security_headers(headers)


def test_head_of_a_file_has_its_length_and_no_body(api: server.LocalApi, web: Path) -> None:
    status, headers, body = request(api, "HEAD", "/js/app.js")
    assert (status, body) == (200, b"")
    assert int(headers["content-length"]) == len((web / "js" / "app.js").read_bytes())


@pytest.mark.parametrize(
    "target",
    [
        "/js/",
        "/js",
        "/css/",
        "/../outside.txt",
        "/%2e%2e/outside.txt",
        "/js/..%2f..%2foutside.txt",
        "/js/%2e%2e/%2e%2e/outside.txt",
        "/..%5coutside.txt",
        "/.env",
        "/js/missing.js",
        "//outside.txt",
    ],
)
def test_no_listing_no_escape_no_hidden_files(api: server.LocalApi, target: str) -> None:
    status, headers, body = request(api, "GET", target)
    assert_json_error(status, headers, body, 404, "not_found")
    assert b"not for the web" not in body and b"SECRET" not in body


def test_a_symlink_out_of_the_web_root_is_not_followed(api: server.LocalApi, web: Path) -> None:
    (web / "escape.txt").symlink_to(web.parent / "outside.txt")
    assert_json_error(*request(api, "GET", "/escape.txt"), 404, "not_found")


def test_writing_to_a_file_is_a_json_405(api: server.LocalApi) -> None:
    status, headers, body = request(api, "POST", "/index.html", {"Content-Length": "0"})
    assert_json_error(status, headers, body, 405, "method_not_allowed")
    assert headers["allow"] == "GET, HEAD"


def test_no_web_folder_is_a_json_404_at_the_root(tmp_path: Path, recorder: Recorder) -> None:
    local = server.LocalApi(port=0, web_root=tmp_path / "absent")
    local.start()
    try:
        assert_json_error(*request(local, "GET", "/"), 404, "not_found")
    finally:
        local.stop(drain_seconds=5)


def test_the_stack_tells_local_tools_where_moto_is(api: server.LocalApi) -> None:
    status, _, body = request(api, "GET", "/__devstack")
    assert status == 200
    assert json.loads(body) == {"moto_endpoint": "http://127.0.0.1:1"}


# --- stopping ---


def test_stop_lets_a_request_in_flight_finish(api: server.LocalApi, recorder: Recorder) -> None:
    recorder.release.clear()
    answers: list[tuple[int, dict[str, str], bytes]] = []
    client = threading.Thread(target=lambda: answers.append(request(api, "GET", "/ai-sessions")))
    client.start()
    assert recorder.entered.wait(timeout=30)
    drained: list[bool] = []
    stopper = threading.Thread(target=lambda: drained.append(api.stop(drain_seconds=60)))
    stopper.start()
    stopper.join(timeout=0.5)
    assert stopper.is_alive(), "stop returned while a request was still running"
    recorder.release.set()
    stopper.join(timeout=60)
    client.join(timeout=60)
    assert drained == [True]
    assert answers and answers[0][0] == 200
    with pytest.raises(OSError):
        request(api, "GET", "/ai-sessions")  # no longer listening


def test_stop_is_bounded_when_a_request_never_ends(api: server.LocalApi, recorder: Recorder) -> None:
    recorder.release.clear()
    client = threading.Thread(target=lambda: request(api, "GET", "/ai-sessions"), daemon=True)
    client.start()
    assert recorder.entered.wait(timeout=30)
    assert api.stop(drain_seconds=0.2) is False
    recorder.release.set()
    client.join(timeout=60)


# --- the CSP has one home ---


def test_cloudfront_serves_the_same_content_security_policy() -> None:
    policies = template.resources("AWS::CloudFront::ResponseHeadersPolicy")
    assert policies, "template.yaml has no CloudFront ResponseHeadersPolicy: the console's hosting has no CSP"
    found = []
    for res in policies.values():
        security = res["Properties"]["ResponseHeadersPolicyConfig"].get("SecurityHeadersConfig", {})
        found.append(security.get("ContentSecurityPolicy", {}).get("ContentSecurityPolicy"))
    assert server.CONTENT_SECURITY_POLICY in found, yaml.safe_dump(found)


# --- Powertools Logger keys per thread ---


def test_logger_keys_do_not_leak_between_threads() -> None:
    from flowpilot.observability import logger

    gateway.isolate_logger_keys()
    gateway.isolate_logger_keys()  # idempotent
    api_started, step_keys_set, api_done = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, dict[str, Any]] = {}

    def step() -> None:
        assert api_started.wait(timeout=30)  # the API handler is mid-invocation, as when it waits for a post
        logger.structure_logs(function_name="flowpilot-local-writeback-steps")
        logger.append_keys(step="record_failure")
        step_keys_set.set()
        assert api_done.wait(timeout=30)
        seen["step"] = dict(logger.get_current_keys())

    def api_handler() -> None:
        logger.structure_logs(function_name="flowpilot-local-writebacks")
        api_started.set()
        assert step_keys_set.wait(timeout=30)
        seen["api"] = dict(logger.get_current_keys())  # what its "request refused" line would carry
        api_done.set()

    threads = [threading.Thread(target=step), threading.Thread(target=api_handler)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert seen["api"]["function_name"] == "flowpilot-local-writebacks"
    assert "step" not in seen["api"]
    assert seen["step"]["function_name"] == "flowpilot-local-writeback-steps"
    assert seen["step"]["step"] == "record_failure"
