"""The newcomer check: the stack booted as the README says, used as the README says.

`python -m devstack` in a subprocess on free ports; the README's curl examples parsed from README.md and run
with bash; the demo twice; malformed requests; a burst of 40 concurrent requests; `make invoke`'s module on
every sample event; SIGTERM stops it cleanly. Everything on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack import invoke, sample_events, template
from devstack.stack import free_port

ROOT = template.ROOT
README = ROOT / "README.md"


class RunningStack:
    def __init__(self, port: int, process: subprocess.Popen[bytes], log: Path):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.process = process
        self.log = log

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "API_PORT": str(self.port), **extra}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    log = tmp_path_factory.mktemp("newcomer") / "stack.log"
    port, moto_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_", "FLOWPILOT_"))}
    env.update({"API_PORT": str(port), "MOTO_PORT": str(moto_port), "DRIFT_CHECK_SECONDS": "1"})
    env.pop("ANTHROPIC_API_KEY", None)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "devstack"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    running = RunningStack(port, process, log)
    try:
        for _ in range(600):  # up to ~2 minutes on a loaded CI machine
            if process.poll() is not None:
                pytest.fail(f"the stack exited early:\n{running.output()}")
            try:
                if httpx.get(f"{running.url}/ai-sessions", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            threading.Event().wait(0.2)
        else:
            pytest.fail(f"the stack never answered:\n{running.output()}")
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
    assert process.returncode == 0, running.output()
    assert "Stopped." in running.output()


def readme_try_it_script() -> str:
    text = README.read_text()
    section = text[text.index("## Try it") :]
    match = re.search(r"```bash\n(.*?)```", section, re.S)
    assert match, "README's 'Try it' section has no bash block"
    return match.group(1)


def test_the_readme_curl_examples_work_as_written(stack: RunningStack) -> None:
    script = readme_try_it_script()
    assert "API=http://127.0.0.1:3000" in script, "the README's examples no longer set API= as this test expects"
    script = script.replace("API=http://127.0.0.1:3000", f"API={stack.url}")
    ran = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=120, env=stack.env()
    )
    assert ran.returncode == 0, ran.stderr
    out = ran.stdout
    assert '"from_cache":' in out
    assert '"outcome":"resolved"' in out.replace(" ", ""), out
    assert '"verified_status_name":"Resolved"' in out.replace(" ", ""), out
    assert '"error"' not in out, out


def test_the_demo_runs_twice_on_one_stack_with_quiet_logs(stack: RunningStack) -> None:
    for run in (1, 2):
        ran = subprocess.run(
            [sys.executable, "-m", "devstack.demo"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=180,
            env=stack.env(),  # no --api: the demo finds the stack from API_PORT, as `make demo` does
        )
        assert ran.returncode == 0, f"run {run}:\n{ran.stdout}\n{ran.stderr}"
        assert "Demo complete." in ran.stdout
        assert "-> 502" in ran.stdout  # the silent reject is shown on every run
    log = stack.output()
    assert "Exception=FailureEventException" not in log  # moto's state repr on a failed execution
    assert '"_aws"' not in log  # no EMF blob with metrics off
    assert '"level"' not in log  # the functions' JSON lines only at LOG_LEVEL=DEBUG
    assert re.search(r"devstack\.api\s+POST /ai-sessions/\{session_id\}/resolution-note/post 502 \d+ ms", log), log
    assert re.search(r"devstack\.step\s+verify wb_\w+ failed \w+ \d+ ms", log), log


def test_the_demo_names_api_port_when_nothing_answers(stack: RunningStack) -> None:
    ran = subprocess.run(
        [sys.executable, "-m", "devstack.demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**stack.env(), "API_PORT": str(free_port())},
    )
    assert ran.returncode != 0
    assert "Nothing answers" in ran.stderr and "API_PORT" in ran.stderr


def raw_request(stack: RunningStack, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", stack.port), timeout=60) as sock:
        sock.sendall(raw)
        received = b""
        while b"\r\n\r\n" not in received and (data := sock.recv(65536)):
            received += data
        head, _, body = received.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        length = 0 if raw.startswith(b"HEAD ") else int(headers.get("content-length", "0"))
        while len(body) < length and (data := sock.recv(65536)):
            body += data
    return int(status_line.split()[1]), headers, body


def test_a_chunked_post_reaches_the_handler(stack: RunningStack) -> None:
    payload = b'{"title": "Chunked", "problem": "Sent in chunks"}'
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (payload[:10], payload[10:])) + b"0\r\n\r\n"
    raw = (
        b"POST /ai-sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunks
    )
    status, _, body = raw_request(stack, raw)
    assert status == 201, body
    assert json.loads(body)["title"] == "Chunked"


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"POST /ai-sessions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}", 400, "invalid_content_length"),
        (b"POST /ai-sessions HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n{}", 400, "invalid_content_length"),
        (b"POST /ai-sessions HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n", 413, "payload_too_large"),
        (b"OPTIONS /ai-sessions HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method_not_allowed"),
        (b"PATCH /ai-sessions/ses_1 HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method_not_allowed"),
        (b"GET /ai-sessions/%ff HTTP/1.1\r\nHost: x\r\n\r\n", 400, "invalid_path"),
        (b"GET /ai-sessions/x/nowhere HTTP/1.1\r\nHost: x\r\n\r\n", 404, "not_found"),
        (b"GET /ai-sessions extra HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"),
        (b"HEAD /ai-sessions/x/nowhere HTTP/1.1\r\nHost: x\r\n\r\n", 404, None),
    ],
)
def test_malformed_requests_get_json_errors(stack: RunningStack, raw: bytes, status: int, code: str | None) -> None:
    got, headers, body = raw_request(stack, raw)
    assert got == status, body
    assert headers["content-type"] == "application/json"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    if code is not None:
        assert json.loads(body)["error"]["code"] == code


def test_head_answers_like_get_without_a_body(stack: RunningStack) -> None:
    status, headers, body = raw_request(stack, b"HEAD /ai-sessions HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (status, body) == (200, b"")
    assert int(headers["content-length"]) > 0


def test_forty_concurrent_requests_without_a_reset(stack: RunningStack) -> None:
    start = threading.Barrier(40, timeout=60)

    def create(i: int) -> int:
        with httpx.Client(timeout=120) as client:  # a connection of its own, like 40 separate clients
            start.wait()
            response = client.post(f"{stack.url}/ai-sessions", json={"title": f"Burst {i}", "problem": "Burst"})
            return response.status_code

    with ThreadPoolExecutor(max_workers=40) as pool:
        statuses = list(pool.map(create, range(40)))
    assert statuses == [201] * 40


def test_make_invoke_runs_every_sample_event_against_the_running_stack(stack: RunningStack) -> None:
    files = sorted(sample_events.EVENTS_DIR.glob("*__*.json"))
    assert len(files) == len(sample_events.events())
    ran = subprocess.run(
        [sys.executable, "-m", "devstack.invoke", *map(str, files)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        env=stack.env(),
    )
    assert ran.returncode == 0, ran.stderr
    assert f"Using the local stack at {stack.url}" in ran.stderr
    responses = [json.loads(line) for line in ran.stdout.splitlines()]
    assert len(responses) == len(files)
    for path, response in zip(files, responses, strict=True):
        # The samples' session does not exist: a clean 404, never a 500 or a crash.
        assert response.get("statusCode") in {200, 201, 404}, (path.name, response)
        assert json.loads(response["body"])
    # It ran against the stack's own tables: the session the sample created is there for its account.
    listed = httpx.get(f"{stack.url}/ai-sessions", headers={"X-Dev-Account-Id": "acct-sample"}, timeout=30).json()
    assert any(item["title"] == "VPN drops every 10 minutes" for item in listed["items"])


def test_make_invoke_starts_its_own_stack_when_none_answers() -> None:
    event = sample_events.EVENTS_DIR / "sessions__post_ai_sessions.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_", "FLOWPILOT_"))}
    env["API_PORT"] = str(free_port())
    ran = subprocess.run(
        [sys.executable, "-m", "devstack.invoke", "--function", "SessionsFunction", str(event)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert ran.returncode == 0, ran.stderr
    assert "fresh in-process stack" in ran.stderr
    response: dict[str, Any] = json.loads(ran.stdout.strip())
    assert response["statusCode"] == 201
    assert json.loads(response["body"])["created_by"] == "engineer-sample"


def test_env_local_json_is_current() -> None:
    on_disk = json.loads(invoke.ENV_LOCAL_PATH.read_text())
    assert on_disk == invoke.env_local(), "events/env.local.json is stale: python -m devstack.invoke --write-env-local"


def test_env_local_json_only_sets_variables_sam_passes_through() -> None:
    parameters = invoke.env_local()["Parameters"]
    assert parameters["FLOWPILOT_AWS_ENDPOINT_URL"] == "http://127.0.0.1:3001"  # make dev's MOTO_PORT
    # `sam local invoke --env-vars` only overrides variables the template declares for the function.
    declared = set(template.load()["Globals"]["Function"]["Environment"]["Variables"])
    for function in template.functions().values():
        declared |= set(function.environment)
    assert sorted(set(parameters) - declared) == []
