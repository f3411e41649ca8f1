"""Suggested fixes API through the real handler and moto DynamoDB: every decision and what it leaves behind."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from devstack import aws, sample_events, template
from devstack.events import LambdaContext, http_event
from flowpilot.config import settings
from flowpilot.models import ScriptTemplate, Session, SessionStatus
from flowpilot.observability import SERVICE
from flowpilot.store import sessions as session_store
from flowpilot.store import suggested_fixes as fix_store
from tests.conftest import Api
from tests.helpers import table_items
from tests.integration.test_sessions_api import evidence_request, race

CONTRACT_FIELDS = {
    "id",
    "session_id",
    "title",
    "description",
    "confidence_pct",
    "script_template_id",
    "ai_drafted_script",
    "ai_drafted_parameters",
    "user_decision",
    "superseded_at",
    "created_at",
}
SECRET = "Hunter2-'$(touch /tmp/x)'-S3cr3t"


def fixes_path(session_id: str) -> str:
    return f"/ai-sessions/{session_id}/suggested-fixes"


def decision_path(session_id: str, fix_id: str) -> str:
    return f"/ai-sessions/{session_id}/suggested-fixes/{fix_id}/decision"


def add_fix(api: Api, session_id: str, expect: int = 201, **fields: Any) -> dict[str, Any]:
    body = {
        "title": "Restart the print spooler",
        "description": "The spooler hangs after the driver update.",
        "confidence_pct": 80,
        "ai_drafted_script": "Restart-Service -ComputerName {{host}} -Name {{service}}",
        "ai_drafted_parameters": {"host": "srv-01", "service": "Spooler"},
        **fields,
    }
    body = {k: v for k, v in body.items() if v is not None}
    response = api.post(fixes_path(session_id), body)
    assert response.status == expect, response.text
    return response.body  # type: ignore[no-any-return]


def decide(api: Api, session_id: str, fix_id: str, decision: str, expect: int = 200, **extra: Any) -> Any:
    response = api.post(decision_path(session_id, fix_id), {"decision": decision, **extra})
    assert response.status == expect, response.text
    return response.body


def state_version(api: Api, session_id: str) -> int:
    return api.get(f"/ai-sessions/{session_id}").body["state_version"]  # type: ignore[no-any-return]


def evidence(account_id: str, session_id: str) -> list[Any]:
    return list(session_store.iter_evidence(account_id, session_id))


def seed_template(account_id: str = "acct-a", **fields: Any) -> ScriptTemplate:
    template = ScriptTemplate.model_validate(
        {
            "id": "tpl-flush-dns",
            "name": "Flush DNS on a host",
            "body": "Invoke-Command -ComputerName {{host}} -ScriptBlock { ipconfig /flushdns } -Tries {{tries}}",
            "parameters": {"host": None, "tries": "3"},
            **fields,
        }
    )
    fix_store.put_script_template(account_id, template)
    return template


def close_session(account_id: str, session_id: str) -> None:
    session_store.update_session(
        account_id, session_id, set_values={"status": "resolved"}, condition="attribute_exists(PK)", values={}
    )


# --- adding and listing ---


def test_add_fix_returns_the_contract_shape(api: Api) -> None:
    session = api.new_session()
    fix = add_fix(api, session["id"])
    assert set(fix) >= CONTRACT_FIELDS
    assert fix["session_id"] == session["id"]
    assert fix["confidence_pct"] == 80
    assert fix["script_template_id"] is None
    assert fix["ai_drafted_parameters"] == {"host": "srv-01", "service": "Spooler"}
    assert fix["user_decision"] is None and fix["superseded_at"] is None
    assert fix["script_language"] == "powershell"
    assert fix["created_by"] == "engineer-a"
    # A new suggestion is a change of the session's state.
    assert state_version(api, session["id"]) == 2


def test_new_fix_supersedes_the_previous_undecided_one(api: Api) -> None:
    sid = api.new_session()["id"]
    first = add_fix(api, sid, title="First idea")
    second = add_fix(api, sid, title="Second idea")

    current = api.get(fixes_path(sid))
    assert current.status == 200
    assert [f["id"] for f in current.body["items"]] == [second["id"]]

    everything = api.get(fixes_path(sid), query={"include_superseded": "true"}).body["items"]
    assert [f["id"] for f in everything] == [second["id"], first["id"]]
    assert everything[0]["superseded_at"] is None
    assert everything[1]["superseded_at"] is not None
    assert everything[1]["superseded_at"] == second["created_at"]  # superseded in the same write
    assert everything[1]["user_decision"] is None


def test_a_decided_fix_is_not_superseded_and_current_comes_first(api: Api) -> None:
    sid = api.new_session()["id"]
    decided = add_fix(api, sid, title="Decided")
    decide(api, sid, decided["id"], "one_off")
    dismissed = add_fix(api, sid, title="Dismissed")
    decide(api, sid, dismissed["id"], "dismissed")
    current = add_fix(api, sid, title="Current")

    listed = api.get(fixes_path(sid)).body["items"]
    assert [f["id"] for f in listed] == [current["id"], decided["id"]]
    assert listed[1]["user_decision"] == "one_off" and listed[1]["superseded_at"] is None

    everything = api.get(fixes_path(sid), query={"include_superseded": "true"}).body["items"]
    assert [f["id"] for f in everything] == [current["id"], decided["id"], dismissed["id"]]


def test_list_of_unknown_session_is_404(api: Api) -> None:
    response = api.get(fixes_path("ses_missing"))
    assert response.status == 404
    assert response.body["error"]["code"] == "session_not_found"


# --- the four decisions and their effects ---


def test_one_off_renders_now_and_creates_no_template(api: Api) -> None:
    sid = api.new_session()["id"]
    fix = add_fix(api, sid, ai_drafted_parameters={"host": "srv-01", "service": "Print 'Spooler'"})
    result = decide(api, sid, fix["id"], "one_off")

    assert result["decision"] == "one_off"
    assert result["rendered_script"] == "Restart-Service -ComputerName 'srv-01' -Name 'Print ''Spooler'''"
    assert result["draft_template_id"] is None and result["redirect_path"] is None
    assert result["fix"]["user_decision"] == "one_off"
    assert result["fix"]["decided_by"] == "engineer-a"
    assert result["state_version"] == 3 == state_version(api, sid)

    assert api.get("/draft-templates").body == {"items": [], "next_cursor": None}
    assert not [i for i in table_items() if i["SK"].startswith("DT#")]
    [ev] = evidence("acct-a", sid)
    assert (ev.kind, ev.text, ev.result) == ("tried", f"Ran suggested fix: {fix['title']}", None)
    assert ev.state_version == 3
    assert api.get(fixes_path(sid)).body["items"][0]["user_decision"] == "one_off"


def test_draft_template_renders_and_queues_a_draft(api: Api) -> None:
    sid = api.new_session()["id"]
    fix = add_fix(api, sid)
    result = decide(api, sid, fix["id"], "draft_template")

    assert result["rendered_script"] == "Restart-Service -ComputerName 'srv-01' -Name 'Spooler'"
    assert result["redirect_path"] is None
    draft_id = result["draft_template_id"]
    assert draft_id and draft_id.startswith("dt_")
    assert result["state_version"] == 3 == state_version(api, sid)

    drafts = api.get("/draft-templates").body
    assert drafts["next_cursor"] is None
    [draft] = drafts["items"]
    assert draft["id"] == draft_id
    assert draft["body"] == fix["ai_drafted_script"]  # the reusable, unrendered body
    assert draft["parameter_names"] == ["host", "service"]
    assert draft["language"] == "powershell"
    assert (draft["source_session_id"], draft["source_fix_id"]) == (sid, fix["id"])
    assert draft["created_by"] == "engineer-a"
    assert "srv-01" not in json.dumps(draft)  # names only, no values

    [ev] = evidence("acct-a", sid)
    assert ev.kind == "tried"
    assert ev.text == f"Ran suggested fix: {fix['title']}"
    assert (ev.kind, ev.result) == ("tried", None)  # the draft is linked from its own record, not the note


def test_build_template_redirects_to_the_builder(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPLATE_BUILDER_PATH", "/tools/template-builder")
    settings.cache_clear()
    sid = api.new_session()["id"]
    fix = add_fix(api, sid)
    result = decide(api, sid, fix["id"], "build_template")

    assert result["rendered_script"] is None and result["draft_template_id"] is None
    redirect = urlsplit(result["redirect_path"])
    assert redirect.path == "/tools/template-builder"
    assert parse_qs(redirect.query) == {"session_id": [sid], "fix_id": [fix["id"]]}
    assert result["state_version"] == 3 == state_version(api, sid)
    assert api.get("/draft-templates").body["items"] == []
    [ev] = evidence("acct-a", sid)
    assert (ev.kind, ev.text) == ("message", f"Sent suggested fix to the template builder: {fix['title']}")


def test_build_template_default_path(api: Api) -> None:
    sid = api.new_session()["id"]
    fix = add_fix(api, sid)
    result = decide(api, sid, fix["id"], "build_template")
    assert result["redirect_path"] == f"/script-templates/builder?session_id={sid}&fix_id={fix['id']}"


def test_dismissed_supersedes_the_fix_so_a_fresh_one_can_take_over(api: Api) -> None:
    sid = api.new_session()["id"]
    description = "x" * 150 + "y" * 100
    fix = add_fix(api, sid, description=description)
    result = decide(api, sid, fix["id"], "dismissed")

    assert result["fix"]["superseded_at"] is not None
    assert result["fix"]["user_decision"] == "dismissed"
    assert result["rendered_script"] is None and result["redirect_path"] is None
    assert result["state_version"] == 3 == state_version(api, sid)
    assert api.get(fixes_path(sid)).body["items"] == []
    [ev] = evidence("acct-a", sid)
    assert ev.kind == "message"
    assert ev.text == f"Rejected suggested fix: {fix['title']} — {description[:200]}"

    fresh = add_fix(api, sid, title="Fresh idea")
    assert [f["id"] for f in api.get(fixes_path(sid)).body["items"]] == [fresh["id"]]
    assert decide(api, sid, fresh["id"], "one_off")["fix"]["user_decision"] == "one_off"


@pytest.mark.parametrize("decision", ["one_off", "draft_template", "build_template", "dismissed"])
def test_every_decision_bumps_state_version_once_with_one_evidence_item(api: Api, decision: str) -> None:
    sid = api.new_session()["id"]
    fix = add_fix(api, sid)
    before = state_version(api, sid)
    result = decide(api, sid, fix["id"], decision)
    assert result["state_version"] == before + 1 == state_version(api, sid)
    assert [e.state_version for e in evidence("acct-a", sid)] == [before + 1]
    stored = fix_store.get_fix("acct-a", sid, fix["id"])
    assert stored is not None and stored.user_decision == decision


# --- script templates ---


def test_template_fix_renders_template_body_with_defaults_overridden(api: Api) -> None:
    seed_template()
    sid = api.new_session()["id"]
    fix = add_fix(
        api,
        sid,
        ai_drafted_script=None,
        script_template_id="tpl-flush-dns",
        ai_drafted_parameters={"host": "ws-042; Stop-Computer"},
    )
    assert fix["script_template_id"] == "tpl-flush-dns" and fix["ai_drafted_script"] is None
    result = decide(api, sid, fix["id"], "draft_template")
    assert result["rendered_script"] == (
        "Invoke-Command -ComputerName 'ws-042; Stop-Computer' -ScriptBlock { ipconfig /flushdns } -Tries '3'"
    )
    [draft] = api.get("/draft-templates").body["items"]
    assert draft["source_script_template_id"] == "tpl-flush-dns"
    assert draft["parameter_names"] == ["host", "tries"]


def test_posix_template_is_quoted_for_sh_and_runs_the_value_literally(api: Api, tmp_path: Path) -> None:
    seed_template(id="tpl-echo", body="printf '%s' {{value}}", parameters={}, language="posix")
    sid = api.new_session()["id"]
    hostile = "it's $(touch pwned) `touch pwned2`; touch pwned3 && touch pwned4 | cat\n$HOME"
    fix = add_fix(
        api, sid, ai_drafted_script=None, script_template_id="tpl-echo", ai_drafted_parameters={"value": hostile}
    )
    assert fix["script_language"] == "posix"
    rendered = decide(api, sid, fix["id"], "one_off")["rendered_script"]
    run = subprocess.run(["/bin/sh", "-c", rendered], cwd=tmp_path, capture_output=True, check=True)
    assert run.stdout.decode() == hostile
    assert list(tmp_path.iterdir()) == []


def test_drafted_posix_script(api: Api, tmp_path: Path) -> None:
    sid = api.new_session()["id"]
    fix = add_fix(
        api,
        sid,
        ai_drafted_script="printf '%s|' {{a}} {{b}}",
        script_language="posix",
        ai_drafted_parameters={"a": "x'; touch pwned; '", "b": "$(touch pwned2)"},
    )
    rendered = decide(api, sid, fix["id"], "one_off")["rendered_script"]
    run = subprocess.run(["/bin/sh", "-c", rendered], cwd=tmp_path, capture_output=True, check=True)
    assert run.stdout.decode() == "x'; touch pwned; '|$(touch pwned2)|"
    assert list(tmp_path.iterdir()) == []


def test_unknown_template_is_404_when_adding(api: Api) -> None:
    sid = api.new_session()["id"]
    response = api.post(fixes_path(sid), {"title": "t", "confidence_pct": 5, "script_template_id": "tpl-nope"})
    assert response.status == 404
    assert response.body["error"]["code"] == "script_template_not_found"
    assert api.get(fixes_path(sid)).body["items"] == []


def test_template_removed_before_the_decision_is_404(api: Api) -> None:
    seed_template()
    sid = api.new_session()["id"]
    fix = add_fix(api, sid, ai_drafted_script=None, script_template_id="tpl-flush-dns")
    boto3.resource("dynamodb").Table(settings().sessions_table).delete_item(
        Key=fix_store.template_key("acct-a", "tpl-flush-dns")
    )
    body = decide(api, sid, fix["id"], "one_off", expect=404, parameters={"host": "h"})
    assert body["error"]["code"] == "script_template_not_found"
    assert fix_store.get_fix("acct-a", sid, fix["id"]).user_decision is None  # type: ignore[union-attr]
    assert state_version(api, sid) == 2


def test_another_accounts_template_is_404(api: Api, api_b: Api) -> None:
    seed_template(account_id="acct-b")
    sid = api.new_session()["id"]
    response = api.post(fixes_path(sid), {"title": "t", "confidence_pct": 5, "script_template_id": "tpl-flush-dns"})
    assert response.status == 404


# --- validation ---


def test_missing_parameters_are_all_named(api: Api) -> None:
    sid = api.new_session()["id"]
    fix = add_fix(
        api, sid, ai_drafted_script="Do-It -A {{alpha}} -B {{beta}} -C {{gamma}}", ai_drafted_parameters={"beta": "b"}
    )
    body = decide(api, sid, fix["id"], "one_off", expect=422)
    assert body["error"]["code"] == "missing_parameters"
    assert body["error"]["details"] == {"missing": ["alpha", "gamma"]}
    # Nothing was decided: the same fix can still be decided once the values are given.
    assert state_version(api, sid) == 2
    result = decide(api, sid, fix["id"], "one_off", parameters={"alpha": "a", "gamma": "g"})
    assert result["rendered_script"] == "Do-It -A 'a' -B 'b' -C 'g'"


@pytest.mark.parametrize("confidence", [101, -1, 50.5, "50", True, None])
def test_confidence_must_be_an_int_from_0_to_100(api: Api, confidence: Any) -> None:
    sid = api.new_session()["id"]
    response = api.post(fixes_path(sid), {"title": "t", "confidence_pct": confidence, "ai_drafted_script": "Get-Date"})
    assert response.status == 422, response.text
    assert response.body["error"]["code"] == "validation_error"


@pytest.mark.parametrize("confidence", [0, 100])
def test_confidence_bounds_are_accepted(api: Api, confidence: int) -> None:
    sid = api.new_session()["id"]
    assert add_fix(api, sid, confidence_pct=confidence)["confidence_pct"] == confidence


@pytest.mark.parametrize(
    "fields",
    [
        {"script_template_id": "tpl-x"},  # both sources
        {"ai_drafted_script": None},  # neither
        {"ai_drafted_script": "x" * 50_001},
        {"title": ""},
        {"title": "t" * 201},
        {"description": "d" * 10_001},
        {"ai_drafted_parameters": {f"p{i}": "v" for i in range(51)}},
        {"ai_drafted_parameters": {"bad name": "v"}},
        {"ai_drafted_parameters": {"p": "v" * 4001}},
        {"ai_drafted_parameters": {"p": 5}},
        {"script_language": "cmd"},
        {"unexpected": True},
    ],
)
def test_invalid_fix_is_422(api: Api, fields: dict[str, Any]) -> None:
    sid = api.new_session()["id"]
    body = {
        "title": "t",
        "confidence_pct": 5,
        "ai_drafted_script": "Get-Item {{p}}",
        "ai_drafted_parameters": {},
        **fields,
    }
    response = api.post(fixes_path(sid), {k: v for k, v in body.items() if v is not None})
    assert response.status == 422, response.text


def test_script_language_with_a_template_is_422(api: Api) -> None:
    seed_template()
    sid = api.new_session()["id"]
    response = api.post(
        fixes_path(sid),
        {"title": "t", "confidence_pct": 5, "script_template_id": "tpl-flush-dns", "script_language": "posix"},
    )
    assert response.status == 422


def test_placeholder_inside_quotes_is_refused_when_adding(api: Api) -> None:
    sid = api.new_session()["id"]
    response = api.post(
        fixes_path(sid),
        {"title": "t", "confidence_pct": 5, "ai_drafted_script": "Restart-Computer -ComputerName '{{host}}'"},
    )
    assert response.status == 422
    assert response.body["error"]["code"] == "unsafe_placeholder"
    assert response.body["error"]["details"] == {"placeholders": ["host"]}


def test_invalid_decision_is_422(api: Api) -> None:
    sid = api.new_session()["id"]
    fix = add_fix(api, sid)
    assert api.post(decision_path(sid, fix["id"]), {"decision": "maybe"}).status == 422
    assert api.post(decision_path(sid, fix["id"]), {}).status == 422
    assert api.post(decision_path(sid, "bad.id"), {"decision": "one_off"}).status == 422  # not an id
    assert state_version(api, sid) == 2


# --- conflicts ---


def test_deciding_twice_is_409(api: Api) -> None:
    sid = api.new_session()["id"]
    fix = add_fix(api, sid)
    decide(api, sid, fix["id"], "one_off")
    body = decide(api, sid, fix["id"], "draft_template", expect=409)
    assert body["error"]["code"] == "fix_already_decided"
    assert "already decided" in body["error"]["message"]
    assert state_version(api, sid) == 3
    assert api.get("/draft-templates").body["items"] == []


def test_deciding_a_superseded_fix_is_409(api: Api) -> None:
    sid = api.new_session()["id"]
    old = add_fix(api, sid)
    add_fix(api, sid, title="Newer")
    body = decide(api, sid, old["id"], "one_off", expect=409)
    assert body["error"]["code"] == "fix_superseded"
    assert "superseded" in body["error"]["message"]


def test_unknown_fix_is_404(api: Api) -> None:
    sid = api.new_session()["id"]
    body = decide(api, sid, "fix_missing", "one_off", expect=404)
    assert body["error"]["code"] == "fix_not_found"
    # A fix is addressed through its own session only.
    elsewhere = add_fix(api, api.new_session()["id"])
    assert decide(api, sid, elsewhere["id"], "one_off", expect=404)["error"]["code"] == "fix_not_found"


def test_closed_session_accepts_no_fix_and_no_decision(api: Api) -> None:
    sid = api.new_session()["id"]
    fix = add_fix(api, sid)
    close_session("acct-a", sid)
    body = decide(api, sid, fix["id"], "one_off", expect=409)
    assert body["error"]["code"] == "session_already_closed"
    response = api.post(fixes_path(sid), {"title": "t", "confidence_pct": 5, "ai_drafted_script": "Get-Date"})
    assert response.status == 409
    assert response.body["error"]["code"] == "session_already_closed"
    assert api.get(fixes_path(sid)).status == 200  # still readable


def test_two_concurrent_decisions_exactly_one_wins(api: Api) -> None:
    sid = api.new_session()["id"]
    fix = add_fix(api, sid)
    # Both requests read the undecided fix before either writes: a true race, decided by the fix's condition.
    path = decision_path(sid, fix["id"])
    results, _ = race([("SuggestedFixesFunction", "POST", path, {"decision": d}) for d in ("one_off", "dismissed")])
    assert sorted(r["statusCode"] for r in results) == [200, 409]
    loser = next(json.loads(r["body"]) for r in results if r["statusCode"] == 409)
    assert loser["error"]["code"] == "fix_already_decided"
    assert state_version(api, sid) == 3
    assert len(evidence("acct-a", sid)) == 1


def test_a_stale_read_loses_to_the_conditional_write(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    sid = api.new_session()["id"]
    fix = add_fix(api, sid)
    stale = fix_store.get_fix("acct-a", sid, fix["id"])
    decide(api, sid, fix["id"], "one_off")

    # The next decision's first read sees the fix as it was before that decision.
    real_get = fix_store.get_fix
    calls: list[str] = []

    def stale_first(account_id: str, session_id: str, fix_id: str) -> Any:
        calls.append(fix_id)
        return stale if len(calls) == 1 else real_get(account_id, session_id, fix_id)

    monkeypatch.setattr(fix_store, "get_fix", stale_first)
    body = decide(api, sid, fix["id"], "dismissed", expect=409)
    assert body["error"]["code"] == "fix_already_decided"
    assert len(calls) == 2  # the write was refused, the retry re-read
    stored = real_get("acct-a", sid, fix["id"])
    assert stored is not None and stored.user_decision == "one_off" and stored.superseded_at is None
    assert state_version(api, sid) == 3
    assert len(evidence("acct-a", sid)) == 1


# --- tenancy ---


def test_another_account_sees_nothing_and_changes_nothing(api: Api, api_b: Api) -> None:
    sid = api.new_session()["id"]
    fix = add_fix(api, sid)
    other = api.new_session()["id"]
    drafted = add_fix(api, other)
    decide(api, other, drafted["id"], "draft_template")
    before = state_version(api, sid)

    assert api_b.get(fixes_path(sid)).status == 404
    assert api_b.post(fixes_path(sid), {"title": "t", "confidence_pct": 1, "ai_drafted_script": "x"}).status == 404
    for decision in ("one_off", "dismissed"):
        response = api_b.post(decision_path(sid, fix["id"]), {"decision": decision})
        assert response.status == 404
        assert response.body["error"]["code"] == "session_not_found"
    assert api_b.get("/draft-templates").body == {"items": [], "next_cursor": None}

    assert state_version(api, sid) == before
    assert api.get(fixes_path(sid)).body["items"][0]["user_decision"] is None
    assert len(api.get("/draft-templates").body["items"]) == 1
    assert not [i for i in table_items() if "acct-b" in i["PK"]]


# --- secrets ---


def test_sensitive_values_are_never_stored_nor_logged(
    api: Api, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    captured = logging.getLogger(SERVICE)
    captured.addHandler(caplog.handler)
    try:
        sid = api.new_session()["id"]
        fix = add_fix(
            api,
            sid,
            ai_drafted_script="Set-LocalUser -Name {{user}} -Password (ConvertTo-SecureString {{AdminPassword}})",
            ai_drafted_parameters={"user": "helpdesk", "AdminPassword": SECRET},
        )
        assert fix["ai_drafted_parameters"] == {"user": "helpdesk", "AdminPassword": "***"}
        assert fix["sensitive_parameters"] == ["AdminPassword"]

        # The stored "***" is never rendered: without a value at decision time the secret is missing.
        body = decide(api, sid, fix["id"], "draft_template", expect=422)
        assert body["error"]["details"] == {"missing": ["AdminPassword"]}

        result = decide(api, sid, fix["id"], "draft_template", parameters={"AdminPassword": SECRET})
        quoted = "'Hunter2-''$(touch /tmp/x)''-S3cr3t'"
        assert result["rendered_script"] == (
            f"Set-LocalUser -Name 'helpdesk' -Password (ConvertTo-SecureString {quoted})"
        )
        assert SECRET not in json.dumps(result["fix"])
        [draft] = api.get("/draft-templates").body["items"]
        assert draft["sensitive_parameters"] == ["AdminPassword"]
        assert "S3cr3t" not in json.dumps(draft)
        assert "S3cr3t" not in json.dumps([e.model_dump() for e in evidence("acct-a", sid)])
        assert api.get(fixes_path(sid)).body["items"][0]["ai_drafted_parameters"]["AdminPassword"] == "***"
    finally:
        captured.removeHandler(caplog.handler)

    assert "S3cr3t" not in repr(table_items())
    out = capsys.readouterr()
    assert "S3cr3t" not in out.out + out.err
    assert caplog.records  # the capture worked: boto and the service logged something
    leaks = [(r.name, r.getMessage()[:300]) for r in caplog.records if "S3cr3t" in r.getMessage() + repr(r.__dict__)]
    assert not leaks, leaks


def test_parameters_marked_sensitive_by_the_template_or_the_fix(api: Api) -> None:
    seed_template(
        id="tpl-license",
        body="Set-License -Key {{license}} -Host {{host}}",
        parameters={"license": None, "host": None},
        sensitive_parameters=["license"],
    )
    sid = api.new_session()["id"]
    fix = add_fix(
        api,
        sid,
        ai_drafted_script=None,
        script_template_id="tpl-license",
        ai_drafted_parameters={"license": "AAAA-BBBB", "host": "h1"},
    )
    assert fix["ai_drafted_parameters"] == {"license": "***", "host": "h1"}
    other = add_fix(
        api,
        sid,
        ai_drafted_script="Join-Domain -Code {{code}}",
        ai_drafted_parameters={"code": "998877"},
        sensitive_parameters=["code"],
    )
    assert other["ai_drafted_parameters"] == {"code": "***"}
    assert "AAAA-BBBB" not in repr(table_items()) and "998877" not in repr(table_items())
    rendered = decide(api, sid, other["id"], "one_off", parameters={"code": "998877"})["rendered_script"]
    assert rendered == "Join-Domain -Code '998877'"


def test_a_value_that_looks_like_a_secret_is_masked_whatever_the_parameter_is_called(api: Api) -> None:
    """A parameter named `arguments` holding "/password:..." is as secret as one named `password`."""
    sid = api.new_session()["id"]
    value = "/user:admin /password:Zq8vLm2Rt9Xy"
    fix = add_fix(
        api,
        sid,
        ai_drafted_script="net use \\\\nas\\share {{arguments}} /persistent:{{persist}}",
        ai_drafted_parameters={"arguments": value, "persist": "no"},
    )
    assert fix["ai_drafted_parameters"] == {"arguments": "***", "persist": "no"}
    assert fix["sensitive_parameters"] == ["arguments"]
    assert "Zq8vLm2Rt9Xy" not in json.dumps(api.get(fixes_path(sid)).body) and "Zq8vLm2Rt9Xy" not in repr(table_items())
    missing = decide(api, sid, fix["id"], "one_off", expect=422)
    assert missing["error"]["details"] == {"missing": ["arguments"]}
    rendered = decide(api, sid, fix["id"], "one_off", parameters={"arguments": value})["rendered_script"]
    assert "/password:Zq8vLm2Rt9Xy" in rendered


def test_a_draft_template_never_carries_a_literal_secret(api: Api) -> None:
    """A draft is shared with the whole account: a password written into the script or its description is a
    422 for draft_template (one_off still renders it for this engineer), and no draft is queued."""
    sid = api.new_session()["id"]
    script = add_fix(
        api,
        sid,
        ai_drafted_script="net user administrator Zq8vLm2Rt9Xy\nGet-Service -Name {{svc}}",
        ai_drafted_parameters={"svc": "spooler"},
    )
    refused = decide(api, sid, script["id"], "draft_template", expect=422)
    assert refused["error"]["code"] == "sensitive_content"
    assert [w["line"] for w in refused["error"]["details"]["warnings"]] == [1]
    assert "Zq8vLm2Rt9Xy" not in json.dumps(refused)
    described = add_fix(
        api,
        sid,
        ai_drafted_script="Get-Service -Name {{svc}}",
        description="The local admin password is Zq8vLm2Rt9Xy",
        ai_drafted_parameters={"svc": "spooler"},
    )
    assert decide(api, sid, described["id"], "draft_template", expect=422)["error"]["code"] == "sensitive_content"
    assert api.get("/draft-templates").body["items"] == []
    assert decide(api, sid, described["id"], "one_off")["rendered_script"] == "Get-Service -Name 'spooler'"


# --- draft listing ---


def test_draft_templates_page_newest_first(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    sid = api.new_session()["id"]
    ids = []
    for n in range(3):
        fix = add_fix(api, sid, title=f"Fix {n}")
        ids.append(decide(api, sid, fix["id"], "draft_template")["draft_template_id"])

    table = fix_store.dynamo.sessions_table()
    seen: list[tuple[str, dict[str, Any]]] = []

    class Recording:
        def __getattr__(self, name: str) -> Any:
            method = getattr(table, name)

            def record(**kw: Any) -> Any:
                seen.append((name, kw))
                return method(**kw)

            return record

    monkeypatch.setattr(fix_store.dynamo, "sessions_table", lambda: Recording())
    first = api.get("/draft-templates", query={"limit": "2"}).body
    assert [d["id"] for d in first["items"]] == ids[::-1][:2]
    assert first["next_cursor"]
    second = api.get("/draft-templates", query={"limit": "2", "cursor": first["next_cursor"]}).body
    assert [d["id"] for d in second["items"]] == ids[:1]
    assert second["next_cursor"] is None
    assert [name for name, _ in seen] == ["query", "query"]
    assert all(kw["Limit"] == 3 for _, kw in seen)

    assert [d["id"] for d in api.get("/draft-templates").body["items"]] == ids[::-1]


@pytest.mark.parametrize("query", [{"limit": "0"}, {"limit": "101"}, {"cursor": "not-a-cursor"}, {"limit": "x"}])
def test_draft_listing_rejects_bad_paging(api: Api, query: dict[str, str]) -> None:
    assert api.get("/draft-templates", query=query).status == 422


def test_another_accounts_cursor_cannot_reach_its_drafts(api: Api, api_b: Api) -> None:
    sid = api.new_session()["id"]
    for n in range(2):
        decide(api, sid, add_fix(api, sid, title=f"F{n}")["id"], "draft_template")
    cursor = api.get("/draft-templates", query={"limit": "1"}).body["next_cursor"]
    assert api_b.get("/draft-templates", query={"cursor": cursor}).body["items"] == []


# --- sample events (events/, written by devstack.sample_events) ---


def test_sample_events_of_these_routes_run_against_a_seeded_session(api: Api) -> None:
    samples = {
        route.route_key: json.loads((sample_events.EVENTS_DIR / sample_events.file_name(route)).read_text())
        for route in template.routes()
        if route.function == "SuggestedFixesFunction"
    }
    add = samples["POST /ai-sessions/{session_id}/suggested-fixes"]
    account = add["requestContext"]["authorizer"]["jwt"]["claims"]["custom:account_id"]
    now = "2025-01-01T00:00:00.000000Z"
    session_store.put_new_session(
        account,
        Session(
            id=add["pathParameters"]["session_id"],
            title="t",
            problem="p",
            status=SessionStatus.active,
            state_version=1,
            created_by="engineer-sample",
            created_at=now,
            updated_at=now,
        ),
    )
    handler = aws.handler("SuggestedFixesFunction")

    def run(route_key: str) -> tuple[int, Any]:
        result = handler(samples[route_key], LambdaContext())
        return result["statusCode"], json.loads(result["body"])

    status, fix = run("POST /ai-sessions/{session_id}/suggested-fixes")
    assert status == 201, fix
    status, listed = run("GET /ai-sessions/{session_id}/suggested-fixes")
    assert (status, [f["id"] for f in listed["items"]]) == (200, [fix["id"]])
    status, refused = run("POST /ai-sessions/{session_id}/suggested-fixes/{fix_id}/decision")
    assert (status, refused["error"]["code"]) == (404, "fix_not_found")  # the sample's fix id is not this one
    assert run("GET /draft-templates") == (200, {"items": [], "next_cursor": None})


# --- the seed's decision shape: id, user_decision, rendered_script, redirect_path at the top ---


@pytest.mark.parametrize("decision", ["one_off", "draft_template", "build_template", "dismissed"])
def test_decision_response_has_the_seed_fields_at_the_top_level(api: Api, decision: str) -> None:
    sid = api.new_session()["id"]
    fix = add_fix(api, sid)
    result = decide(api, sid, fix["id"], decision)

    assert {"id", "user_decision", "rendered_script", "redirect_path"} <= set(result)
    assert result["id"] == fix["id"] == result["fix"]["id"]
    assert result["user_decision"] == decision == result["fix"]["user_decision"]
    rendered = decision in ("one_off", "draft_template")
    assert (result["rendered_script"] is not None) is rendered
    assert (result["redirect_path"] is not None) is (decision == "build_template")
    # The additive fields stay beside them.
    assert result["state_version"] == 3 and result["decision"] == decision
    assert (result["draft_template_id"] is not None) is (decision == "draft_template")


# --- bounded responses: every one under Lambda's 6 MB by construction ---

LAMBDA_LIMIT = 6 * 1024 * 1024


def lambda_payload(method: str, path: str, *, body: Any = None, query: dict[str, str] | None = None) -> Any:
    """The raw Lambda result and its size as the runtime serialises it, through the real handler."""
    event = http_event(method, path, body=body, query=query, account_id="acct-a", user_id="engineer-a")
    result = aws.handler("SuggestedFixesFunction")(event, LambdaContext())
    return result, len(json.dumps(result))


def schema_max(model: Any, field: str) -> int:
    """A field's maxLength (or maxItems / maxProperties) from the model's JSON schema."""
    prop = model.model_json_schema()["properties"][field]
    for option in [prop, *prop.get("anyOf", [])]:
        for key in ("maxLength", "maxItems", "maxProperties"):
            if key in option:
                return int(option[key])
    raise AssertionError(f"{model.__name__}.{field} has no bound")


def test_the_response_bounds_hold_by_construction() -> None:
    from flowpilot import suggested_fixes as domain
    from flowpilot.models import SessionSuggestedFixCreateRequest as Create
    from flowpilot.models import SessionSuggestedFixResponse as Fix

    # The worst character: nothing costs more payload bytes than an astral one (14).
    samples = ["a", '"', "\\", "\n", "\x01", "\x7f", "é", "\u2028", "\uffff", "😀", "\U0010ffff"]
    per_char = {c: domain.payload_bytes(Fix.model_validate({**BIG_FIX, "title": c * 10})) for c in samples}
    base = domain.payload_bytes(Fix.model_validate({**BIG_FIX, "title": ""}))
    assert max((size - base) / 10 for size in per_char.values()) == domain.MAX_PAYLOAD_BYTES_PER_CHAR

    # A fix the create request's limits allow can be far larger than a response may carry ...
    params = schema_max(Create, "ai_drafted_parameters")
    value = 4_000  # ParameterValue's max_length
    allowed_chars = (
        schema_max(Create, "title") + schema_max(Create, "description") + schema_max(Create, "ai_drafted_script")
    ) + params * (64 + value)
    assert allowed_chars * domain.MAX_PAYLOAD_BYTES_PER_CHAR > LAMBDA_LIMIT // 2
    # ... so a fix is refused above MAX_FIX_BYTES (see the test below), and every response is bounded by it:
    # a page stops before PAGE_BUDGET_BYTES (and always fits one fix), the add returns one fix, the decision
    # one fix and a rendered script of bounded length.
    assert domain.MAX_FIX_BYTES <= domain.PAGE_BUDGET_BYTES
    assert domain.PAGE_BUDGET_BYTES + domain.ENVELOPE_BYTES < LAMBDA_LIMIT
    assert domain.MAX_FIX_BYTES + domain.ENVELOPE_BYTES < LAMBDA_LIMIT
    rendered = domain.MAX_RENDERED_SCRIPT_CHARS * domain.MAX_PAYLOAD_BYTES_PER_CHAR
    assert domain.MAX_FIX_BYTES + rendered + domain.ENVELOPE_BYTES < LAMBDA_LIMIT  # a decision
    # Payload bytes are never fewer than UTF-8 bytes, so a stored fix (plus keys) fits DynamoDB's 400 KB item.
    assert all(
        domain.payload_bytes(Fix.model_validate({**BIG_FIX, "title": c})) - base >= len(c.encode()) for c in samples
    )
    assert domain.MAX_FIX_BYTES + 1_000 < 400 * 1024
    # A draft holds at most a script body, a description and a name, plus names found in the body.
    body = schema_max(Create, "ai_drafted_script")
    worst_draft = (body + schema_max(Create, "description") + schema_max(Create, "title")) * 14 + 2 * 2 * body
    assert worst_draft <= domain.PAGE_BUDGET_BYTES


BIG_FIX: dict[str, Any] = {
    "id": "fix_x",
    "session_id": "ses_x",
    "title": "t",
    "description": "",
    "confidence_pct": 1,
    "script_language": "powershell",
    "created_by": "e",
    "created_at": "2025-01-01T00:00:00.000000Z",
}


def test_a_fix_too_large_for_a_response_is_refused_not_stored(api: Api) -> None:
    sid = api.new_session()["id"]
    # Within every field limit of the request, but 50 values of 4000 astral characters: ~2.8 MB of payload.
    response = api.post(
        fixes_path(sid),
        {
            "title": "Huge",
            "confidence_pct": 5,
            "ai_drafted_script": "Get-Item {{p0}}",
            "ai_drafted_parameters": {f"p{i}": "😀" * 4_000 for i in range(50)},
        },
    )
    assert response.status == 422, response.text
    assert response.body["error"]["code"] == "fix_too_large"
    assert response.body["error"]["details"]["max_bytes"] == 380_000
    assert api.get(fixes_path(sid)).body["items"] == []
    assert state_version(api, sid) == 1


def test_the_largest_fix_fits_every_response_it_appears_in(api: Api) -> None:
    from flowpilot import suggested_fixes as domain

    sid = api.new_session()["id"]
    # Close to the limit: a 50,000-character script full of quotes and backslashes, long parameter values.
    script = ('Copy-Item -Path "C:\\\\share\\\\a.txt" -Destination D:\\\\\n' * 1_200)[:49_980] + "\nGet-Item {{p0}}"
    fix = add_fix(api, sid, ai_drafted_script=script, ai_drafted_parameters={f"p{i}": "é" * 3_000 for i in range(10)})
    result, size = lambda_payload("POST", decision_path(sid, fix["id"]), body={"decision": "one_off"})
    assert result["statusCode"] == 200, result["body"]
    assert size < LAMBDA_LIMIT
    decided = domain.SessionSuggestedFixResponse.model_validate(json.loads(result["body"])["fix"])
    assert 200_000 < domain.payload_bytes(decided) <= domain.MAX_FIX_BYTES
    listed, size = lambda_payload("GET", fixes_path(sid))
    assert json.loads(listed["body"])["items"][0]["id"] == fix["id"]
    assert size <= domain.payload_bytes(decided) + domain.ENVELOPE_BYTES  # the measure bounds the real payload


def test_a_render_too_long_for_a_response_is_refused(api: Api) -> None:
    sid = api.new_session()["id"]
    # 2,000 uses of a 4,000-character value: an 8 MB script from a 12 KB body.
    fix = add_fix(api, sid, ai_drafted_script="Set-X {{v}}\n" * 2_000, ai_drafted_parameters={"v": "v" * 4_000})
    body = decide(api, sid, fix["id"], "one_off", expect=422)
    assert body["error"]["code"] == "rendered_script_too_large"
    assert body["error"]["details"]["characters"] > 8_000_000
    assert fix_store.get_fix("acct-a", sid, fix["id"]).user_decision is None  # type: ignore[union-attr]


class DynamoReads:
    """Counts the items DynamoDB reads (GetItem: 1 when found; Query: ScannedCount) via a botocore hook."""

    def __init__(self) -> None:
        self.items = 0
        self.calls: list[str] = []
        self.events = fix_store.dynamo.client().meta.events

    def __enter__(self) -> DynamoReads:
        self.events.register("after-call.dynamodb", self._count)
        return self

    def __exit__(self, *exc: object) -> None:
        self.events.unregister("after-call.dynamodb", self._count)

    def _count(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append(model.name)
        if model.name == "GetItem":
            self.items += 1 if "Item" in parsed else 0
        elif model.name in ("Query", "Scan"):
            self.items += int(parsed.get("ScannedCount", 0))


def test_130_large_fixes_page_under_6_mb_each_once_and_adds_read_a_bounded_number(api: Api) -> None:
    from flowpilot import suggested_fixes as domain

    sid = api.new_session()["id"]
    # ~63 KB of payload per fix (quotes and newlines cost extra): 130 of them were one 8 MB response.
    script = ('Write-Output "step done:" {{n}}\n' * 1_700)[:49_000]
    reads = []
    ids = []
    for n in range(130):
        with DynamoReads() as counter:
            ids.append(
                add_fix(api, sid, title=f"Fix {n}", ai_drafted_script=script, ai_drafted_parameters={"n": str(n)})["id"]
            )
        reads.append(counter.items)
    # The session (before and after the write) and nothing else: no fix is re-read to add one.
    assert max(reads) <= 2, reads
    # Current first, then the superseded ones newest first (ids are time-ordered).
    expected = [ids[-1], *sorted(ids[:-1], reverse=True)]

    # Default listing: the current (undecided) fix only.
    current, size = lambda_payload("GET", fixes_path(sid))
    assert [f["id"] for f in json.loads(current["body"])["items"]] == [ids[-1]]

    for limit in ("25", "100"):
        seen: list[str] = []
        sizes: list[int] = []
        cursor = None
        while True:
            query = {"include_superseded": "true", "limit": limit} | ({"cursor": cursor} if cursor else {})
            page, size = lambda_payload("GET", fixes_path(sid), query=query)
            assert page["statusCode"] == 200, page["body"]
            body = json.loads(page["body"])
            assert 0 < len(body["items"]) <= int(limit)
            seen += [f["id"] for f in body["items"]]
            sizes.append(size)
            cursor = body["next_cursor"]
            if not cursor:
                break
        assert seen == expected and len(set(seen)) == 130  # each exactly once, current first
        assert max(sizes) < domain.PAGE_BUDGET_BYTES + domain.ENVELOPE_BYTES < LAMBDA_LIMIT
        if limit == "100":
            assert len(sizes) == 2 and sizes[0] > 4_000_000  # the byte budget, not the count, ended page one


# --- concurrent writers: evidence and decisions never collide; one undecided fix at a time ---


def test_evidence_adds_racing_a_decision_all_land(api: Api) -> None:
    # Only one fix of a session is undecided at a time, so the decision races evidence adds, not other decisions.
    sid = api.new_session()["id"]
    fix = add_fix(api, sid)
    texts = [f"Pinged gateway {n}" for n in range(6)]
    decision = ("SuggestedFixesFunction", "POST", decision_path(sid, fix["id"]), {"decision": "one_off"})
    results, transactions = race([decision, *(evidence_request(sid, t) for t in texts)])

    assert [r["statusCode"] for r in results] == [200] + [201] * 6, [r["body"] for r in results]
    assert transactions == 7
    assert state_version(api, sid) == 2 + 7
    decided = json.loads(results[0]["body"])
    assert decided["user_decision"] == "one_off" and decided["rendered_script"]
    assert 3 <= decided["state_version"] <= 9
    got = sorted(e.text for e in evidence("acct-a", sid))
    assert got == sorted([*texts, f"Ran suggested fix: {fix['title']}"]), got


def test_two_fixes_added_at_once_leave_exactly_one_undecided(api: Api) -> None:
    sid = api.new_session()["id"]
    add_fix(api, sid, title="Before")
    body = {"title": "Racing", "confidence_pct": 50, "ai_drafted_script": "Get-Date"}
    add = ("SuggestedFixesFunction", "POST", fixes_path(sid), body)
    results, transactions = race([add, add, evidence_request(sid, "Meanwhile")])

    assert [r["statusCode"] for r in results] == [201, 201, 201], [r["body"] for r in results]
    assert transactions == 4  # the add that lost the undecided-fix condition went again, once
    assert state_version(api, sid) == 2 + 3
    current = api.get(fixes_path(sid)).body["items"]
    everything = api.get(fixes_path(sid), query={"include_superseded": "true"}).body["items"]
    assert len(current) == 1 and current[0]["user_decision"] is None
    assert len(everything) == 3 and [f["superseded_at"] is None for f in everything] == [True, False, False]
    added = {json.loads(r["body"])["id"] for r in results[:2]}
    assert current[0]["id"] in added
    # The one left undecided is the one that can be decided; the other was superseded by it.
    loser = (added - {current[0]["id"]}).pop()
    assert decide(api, sid, loser, "one_off", expect=409)["error"]["code"] == "fix_superseded"
    assert decide(api, sid, current[0]["id"], "one_off")["id"] == current[0]["id"]


def test_a_session_stored_before_the_undecided_fix_was_recorded(api: Api) -> None:
    # Its item has no undecided_fix_id and its undecided fix sits among decided ones.
    sid = api.new_session()["id"]
    table = fix_store.dynamo.sessions_table()
    old = {"session_id": sid, "title": "t", "description": "", "confidence_pct": 5, "ai_drafted_script": "Get-Date"}
    old |= {"script_language": "powershell", "created_by": "engineer-a"}
    decided = fix_store.SessionSuggestedFixResponse.model_validate(
        old | {"id": "fix_0000000a1", "created_at": "2025-01-01T00:00:01.000000Z", "user_decision": "one_off"}
    )
    undecided = fix_store.SessionSuggestedFixResponse.model_validate(
        old | {"id": "fix_0000000a2", "created_at": "2025-01-01T00:00:02.000000Z"}
    )
    for fix in (decided, undecided):
        table.put_item(Item=fix_store.fix_item("acct-a", fix))
    assert "undecided_fix_id" not in table.get_item(Key=session_store.session_key("acct-a", sid))["Item"]

    fresh = add_fix(api, sid, title="Fresh")
    everything = api.get(fixes_path(sid), query={"include_superseded": "true"}).body["items"]
    assert [f["id"] for f in everything] == [fresh["id"], decided.id, undecided.id]
    assert everything[2]["superseded_at"] == fresh["created_at"]
    assert table.get_item(Key=session_store.session_key("acct-a", sid))["Item"]["undecided_fix_id"] == fresh["id"]
    decide(api, sid, fresh["id"], "dismissed")
    assert table.get_item(Key=session_store.session_key("acct-a", sid))["Item"]["undecided_fix_id"] == ""
    assert api.get(fixes_path(sid)).body["items"] == [everything[1]]


# --- fix list paging ---


def test_fix_list_pages_with_limit_and_cursor(api: Api) -> None:
    sid = api.new_session()["id"]
    ids = []
    for n, decision in enumerate([None, "one_off", None, None, "build_template"]):
        ids.append(add_fix(api, sid, title=f"F{n}")["id"])
        if decision:
            decide(api, sid, ids[-1], decision)
    # Current: 4 and 1 (decided, not superseded); superseded: 3, 2, 0.
    expected = [ids[4], ids[1], ids[3], ids[2], ids[0]]
    for limit in range(1, 7):
        seen, cursor = [], None
        while True:
            query = {"include_superseded": "true", "limit": str(limit)} | ({"cursor": cursor} if cursor else {})
            body = api.get(fixes_path(sid), query=query).body
            assert 0 < len(body["items"]) <= limit
            seen += [f["id"] for f in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert seen == expected, limit
    first = api.get(fixes_path(sid), query={"limit": "1"}).body
    second = api.get(fixes_path(sid), query={"limit": "1", "cursor": first["next_cursor"]}).body
    assert [f["id"] for f in first["items"] + second["items"]] == [ids[4], ids[1]]
    assert second["next_cursor"] is None


def test_fix_list_refuses_foreign_and_garbled_cursors(api: Api) -> None:
    sid = api.new_session()["id"]
    other = api.new_session()["id"]
    for n in range(2):
        add_fix(api, sid, title=f"F{n}")
        add_fix(api, other, title=f"O{n}")
    mine = api.get(fixes_path(sid), query={"limit": "1", "include_superseded": "true"}).body["next_cursor"]
    drafts_cursor = fix_store.draft_cursor("dt_0000")
    for path, query in [
        (fixes_path(other), {"cursor": mine, "include_superseded": "true"}),  # another session's
        (fixes_path(sid), {"cursor": mine}),  # the listing without superseded fixes
        (fixes_path(sid), {"cursor": drafts_cursor}),
        (fixes_path(sid), {"cursor": "not-a-cursor"}),
        (fixes_path(sid), {"cursor": "e30"}),  # {}
        (fixes_path(sid), {"cursor": "W10"}),  # []
    ]:
        response = api.get(path, query=query)
        assert response.status == 422, (query, response.text)
        assert response.body["error"]["code"] == "invalid_cursor"
    for query in [{"limit": "0"}, {"limit": "101"}, {"limit": "x"}, {"cursor": "c" * 513}]:
        assert api.get(fixes_path(sid), query=query).status == 422


@pytest.mark.parametrize(
    "fields",
    [
        {
            "ai_drafted_script": "Remove-Item -Path {{p}} # \u202e}p{{ htaP- metI-evomeR",
            "ai_drafted_parameters": {"p": "x"},
        },
        {"ai_drafted_script": "Get-Item -Path {{p}}", "ai_drafted_parameters": {"p": "C:\\temp\u2066\\..\\..\u2069"}},
    ],
    ids=["script", "parameter"],
)
def test_bidi_controls_in_a_script_or_its_values_are_422(api: Api, fields: dict[str, Any]) -> None:
    """A script with an override displays in another order than the shell reads it: the engineer would run what
    they were not shown."""
    sid = api.new_session()["id"]
    refused = add_fix(api, sid, expect=422, **fields)
    assert refused["error"]["code"] == "validation_error" and "bidi" in refused["error"]["message"]
    assert api.get(fixes_path(sid)).body["items"] == []
    fix = add_fix(api, sid)
    response = api.post(decision_path(sid, fix["id"]), {"decision": "one_off", "parameters": {"host": "a\u202eb"}})
    assert response.status == 422, response.text
