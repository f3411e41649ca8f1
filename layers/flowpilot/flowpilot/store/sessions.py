"""Sessions and their evidence in DynamoDB: items in, domain models out.

Every key, condition and expression of the session item and its evidence is here; callers say what they
mean (`link_ticket`, `put_with_version_bump` with `NewEvidence`, …) and get `ConditionFailed` or
`TransactionConflict` when DynamoDB refuses.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from flowpilot.errors import InvalidInput
from flowpilot.models import Evidence, EvidenceKind, PsaTicketRef, Session, SessionStatus, StoredEvidence, StoredSession
from flowpilot.store import dynamo
from flowpilot.store.dynamo import ConditionFailed, is_condition_failure

SESSION_SK = "SESSION"
# Attributes of the session item that are its keys, not part of the stored session.
_KEYS = {"PK", "SK", "GSI1PK", "GSI1SK", "GSI2PK", "GSI2SK", "account_id"}
_ACTIVE = "attribute_exists(PK) AND #status = :active"

__all__ = [
    "ConditionFailed",
    "NewEvidence",
    "SetUndecidedFix",
    "TransactionConflict",
    "Write",
    "get_session",
    "link_ticket",
    "list_evidence",
    "list_sessions",
    "put_new_session",
    "put_with_version_bump",
    "read_newest_evidence",
]


def session_key(account_id: str, session_id: str) -> dict[str, str]:
    return {"PK": dynamo.session_pk(account_id, session_id), "SK": SESSION_SK}


def _order_key(item: dict[str, Any]) -> str:
    return f"{item['created_at']}#{item['id']}"


def session_item(account_id: str, session: Session) -> dict[str, Any]:
    """The item of a new session (no lock, no undecided fix recorded yet)."""
    item = StoredSession.new(session).model_dump(mode="json", exclude_none=True)
    order = _order_key(item)
    item.update(
        session_key(account_id, session.id),
        account_id=account_id,
        GSI1PK=dynamo.account_pk(account_id),
        GSI1SK=order,
        GSI2PK=dynamo.status_pk(account_id, session.status),
        GSI2SK=order,
    )
    return item


def to_stored_session(item: dict[str, Any]) -> StoredSession:
    return StoredSession.model_validate({k: v for k, v in dynamo.plain(item).items() if k not in _KEYS})


def to_session(item: dict[str, Any]) -> Session:
    return to_stored_session(item).to_session()


def put_new_session(account_id: str, session: Session) -> None:
    dynamo.sessions_table().put_item(
        Item=session_item(account_id, session), ConditionExpression="attribute_not_exists(PK)"
    )


def get_session_item(account_id: str, session_id: str, *, consistent: bool = True) -> dict[str, Any] | None:
    response = dynamo.sessions_table().get_item(Key=session_key(account_id, session_id), ConsistentRead=consistent)
    item = response.get("Item")
    return dynamo.plain(item) if item else None


def get_session(account_id: str, session_id: str) -> StoredSession | None:
    """The stored session (a consistent read), or None if the account has no such session."""
    item = get_session_item(account_id, session_id)
    return to_stored_session(item) if item else None


def link_ticket(account_id: str, session_id: str, ticket: PsaTicketRef, now: str) -> Session:
    """Link `ticket` to an active session with no write-back running, bumping its state_version.

    ConditionFailed when the session is missing, closed, or locked by a write-back.
    """
    item = dynamo.update_item(
        session_key(account_id, session_id),
        {"psa_ticket": ticket.model_dump(mode="json"), "updated_at": now},
        condition=f"{_ACTIVE} AND attribute_not_exists(active_writeback_id)",
        names={"#status": "status"},
        condition_values={":active": SessionStatus.active.value},
        increment=("state_version",),
    )
    return to_session(item)


# --- listing: newest first, an opaque cursor that only ever resumes the caller's own listing ---


def _encode_cursor(status: str | None, order_key: str) -> str:
    raw = json.dumps({"v": 1, "st": status or "*", "k": order_key}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, status: str | None) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        order_key = data["k"]
        valid = data.get("v") == 1 and isinstance(order_key, str) and "#" in order_key and len(order_key) < 200
    except (ValueError, KeyError, TypeError, binascii.Error):
        valid = False
    if not valid or data.get("st") != (status or "*"):
        raise InvalidInput("The cursor is not valid for this listing.", code="invalid_cursor")
    return str(order_key)


def list_sessions(
    account_id: str, status: SessionStatus | None, limit: int, cursor: str | None
) -> tuple[list[Session], str | None]:
    """One page, newest first. Reads at most limit + 1 items: the extra one only says whether more exist."""
    if status is None:
        index, pk_name, sk_name, pk = (
            dynamo.BY_ACCOUNT_INDEX,
            "GSI1PK",
            "GSI1SK",
            dynamo.account_pk(account_id),
        )
    else:
        index, pk_name, sk_name = dynamo.BY_STATUS_INDEX, "GSI2PK", "GSI2SK"
        pk = dynamo.status_pk(account_id, status)
    query: dict[str, Any] = {
        "IndexName": index,
        "KeyConditionExpression": Key(pk_name).eq(pk),
        "ScanIndexForward": False,
        "Limit": limit + 1,
    }
    if cursor:
        order_key = _decode_cursor(cursor, status)
        session_id = order_key.rsplit("#", 1)[1]
        query["ExclusiveStartKey"] = {
            **session_key(account_id, session_id),
            pk_name: pk,
            sk_name: order_key,
        }
    items = dynamo.sessions_table().query(**query).get("Items", [])
    page = [to_session(i) for i in items[:limit]]
    more = len(items) > limit
    next_cursor = _encode_cursor(status, _order_key(page[-1].model_dump())) if more and page else None
    return page, next_cursor


# --- evidence ---


def evidence_key(account_id: str, session_id: str, evidence_id: str) -> dict[str, str]:
    return {"PK": dynamo.session_pk(account_id, session_id), "SK": f"EV#{evidence_id}"}


class Write(Protocol):
    """An item a version-bump transaction writes besides the session: its `TransactItems` entry."""

    def transact_item(self, account_id: str, table: str) -> dict[str, Any]: ...


def put_new(table: str, item: dict[str, Any]) -> dict[str, Any]:
    """A transaction's put of a new item: refused (the transaction with it) if the key is taken."""
    return {"Put": {"TableName": table, "Item": item, "ConditionExpression": "attribute_not_exists(SK)"}}


