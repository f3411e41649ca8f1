"""Previews through the real handler and moto DynamoDB; the Claude path runs the real `anthropic` SDK
against a mock Messages API transport (only the HTTP transport is replaced, never our writer)."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import boto3
import httpx2
import pytest

from devstack import aws
from devstack.events import LambdaContext
from devstack.gateway import ApiResponse
from flowpilot import clock, previews, sessions
from flowpilot.config import settings
from flowpilot.identity import Caller
from flowpilot.models import Evidence, EvidenceCreateRequest, EvidenceKind, PreviewKind, Session, SessionStatus
from flowpilot.store import dynamo, preview_cache
from flowpilot.store import sessions as session_store
from flowpilot.store.sessions import put_new_session
from flowpilot.writers import ESCALATION_HEADINGS, OfflineWriter
from flowpilot.writers.claude import DEFAULT_RETRY_AFTER_SECONDS, ClaudeWriter
from flowpilot.writers.prompt import build_prompt, document_kinds
from tests.conftest import Api
from tests.helpers import MESSAGE_USAGE, anthropic_message
from tests.leakcheck import register_secret

ROOT = Path(__file__).resolve().parents[2]
RESOLUTION = "resolution-note"
ESCALATION = "escalation-package"
register_secret("sk-ant-test", "Anthropic API key (previews test)")
register_secret("sk-ant-api03-" + "k" * 8 + "FromSecretsManager", "Anthropic API key (previews test, Secrets Manager)")
register_secret("sk-ant-other", "rotated Anthropic API key (previews test)")

RESOLUTION_TEXT = "VPN drops fixed by updating the client.\n\n## What we found\n- The client was outdated.\n"
ESCALATION_TEXT = (
    "## Problem\nVPN drops every 10 minutes.\n\n## What we've confirmed\n- Happens on Wi-Fi and LAN.\n\n"
    "## What we've tried\n- Reinstalled the client — still drops.\n\n## Current hypothesis\n"
    "- Idle timeout on the firewall (unconfirmed).\n\n## Suggested next steps\n- Check the firewall logs.\n"
)


def preview_path(session_id: str, kind: str) -> str:
    return f"/ai-sessions/{session_id}/{kind}/preview"


Reply = Callable[[httpx2.Request], httpx2.Response]


@dataclass
class FakeMessagesApi:
    """The Messages API behind `httpx2.MockTransport`: records every request, answers from a script.

    By default it answers each kind of document with a well-formed one; `script` overrides the next answers.
    """

    requests: list[httpx2.Request] = field(default_factory=list)
    script: list[Reply] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        if self.script:
            return self.script.pop(0)(request)
        system = json.loads(request.content)["system"][0]["text"]
        text = ESCALATION_TEXT if "escalation package" in system else RESOLUTION_TEXT
        return httpx2.Response(200, json=anthropic_message(text))

    def then(self, *replies: Reply) -> None:
        self.script.extend(replies)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]


def answer(status: int, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> Reply:
    return lambda _request: httpx2.Response(status, json=body or {}, headers=headers)


def api_error(status: int, error_type: str, headers: dict[str, str] | None = None) -> Reply:
    body = {"type": "error", "error": {"type": error_type, "message": f"{error_type} (test)"}}
    return answer(status, body, headers)


def read_timeout(request: httpx2.Request) -> httpx2.Response:
    raise httpx2.ReadTimeout("timed out (test)", request=request)


@pytest.fixture
def model(api: Api, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMessagesApi]:
    """The Claude writer (real SDK) with its HTTP transport replaced; retry waits are recorded, not slept."""
    fake = FakeMessagesApi()
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")

    def claude_writer() -> ClaudeWriter:
        client = httpx2.Client(transport=httpx2.MockTransport(fake))
        return ClaudeWriter(api_key="sk-ant-test", http_client=client, sleep=fake.sleeps.append)

    monkeypatch.setattr(previews, "writer_factory", claude_writer)
    yield fake


@pytest.fixture
def dynamodb_requests(api: Api) -> list[str]:
    """Names of the DynamoDB operations sent from now on (clear it to start counting afresh)."""
    sent: list[str] = []

    def record(event_name: str, **_: Any) -> None:
        sent.append(event_name.rsplit(".", 1)[-1])

    dynamo.client().meta.events.register("before-send.dynamodb.*", record)
    return sent


def cache_item(account_id: str, session_id: str, kind: str, state_version: int) -> dict[str, Any] | None:
    key = preview_cache.preview_key(account_id, session_id, PreviewKind(kind), state_version)
    item = dynamo.preview_cache_table().get_item(Key=key).get("Item")
    return dynamo.plain(item) if item else None


def add_evidence(api: Api, session_id: str, kind: str, text: str, result: str | None = None) -> dict[str, Any]:
    body = {"kind": kind, "text": text, **({"result": result} if result is not None else {})}
    response = api.post(f"/ai-sessions/{session_id}/evidence", body)
    assert response.status == 201, response.text
    return response.body


# --- the Claude path: request shape, usage, cache hit and miss ---


def test_claude_request_shape_and_usage_recorded(api: Api, model: FakeMessagesApi) -> None:
    session = api.new_session(psa_ticket={"provider": "connectwise", "ticket_id": "1001"})
    add_evidence(api, session["id"], "confirmed", "Drops happen on Wi-Fi and LAN")

    response = api.post(preview_path(session["id"], RESOLUTION))

    assert response.status == 200, response.text
    body = response.body
    assert body["markdown"] == RESOLUTION_TEXT
    assert body["from_cache"] is False
    assert body["kind"] == RESOLUTION
    assert body["writer"] == "claude:claude-sonnet-5-5"
    assert body["state_version"] == 2
    assert body["target_ticket_ref"] == {"provider": "connectwise", "ticket_id": "1001"}
    assert body["usage"] == MESSAGE_USAGE
    assert body["warnings"] == []

    assert len(model.requests) == 1
    request = model.requests[0]
    assert request.method == "POST" and request.url.path == "/v1/messages"
    assert request.headers["authorization"] == "Bearer sk-ant-test"
    assert "anthropic-version" in request.headers
    sent = json.loads(request.content)
    assert sent["model"] == settings().anthropic_model == "claude-sonnet-5-5"
    assert isinstance(sent["max_tokens"], int) and 0 < sent["max_tokens"] <= 4096
    assert sent["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert "resolution note" in sent["system"][0]["text"]
    user_text = "".join(block["text"] for block in sent["messages"][0]["content"])
    assert "Drops happen on Wi-Fi and LAN" in user_text

    stored = cache_item("acct-a", session["id"], RESOLUTION, 2)
    assert stored is not None
    assert stored["usage"] == MESSAGE_USAGE
    assert stored["writer"] == "claude:claude-sonnet-5-5"
    assert stored["markdown"] == RESOLUTION_TEXT
    ttl = stored["expires_at"] - int(time.time())
    assert settings().preview_ttl_seconds - 60 <= ttl <= settings().preview_ttl_seconds


def test_repeat_is_a_cache_hit_with_no_model_call_and_two_dynamodb_requests(
    api: Api, model: FakeMessagesApi, dynamodb_requests: list[str]
) -> None:
    session = api.new_session()
    first = api.post(preview_path(session["id"], ESCALATION))
    assert first.status == 200, first.text
    assert first.body["from_cache"] is False
    assert len(model.requests) == 1

    dynamodb_requests.clear()
    second = api.post(preview_path(session["id"], ESCALATION), {})

    assert second.status == 200, second.text
    assert second.body["from_cache"] is True
    assert len(model.requests) == 1, "a cache hit must not call the model"
    assert dynamodb_requests == ["GetItem", "GetItem"]
    assert {k: v for k, v in second.body.items() if k != "from_cache"} == {
        k: v for k, v in first.body.items() if k != "from_cache"
    }


def test_miss_makes_exactly_one_model_call(api: Api, model: FakeMessagesApi, dynamodb_requests: list[str]) -> None:
    session = api.new_session()
    dynamodb_requests.clear()

    response = api.post(preview_path(session["id"], RESOLUTION))

    assert response.status == 200, response.text
    assert len(model.requests) == 1
    # session, cache (miss), lease, evidence (newest first: one page), the preview in the lease's place
    assert dynamodb_requests == ["GetItem", "GetItem", "PutItem", "Query", "PutItem"]


def test_state_change_misses(api: Api, model: FakeMessagesApi) -> None:
    session = api.new_session()
    path = preview_path(session["id"], RESOLUTION)
    assert api.post(path).body["state_version"] == 1
    assert api.post(path).body["from_cache"] is True

    add_evidence(api, session["id"], "tried", "Updated the VPN client", "No drops for an hour")
    after_evidence = api.post(path).body
    assert after_evidence["from_cache"] is False
    assert after_evidence["state_version"] == 2
    assert len(model.requests) == 2
    assert "Updated the VPN client" in json.dumps(model.bodies()[1])

    linked = api.put(f"/ai-sessions/{session['id']}/psa-ticket", {"provider": "connectwise", "ticket_id": "77"})
    assert linked.status == 200, linked.text
    after_link = api.post(path).body
    assert after_link["from_cache"] is False
    assert after_link["state_version"] == 3
    assert after_link["target_ticket_ref"] == {"provider": "connectwise", "ticket_id": "77"}
    assert len(model.requests) == 3
    assert api.post(path).body["from_cache"] is True
    assert len(model.requests) == 3


def test_both_kinds_of_one_state_coexist(api: Api, model: FakeMessagesApi) -> None:
    session = api.new_session()
    resolution = api.post(preview_path(session["id"], RESOLUTION)).body
    escalation = api.post(preview_path(session["id"], ESCALATION)).body
    assert (resolution["from_cache"], escalation["from_cache"]) == (False, False)
    assert resolution["markdown"] == RESOLUTION_TEXT
    assert escalation["markdown"] == ESCALATION_TEXT

    again_resolution = api.post(preview_path(session["id"], RESOLUTION)).body
    again_escalation = api.post(preview_path(session["id"], ESCALATION)).body

    assert (again_resolution["from_cache"], again_escalation["from_cache"]) == (True, True)
    assert again_resolution["markdown"] == RESOLUTION_TEXT
    assert again_escalation["markdown"] == ESCALATION_TEXT
    assert again_escalation["kind"] == ESCALATION
    assert len(model.requests) == 2


def test_expired_cache_item_is_a_miss(api: Api, model: FakeMessagesApi) -> None:
    session = api.new_session()
    path = preview_path(session["id"], RESOLUTION)
    assert api.post(path).body["from_cache"] is False
    key = preview_cache.preview_key("acct-a", session["id"], PreviewKind(RESOLUTION), 1)
    # DynamoDB's TTL deletes lazily: the item is still there, past its expiry.
    dynamo.preview_cache_table().update_item(
        Key=key,
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues={":past": int(time.time()) - 5},
    )

    response = api.post(path)

    assert response.status == 200, response.text
    assert response.body["from_cache"] is False
    assert len(model.requests) == 2
    refreshed = cache_item("acct-a", session["id"], RESOLUTION, 1)
    assert refreshed is not None and refreshed["expires_at"] > time.time()
    assert api.post(path).body["from_cache"] is True


# --- secrets ---


def test_secret_in_model_output_is_reported_with_kind_and_line(api: Api, model: FakeMessagesApi) -> None:
    secret = "Hunter" + "42!vpn"
    session = api.new_session()
    add_evidence(api, session["id"], "tried", "Reset the VPN service account", "pass" + "word=" + secret)
    leaked = f"Summary line\n\n## What we did\n- Logged in with password={secret}\n"
    model.then(answer(200, anthropic_message(leaked)))

    body = api.post(preview_path(session["id"], RESOLUTION)).body

    # The writer never sends the secret to the model...
    assert secret not in json.dumps(model.bodies()[0])
    # ...and whatever the model writes is scanned.
    line = leaked.splitlines()[3]
    assert [(w["kind"], w["line"], w["column"]) for w in body["warnings"]] == [("password", 4, line.index(secret) + 1)]
    assert body["warnings"][0]["excerpt"].endswith("…")
    assert secret not in body["warnings"][0]["excerpt"]
    assert api.post(preview_path(session["id"], RESOLUTION)).body["warnings"] == body["warnings"]


def test_secret_in_evidence_never_reaches_the_offline_preview(api: Api) -> None:
    secret = "Hunter" + "42!vpn"
    session = api.new_session()
    add_evidence(api, session["id"], "tried", "Mapped the share", "pass" + "word=" + secret)

    body = api.post(preview_path(session["id"], ESCALATION)).body

    assert secret not in body["markdown"]
    assert "[redacted password]" in body["markdown"]
    assert body["warnings"] == []


# --- the offline writer (no key) ---


def test_offline_writer_escalation_has_the_five_sections_and_the_evidence(api: Api) -> None:
    assert "ANTHROPIC_API_KEY" not in os.environ
    session = api.new_session()
    add_evidence(api, session["id"], "confirmed", "Drops on every network")
    add_evidence(api, session["id"], "tried", "Reinstalled the client", "Still drops")
    add_evidence(api, session["id"], "hypothesis", "Firewall idle timeout")
    add_evidence(api, session["id"], "next_step", "Check firewall logs")

    response = api.post(preview_path(session["id"], ESCALATION))

    assert response.status == 200, response.text
    body = response.body
    assert body["writer"] == "offline"
    assert body["usage"] is None
    assert body["state_version"] == 5
    markdown = body["markdown"]
    headings = [line for line in markdown.splitlines() if line.startswith("## ")]
    assert headings == list(ESCALATION_HEADINGS)
    for text in (
        "Drops on every network",
        "Reinstalled the client",
        "Still drops",
        "Firewall idle timeout",
        "Check firewall logs",
    ):
        assert text in markdown
    assert markdown.index("Reinstalled the client") > markdown.index("## What we've tried")
    assert markdown.index("Firewall idle timeout") > markdown.index("## Current hypothesis")
    assert api.post(preview_path(session["id"], ESCALATION)).body["from_cache"] is True


def test_offline_resolution_note_leaves_out_internal_evidence(api: Api) -> None:
    session = api.new_session()
    add_evidence(api, session["id"], "tried", "Updated the VPN client", "No drops since")
    add_evidence(api, session["id"], "hypothesis", "Probably the firewall team's change")

    body = api.post(preview_path(session["id"], RESOLUTION)).body

    assert body["kind"] == RESOLUTION
    assert "Updated the VPN client" in body["markdown"]
    assert "firewall team" not in body["markdown"]


# --- model failures: 503/504 with a clear code, and nothing cached ---


@pytest.mark.parametrize(
    ("reply", "retry_after"),
    [
        (api_error(429, "rate_limit_error", {"retry-after": "7"}), "7"),
        (api_error(529, "overloaded_error"), str(DEFAULT_RETRY_AFTER_SECONDS)),
        (api_error(500, "api_error"), str(DEFAULT_RETRY_AFTER_SECONDS)),
    ],
    ids=["429", "529", "500"],
)
def test_model_unavailable_is_503_with_retry_after_and_not_cached(
    api: Api, model: FakeMessagesApi, reply: Reply, retry_after: str
) -> None:
    session = api.new_session()
    path = preview_path(session["id"], RESOLUTION)
    attempts = settings().anthropic_max_retries + 1
    model.then(*[reply] * attempts)

    response = api.post(path)

    assert response.status == 503, response.text
    assert response.body["error"]["code"] == "model_unavailable"
    assert response.headers["retry-after"] == retry_after
    assert len(model.requests) == attempts
    assert cache_item("acct-a", session["id"], RESOLUTION, 1) is None

    recovered = api.post(path)
    assert recovered.status == 200, recovered.text
    assert recovered.body["from_cache"] is False
    assert len(model.requests) == attempts + 1


def test_model_timeout_is_504_and_not_cached(api: Api, model: FakeMessagesApi) -> None:
    session = api.new_session()
    path = preview_path(session["id"], ESCALATION)
    attempts = settings().anthropic_max_retries + 1
    model.then(*[read_timeout] * attempts)

    response = api.post(path)

    assert response.status == 504, response.text
    assert response.body["error"]["code"] == "model_timeout"
    assert cache_item("acct-a", session["id"], ESCALATION, 1) is None
    assert api.post(path).body["from_cache"] is False
    assert len(model.requests) == attempts + 1


def test_malformed_escalation_from_the_model_is_not_cached(api: Api, model: FakeMessagesApi) -> None:
    session = api.new_session()
    path = preview_path(session["id"], ESCALATION)
    attempts = settings().anthropic_max_retries + 1
    model.then(*[answer(200, anthropic_message("## Problem\nOnly one section.\n"))] * attempts)

    response = api.post(path)

    assert response.status == 503, response.text
    assert response.body["error"]["code"] == "model_output_invalid"
    assert cache_item("acct-a", session["id"], ESCALATION, 1) is None


# --- tenancy and requests ---


def test_another_accounts_session_is_not_found(api: Api, api_b: Api, model: FakeMessagesApi) -> None:
    session = api.new_session()
    assert api.post(preview_path(session["id"], RESOLUTION)).status == 200

    for kind in (RESOLUTION, ESCALATION):
        response = api_b.post(preview_path(session["id"], kind))
        assert response.status == 404, response.text
        assert response.body["error"]["code"] == "session_not_found"
    assert len(model.requests) == 1


def test_cache_is_scoped_by_account(api: Api, api_b: Api, model: FakeMessagesApi) -> None:
    session = api.new_session()
    assert api.post(preview_path(session["id"], RESOLUTION)).body["from_cache"] is False
    # Account B owns a session with the very same id and state_version (ids are only unique per account).
    twin = api.get(f"/ai-sessions/{session['id']}").body
    put_new_session("acct-b", Session.model_validate({**twin, "title": "Printer offline", "created_by": "engineer-b"}))

    response = api_b.post(preview_path(session["id"], RESOLUTION))

    assert response.status == 200, response.text
    assert response.body["from_cache"] is False
    assert len(model.requests) == 2
    assert "Printer offline" in json.dumps(model.bodies()[1])
    assert cache_item("acct-a", session["id"], RESOLUTION, 1) is not None
    assert cache_item("acct-b", session["id"], RESOLUTION, 1) is not None


def test_unknown_session_and_malformed_id(api: Api) -> None:
    missing = api.post(preview_path("ses_missing", RESOLUTION))
    assert missing.status == 404
    assert missing.body["error"]["code"] == "session_not_found"
    malformed = api.post(preview_path("bad%20id", ESCALATION))
    assert malformed.status == 422, malformed.text
    assert malformed.body["error"]["code"] == "validation_error"


def test_non_json_body_is_refused(api: Api) -> None:
    session = api.new_session()
    response = api.post(
        preview_path(session["id"], RESOLUTION),
        raw_body="preview please",
        headers={"content-type": "text/plain"},
    )
    assert response.status == 415, response.text


# --- a cache hit never loads the SDK ---

_HIT_IN_FRESH_INTERPRETER = """
import json, os, sys
from moto import mock_aws
from devstack import aws, gateway

