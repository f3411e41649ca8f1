"""The suggested-fixes domain's decisions against an in-memory store: supersede, decide once, side effects."""

from __future__ import annotations

from typing import Any

import pytest

from flowpilot import scripts, sessions, suggested_fixes
from flowpilot.errors import Conflict, InvalidInput, NotFound
from flowpilot.identity import Caller
from flowpilot.models import (
    EvidenceKind,
    ScriptTemplate,
    SessionCreateRequest,
    SessionStatus,
    SessionSuggestedFixCreateRequest,
    SessionSuggestedFixDecisionRequest,
    SessionSuggestedFixResponse,
    StoredFix,
    UserDecision,
)
from tests.unit.fakes import FakeSessionStore, Stores, install

CALLER = Caller(account_id="acct-a", engineer_id="engineer-a")


@pytest.fixture
def stores(monkeypatch: pytest.MonkeyPatch) -> Stores:
    monkeypatch.setattr(sessions.time, "sleep", lambda _seconds: None)
    return install(monkeypatch)


@pytest.fixture
def table(stores: Stores) -> FakeSessionStore:
    return stores.sessions


@pytest.fixture
def sid(stores: Stores) -> str:
    return sessions.create_session(CALLER, SessionCreateRequest(title="Printer", problem="Offline")).id


def add(sid: str, title: str = "Restart the spooler", **fields: Any) -> SessionSuggestedFixResponse:
    body = {"title": title, "confidence_pct": 80, "ai_drafted_script": "Restart-Service {{name}}"} | fields
    return suggested_fixes.add_fix(CALLER, sid, SessionSuggestedFixCreateRequest.model_validate(body))


def decide(sid: str, fix_id: str, decision: UserDecision, **parameters: str) -> Any:
    request = SessionSuggestedFixDecisionRequest(decision=decision, parameters=parameters)
    return suggested_fixes.decide(CALLER, sid, fix_id, request)


def stored(table: FakeSessionStore, sid: str, fix_id: str) -> StoredFix:
    return table.fixes["acct-a", sid, fix_id]


def test_a_new_fix_supersedes_the_undecided_one_and_takes_its_place(table: FakeSessionStore, sid: str) -> None:
    first = add(sid, "First")
    assert table.sessions["acct-a", sid].undecided_fix_id == first.id
    second = add(sid, "Second")
    assert stored(table, sid, first.id).superseded_at == second.created_at
    assert stored(table, sid, second.id).superseded_at is None
    assert table.sessions["acct-a", sid].undecided_fix_id == second.id
    assert sessions.get_session(CALLER, sid).state_version == 3


def test_a_decided_fix_is_not_superseded_by_the_next(table: FakeSessionStore, sid: str) -> None:
    first = add(sid, "First")
    decide(sid, first.id, UserDecision.build_template)
    assert table.sessions["acct-a", sid].undecided_fix_id == ""
    add(sid, "Second")
    assert stored(table, sid, first.id).superseded_at is None


def test_a_legacy_session_without_the_record_finds_its_undecided_fix(table: FakeSessionStore, sid: str) -> None:
    first = add(sid, "First")
    table.sessions["acct-a", sid].undecided_fix_id = None  # stored before the record was kept
    second = add(sid, "Second")
    assert stored(table, sid, first.id).superseded_at == second.created_at
    assert table.sessions["acct-a", sid].undecided_fix_id == second.id


def test_two_fixes_added_at_once_cannot_both_stay_undecided(table: FakeSessionStore, sid: str) -> None:
    """The record moved between this add's read and its write: the add runs again and supersedes the winner."""
    winner: list[SessionSuggestedFixResponse] = []

    def concurrent_add() -> None:
        table.before_commit = None
        winner.append(add(sid, "Winner"))

    table.before_commit = concurrent_add
    late = add(sid, "Late")
    assert stored(table, sid, winner[0].id).superseded_at == late.created_at
    undecided = [f.id for f in table.fixes.values() if f.superseded_at is None and f.user_decision is None]
    assert undecided == [late.id]


def test_one_off_renders_records_a_tried_step_and_clears_the_record(table: FakeSessionStore, sid: str) -> None:
    fix = add(sid, ai_drafted_parameters={"name": "Spooler"})
    result = decide(sid, fix.id, UserDecision.one_off)
    assert result.rendered_script == "Restart-Service 'Spooler'"
    assert (result.id, result.user_decision, result.redirect_path, result.draft_template_id) == (
        fix.id,
        UserDecision.one_off,
        None,
        None,
    )
    assert result.fix.decided_by == "engineer-a" and result.fix.superseded_at is None
    assert stored(table, sid, fix.id).user_decision is UserDecision.one_off
    (evidence,) = table.evidence["acct-a", sid]
    assert (evidence.kind, evidence.text) == (EvidenceKind.tried, "Ran suggested fix: Restart the spooler")
    assert table.sessions["acct-a", sid].undecided_fix_id == ""
    assert result.state_version == 3 == sessions.get_session(CALLER, sid).state_version


