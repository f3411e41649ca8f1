"""Troubleshooting sessions: create, read, list, add evidence, link a PSA ticket.

The rules live here; the session store (`store`, one module-level name: tests swap in an in-memory one)
keeps the items and says what it refused.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from flowpilot.clock import new_id, now_iso
from flowpilot.errors import Conflict, NotFound
from flowpilot.identity import Caller
from flowpilot.models import (
    Evidence,
    EvidenceCreateRequest,
    EvidenceList,
    LinkTicketRequest,
    PsaTicketRef,
    Session,
    SessionCreateRequest,
    SessionList,
    SessionStatus,
    StoredSession,
)
from flowpilot.observability import metrics
from flowpilot.store import sessions as store
from flowpilot.store.sessions import ConditionFailed, NewEvidence, SetUndecidedFix, TransactionConflict, Write

# A versioned change runs again this often when a condition of its writes stops holding before it lands
# (a fix decided first, a newer suggestion), or DynamoDB cancels it for a concurrent transaction.
_ATTEMPTS = 8
_BACKOFF_BASE_SECONDS = 0.02
_BACKOFF_CAP_SECONDS = 0.5
_jitter = random.SystemRandom()


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


def _not_found(session_id: str) -> NotFound:
    # Another account's session is indistinguishable from a missing one.
    return NotFound(f"Session {session_id} not found.", code="session_not_found")


def session_item(caller: Caller, session_id: str) -> dict[str, Any]:
    """The stored session item, with the fields only the back end sees (locks, a pending note)."""
    item = store.get_session_item(caller.account_id, session_id)
    if item is None:
        raise _not_found(session_id)
    return item


def stored_session(caller: Caller, session_id: str) -> StoredSession:
    """The session as stored: its fields and the back end's (its lock, its undecided fix)."""
    stored = store.get_session(caller.account_id, session_id)
    if stored is None:
        raise _not_found(session_id)
    return stored


def get_session(caller: Caller, session_id: str) -> Session:
    return stored_session(caller, session_id).to_session()


def require_active(session: Session) -> Session:
    if session.status is not SessionStatus.active:
        raise Conflict(
            f"Session {session.id} is already {session.status.value}; it accepts no further changes.",
            code="session_already_closed",
        )
    return session


def list_evidence(caller: Caller, session_id: str, limit: int, cursor: str | None) -> EvidenceList:
    get_session(caller, session_id)  # another account's session is a 404, like a missing one
    items, next_cursor = store.list_evidence(caller.account_id, session_id, limit, cursor)
    return EvidenceList(items=items, next_cursor=next_cursor)


def list_sessions(caller: Caller, status: SessionStatus | None, limit: int, cursor: str | None) -> SessionList:
    items, next_cursor = store.list_sessions(caller.account_id, status, limit, cursor)
    return SessionList(items=items, next_cursor=next_cursor)


@dataclass(frozen=True, slots=True)
class Change[T]:
    """What one attempt of a versioned change stores, and the value it answers with.

    `writes` are new items and conditional changes of existing ones; `undecided_fix` moves the session's
    record of its undecided fix in the same transaction, under its own condition.
    """

    writes: Sequence[Write]
    result: T
    undecided_fix: SetUndecidedFix | None = None


@dataclass(frozen=True, slots=True)
class Committed[T]:
    """A stored change and the session's state_version read right after it (see `change_with_version_bump`)."""

    result: T
    state_version: int


def change_with_version_bump[T](
    caller: Caller,
    session_id: str,
    build: Callable[[StoredSession, str], Change[T]],
) -> Committed[T]:
    """Store what `build` returns and bump state_version by one, atomically, in one transaction.

    The bump is an `ADD`, not a compare, so writes that race (evidence, decisions on different fixes) all
    land. `build(stored, now)` runs against a fresh read of the stored session each attempt (with its
    back-end attributes) and may raise (e.g. Conflict); a condition of its writes that no longer holds
    makes it run again, so it sees what won.

    A transaction returns no values, so the version reported is a consistent read made after the write:
    the session's state_version once this change was stored. It is exact unless another write landed in
    between, and then higher; a preview at that version or later always includes this change.
    """
    for attempt in range(_ATTEMPTS):
        stored = stored_session(caller, session_id)
        require_active(stored.to_session())
        now = now_iso()
        change = build(stored, now)
        try:
            store.put_with_version_bump(caller.account_id, session_id, now, change.writes, change.undecided_fix)
        except TransactionConflict:
            # DynamoDB refused only because another transaction held the item: back off, then go again.
            time.sleep(_jitter.uniform(0, min(_BACKOFF_CAP_SECONDS, _BACKOFF_BASE_SECONDS * 2**attempt)))
            continue
        except ConditionFailed:
            continue
        return Committed(change.result, stored_session(caller, session_id).state_version)
    raise Conflict("The session changed repeatedly while saving; try again.", code="session_changed_concurrently")


def add_evidence(caller: Caller, session_id: str, request: EvidenceCreateRequest) -> Evidence:
    def build(session: StoredSession, now: str) -> Change[Evidence]:
        evidence = Evidence(
            id=new_id("ev"),
            session_id=session.id,
            kind=request.kind,
            text=request.text,
            result=request.result,
            created_by=caller.engineer_id,
            created_at=now,
            # Stored: the version this write moves the session to unless another lands at the same moment, so
            # never above it (a preview of that state includes it) and the order of evidence by version holds.
            state_version=session.state_version + 1,
        )
        return Change([NewEvidence(evidence)], evidence)

    committed = change_with_version_bump(caller, session_id, build)
    metrics.add_metric(name="EvidenceAdded", unit="Count", value=1)
    return committed.result.model_copy(update={"state_version": committed.state_version})


def link_ticket(caller: Caller, session_id: str, request: LinkTicketRequest) -> Session:
    ticket = PsaTicketRef(provider=request.provider, ticket_id=request.ticket_id)
    try:
        return store.link_ticket(caller.account_id, session_id, ticket, now_iso())
    except ConditionFailed:
        session = require_active(get_session(caller, session_id))
        raise Conflict(
            f"Session {session.id} has a write-back in progress; link the ticket after it finishes.",
            code="writeback_in_progress",
        ) from None
