"""Suggested fixes, draft templates and the account's script templates in DynamoDB: items in, models out.

Keys (see dynamo.py): a fix lives beside its session (SK `FIX#{id}`); drafts under `A#{account}#DRAFTS`
(SK `DT#{id}`, time-ordered ids, so a reverse Query is newest first); templates under
`A#{account}#TEMPLATES` (SK `TPL#{id}`). Every key starts with the account.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from boto3.dynamodb.conditions import Key

from flowpilot.errors import InvalidInput
from flowpilot.models import ID_PATTERN, DraftTemplate, ScriptTemplate, SessionSuggestedFixResponse
from flowpilot.store import dynamo
from flowpilot.store.sessions import ConditionalUpdate

FIX_PREFIX = "FIX#"
DRAFT_PREFIX = "DT#"
TEMPLATE_PREFIX = "TPL#"
_KEYS = {"PK", "SK"}
# A decision, or being superseded, happens once: whichever write comes first wins.
UNDECIDED = "attribute_exists(SK) AND attribute_not_exists(user_decision) AND attribute_not_exists(superseded_at)"


def drafts_pk(account_id: str) -> str:
    return f"{dynamo.account_pk(account_id)}#DRAFTS"


def templates_pk(account_id: str) -> str:
    return f"{dynamo.account_pk(account_id)}#TEMPLATES"


def _without_keys(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in dynamo.plain(item).items() if k not in _KEYS}


# --- fixes ---


def fix_key(account_id: str, session_id: str, fix_id: str) -> dict[str, str]:
    return {"PK": dynamo.session_pk(account_id, session_id), "SK": f"{FIX_PREFIX}{fix_id}"}


def fix_item(account_id: str, fix: SessionSuggestedFixResponse) -> dict[str, Any]:
    """The item to put for a new fix (its sensitive parameter values must already be masked)."""
    item = fix.model_dump(mode="json", exclude_none=True)
    item.update(fix_key(account_id, fix.session_id, fix.id))
    return item


def get_fix(account_id: str, session_id: str, fix_id: str) -> SessionSuggestedFixResponse | None:
    item = (
        dynamo.sessions_table().get_item(Key=fix_key(account_id, session_id, fix_id), ConsistentRead=True).get("Item")
    )
    return SessionSuggestedFixResponse.model_validate(_without_keys(item)) if item else None


def list_fixes(account_id: str, session_id: str) -> list[SessionSuggestedFixResponse]:
    """Every fix of a session, newest first."""
    query: dict[str, Any] = {
        "KeyConditionExpression": Key("PK").eq(dynamo.session_pk(account_id, session_id))
        & Key("SK").begins_with(FIX_PREFIX),
        "ConsistentRead": True,
    }
    fixes: list[SessionSuggestedFixResponse] = []
    while True:
        response = dynamo.sessions_table().query(**query)
        fixes.extend(SessionSuggestedFixResponse.model_validate(_without_keys(i)) for i in response["Items"])
        if "LastEvaluatedKey" not in response:
            break
        query["ExclusiveStartKey"] = response["LastEvaluatedKey"]
    return sorted(fixes, key=lambda f: (f.created_at, f.id), reverse=True)


def fix_update(account_id: str, session_id: str, fix_id: str, **set_values: Any) -> ConditionalUpdate:
    """Decide or supersede a fix, only if it is still undecided and current (part of a transaction)."""
    return ConditionalUpdate(key=fix_key(account_id, session_id, fix_id), set_values=set_values, condition=UNDECIDED)


# --- draft templates ---


def draft_item(account_id: str, draft: DraftTemplate) -> dict[str, Any]:
    item = draft.model_dump(mode="json", exclude_none=True)
    item.update(PK=drafts_pk(account_id), SK=f"{DRAFT_PREFIX}{draft.id}")
    return item


_CURSOR_ID = re.compile(ID_PATTERN)


def _encode_draft_cursor(draft_id: str) -> str:
    raw = json.dumps({"v": 1, "l": "drafts", "k": draft_id}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_draft_cursor(cursor: str) -> str:
    try:
        data = json.loads(base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()))
        draft_id = data["k"]
        valid = data.get("v") == 1 and data.get("l") == "drafts" and bool(_CURSOR_ID.match(draft_id))
    except (ValueError, KeyError, TypeError, binascii.Error):
        valid = False
    if not valid:
        raise InvalidInput("The cursor is not valid for this listing.", code="invalid_cursor")
    return str(draft_id)


def list_drafts(account_id: str, limit: int, cursor: str | None) -> tuple[list[DraftTemplate], str | None]:
    """One page, newest first. Reads at most limit + 1 items: the extra one only says whether more exist."""
    pk = drafts_pk(account_id)
    query: dict[str, Any] = {
        "KeyConditionExpression": Key("PK").eq(pk) & Key("SK").begins_with(DRAFT_PREFIX),
        "ScanIndexForward": False,
        "Limit": limit + 1,
    }
    if cursor:
        query["ExclusiveStartKey"] = {"PK": pk, "SK": f"{DRAFT_PREFIX}{_decode_draft_cursor(cursor)}"}
    items = dynamo.sessions_table().query(**query).get("Items", [])
    page = [DraftTemplate.model_validate(_without_keys(i)) for i in items[:limit]]
    next_cursor = _encode_draft_cursor(page[-1].id) if len(items) > limit and page else None
    return page, next_cursor


# --- script templates (no route creates them yet: seeded by tests and the demo) ---


def template_key(account_id: str, template_id: str) -> dict[str, str]:
    return {"PK": templates_pk(account_id), "SK": f"{TEMPLATE_PREFIX}{template_id}"}


def put_script_template(account_id: str, template: ScriptTemplate) -> None:
    item = template.model_dump(mode="json")
    item.update(template_key(account_id, template.id))
    dynamo.sessions_table().put_item(Item=item)


def get_script_template(account_id: str, template_id: str) -> ScriptTemplate | None:
    item = dynamo.sessions_table().get_item(Key=template_key(account_id, template_id)).get("Item")
    return ScriptTemplate.model_validate(_without_keys(item)) if item else None
