"""The writeback ledger: one item per write-back under its session, the source of truth for what was posted.

The note id is written here the moment the PSA returns it, so no retry or resume can post a second note.
"""

from __future__ import annotations

import contextlib
from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel

from flowpilot import writeback_state
from flowpilot.models import SessionStatus, WritebackKind, WritebackSummary
from flowpilot.store import dynamo
from flowpilot.store.dynamo import ConditionFailed, is_condition_failure
from flowpilot.store.sessions import session_key
from flowpilot.writeback_state import (
    GuardedNote,
    LedgerEntry,
    LedgerError,
    PendingNote,
    TicketRef,
    keep_pending,
    settled_attributes,
)


def ledger_key(account_id: str, session_id: str, writeback_id: str) -> dict[str, str]:
    return {"PK": dynamo.session_pk(account_id, session_id), "SK": f"WB#{writeback_id}"}


def _finished_key(account_id: str, session_id: str, writeback_id: str) -> dict[str, str]:
    return {"PK": dynamo.session_pk(account_id, session_id), "SK": f"WBEND#{writeback_id}"}


def mark_finished(account_id: str, session_id: str, writeback_id: str, state: str) -> None:
    """A tiny item that says the write-back ended, so a waiting post polls a few bytes, not the whole entry."""
    dynamo.sessions_table().put_item(Item={**_finished_key(account_id, session_id, writeback_id), "state": state})


def finished_state(account_id: str, session_id: str, writeback_id: str) -> str | None:
    """`succeeded` or `failed` once the write-back has ended, else None (one small consistent read)."""
    item = (
        dynamo.sessions_table()
        .get_item(Key=_finished_key(account_id, session_id, writeback_id), ConsistentRead=True)
        .get("Item")
    )
    return str(item["state"]) if item else None


def get(account_id: str, session_id: str, writeback_id: str) -> LedgerEntry | None:
    item = (
        dynamo.sessions_table()
        .get_item(Key=ledger_key(account_id, session_id, writeback_id), ConsistentRead=True)
        .get("Item")
    )
    return _entry(item) if item else None


def _entry(item: dict[str, Any]) -> LedgerEntry:
    return LedgerEntry.model_validate({k: v for k, v in dynamo.plain(item).items() if k not in {"PK", "SK"}})


