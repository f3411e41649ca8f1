"""Sessions and their evidence in DynamoDB: items in, domain models out."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from flowpilot.errors import InvalidInput
from flowpilot.models import Evidence, Session, SessionStatus
from flowpilot.store import dynamo
from flowpilot.store.dynamo import ConditionFailed, is_condition_failure

SESSION_SK = "SESSION"
# Attributes that live on the session item but are not part of the Session model.
_INTERNAL = {"PK", "SK", "GSI1PK", "GSI1SK", "GSI2PK", "GSI2SK", "account_id", "active_writeback_id"}


def session_key(account_id: str, session_id: str) -> dict[str, str]:
    return {"PK": dynamo.session_pk(account_id, session_id), "SK": SESSION_SK}


def _order_key(item: dict[str, Any]) -> str:
    return f"{item['created_at']}#{item['id']}"


def session_item(account_id: str, session: Session) -> dict[str, Any]:
    item = session.model_dump(mode="json", exclude_none=True)
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


def to_session(item: dict[str, Any]) -> Session:
    return Session.model_validate({k: v for k, v in dynamo.plain(item).items() if k not in _INTERNAL})


def put_new_session(account_id: str, session: Session) -> None:
    dynamo.sessions_table().put_item(
        Item=session_item(account_id, session), ConditionExpression="attribute_not_exists(PK)"
    )


def get_session_item(account_id: str, session_id: str, *, consistent: bool = True) -> dict[str, Any] | None:
    response = dynamo.sessions_table().get_item(Key=session_key(account_id, session_id), ConsistentRead=consistent)
    item = response.get("Item")
    return dynamo.plain(item) if item else None


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


def bump_version_update(account_id: str, session_id: str, expected_version: int, now: str) -> dict[str, Any]:
    """The transaction part that moves a session to its next state_version, if nothing else did first."""
    return {
        "Update": {
            "TableName": dynamo.sessions_table().name,
            "Key": session_key(account_id, session_id),
            "UpdateExpression": "SET state_version = :next, updated_at = :now",
            "ConditionExpression": "state_version = :expected AND #status = :active",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {
                ":next": expected_version + 1,
                ":expected": expected_version,
                ":now": now,
                ":active": "active",
            },
        }
    }


@dataclass(frozen=True, slots=True)
class ConditionalUpdate:
    """A change to an existing item, made in a version-bump transaction only if `condition` holds.

    `set_values` become `SET #name = :name`; `condition` may refer to them as `#name` / `:name`.
    """

    key: dict[str, str]
    set_values: dict[str, Any]
    condition: str

    def transact_item(self, table: str) -> dict[str, Any]:
        expression, names, values = dynamo.set_clause(self.set_values)
        return {
            "Update": {
                "TableName": table,
                "Key": self.key,
                "UpdateExpression": expression,
                "ConditionExpression": self.condition,
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
        }


def put_with_version_bump(
    account_id: str,
    session_id: str,
    expected_version: int,
    now: str,
    writes: Sequence[dict[str, Any] | ConditionalUpdate],
) -> None:
    """Write `writes` and bump state_version in one transaction (one write request). Raises ConditionFailed.

    A dict is a new item (put only if absent); a ConditionalUpdate changes an existing one.
    """
    table = dynamo.sessions_table().name
    items = [
        w.transact_item(table)
        if isinstance(w, ConditionalUpdate)
        else {"Put": {"TableName": table, "Item": w, "ConditionExpression": "attribute_not_exists(SK)"}}
        for w in writes
    ]
    try:
        dynamo.client().transact_write_items(
            TransactItems=[*items, bump_version_update(account_id, session_id, expected_version, now)]
        )
    except ClientError as error:
        if is_condition_failure(error):
            raise ConditionFailed from error
        raise


def evidence_item(account_id: str, evidence: Evidence) -> dict[str, Any]:
    item = evidence.model_dump(mode="json", exclude_none=True)
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
            yield Evidence.model_validate({k: v for k, v in dynamo.plain(item).items() if k not in {"PK", "SK"}})
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
