"""The writeback ledger: one item per write-back under its session, the source of truth for what was posted.

The note id is written here the moment the PSA returns it, so no retry or resume can post a second note.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from flowpilot.store import dynamo
from flowpilot.store.dynamo import ConditionFailed, is_condition_failure
from flowpilot.store.sessions import session_key


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


def get(account_id: str, session_id: str, writeback_id: str) -> dict[str, Any] | None:
    item = (
        dynamo.sessions_table()
        .get_item(Key=ledger_key(account_id, session_id, writeback_id), ConsistentRead=True)
        .get("Item")
    )
    if not item:
        return None
    return {k: v for k, v in dynamo.plain(item).items() if k not in {"PK", "SK"}}


def start(account_id: str, session_id: str, entry: dict[str, Any], ticket: dict[str, str] | None) -> None:
    """Put the ledger entry and take the session's write-back lock in one transaction.

    The lock is taken only while the session still links `ticket` (the one read before), so a relink that
    lands between that read and the lock cannot send the note to one ticket and record another.
    Raises ConditionFailed when the session is closed, already has a write-back running, or was relinked.
    """
    table = dynamo.sessions_table().name
    item = {**ledger_key(account_id, session_id, entry["writeback_id"]), **entry}
    values: dict[str, Any] = {":wb": entry["writeback_id"], ":now": entry["created_at"], ":active": "active"}
    if ticket is None:
        same_ticket = "attribute_not_exists(psa_ticket.ticket_id)"
    else:
        same_ticket = "psa_ticket.ticket_id = :tid AND psa_ticket.provider = :provider"
        values.update({":tid": ticket["ticket_id"], ":provider": ticket["provider"]})
    lock: dict[str, Any] = {
        "TableName": table,
        "Key": session_key(account_id, session_id),
        "UpdateExpression": "SET active_writeback_id = :wb, updated_at = :now",
        "ConditionExpression": (
            "attribute_exists(PK) AND #st = :active AND attribute_not_exists(active_writeback_id) AND " + same_ticket
        ),
        "ExpressionAttributeNames": {"#st": "status"},
        "ExpressionAttributeValues": values,
    }
    try:
        dynamo.client().transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": table,
                        "Item": item,
                        "ConditionExpression": "attribute_not_exists(SK)",
                    }
                },
                {"Update": lock},
            ]
        )
    except ClientError as error:
        if is_condition_failure(error):
            raise ConditionFailed from error
        raise


def update(
    account_id: str,
    session_id: str,
    writeback_id: str,
    values: dict[str, Any],
    *,
    condition: str | None = None,
    condition_values: dict[str, Any] | None = None,
) -> dict[str, Any]:
    item = dynamo.update_item(
        ledger_key(account_id, session_id, writeback_id),
        values,
        condition="attribute_exists(SK)" + (f" AND ({condition})" if condition else ""),
        condition_values=condition_values,
    )
    return {k: v for k, v in item.items() if k not in {"PK", "SK"}}


def record_note_id(account_id: str, session_id: str, writeback_id: str, note_id: str, now: str) -> dict[str, Any]:
    """First writer wins: a note id, once recorded, is never replaced."""
    try:
        return update(
            account_id,
            session_id,
            writeback_id,
            {"note_id": note_id, "note_posted_at": now, "updated_at": now},
            condition="attribute_not_exists(note_id)",
        )
    except ConditionFailed:
        existing = get(account_id, session_id, writeback_id)
        assert existing is not None
        return existing


def replace_note_id(
    account_id: str, session_id: str, writeback_id: str, lost_id: str, note_id: str, now: str
) -> dict[str, Any]:
    """The PSA lost the recorded note (deleted by hand): record its replacement, only in place of `lost_id`."""
    return update(
        account_id,
        session_id,
        writeback_id,
        {"note_id": note_id, "note_posted_at": now, "replaced_note_id": lost_id, "updated_at": now},
        condition="note_id = :lost",
        condition_values={":lost": lost_id},
    )


def finish_session(
    account_id: str,
    session_id: str,
    writeback_id: str,
    set_values: dict[str, Any],
    remove: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Release the session's lock and apply the outcome to the session.

    Only the write-back holding the lock may do this, or the same write-back again: a step whose answer
    was lost is run twice by the state machine, and the second run must find the work done, not fail.
    """
    return dynamo.update_item(
        session_key(account_id, session_id),
        set_values,
        condition=(
            "active_writeback_id = :wb OR "
            "(attribute_not_exists(active_writeback_id) AND last_writeback.writeback_id = :wb)"
        ),
        condition_values={":wb": writeback_id},
        remove=("active_writeback_id", *remove),
    )


def set_session_fields(account_id: str, session_id: str, set_values: dict[str, Any]) -> None:
    """Unconditional session update for after-the-fact facts (the drift re-check)."""
    dynamo.update_item(session_key(account_id, session_id), set_values, condition="attribute_exists(PK)")