os.environ.update(aws.environment())
os.environ.pop("ANTHROPIC_API_KEY", None)
with mock_aws(config=aws.MOTO_CONFIG):
    aws.reset_process_caches()
    aws.create_tables()
    who = {"account_id": "acct-a", "user_id": "engineer-a"}
    session = gateway.call("POST", "/ai-sessions", body={"title": "VPN", "problem": "Drops."}, **who).body
    path = f"/ai-sessions/{session['id']}/resolution-note/preview"
    first = gateway.call("POST", path, **who)
    # With a key, any model call would now load the SDK (and fail: there is no network here).
    os.environ["ANTHROPIC_API_KEY"] = "sk-ant-test"
    os.environ["ANTHROPIC_BASE_URL"] = "http://127.0.0.1:9"
    second = gateway.call("POST", path, **who)
    print(json.dumps({
        "statuses": [first.status, second.status],
        "from_cache": [first.body.get("from_cache"), second.body.get("from_cache")],
        "anthropic_loaded": sorted(m for m in sys.modules if m == "anthropic" or m.startswith("anthropic.")),
    }))
"""


def test_cache_hit_does_not_import_anthropic() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, "-c", _HIT_IN_FRESH_INTERPRETER],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["statuses"] == [200, 200]
    assert outcome["from_cache"] == [False, True]
    assert outcome["anthropic_loaded"] == []


# --- consistency: the document of a state holds that state's evidence only ---


def test_evidence_added_while_writing_stays_out_of_the_older_state(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    session = api.new_session()
    add_evidence(api, session["id"], "tried", "Restarted the router", "Still drops")
    real_read = session_store.read_newest_evidence

    def racing_read(account_id: str, session_id: str, **kw: Any) -> session_store.NewestEvidence:
        # Another engineer adds evidence between the session read (version 2) and the evidence read.
        monkeypatch.setattr(session_store, "read_newest_evidence", real_read)
        request = EvidenceCreateRequest(kind=EvidenceKind.tried, text="Replaced the cable", result="Fixed")
        sessions.add_evidence(Caller("acct-a", "engineer-b"), session_id, request)
        return real_read(account_id, session_id, **kw)

    monkeypatch.setattr(session_store, "read_newest_evidence", racing_read)
    raced = api.post(preview_path(session["id"], ESCALATION)).body

    assert raced["state_version"] == 2
    assert "Restarted the router" in raced["markdown"]
    assert "Replaced the cable" not in raced["markdown"]
    current = api.post(preview_path(session["id"], ESCALATION)).body
    assert (current["state_version"], current["from_cache"]) == (3, False)
    assert "Replaced the cable" in current["markdown"]


# --- the key from Secrets Manager (AWS): fetched once per container, never logged ---


@pytest.fixture
def key_secret(api: Api, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, FakeMessagesApi]]:
    """ANTHROPIC_API_KEY_SECRET names a secret, no ANTHROPIC_API_KEY; the default writer factory is used,
    with only the Claude writer's HTTP transport replaced."""
    fake = FakeMessagesApi()
    name = "flowpilot/local/anthropic"
    api_key = "sk-ant-api03-" + "k" * 8 + "FromSecretsManager"
    boto3.client("secretsmanager").create_secret(Name=name, SecretString=json.dumps({"ANTHROPIC_API_KEY": api_key}))
    monkeypatch.setenv("ANTHROPIC_API_KEY_SECRET", name)
    settings.cache_clear()
    real_init = ClaudeWriter.__init__

    def init_with_mock_transport(self: ClaudeWriter, **kw: Any) -> None:
        kw.setdefault("http_client", httpx2.Client(transport=httpx2.MockTransport(fake)))
        real_init(self, **kw, sleep=fake.sleeps.append)

    monkeypatch.setattr(ClaudeWriter, "__init__", init_with_mock_transport)
    yield api_key, fake
    settings.cache_clear()