def _stored(values: dict[str, Any]) -> dict[str, Any]:
    """Plain JSON for DynamoDB: models dumped, Nones dropped (a None is an absent attribute)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json", exclude_none=True)
        if value is not None:
            out[key] = value
    return out


def take_lock_and_start(account_id: str, entry: LedgerEntry, ticket: TicketRef | None, taken_at: int) -> None:
    """Put the ledger entry and take the session's write-back lock in one transaction.

    The lock is taken only while the session still links `ticket` (the one read before, in its stored
    spelling), so a relink that lands between that read and the lock cannot send the note to one ticket and
    record another. Raises ConditionFailed when the session is closed, already has a write-back running, or
    was relinked.
    """
    session_id = entry.session_id
    table = dynamo.sessions_table().name
    item = {**ledger_key(account_id, session_id, entry.writeback_id), **_stored(entry.model_dump(mode="json"))}
    values: dict[str, Any] = {
        ":wb": entry.writeback_id,
        ":now": entry.created_at,
        ":active": "active",
        ":taken": taken_at,
    }
    if ticket is None:
        same_ticket = "attribute_not_exists(psa_ticket.ticket_id)"
    else:
        same_ticket = "psa_ticket.ticket_id = :tid AND psa_ticket.provider = :provider"
        values.update({":tid": ticket.ticket_id, ":provider": ticket.provider})
    lock: dict[str, Any] = {
        "TableName": table,
        "Key": session_key(account_id, session_id),
        # When the lock was taken (epoch seconds): a lock whose write-back never started can be told apart.
        "UpdateExpression": "SET active_writeback_id = :wb, active_writeback_at = :taken, updated_at = :now",
        "ConditionExpression": (
            "attribute_exists(PK) AND #st = :active AND attribute_not_exists(active_writeback_id) AND " + same_ticket
        ),
        "ExpressionAttributeNames": {"#st": "status"},
        "ExpressionAttributeValues": values,
    }
    try:
        dynamo.client().transact_write_items(
            TransactItems=[
                {"Put": {"TableName": table, "Item": item, "ConditionExpression": "attribute_not_exists(SK)"}},
                {"Update": lock},  # type: ignore[typeddict-item]
            ]
        )
    except ClientError as error:
        if is_condition_failure(error):
            raise ConditionFailed from error
        raise


def update(account_id: str, session_id: str, writeback_id: str, values: dict[str, Any]) -> LedgerEntry:
    """Set `values` (models or plain JSON; None values are skipped) on an existing entry."""
    item = dynamo.update_item(
        ledger_key(account_id, session_id, writeback_id), _stored(values), condition="attribute_exists(SK)"
    )
    return _entry(item)


def record_note_id(account_id: str, session_id: str, writeback_id: str, note_id: str, now: str) -> LedgerEntry:
    """First writer wins: a note id, once recorded, is never replaced."""
    try:
        item = dynamo.update_item(
            ledger_key(account_id, session_id, writeback_id),
            {"note_id": note_id, "note_posted_at": now, "updated_at": now},
            condition="attribute_exists(SK) AND attribute_not_exists(note_id)",
        )
        return _entry(item)
    except ConditionFailed:
        existing = get(account_id, session_id, writeback_id)
        assert existing is not None
        return existing


def replace_note_id(
    account_id: str, session_id: str, writeback_id: str, lost_id: str, note_id: str, now: str
) -> LedgerEntry:
    """The PSA lost the recorded note (deleted by hand): record its replacement, only in place of `lost_id`."""
    item = dynamo.update_item(
        ledger_key(account_id, session_id, writeback_id),
        {"note_id": note_id, "note_posted_at": now, "replaced_note_id": lost_id, "updated_at": now},
        condition="attribute_exists(SK) AND note_id = :lost",
        condition_values={":lost": lost_id},
    )
    return _entry(item)


def mark_post_attempted(account_id: str, session_id: str, writeback_id: str, now: str) -> bool:
    """Record that a note POST is about to go out, only while the write-back still runs (not abandoned).

    False when it was abandoned meanwhile: then nothing may be posted, the next post owns the ticket.
    """
    try:
        dynamo.update_item(
            ledger_key(account_id, session_id, writeback_id),
            {"post_attempted": True, "updated_at": now},
            condition="attribute_exists(SK) AND #st = :running",
            names={"#st": "state"},
            condition_values={":running": "running"},
        )
    except ConditionFailed:
        return False
    return True


def record_error(account_id: str, session_id: str, writeback_id: str, error: LedgerError, now: str) -> None:
    """The newest step error, as the client will see it; nothing if the entry is gone."""
    with contextlib.suppress(ConditionFailed):
        update(account_id, session_id, writeback_id, {"last_error": error, "updated_at": now})


def pending_notes(session_item: dict[str, Any], kind: WritebackKind) -> list[PendingNote]:
    """The notes failed write-backs of `kind` left on the session (from its stored item), one per ticket."""
    return writeback_state.pending_notes(session_item, kind)


def guarded_notes(session_item: dict[str, Any]) -> list[GuardedNote]:
    raw = session_item.get("guard_internal_notes")
    return [GuardedNote.model_validate(g) for g in raw if isinstance(g, dict)] if isinstance(raw, list) else []


def close_session(
    account_id: str,
    session_id: str,
    writeback_id: str,
    *,
    status: SessionStatus,
    kind: WritebackKind,
    last_writeback: WritebackSummary,
    ticket: TicketRef | None,
    summary: str | None,
    now: str,
) -> None:
    """The write-back succeeded: the session takes its outcome and the lock is released.

    Only the write-back holding the lock may do this, or the same write-back again: a step whose answer
    was lost is run twice by the state machine, and the second run must find the work done, not fail.
    """
    values: dict[str, Any] = {
        "status": status.value,
        "GSI2PK": dynamo.status_pk(account_id, status.value),
        "last_writeback": last_writeback,
        "updated_at": now,
        # The ticket the note and status went to (the lock kept the session from being relinked meanwhile).
        "psa_ticket": ticket,
        "resolution_summary" if kind is WritebackKind.resolve else "escalation_reason": summary,
    }
    _finish(account_id, session_id, writeback_id, _stored(values), remove=settled_attributes(kind, ticket))


def release_session(
    account_id: str,
    session_id: str,
    writeback_id: str,
    *,
    kind: WritebackKind,
    last_writeback: WritebackSummary,
    pending: PendingNote | None,
    guards: list[GuardedNote],
    now: str,
) -> None:
    """The write-back failed: the lock is released, keeping what a resume needs (its note) and the internal
    notes later posts must still check."""
    values: dict[str, Any] = {"last_writeback": last_writeback, "updated_at": now}
    if guards:
        values["guard_internal_notes"] = [g.model_dump(mode="json") for g in guards]
    if pending is not None:
        values |= keep_pending(kind, pending)
    _finish(account_id, session_id, writeback_id, _stored(values))


def _finish(
    account_id: str, session_id: str, writeback_id: str, values: dict[str, Any], remove: tuple[str, ...] = ()
) -> None:
    dynamo.update_item(
        session_key(account_id, session_id),
        values,
        condition=(
            "active_writeback_id = :wb OR "
            "(attribute_not_exists(active_writeback_id) AND last_writeback.writeback_id = :wb)"
        ),
        condition_values={":wb": writeback_id},
        remove=("active_writeback_id", "active_writeback_at", *remove),
    )


def record_drift(account_id: str, session_id: str, last_writeback: WritebackSummary) -> None:
    """After-the-fact facts (the drift re-check) on a closed session."""
    dynamo.update_item(
        session_key(account_id, session_id),
        _stored({"last_writeback": last_writeback}),
        condition="attribute_exists(PK)",
    )


def held_lock(session_item: dict[str, Any]) -> tuple[str, int] | None:
    """The write-back holding the session's lock and when it took it (0 for locks older than that record)."""
    held = session_item.get("active_writeback_id")
    if not held:
        return None
    return str(held), int(session_item.get("active_writeback_at") or 0)


