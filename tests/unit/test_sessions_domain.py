"""The sessions domain's decisions against an in-memory store: create, evidence, link and relink, 409s."""

from __future__ import annotations

import pytest

from flowpilot import sessions
from flowpilot.errors import Conflict, NotFound
from flowpilot.identity import Caller
from flowpilot.models import (
    EvidenceCreateRequest,
    EvidenceKind,
    LinkTicketRequest,
    PsaProvider,
    PsaTicketRef,
    Session,
    SessionCreateRequest,
    SessionStatus,
)
from tests.unit.fakes import FakeSessionStore, Stores, install

CALLER = Caller(account_id="acct-a", engineer_id="engineer-a")
OTHER = Caller(account_id="acct-b", engineer_id="engineer-b")


@pytest.fixture
def stores(monkeypatch: pytest.MonkeyPatch) -> Stores:
    monkeypatch.setattr(sessions.time, "sleep", lambda _seconds: None)  # backoff between retries
    return install(monkeypatch)


@pytest.fixture
def table(stores: Stores) -> FakeSessionStore:
    return stores.sessions


def new_session(ticket: str | None = None) -> str:
    psa_ticket = PsaTicketRef(provider=PsaProvider.connectwise, ticket_id=ticket) if ticket else None
    request = SessionCreateRequest(title="VPN drops", problem="Every 10 minutes", psa_ticket=psa_ticket)
    return sessions.create_session(CALLER, request).id


def tried(text: str) -> EvidenceCreateRequest:
    return EvidenceCreateRequest(kind=EvidenceKind.tried, text=text)


def link(session_id: str, ticket: str) -> PsaTicketRef | None:
    request = LinkTicketRequest(provider=PsaProvider.connectwise, ticket_id=ticket)
    return sessions.link_ticket(CALLER, session_id, request).psa_ticket


def test_a_new_session_is_active_at_version_1_with_its_ticket(table: FakeSessionStore) -> None:
    sid = new_session(ticket=" 01005")
    session = sessions.get_session(CALLER, sid)
    assert (session.status, session.state_version, session.created_by) == (SessionStatus.active, 1, "engineer-a")
    assert session.psa_ticket == PsaTicketRef(provider=PsaProvider.connectwise, ticket_id="1005")
    stored = table.sessions["acct-a", sid]
    assert stored.active_writeback_id is None and stored.undecided_fix_id is None


def test_another_accounts_session_is_a_404_like_a_missing_one(stores: Stores) -> None:
    sid = new_session()
    for caller, session_id in ((OTHER, sid), (CALLER, "ses_missing")):
        with pytest.raises(NotFound) as missing:
            sessions.get_session(caller, session_id)
        assert missing.value.code == "session_not_found"
    with pytest.raises(NotFound):
        sessions.add_evidence(OTHER, sid, tried("not yours"))


def test_evidence_bumps_the_version_and_is_stored_at_the_version_it_makes(table: FakeSessionStore) -> None:
    sid = new_session()
    first = sessions.add_evidence(CALLER, sid, tried("Reinstalled the client"))
    second = sessions.add_evidence(CALLER, sid, tried("Swapped the cable"))
    assert (first.state_version, second.state_version) == (2, 3)
    assert [(e.text, e.state_version) for e in table.evidence["acct-a", sid]] == [
        ("Reinstalled the client", 2),
        ("Swapped the cable", 3),
    ]
    assert sessions.get_session(CALLER, sid).state_version == 3


def test_the_answer_reports_the_version_read_after_the_write(table: FakeSessionStore) -> None:
    """Another write landing at the same moment: the evidence is stored at its own version, the answer
    reports the session's version after both (a preview at that version includes it)."""
    sid = new_session()

    def concurrent_write() -> None:
        table.before_commit = None
        table.sessions["acct-a", sid].state_version += 1

    table.before_commit = concurrent_write
    evidence = sessions.add_evidence(CALLER, sid, tried("Raced"))
    assert evidence.state_version == 3
    assert table.evidence["acct-a", sid][0].state_version == 2


def test_evidence_for_a_closed_session_is_a_409_and_nothing_is_stored(table: FakeSessionStore) -> None:
    sid = new_session()
    table.close("acct-a", sid, SessionStatus.escalated)
    with pytest.raises(Conflict) as refused:
        sessions.add_evidence(CALLER, sid, tried("late"))
    assert refused.value.code == "session_already_closed"
    assert ("acct-a", sid) not in table.evidence
    assert table.transactions == 0  # refused before any write was tried


def test_a_session_closed_between_the_read_and_the_write_is_a_409(table: FakeSessionStore) -> None:
    sid = new_session()
    table.before_commit = lambda: table.close("acct-a", sid)
    with pytest.raises(Conflict) as refused:
        sessions.add_evidence(CALLER, sid, tried("late"))
    assert refused.value.code == "session_already_closed"
    assert table.transactions == 1


def test_transaction_conflicts_are_retried_until_the_write_lands(table: FakeSessionStore) -> None:
    sid = new_session()
    table.conflicts = 3
    assert sessions.add_evidence(CALLER, sid, tried("eventually")).state_version == 2
    assert table.transactions == 4


def test_a_session_that_never_stops_changing_is_a_409_after_bounded_attempts(table: FakeSessionStore) -> None:
    sid = new_session()
    table.conflicts = 1_000
    with pytest.raises(Conflict) as refused:
        sessions.add_evidence(CALLER, sid, tried("never"))
    assert refused.value.code == "session_changed_concurrently"
    assert table.transactions == sessions._ATTEMPTS
    assert sessions.get_session(CALLER, sid).state_version == 1


def test_link_and_relink_each_bump_the_version(stores: Stores) -> None:
    sid = new_session()
    assert link(sid, "1001") == PsaTicketRef(provider=PsaProvider.connectwise, ticket_id="1001")
    assert link(sid, "0042") == PsaTicketRef(provider=PsaProvider.connectwise, ticket_id="42")
    assert sessions.get_session(CALLER, sid).state_version == 3


def test_relinking_while_a_write_back_runs_is_a_409_writeback_in_progress(table: FakeSessionStore) -> None:
    sid = new_session(ticket="1001")
    table.lock("acct-a", sid, "wb_1")
    with pytest.raises(Conflict) as refused:
        link(sid, "1002")
    assert refused.value.code == "writeback_in_progress"
    session = sessions.get_session(CALLER, sid)
    assert session.psa_ticket is not None and session.psa_ticket.ticket_id == "1001"
    assert session.state_version == 1


def test_linking_a_closed_session_is_a_409_already_closed_not_in_progress(table: FakeSessionStore) -> None:
    sid = new_session()
    table.close("acct-a", sid)
    table.lock("acct-a", sid, "wb_1")  # closed wins: the lock is not what the engineer must wait for
    with pytest.raises(Conflict) as refused:
        link(sid, "1002")
    assert refused.value.code == "session_already_closed"


def test_linking_a_missing_session_is_a_404(stores: Stores) -> None:
    with pytest.raises(NotFound):
        link("ses_missing", "1002")


def test_require_active_names_the_status() -> None:
    closed = Session(
        id="s1",
        title="t",
        problem="p",
        status=SessionStatus.resolved,
        state_version=4,
        created_by="e",
        created_at="2025-01-01T00:00:00Z",
        updated_at="2025-01-01T00:00:00Z",
    )
    with pytest.raises(Conflict, match="already resolved"):
        sessions.require_active(closed)
