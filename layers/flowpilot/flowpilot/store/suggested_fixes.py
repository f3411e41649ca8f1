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
from collections.abc import Mapping
from typing import Any

from boto3.dynamodb.conditions import Attr, Key

from flowpilot.errors import InvalidInput
from flowpilot.models import ID_PATTERN, DraftTemplate, ScriptTemplate, SessionSuggestedFixResponse
from flowpilot.store import dynamo
from flowpilot.store.sessions import ConditionalUpdate, SessionChange

FIX_PREFIX = "FIX#"
DRAFT_PREFIX = "DT#"
TEMPLATE_PREFIX = "TPL#"
_KEYS = {"PK", "SK"}
_CURSOR_ID = re.compile(ID_PATTERN)
# A decision, or being superseded, happens once: whichever write comes first wins.
UNDECIDED = "attribute_exists(SK) AND attribute_not_exists(user_decision) AND attribute_not_exists(superseded_at)"
# On the session item: the id of its undecided fix, "" when none (absent on sessions stored before it was kept).
UNDECIDED_FIX_ATTRIBUTE = "undecided_fix_id"
# A page of a filtered listing stops after this many queries, so no request reads without bound.
_QUERIES_PER_PAGE = 10


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


def fix_update(account_id: str, session_id: str, fix_id: str, **set_values: Any) -> ConditionalUpdate:
    """Decide or supersede a fix, only if it is still undecided and current (part of a transaction)."""
    return ConditionalUpdate(key=fix_key(account_id, session_id, fix_id), set_values=set_values, condition=UNDECIDED)


# --- the session's undecided fix: one at most, its id kept on the session item ---


def undecided_fix_ids(account_id: str, session_id: str, session_item: Mapping[str, Any]) -> list[str]:
    """The session's undecided, current fix (a list: empty or one id), from the session item just read.

    Sessions stored before the id was kept there have no such attribute: their fixes are queried, once,
    since the next fix added records it.
    """
    if UNDECIDED_FIX_ATTRIBUTE in session_item:
        fix_id = session_item[UNDECIDED_FIX_ATTRIBUTE]
        return [fix_id] if fix_id else []
    query: dict[str, Any] = {
        "KeyConditionExpression": Key("PK").eq(dynamo.session_pk(account_id, session_id))
        & Key("SK").begins_with(FIX_PREFIX),
        "FilterExpression": Attr("user_decision").not_exists() & Attr("superseded_at").not_exists(),
        "ProjectionExpression": "SK",
        "ConsistentRead": True,
    }
    found: list[str] = []
    while True:
        response = dynamo.sessions_table().query(**query)
        found.extend(str(item["SK"]).removeprefix(FIX_PREFIX) for item in response["Items"])
        if "LastEvaluatedKey" not in response:
            return found
        query["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def undecided_fix_change(session_item: Mapping[str, Any], fix_id: str | None) -> SessionChange:
    """Record `fix_id` (None: no fix) as the session's undecided fix, only if no other write changed the
    record since `session_item` was read: two fixes added at once cannot both stay undecided."""
    new = {UNDECIDED_FIX_ATTRIBUTE: fix_id or ""}
    name = f"#{UNDECIDED_FIX_ATTRIBUTE}"
    if UNDECIDED_FIX_ATTRIBUTE not in session_item:
        return SessionChange(new, f"attribute_not_exists({name})")
    return SessionChange(
        new, f"{name} = :undecided_fix_was", {":undecided_fix_was": session_item[UNDECIDED_FIX_ATTRIBUTE]}
    )


def records_undecided_fix(session_item: Mapping[str, Any], fix_id: str) -> bool:
    """Whether the session item names `fix_id` as its undecided fix."""
    return session_item.get(UNDECIDED_FIX_ATTRIBUTE) == fix_id


# --- listing fixes: two groups (current, then superseded), each newest first ---


def fixes_page(
    account_id: str, session_id: str, *, superseded: bool, after: str | None, limit: int
) -> tuple[list[SessionSuggestedFixResponse], str | None]:
    """Up to `limit` fixes of one group, newest first, after fix `after`; and the fix id to resume after
    (None: the group is done).

    Reads at most limit + 1 matching items, in at most _QUERIES_PER_PAGE queries (DynamoDB reads up to
    1 MB per query): past that the page ends early, even empty, with the position to resume from.
    """
    query: dict[str, Any] = {
        "KeyConditionExpression": Key("PK").eq(dynamo.session_pk(account_id, session_id))
        & Key("SK").begins_with(FIX_PREFIX),
        "FilterExpression": Attr("superseded_at").exists() if superseded else Attr("superseded_at").not_exists(),
        "ScanIndexForward": False,
        "ConsistentRead": True,
        "Limit": limit + 1,
    }
    if after:
        query["ExclusiveStartKey"] = fix_key(account_id, session_id, after)
    found: list[SessionSuggestedFixResponse] = []
    for _ in range(_QUERIES_PER_PAGE):
        response = dynamo.sessions_table().query(**query)
        found.extend(SessionSuggestedFixResponse.model_validate(_without_keys(i)) for i in response["Items"])
        if len(found) > limit:
            return found[:limit], found[limit - 1].id
        last = response.get("LastEvaluatedKey")
        if last is None:
            return found, None
        query["ExclusiveStartKey"] = last
    return found, str(last["SK"]).removeprefix(FIX_PREFIX)


def fix_cursor(session_id: str, include_superseded: bool, group: int, after: str | None) -> str:
    """An opaque cursor that resumes only this listing: this session, this include_superseded."""
    raw = {"v": 1, "l": "fixes", "s": session_id, "x": include_superseded, "g": group, "k": after}
    return base64.urlsafe_b64encode(json.dumps(raw, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_fix_cursor(cursor: str, session_id: str, include_superseded: bool, groups: int) -> tuple[int, str | None]:
    """(group, fix id to resume after) from `fix_cursor`; 422 `invalid_cursor` for any other string."""
    try:
        data = json.loads(base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()))
        group, after = data["g"], data["k"]
        valid = (
            data.get("v") == 1
            and data.get("l") == "fixes"
            and data.get("s") == session_id
            and data.get("x") is include_superseded
            and type(group) is int
            and 0 <= group < groups
            and (after is None or (isinstance(after, str) and bool(_CURSOR_ID.match(after))))
        )
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        valid = False
    if not valid:
        raise InvalidInput("The cursor is not valid for this listing.", code="invalid_cursor")
    return group, after


# --- draft templates ---


def draft_item(account_id: str, draft: DraftTemplate) -> dict[str, Any]:
    item = draft.model_dump(mode="json", exclude_none=True)
    item.update(PK=drafts_pk(account_id), SK=f"{DRAFT_PREFIX}{draft.id}")
    return item


def draft_cursor(draft_id: str) -> str:
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
    next_cursor = draft_cursor(page[-1].id) if len(items) > limit and page else None
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