def abandon(
    account_id: str,
    session_id: str,
    entry: LedgerEntry,
    *,
    reason: str,
    pending: PendingNote | None,
    now: str,
) -> bool:
    """Release a lock whose write-back will never record an end, and mark its entry abandoned, in one
    transaction that holds only while that write-back still holds the lock and its entry still runs: of two
    healers one wins. Returns whether this call did it."""
    table = dynamo.sessions_table().name
    last = LedgerEntry.model_validate(
        {**entry.model_dump(), "state": "abandoned", "abandon_reason": reason, "finished_at": now, "updated_at": now}
    ).summary_view()
    session_set = {"last_writeback": last.model_dump(mode="json", exclude_none=True), "updated_at": now}
    remove = ["active_writeback_id", "active_writeback_at"]
    if pending is not None:
        session_set |= _stored(dict(keep_pending(entry.kind, pending)))
    expression, names, values = dynamo.set_clause(session_set, remove)
    try:
        dynamo.client().transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": table,
                        "Key": session_key(account_id, session_id),
                        "UpdateExpression": expression,
                        "ConditionExpression": "active_writeback_id = :held",
                        "ExpressionAttributeNames": names,
                        "ExpressionAttributeValues": values | {":held": entry.writeback_id},
                    }
                },
                {
                    "Update": {
                        "TableName": table,
                        "Key": ledger_key(account_id, session_id, entry.writeback_id),
                        "UpdateExpression": "SET #st = :abandoned, abandon_reason = :reason, "
                        "finished_at = :now, updated_at = :now",
                        # Only as the healer saw it: a post attempt recorded since then means the note may be
                        # on its way, and the pending note must carry its marker; the healer reads again.
                        "ConditionExpression": "#st = :running AND "
                        + (
                            "post_attempted = :true"
                            if entry.post_attempted
                            else "(attribute_not_exists(post_attempted) OR post_attempted = :false)"
                        ),
                        "ExpressionAttributeNames": {"#st": "state"},
                        "ExpressionAttributeValues": {
                            ":abandoned": "abandoned",
                            ":running": "running",
                            ":reason": reason,
                            ":now": now,
                            **({":true": True} if entry.post_attempted else {":false": False}),
                        },
                    }
                },
                # A post still waiting for this write-back learns it ended.
                {
                    "Put": {
                        "TableName": table,
                        "Item": {**_finished_key(account_id, session_id, entry.writeback_id), "state": "abandoned"},
                    }
                },
            ]
        )
    except ClientError as error:
        if is_condition_failure(error):
            return False
        raise
    return True