def conditional_update(table: str, key: dict[str, str], set_values: dict[str, Any], condition: str) -> dict[str, Any]:
    """A transaction's `SET` of `set_values` on an existing item, only if `condition` holds."""
    expression, names, values = dynamo.set_clause(set_values)
    return {
        "Update": {
            "TableName": table,
            "Key": key,
            "UpdateExpression": expression,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
    }


@dataclass(frozen=True, slots=True)
class NewEvidence:
    """Store a new evidence item."""

    evidence: Evidence

    def transact_item(self, account_id: str, table: str) -> dict[str, Any]:
        return put_new(table, evidence_item(account_id, self.evidence))


@dataclass(frozen=True, slots=True)
class SetUndecidedFix:
    """Record `fix_id` (None: none) as the session's undecided fix, only if the record is still `was` (as
    read; None: never recorded), so two fixes added at once cannot both stay undecided."""

    was: str | None
    fix_id: str | None


_UNDECIDED_FIX = "undecided_fix_id"


def bump_version_update(
    account_id: str, session_id: str, now: str, change: SetUndecidedFix | None = None
) -> dict[str, Any]:
    """The transaction part that moves an active session to its next state_version.

    An atomic `ADD`, never a compare: concurrent writes all land and each moves the version by exactly one.
    Only a closed (or missing) session refuses it, or `change`'s own condition.
    """
    names = {"#status": "status"}
    values: dict[str, Any] = {":one": 1, ":now": now, ":active": SessionStatus.active.value}
    assignments = ["updated_at = :now"]
    condition = _ACTIVE
    if change is not None:
        names["#ufix"] = _UNDECIDED_FIX
        values[":ufix"] = change.fix_id or ""
        assignments.append("#ufix = :ufix")
        if change.was is None:
            condition += " AND attribute_not_exists(#ufix)"
        else:
            condition += " AND #ufix = :ufix_was"
            values[":ufix_was"] = change.was
    return {
        "Update": {
            "TableName": dynamo.sessions_table().name,
            "Key": session_key(account_id, session_id),
            "UpdateExpression": "SET " + ", ".join(assignments) + " ADD state_version :one",
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
    }


class TransactionConflict(ConditionFailed):
    """DynamoDB cancelled the transaction only because another one was changing the same item: retry it."""


def put_with_version_bump(
    account_id: str,
    session_id: str,
    now: str,
    writes: Sequence[Write],
    change: SetUndecidedFix | None = None,
) -> None:
    """Write `writes` and bump state_version in one transaction (one write request).

    Raises ConditionFailed when a condition does not hold (missing or closed session, a new item's key
    taken, a fix decided first, `change`'s record moved on), TransactionConflict when nothing failed but a
    concurrent transaction on the same item.
    """
    table = dynamo.sessions_table().name
    items: list[Any] = [w.transact_item(account_id, table) for w in writes]
    try:
        dynamo.client().transact_write_items(
            TransactItems=[*items, bump_version_update(account_id, session_id, now, change)]  # type: ignore[list-item]
        )
    except ClientError as error:
        if not is_condition_failure(error):
            raise
        reasons = {r.get("Code", "None") for r in error.response.get("CancellationReasons", [])} - {"None"}
        if reasons == {"TransactionConflict"}:
            raise TransactionConflict from error
        raise ConditionFailed from error


def evidence_item(account_id: str, evidence: Evidence) -> dict[str, Any]:
    item = StoredEvidence.of(evidence).model_dump(mode="json", exclude_none=True)
    item.update(evidence_key(account_id, evidence.session_id, evidence.id))
    return item


def iter_evidence(account_id: str, session_id: str) -> Iterator[Evidence]:
    """Every evidence item of a session, oldest first."""
    query: dict[str, Any] = {
        "KeyConditionExpression": Key("PK").eq(dynamo.session_pk(account_id, session_id))
        & Key("SK").begins_with("EV#"),
    }
    while True:
        response = dynamo.sessions_table().query(**query)
        for item in response.get("Items", []):
            yield _evidence_from_item(item)
        if "LastEvaluatedKey" not in response:
            return
        query["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def update_session(
    account_id: str,
    session_id: str,
    *,
    set_values: dict[str, Any],
    condition: str,
    values: dict[str, Any],
    names: dict[str, str] | None = None,
    increment: tuple[str, ...] = (),
) -> Session:
    """A conditional update returning the new session; ConditionFailed if the condition does not hold."""
    item = dynamo.update_item(
        session_key(account_id, session_id),
        set_values,
        condition=condition,
        names=names,
        condition_values=values,
        increment=increment,
    )
    return to_session(item)


# --- evidence for a preview: the newest items a document can show, and a count of the older ones ---


class EvidenceBudget(Protocol):
    """Decides how much evidence is worth reading (the writers' shared budget, `prompt.ReadBudget`)."""

    def take(self, evidence: Evidence) -> bool:
        """Count `evidence` in, newest first; False once it no longer fits (nothing older is needed)."""
        ...

    def wanted(self) -> int:
        """How many more items would probably fill the budget: the next read's Limit."""
        ...


@dataclass(frozen=True)
class NewestEvidence:
    """The newest evidence of a session (newest first), and how many older items were counted, not read."""

    items: tuple[Evidence, ...]
    older_count: int


def read_newest_evidence(
    account_id: str,
    session_id: str,
    *,
    kinds: frozenset[EvidenceKind],
    up_to_version: int,
    budget: EvidenceBudget,
) -> NewestEvidence:
    """Evidence of `kinds` added up to `up_to_version`, read newest first until `budget` is full (the rest
    of that page is kept: it is already paid for); the older matches are counted (`Select=COUNT`), not read.

    Evidence keys sort in the order items were added (`EV#` + `clock.new_id`: milliseconds, then random),
    so a descending Query yields the newest first. Reads are consistent: a preview is cached per
    state_version, so it must see every item of that version.
    """
    names = {"#sv": "state_version"}
    values: dict[str, Any] = {
        ":pk": dynamo.session_pk(account_id, session_id),
        ":ev": "EV#",
        ":sv": up_to_version,
    }
    condition = "#sv <= :sv"
    if kinds != frozenset(EvidenceKind):
        names["#kind"] = "kind"
        values |= {f":kind{i}": kind.value for i, kind in enumerate(sorted(kinds))}
        condition += f" AND #kind IN ({', '.join(f':kind{i}' for i in range(len(kinds)))})"
    query: dict[str, Any] = {
        "KeyConditionExpression": "PK = :pk AND begins_with(SK, :ev)",
        "FilterExpression": condition,
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
        "ScanIndexForward": False,
        "ConsistentRead": True,
    }
    table = dynamo.sessions_table()
    items: list[Evidence] = []
    scanned = 0
    full = False
    while True:
        # Limit counts the items evaluated before the filter: scaled by how many of them matched so far.
        limit = math.ceil(budget.wanted() * max(scanned, 1) / max(len(items), 1))
        response = table.query(**query, Limit=max(1, limit))
        scanned += int(response.get("ScannedCount", 0))
        for item in response.get("Items", []):
            evidence = _evidence_from_item(item)
            items.append(evidence)
            full = full or not budget.take(evidence)
        last_key = response.get("LastEvaluatedKey")
        if last_key is None:
            return NewestEvidence(items=tuple(items), older_count=0)
        query["ExclusiveStartKey"] = last_key
        if full:
            return NewestEvidence(items=tuple(items), older_count=_count_matches(query))


def _count_matches(query: dict[str, Any]) -> int:
    """How many items `query` matches: DynamoDB counts them (in 1 MB pages) and returns none."""
    query = {**query, "Select": "COUNT"}
    total = 0
    while True:
        response = dynamo.sessions_table().query(**query)
        total += int(response.get("Count", 0))
        if "LastEvaluatedKey" not in response:
            return total
        query["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def _evidence_from_item(item: dict[str, Any]) -> Evidence:
    stored = StoredEvidence.model_validate({k: v for k, v in dynamo.plain(item).items() if k not in {"PK", "SK"}})
    return stored.to_evidence()


# --- evidence listing: oldest first (the session's transcript), an opaque cursor bound to the session ---

_EVIDENCE_SK = re.compile(r"^EV#[A-Za-z0-9_-]{1,64}$")


def list_evidence(
    account_id: str, session_id: str, limit: int, cursor: str | None
) -> tuple[list[Evidence], str | None]:
    """One page of a session's evidence in the order it was added; reads at most limit + 1 items."""
    pk = dynamo.session_pk(account_id, session_id)
    query: dict[str, Any] = {
        "KeyConditionExpression": Key("PK").eq(pk) & Key("SK").begins_with("EV#"),
        "Limit": limit + 1,
    }
    if cursor:
        query["ExclusiveStartKey"] = {"PK": pk, "SK": _decode_evidence_cursor(cursor, session_id)}
    items = dynamo.sessions_table().query(**query).get("Items", [])
    page = [_evidence_from_item(item) for item in items[:limit]]
    more = len(items) > limit
    return page, (_encode_evidence_cursor(session_id, f"EV#{page[-1].id}") if more and page else None)


def _encode_evidence_cursor(session_id: str, sort_key: str) -> str:
    raw = json.dumps({"v": 1, "s": session_id, "k": sort_key}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_evidence_cursor(cursor: str, session_id: str) -> str:
    try:
        data = json.loads(base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()))
        sort_key = data["k"]
        valid = data.get("v") == 1 and data.get("s") == session_id and bool(_EVIDENCE_SK.match(str(sort_key)))
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        valid = False
    if not valid:
        raise InvalidInput("The cursor is not valid for this listing.", code="invalid_cursor")
    return str(sort_key)