def test_key_from_secrets_manager_is_fetched_once_and_never_logged(
    api: Api,
    key_secret: tuple[str, FakeMessagesApi],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    api_key, fake = key_secret
    assert "ANTHROPIC_API_KEY" not in os.environ
    session = api.new_session()

    first = api.post(preview_path(session["id"], RESOLUTION))
    # A rotated secret is picked up by the next container, not mid-container.
    boto3.client("secretsmanager").put_secret_value(SecretId="flowpilot/local/anthropic", SecretString="sk-ant-other")
    second = api.post(preview_path(session["id"], ESCALATION))

    assert (first.status, second.status) == (200, 200), second.text
    assert first.body["writer"] == second.body["writer"] == "claude:claude-sonnet-5-5"
    assert [r.headers["authorization"] for r in fake.requests] == [f"Bearer {api_key}"] * 2
    assert [r.getMessage() for r in caplog.records].count("preview written") == 2
    logged = capsys.readouterr()
    assert api_key not in logged.out + logged.err + "".join(str(vars(r)) for r in caplog.records)


def test_unreadable_key_secret_is_503_not_a_silent_offline_preview(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY_SECRET", "flowpilot/local/anthropic-missing")
    settings.cache_clear()
    session = api.new_session()

    response = api.post(preview_path(session["id"], RESOLUTION))

    assert response.status == 503, response.text
    assert response.body["error"]["code"] == "model_unavailable"
    assert response.headers["retry-after"] == "30"
    assert cache_item("acct-a", session["id"], RESOLUTION, 1) is None


# --- the sample events in events/ ---


@pytest.mark.parametrize("kind", [RESOLUTION, ESCALATION])
def test_sample_event_drives_the_handler(api: Api, kind: str) -> None:
    name = f"previews__post_ai_sessions_session_id_{kind.replace('-', '_')}_preview.json"
    event = json.loads((ROOT / "events" / name).read_text())
    handler = aws.handler("PreviewsFunction")
    missing = handler(event, LambdaContext())
    # The route matched and the session is missing: a route-not-found 404 would carry another code.
    assert missing["statusCode"] == 404, missing["body"]
    assert json.loads(missing["body"])["error"]["code"] == "session_not_found"

    claims = event["requestContext"]["authorizer"]["jwt"]["claims"]
    now = "2026-01-01T00:00:00.000000Z"
    put_new_session(
        claims["custom:account_id"],
        Session(
            id=event["pathParameters"]["session_id"],
            title="VPN drops",
            problem="Drops every 10 minutes.",
            status=SessionStatus.active,
            state_version=1,
            created_by=claims["sub"],
            created_at=now,
            updated_at=now,
        ),
    )
    result = handler(event, LambdaContext())
    assert result["statusCode"] == 200, result["body"]
    body = json.loads(result["body"])
    assert (body["kind"], body["from_cache"], body["writer"]) == (kind, False, "offline")


# --- single flight: concurrent misses of one state make one model call ---

CONCURRENT_PREVIEWS = 8


@dataclass
class WaitWatch:
    """The previews' wait, observed: which requests are waiting for another one's writer."""

    expected: int
    waiting: set[int] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    all_waiting: threading.Event = field(default_factory=threading.Event)

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.waiting.add(threading.get_ident())
            if len(self.waiting) >= self.expected:
                self.all_waiting.set()
        time.sleep(seconds)


@pytest.fixture
def watch(monkeypatch: pytest.MonkeyPatch) -> WaitWatch:
    """Every request but the writer waits; the wait is generous so a slow machine cannot end it early."""
    watched = WaitWatch(expected=CONCURRENT_PREVIEWS - 1)
    monkeypatch.setattr(previews, "waiting", previews.Waiting(budget_seconds=90.0, sleep=watched.sleep))
    return watched


def held_until(event: threading.Event, reply: Reply, released: list[bool]) -> Reply:
    """A model answer that comes only once `event` is set (recording whether it was)."""

    def hold(request: httpx2.Request) -> httpx2.Response:
        released.append(event.wait(timeout=60))
        return reply(request)

    return hold


def concurrently(api: Api, path: str) -> list[ApiResponse]:
    with ThreadPoolExecutor(max_workers=CONCURRENT_PREVIEWS) as pool:
        return list(pool.map(lambda _: api.post(path), range(CONCURRENT_PREVIEWS)))


def test_concurrent_misses_of_one_state_make_one_model_call(api: Api, model: FakeMessagesApi, watch: WaitWatch) -> None:
    session = api.new_session()
    add_evidence(api, session["id"], "tried", "Updated the VPN client", "No drops since")
    released: list[bool] = []
    # The model answers only once the seven other requests are waiting for it.
    model.then(held_until(watch.all_waiting, answer(200, anthropic_message(RESOLUTION_TEXT)), released))

    responses = concurrently(api, preview_path(session["id"], RESOLUTION))

    assert released == [True], "the seven other requests never all waited for the writer"
    assert [r.status for r in responses] == [200] * CONCURRENT_PREVIEWS, [r.text for r in responses]
    assert len(model.requests) == 1
    assert sorted(r.body["from_cache"] for r in responses) == [False] + [True] * (CONCURRENT_PREVIEWS - 1)
    assert {r.body["markdown"] for r in responses} == {RESOLUTION_TEXT}
    assert {r.body["state_version"] for r in responses} == {2}
    stored = cache_item("acct-a", session["id"], RESOLUTION, 2)
    assert stored is not None and stored["markdown"] == RESOLUTION_TEXT and "lease_holder" not in stored


def test_a_failed_writer_hands_over_to_a_waiting_request(api: Api, model: FakeMessagesApi, watch: WaitWatch) -> None:
    session = api.new_session()
    released: list[bool] = []
    model.then(held_until(watch.all_waiting, api_error(400, "invalid_request_error"), released))

    responses = concurrently(api, preview_path(session["id"], ESCALATION))

    assert released == [True]
    assert sorted(r.status for r in responses) == [200] * (CONCURRENT_PREVIEWS - 1) + [502]
    failed = next(r for r in responses if r.status == 502)
    assert failed.body["error"]["code"] == "model_rejected_request"
    # The lease came back at once: one waiting request wrote, the others waited for it.
    assert len(model.requests) == 2
    written = [r.body for r in responses if r.status == 200]
    assert sorted(b["from_cache"] for b in written) == [False] + [True] * (CONCURRENT_PREVIEWS - 2)
    assert {b["markdown"] for b in written} == {ESCALATION_TEXT}


def test_a_failed_model_call_gives_the_lease_back(api: Api, model: FakeMessagesApi) -> None:
    session = api.new_session()
    path = preview_path(session["id"], RESOLUTION)
    model.then(api_error(400, "invalid_request_error"))

    failed = api.post(path)

    assert failed.status == 502, failed.text
    assert cache_item("acct-a", session["id"], RESOLUTION, 1) is None, "the failed writer's lease was left behind"
    retried = api.post(path)
    assert retried.status == 200, retried.text
    assert retried.body["from_cache"] is False
    assert len(model.requests) == 2


def test_a_crashed_writers_lease_expires_and_is_taken_over(api: Api, model: FakeMessagesApi) -> None:
    session = api.new_session()
    key = preview_cache.preview_key("acct-a", session["id"], PreviewKind.resolution_note, 1)
    crashed = {**key, "account_id": "acct-a", "lease_holder": "crashed-container", "expires_at": int(time.time()) - 1}
    dynamo.preview_cache_table().put_item(Item=crashed)

    response = api.post(preview_path(session["id"], RESOLUTION))

    assert response.status == 200, response.text
    assert response.body["from_cache"] is False
    assert len(model.requests) == 1
    stored = cache_item("acct-a", session["id"], RESOLUTION, 1)
    assert stored is not None and stored["markdown"] == RESOLUTION_TEXT and "lease_holder" not in stored


@dataclass
class FakeClock:
    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_waiting_for_a_live_writer_ends_in_a_503_with_retry_after(
    api: Api, model: FakeMessagesApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = api.new_session()
    kind = PreviewKind.resolution_note
    assert preview_cache.take_lease("acct-a", session["id"], kind, 1, holder="other-request", seconds=30)
    clock = FakeClock()
    monkeypatch.setattr(previews, "waiting", previews.Waiting(sleep=clock.sleep, clock=lambda: clock.now))

    response = api.post(preview_path(session["id"], RESOLUTION))

    assert response.status == 503, response.text
    assert response.body["error"]["code"] == "preview_in_progress"
    assert 1 <= int(response.headers["retry-after"]) <= 5
    assert model.requests == []
    budget = previews.Waiting().budget_seconds
    assert budget < 30 and clock.now <= budget  # answered before API Gateway gives up
    assert clock.sleeps[0] < 0.1 and max(clock.sleeps) <= 1.0 and len(clock.sleeps) > 10
    lease = preview_cache.lookup("acct-a", session["id"], kind, 1)
    assert isinstance(lease, preview_cache.WriterLease) and lease.holder == "other-request"


# --- text hygiene: no control character reaches the model or a preview ---

# What `flowpilot.text.clean` removes: C0 controls but newline and tab, DEL, C1 controls (ESC included).
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
DIRTY_PROBLEM = "VPN\x00 drops every\x1b[2J 10 minutes\nSince Monday\x07"


def add_dirty_evidence(api: Api, session_id: str) -> None:
    add_evidence(api, session_id, "confirmed", "Adapter \x1b[31mIntel I219\x1b[0m resets\x00")
    add_evidence(api, session_id, "tried", "Updated\x07 the driver\x7f", "Still\x00 drops \x1b]0;pwned\x07")
    add_evidence(api, session_id, "hypothesis", "Power\x1b[5m saving\x1b[25m on the NIC")
    add_evidence(api, session_id, "next_step", "Swap the \x9b1mdock\x9b0m")


@pytest.mark.parametrize("kind", [RESOLUTION, ESCALATION])
def test_control_characters_never_reach_an_offline_preview(api: Api, kind: str) -> None:
    session = api.new_session(problem=DIRTY_PROBLEM)
    add_dirty_evidence(api, session["id"])

    body = api.post(preview_path(session["id"], kind)).body

    assert body["writer"] == "offline"
    assert not CONTROL_CHARACTERS.search(body["markdown"]), repr(body["markdown"])
    assert "Adapter Intel I219 resets" in body["markdown"]
    assert "Updated the driver — Result: Still drops" in body["markdown"]
    assert "Swap the dock" in body["markdown"]
    assert body["markdown"].count("\n") > 5
    if kind == ESCALATION:
        assert "> VPN drops every 10 minutes\n> Since Monday\n" in body["markdown"]


@pytest.mark.parametrize(
    ("kind", "dirty", "clean"),
    [
        (
            RESOLUTION,
            "Fixed\x00 the \x1b[32mVPN\x1b[0m.\r\n\n## What we found\n- Old\x07 client\x7f\n",
            "Fixed the VPN.\n\n## What we found\n- Old client\n",
        ),
        (
            ESCALATION,
            ESCALATION_TEXT.replace("VPN drops", "VPN\x1b[1m drops\x1b[0m\x00").replace("firewall", "fire\x08wall"),
            ESCALATION_TEXT,
        ),
    ],
    ids=["resolution", "escalation"],
)
def test_control_characters_never_reach_the_model_or_a_claude_preview(
    api: Api, model: FakeMessagesApi, kind: str, dirty: str, clean: str
) -> None:
    session = api.new_session(problem=DIRTY_PROBLEM)
    add_dirty_evidence(api, session["id"])
    model.then(answer(200, anthropic_message(dirty)))

    body = api.post(preview_path(session["id"], kind)).body

    assert body["markdown"] == clean
    assert api.post(preview_path(session["id"], kind)).body["markdown"] == clean  # and so is the cached one
    sent = model.bodies()[0]
    texts = [sent["system"][0]["text"], *(block["text"] for block in sent["messages"][0]["content"])]
    assert not any(CONTROL_CHARACTERS.search(text) for text in texts), texts
    assert "Adapter Intel I219 resets" in texts[2]
    assert "VPN drops every 10 minutes\nSince Monday" in texts[1]


# --- bounded reads: a miss reads what the writers have room for, and counts the rest ---

LARGE_SESSION = 5_000


def seed_large_session(account_id: str, count: int) -> tuple[Session, list[Evidence]]:
    """A session with `count` evidence items of every kind and very different sizes, written with the
    store's own item layout and ids minted by `clock.new_id` one millisecond apart."""
    rng = random.Random(13)
    words = ["VPN", "tunnel", "dropped", "Event 4625", "LAPTOP-07", "reinstalled", "no change", "0x80070005"]
    started = 1_767_000_000.0
    ticks = iter(started + n / 1000 for n in range(count))
    items: list[Evidence] = []
    with mock.patch.object(clock, "time", SimpleNamespace(time=lambda: next(ticks))):
        for n in range(count):
            text = " ".join(rng.choice(words) for _ in range(rng.choice([2, 6, 15, 40])))
            items.append(
                Evidence(
                    id=clock.new_id("ev"),
                    session_id="ses_large",
                    kind=rng.choice(list(EvidenceKind)),
                    text=f"#{n} {text}",
                    result=" ".join(rng.choice(words) for _ in range(rng.randint(1, 12)))
                    if rng.random() < 0.6
                    else None,
                    created_by="engineer-a",
                    created_at=f"2026-01-01T10:00:00.{n:06d}Z",
                    state_version=n + 2,
                )
            )
    session = Session(
        id="ses_large",
        title="VPN drops every 10 minutes",
        problem="User reports VPN drops on Wi-Fi and LAN.",
        status=SessionStatus.active,
        state_version=count + 1,
        created_by="engineer-a",
        created_at="2026-01-01T09:00:00.000000Z",
        updated_at="2026-01-01T11:00:00.000000Z",
    )
    put_new_session(account_id, session)
    with dynamo.sessions_table().batch_writer() as batch:
        for item in items:
            batch.put_item(Item=session_store.evidence_item(account_id, item))
    return session, items


@dataclass
class QueryLog:
    """What each DynamoDB Query returned: items (a `Select=COUNT` query returns none, only a count)."""

    items: list[int] = field(default_factory=list)
    counted: list[int] = field(default_factory=list)

    def record(self, parsed: dict[str, Any], **_: Any) -> None:
        if "Items" in parsed:
            self.items.append(len(parsed["Items"]))
        else:
            self.counted.append(int(parsed.get("Count", 0)))


@pytest.mark.parametrize(
    ("writer", "kind"),
    [("claude", PreviewKind.resolution_note), ("offline", PreviewKind.escalation_package)],
    ids=["claude-resolution", "offline-escalation"],
)
def test_a_miss_on_a_large_session_reads_what_the_writers_can_use_and_counts_the_rest(
    api: Api, model: FakeMessagesApi, monkeypatch: pytest.MonkeyPatch, writer: str, kind: PreviewKind
) -> None:
    session, items = seed_large_session("acct-a", LARGE_SESSION)
    if writer == "offline":
        monkeypatch.setattr(previews, "writer_factory", OfflineWriter)
    queries = QueryLog()
    dynamo.client().meta.events.register("after-call.dynamodb.Query", queries.record)

    response = api.post(preview_path(session.id, kind.value))

    assert response.status == 200, response.text
    # What every item would give: the same document, saying how many items it left out.
    if writer == "claude":
        expected = build_prompt(kind, session, items)
        sent = [block["text"] for block in model.bodies()[-1]["messages"][0]["content"]]
        assert sent == [expected.session_block, expected.evidence_block]
        omitted, shown = expected.trimmed_evidence, sent[1]
    else:
        document = OfflineWriter().write(kind, session, items)
        assert response.body["markdown"] == document.markdown
        omitted, shown = document.trimmed_evidence, response.body["markdown"]
    assert omitted > 0
    assert f"({omitted} older items omitted)" in shown
    read = sum(queries.items)
    assert read <= LARGE_SESSION // 4, f"read {read} of {LARGE_SESSION} items"
    assert len(queries.items) <= 4
    # Only the document's kinds are read, and each of them is either read or counted (never returned).
    relevant = sum(1 for item in items if item.kind in document_kinds(kind))
    assert len(queries.counted) >= 1
    assert read + sum(queries.counted) == relevant
