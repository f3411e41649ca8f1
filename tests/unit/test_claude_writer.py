"""The Claude writer, driving the real `anthropic` SDK against an in-process Messages API.

The SDK sits on `httpx2`, so the fake API is an `httpx2.MockTransport` handed to the SDK as its
`http_client`. Waits between retries go through the writer's injected `sleep`, recorded, never slept.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anthropic  # imported here so its ~1.2 s is paid at collection, not inside a test
import httpx2
import pytest

from flowpilot import writers
from flowpilot.config import settings
from flowpilot.errors import BadGateway, UpstreamTimeout, UpstreamUnavailable
from flowpilot.models import Evidence, EvidenceKind, PreviewKind, PreviewUsage, Session, SessionStatus
from flowpilot.writers import ESCALATION_HEADINGS, OfflineWriter
from flowpilot.writers.claude import MAX_OUTPUT_TOKENS, ClaudeWriter
from flowpilot.writers.prompt import SYSTEM_PROMPT_ESCALATION, SYSTEM_PROMPT_RESOLUTION
from tests.helpers import anthropic_message
from tests.leakcheck import register_secret

ESCALATION = PreviewKind.escalation_package
RESOLUTION = PreviewKind.resolution_note
API_KEY = "test-" + "key-not-real"
register_secret(API_KEY, "Anthropic API key (claude writer test)")
PACKAGE = "\n\n".join(f"{heading}\n- from the evidence" for heading in ESCALATION_HEADINGS)
Handler = Callable[[httpx2.Request], httpx2.Response]


def session() -> Session:
    return Session(
        id="sess-1",
        title="VPN drops every 10 minutes",
        problem="GlobalProtect disconnects every 10 minutes for the sales team.",
        status=SessionStatus.active,
        state_version=3,
        created_by="engineer-a",
        created_at="2024-05-01T09:00:00Z",
        updated_at="2024-05-01T09:00:00Z",
    )


EVIDENCE = [
    Evidence(
        id="ev-1",
        session_id="sess-1",
        kind=EvidenceKind.tried,
        text="Raised the idle timeout on the portal to 60 minutes",
        result="Drops continued",
        created_by="engineer-a",
        created_at="2024-05-01T09:10:00Z",
        state_version=2,
    ),
    Evidence(
        id="ev-2",
        session_id="sess-1",
        kind=EvidenceKind.hypothesis,
        text="DHCP lease on the VPN pool is too short",
        created_by="engineer-a",
        created_at="2024-05-01T09:20:00Z",
        state_version=3,
    ),
]


def usage(cache_read: int | None = 1200) -> dict[str, Any]:
    """What the API reports; without prompt caching its two cache counts are null."""
    return {
        "input_tokens": 812,
        "output_tokens": 240,
        "cache_read_input_tokens": cache_read,
        "cache_creation_input_tokens": None if cache_read is None else 0,
    }


def error(status: int, kind: str, headers: dict[str, str] | None = None) -> httpx2.Response:
    body = {"type": "error", "error": {"type": kind, "message": f"{kind} (fake)"}}
    return httpx2.Response(status, json=body, headers=headers or {})


@dataclass
class FakeMessagesApi:
    """Answers each request with the next scripted response (or raises the scripted exception)."""

    script: list[httpx2.Response | Exception]
    requests: list[httpx2.Request] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, Exception):
            raise step
        return step

    def writer(self, **kw: Any) -> ClaudeWriter:
        client = httpx2.Client(transport=httpx2.MockTransport(self.handle))
        return ClaudeWriter(api_key=API_KEY, http_client=client, sleep=self.sleeps.append, **kw)

    def body(self, index: int = 0) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(self.requests[index].content)
        return body


def ok(
    text: str | list[str] = PACKAGE, *, stop_reason: str = "end_turn", cache_read: int | None = 1200
) -> httpx2.Response:
    return httpx2.Response(200, json=anthropic_message(text, stop_reason=stop_reason, usage=usage(cache_read)))


@pytest.fixture(autouse=True)
def _model_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in (
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "ANTHROPIC_BASE_URL",
        "ANTHROPIC_CUSTOM_HEADERS",
    ):
        monkeypatch.delenv(var, raising=False)
    for var in ("ANTHROPIC_MODEL", "ANTHROPIC_TIMEOUT_SECONDS", "ANTHROPIC_MAX_RETRIES"):
        monkeypatch.delenv(var, raising=False)
    settings.cache_clear()
    yield
    settings.cache_clear()


def test_request_shape_usage_and_exactly_one_call() -> None:
    api = FakeMessagesApi([ok()])
    document = api.writer().write(ESCALATION, session(), EVIDENCE)

    assert len(api.requests) == 1
    request = api.requests[0]
    assert request.method == "POST"
    assert request.url.path == "/v1/messages"
    assert request.url.host == "api.anthropic.com"
    # anthropic 2.x sends the API key as a bearer token (not x-api-key).
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["anthropic-version"]
    body = api.body()
    assert body["model"] == settings().anthropic_model == "claude-sonnet-5-5"
    assert body["max_tokens"] == MAX_OUTPUT_TOKENS
    assert body["system"] == [
        {"type": "text", "text": SYSTEM_PROMPT_ESCALATION, "cache_control": {"type": "ephemeral"}}
    ]
    (user,) = body["messages"]
    assert user["role"] == "user"
    session_part, evidence_part = user["content"]
    assert session_part["cache_control"] == {"type": "ephemeral"}
    assert "GlobalProtect disconnects" in session_part["text"]
    assert "cache_control" not in evidence_part
    assert "Raised the idle timeout" in evidence_part["text"]
    assert "Result: Drops continued" in evidence_part["text"]

    assert document.markdown == PACKAGE + "\n"
    assert document.writer == "claude:claude-sonnet-5-5"
    assert document.usage == PreviewUsage(
        input_tokens=812, output_tokens=240, cache_read_input_tokens=1200, cache_creation_input_tokens=0
    )
    assert document.trimmed_evidence == 0
    assert api.sleeps == []


def test_resolution_note_joins_text_blocks_and_missing_cache_counts_are_zero() -> None:
    api = FakeMessagesApi([ok(["VPN drops fixed by a longer lease.\n\n", "## What we did\n- ..."], cache_read=None)])
    document = api.writer(model="claude-sonnet-4-6").write(RESOLUTION, session(), EVIDENCE)
    assert document.markdown == "VPN drops fixed by a longer lease.\n\n## What we did\n- ...\n"
    assert document.writer == "claude:claude-sonnet-4-6"
    assert document.usage is not None
    assert (document.usage.cache_read_input_tokens, document.usage.cache_creation_input_tokens) == (0, 0)
    body = api.body()
    assert body["model"] == "claude-sonnet-4-6"
    assert body["system"][0]["text"] == SYSTEM_PROMPT_RESOLUTION
    assert "DHCP lease" not in json.dumps(body)  # hypotheses never reach a customer-visible note


def test_rate_limited_after_the_retry_answers_503_with_the_apis_retry_after() -> None:
    api = FakeMessagesApi([error(429, "rate_limit_error", {"retry-after": "2"})])
    with pytest.raises(UpstreamUnavailable) as raised:
        api.writer().write(ESCALATION, session(), EVIDENCE)
    assert raised.value.code == "model_unavailable"
    assert raised.value.status == 503
    assert raised.value.retry_after == 2
    assert raised.value.headers() == {"Retry-After": "2"}
    assert len(api.requests) == 2  # one retry (ANTHROPIC_MAX_RETRIES=1)
    assert api.sleeps == [2.0]


def test_a_retry_after_longer_than_the_time_budget_is_not_waited_for() -> None:
    api = FakeMessagesApi([error(429, "rate_limit_error", {"retry-after": "45"})])
    with pytest.raises(UpstreamUnavailable) as raised:
        api.writer().write(ESCALATION, session(), EVIDENCE)
    assert raised.value.retry_after == 45
    assert len(api.requests) == 1
    assert api.sleeps == []


def test_a_rate_limit_then_success_returns_the_document() -> None:
    api = FakeMessagesApi([error(429, "rate_limit_error", {"retry-after": "1"}), ok()])
    document = api.writer().write(ESCALATION, session(), EVIDENCE)
    assert document.markdown.startswith("## Problem")
    assert len(api.requests) == 2
    assert api.sleeps == [1.0]


def test_overloaded_529_without_retry_after_defaults_to_10_seconds() -> None:
    api = FakeMessagesApi([error(529, "overloaded_error")])
    with pytest.raises(UpstreamUnavailable) as raised:
        api.writer().write(ESCALATION, session(), EVIDENCE)
    assert (raised.value.code, raised.value.retry_after) == ("model_unavailable", 10)
    assert len(api.requests) == 2
    assert api.sleeps == [0.5]  # the writer's own short backoff


def test_server_error_500_is_unavailable() -> None:
    api = FakeMessagesApi([error(500, "api_error")])
    with pytest.raises(UpstreamUnavailable) as raised:
        api.writer().write(RESOLUTION, session(), EVIDENCE)
    assert raised.value.code == "model_unavailable"
    assert isinstance(raised.value.__cause__, anthropic.InternalServerError)


def test_no_retries_when_configured_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_MAX_RETRIES", "0")
    settings.cache_clear()
    api = FakeMessagesApi([error(529, "overloaded_error")])
    with pytest.raises(UpstreamUnavailable):
        api.writer().write(ESCALATION, session(), EVIDENCE)
    assert len(api.requests) == 1


def test_connection_failure_is_unavailable() -> None:
    api = FakeMessagesApi([httpx2.ConnectError("connection refused")])
    with pytest.raises(UpstreamUnavailable) as raised:
        api.writer().write(ESCALATION, session(), EVIDENCE)
    assert (raised.value.code, raised.value.retry_after) == ("model_unavailable", 10)


def test_timeout_is_504() -> None:
    api = FakeMessagesApi([httpx2.ReadTimeout("read timed out")])
    with pytest.raises(UpstreamTimeout) as raised:
        api.writer().write(ESCALATION, session(), EVIDENCE)
    assert raised.value.code == "model_timeout"
    assert raised.value.status == 504
    assert isinstance(raised.value.__cause__, anthropic.APITimeoutError)


def test_the_time_budget_reaches_the_sdk() -> None:
    api = FakeMessagesApi([ok()])
    api.writer().write(ESCALATION, session(), EVIDENCE)
    assert 19 < float(api.requests[0].headers["x-stainless-timeout"]) <= 20


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
    ],
)
def test_rejected_requests_are_502_and_not_retried(status: int, kind: str) -> None:
    api = FakeMessagesApi([error(status, kind)])
    with pytest.raises(BadGateway) as raised:
        api.writer().write(ESCALATION, session(), EVIDENCE)
    assert raised.value.code == "model_rejected_request"
    assert raised.value.status == 502
    assert raised.value.details["upstream_status"] == status
    assert len(api.requests) == 1
    assert api.sleeps == []


@pytest.mark.parametrize(
    "response",
    [
        ok("## Problem\nVPN drops\n\n## What we've tried\n- lease change"),
        ok(PACKAGE.replace("## Current hypothesis", "## Hypothesis")),
        ok("Here is the package:\n\n" + PACKAGE),
        ok(PACKAGE + "\n\n## Extra section\n- invented"),
        ok(PACKAGE, stop_reason="max_tokens"),
        ok(""),
    ],
    ids=["missing-sections", "renamed-section", "preamble", "extra-section", "cut-off", "empty"],
)
def test_malformed_output_is_an_error_not_a_document(response: httpx2.Response) -> None:
    api = FakeMessagesApi([response])
    with pytest.raises(UpstreamUnavailable) as raised:
        api.writer().write(ESCALATION, session(), EVIDENCE)
    assert raised.value.code == "model_output_invalid"
    assert len(api.requests) == 1


def test_typographic_apostrophes_and_a_code_fence_are_tolerated() -> None:
    curly = PACKAGE.replace("'", "\u2019")
    api = FakeMessagesApi([ok("```markdown\n" + curly + "\n```")])
    document = api.writer().write(ESCALATION, session(), EVIDENCE)
    assert document.markdown == PACKAGE + "\n"


def test_hash_lines_inside_code_blocks_are_not_sections() -> None:
    script = "\n```powershell\n## flush the broker cache\nGet-Process -Name wam*\n```"
    package = PACKAGE.replace("## What we've tried\n- from the evidence", "## What we've tried\n- ran:" + script)
    api = FakeMessagesApi([ok(package)])
    assert api.writer().write(ESCALATION, session(), EVIDENCE).markdown == package + "\n"


def test_a_cut_off_resolution_note_is_an_error() -> None:
    api = FakeMessagesApi([ok("VPN drops fixed.\n\n## What we did\n- Raised the", stop_reason="max_tokens")])
    with pytest.raises(UpstreamUnavailable) as raised:
        api.writer().write(RESOLUTION, session(), EVIDENCE)
    assert raised.value.code == "model_output_invalid"


def test_anthropic_base_url_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://model-gateway.internal:4010")
    api = FakeMessagesApi([ok()])
    api.writer().write(ESCALATION, session(), EVIDENCE)
    assert str(api.requests[0].url) == "http://model-gateway.internal:4010/v1/messages"


def test_choose_picks_by_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    writers.reset_caches()
    assert isinstance(writers.choose(), OfflineWriter)
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    writer = writers.choose()
    assert isinstance(writer, ClaudeWriter)
    assert writer.name == "claude:claude-sonnet-5-5"
    assert writers.choose() is writer  # one writer per key and container: its connection is reused
    writers.reset_caches()


def test_importing_the_writers_does_not_import_anthropic() -> None:
    probe = (
        "import sys\n"
        "import flowpilot.writers\n"
        "from flowpilot.writers import choose\n"
        "assert type(choose()).__name__ == 'OfflineWriter'\n"
        "from flowpilot.writers.claude import ClaudeWriter\n"
        "ClaudeWriter(api_key='k')\n"  # constructing is free too: the SDK loads on the first write
        "print(sorted(m for m in sys.modules if m == 'anthropic' or m.startswith('anthropic.')))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert completed.stdout.strip() == "[]"