def test_a_fix_is_decided_once(sid: str) -> None:
    fix = add(sid, ai_drafted_parameters={"name": "Spooler"})
    decide(sid, fix.id, UserDecision.one_off)
    with pytest.raises(Conflict) as refused:
        decide(sid, fix.id, UserDecision.dismissed)
    assert refused.value.code == "fix_already_decided"


def test_a_superseded_fix_cannot_be_decided(sid: str) -> None:
    old = add(sid, "Old")
    add(sid, "New")
    with pytest.raises(Conflict) as refused:
        decide(sid, old.id, UserDecision.one_off, name="x")
    assert refused.value.code == "fix_superseded"


def test_two_decisions_on_one_fix_race_to_one_winner(table: FakeSessionStore, sid: str) -> None:
    fix = add(sid, ai_drafted_parameters={"name": "Spooler"})

    def other_decision_lands_first() -> None:
        table.before_commit = None
        decide(sid, fix.id, UserDecision.build_template)

    table.before_commit = other_decision_lands_first
    with pytest.raises(Conflict) as refused:
        decide(sid, fix.id, UserDecision.one_off)
    assert refused.value.code == "fix_already_decided"
    assert stored(table, sid, fix.id).user_decision is UserDecision.build_template


def test_dismissing_supersedes_and_records_the_rejection(table: FakeSessionStore, sid: str) -> None:
    fix = add(sid, description="Needs admin rights")
    result = decide(sid, fix.id, UserDecision.dismissed)
    assert result.rendered_script is None
    assert stored(table, sid, fix.id).superseded_at == result.fix.superseded_at is not None
    (evidence,) = table.evidence["acct-a", sid]
    assert evidence.kind is EvidenceKind.message
    assert evidence.text == "Rejected suggested fix: Restart the spooler — Needs admin rights"


def test_draft_template_queues_a_draft_without_values(table: FakeSessionStore, sid: str) -> None:
    fix = add(sid, ai_drafted_parameters={"name": "Spooler"})
    result = decide(sid, fix.id, UserDecision.draft_template)
    (draft,) = table.drafts["acct-a"]
    assert result.draft_template_id == draft.id
    assert (draft.body, draft.parameter_names, draft.source_fix_id) == ("Restart-Service {{name}}", ["name"], fix.id)


def test_build_template_redirects_to_the_builder(sid: str) -> None:
    fix = add(sid)
    result = decide(sid, fix.id, UserDecision.build_template)
    assert result.redirect_path is not None and f"fix_id={fix.id}" in result.redirect_path
    assert result.rendered_script is None


def test_sensitive_values_are_stored_masked_and_come_only_with_the_decision(table: FakeSessionStore, sid: str) -> None:
    fix = add(sid, ai_drafted_script="Set-Secret {{api_token}}", ai_drafted_parameters={"api_token": "hunter2"})
    assert fix.ai_drafted_parameters == {"api_token": scripts.MASK}
    assert stored(table, sid, fix.id).ai_drafted_parameters == {"api_token": scripts.MASK}
    with pytest.raises(InvalidInput):
        decide(sid, fix.id, UserDecision.one_off)
    assert decide(sid, fix.id, UserDecision.one_off, api_token="s3cret").rendered_script == "Set-Secret 's3cret'"


def test_a_fix_naming_another_accounts_template_is_a_404(stores: Stores, sid: str) -> None:
    template = ScriptTemplate(id="tpl-1", name="Flush DNS", body="ipconfig /flushdns")
    stores.fixes.put_script_template("acct-b", template)
    with pytest.raises(NotFound) as missing:
        add(sid, ai_drafted_script=None, script_template_id="tpl-1")
    assert missing.value.code == "script_template_not_found"
    stores.fixes.put_script_template("acct-a", template)
    assert add(sid, ai_drafted_script=None, script_template_id="tpl-1").script_template_id == "tpl-1"


def test_a_closed_session_takes_no_fix_and_no_decision(table: FakeSessionStore, sid: str) -> None:
    fix = add(sid)
    table.close("acct-a", sid, SessionStatus.escalated)
    for attempt in (lambda: add(sid), lambda: decide(sid, fix.id, UserDecision.dismissed)):
        with pytest.raises(Conflict) as refused:
            attempt()
        assert refused.value.code == "session_already_closed"
    assert stored(table, sid, fix.id).user_decision is None


def test_an_unknown_fix_is_a_404(sid: str) -> None:
    with pytest.raises(NotFound) as missing:
        decide(sid, "fix_missing", UserDecision.dismissed)
    assert missing.value.code == "fix_not_found"


def test_listing_puts_current_fixes_first_then_superseded(sid: str) -> None:
    first = add(sid, "First")
    second = add(sid, "Second")
    current = suggested_fixes.list_fixes(CALLER, sid, include_superseded=False, limit=10, cursor=None)
    assert [f.id for f in current.items] == [second.id] and current.next_cursor is None
    everything = suggested_fixes.list_fixes(CALLER, sid, include_superseded=True, limit=1, cursor=None)
    assert [f.id for f in everything.items] == [second.id] and everything.next_cursor
    rest = suggested_fixes.list_fixes(CALLER, sid, include_superseded=True, limit=1, cursor=everything.next_cursor)
    assert [f.id for f in rest.items] == [first.id]
