"""Troubleshooting sessions: create, read, list, add evidence, link a PSA ticket."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from flowpilot.clock import new_id, now_iso
from flowpilot.errors import Conflict, NotFound
from flowpilot.identity import Caller
from flowpilot.models import (
    Evidence,
    EvidenceCreateRequest,
    LinkTicketRequest,
    PsaTicketRef,
    Session,
    SessionCreateRequest,
    SessionList,
    SessionStatus,
)
from flowpilot.observability import metrics
from flowpilot.store import sessions as store

# Optimistic writes retry this often when another change to the same session lands in between.
_VERSION_RACE_ATTEMPTS = 5


def create_session(caller: Caller, request: SessionCreateRequest) -> Session:
    now = now_iso()
    session = Session(
        id=new_id("ses"),
        title=request.title,
        problem=request.problem,
        status=SessionStatus.active,
        state_version=1,
        psa_ticket=request.psa_ticket,
        created_by=caller.engineer_id,
        created_at=now,
        updated_at=now,
    )
    store.put_new_session(caller.account_id, session)
    metrics.add_metric(name="SessionCreated", unit="Count", value=1)
    return session


def session_item(caller: Caller, session_id: str) -> dict[str, Any]:
    """The stored session item, with the fields only the back end sees (locks, a pending note)."""
    item = store.get_session_item(caller.account_id, session_id)
    if item is None:
        # Another account's session is indistinguishable from a missing one.
        raise NotFound(f"Session {session_id} not found.", code="session_not_found")
    return item


def get_session(caller: Caller, session_id: str) -> Session:
    return store.to_session(session_item(caller, session_id))


def require_active(session: Session) -> Session:
    if session.status is not SessionStatus.active:
        raise Conflict(
            f"Session {session.id} is already {session.status.value}; it accepts no further changes.",
            code="session_already_closed",
        )
    return session


def list_sessions(caller: Caller, status: SessionStatus | None, limit: int, cursor: str | None) -> SessionList:
    items, next_cursor = store.list_sessions(caller.account_id, status, limit, cursor)
    return SessionList(items=items, next_cursor=next_cursor)


def change_with_version_bump[T](
    caller: Caller,
    session_id: str,
    build: Callable[[Session, str], tuple[Sequence[dict[str, object] | store.ConditionalUpdate], T]],
) -> T:
    """Store what `build` returns and bump state_version atomically, retrying if a parallel change lands.

    `build(session, now)` returns the writes (new items to put, conditional updates of existing ones) and
    the value to return; it runs against the freshest session each attempt, so it may also raise (e.g.
    Conflict) after re-reading. A lost update condition retries too, so `build` sees what won.
    """
    for _ in range(_VERSION_RACE_ATTEMPTS):
        session = require_active(get_session(caller, session_id))
        now = now_iso()
        writes, result = build(session, now)
        try:
            store.put_with_version_bump(caller.account_id, session_id, session.state_version, now, writes)
        except store.ConditionFailed:
            continue
        return result
    raise Conflict("The session changed repeatedly while saving; try again.", code="session_changed_concurrently")


def add_evidence(caller: Caller, session_id: str, request: EvidenceCreateRequest) -> Evidence:
    def build(session: Session, now: str) -> tuple[list[dict[str, object]], Evidence]:
        evidence = Evidence(
            id=new_id("ev"),
            session_id=session.id,
            kind=request.kind,
            text=request.text,
            result=request.result,
            created_by=caller.engineer_id,
            created_at=now,
            state_version=session.state_version + 1,
        )
        return [store.evidence_item(caller.account_id, evidence)], evidence

    evidence = change_with_version_bump(caller, session_id, build)
    metrics.add_metric(name="EvidenceAdded", unit="Count", value=1)
    return evidence


def link_ticket(caller: Caller, session_id: str, request: LinkTicketRequest) -> Session:
    ticket = PsaTicketRef(provider=request.provider, ticket_id=request.ticket_id)
    try:
        return store.update_session(
            caller.account_id,
            session_id,
            set_values={"psa_ticket": ticket.model_dump(mode="json"), "updated_at": now_iso()},
            condition="attribute_exists(PK) AND #st = :active AND attribute_not_exists(active_writeback_id)",
            names={"#st": "status"},
            values={":active": "active"},
            increment=("state_version",),
        )
    except store.ConditionFailed:
        session = require_active(get_session(caller, session_id))
        raise Conflict(
            f"Session {session.id} has a write-back in progress; link the ticket after it finishes.",
            code="writeback_in_progress",
        ) from None
