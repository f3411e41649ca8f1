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
from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.conditions import Attr, Key

from flowpilot.errors import InvalidInput
from flowpilot.models import (
    ID_PATTERN,
    DraftTemplate,
    ScriptTemplate,
    SessionSuggestedFixResponse,
    StoredFix,
    StoredSession,
)
from flowpilot.store import dynamo
from flowpilot.store.sessions import conditional_update, put_new

FIX_PREFIX = "FIX#"
DRAFT_PREFIX = "DT#"
TEMPLATE_PREFIX = "TPL#"
_KEYS = {"PK", "SK"}
_CURSOR_ID = re.compile(ID_PATTERN)
# A decision, or being superseded, happens once: whichever write comes first wins.
UNDECIDED = "attribute_exists(SK) AND attribute_not_exists(user_decision) AND attribute_not_exists(superseded_at)"
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


def fix_item(account_id: str, fix: StoredFix | SessionSuggestedFixResponse) -> dict[str, Any]:
    """The item to put for a new fix (its sensitive parameter values must already be masked)."""
    stored = fix if isinstance(fix, StoredFix) else StoredFix.of(fix)
    item = stored.model_dump(mode="json", exclude_none=True)
    item.update(fix_key(account_id, stored.session_id, stored.id))
    return item


def _to_fix(item: dict[str, Any]) -> StoredFix:
    return StoredFix.model_validate(_without_keys(item))


def get_fix(account_id: str, session_id: str, fix_id: str) -> StoredFix | None:
    item = (
        dynamo.sessions_table().get_item(Key=fix_key(account_id, session_id, fix_id), ConsistentRead=True).get("Item")
    )
    return _to_fix(item) if item else None


# --- what a version-bump transaction (store.sessions.put_with_version_bump) writes for fixes ---


@dataclass(frozen=True, slots=True)
class NewFix:
    """Store a new fix."""

    fix: StoredFix

    def transact_item(self, account_id: str, table: str) -> dict[str, Any]:
        return put_new(table, fix_item(account_id, self.fix))


@dataclass(frozen=True, slots=True)
class SupersedeFix:
    """Mark a fix superseded at `at`, only if it is still undecided and current."""

    session_id: str
    fix_id: str
    at: str

    def transact_item(self, account_id: str, table: str) -> dict[str, Any]:
        key = fix_key(account_id, self.session_id, self.fix_id)
        return conditional_update(table, key, {"superseded_at": self.at}, UNDECIDED)


@dataclass(frozen=True, slots=True)
class RecordDecision:
    """Store the decision of `fix` (as decided: its decision, when and by whom, and its superseded_at if
    the decision supersedes it), only if the stored fix is still undecided and current."""

    fix: StoredFix

    def transact_item(self, account_id: str, table: str) -> dict[str, Any]:
        fix = self.fix
        assert fix.user_decision is not None and fix.decided_at is not None and fix.decided_by is not None
        decided: dict[str, Any] = {
            "user_decision": fix.user_decision.value,
            "decided_at": fix.decided_at,
            "decided_by": fix.decided_by,
        }
        if fix.superseded_at is not None:
            decided["superseded_at"] = fix.superseded_at
        return conditional_update(table, fix_key(account_id, fix.session_id, fix.id), decided, UNDECIDED)


@dataclass(frozen=True, slots=True)
class NewDraft:
    """Store a draft template queued by a decision."""

    draft: DraftTemplate

    def transact_item(self, account_id: str, table: str) -> dict[str, Any]:
        return put_new(table, draft_item(account_id, self.draft))


# --- the session's undecided fix: one at most, its id kept on the session item ---


def undecided_fix_ids(account_id: str, session: StoredSession) -> list[str]:
    """The session's undecided, current fix (a list: empty or one id), from the session just read.

    Sessions stored before the id was kept there have none recorded: their fixes are queried, once,
    since the next fix added records it.
    """
    if session.undecided_fix_id is not None:
        return [session.undecided_fix_id] if session.undecided_fix_id else []
    query: dict[str, Any] = {
        "KeyConditionExpression": Key("PK").eq(dynamo.session_pk(account_id, session.id))
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


# --- listing fixes: two groups (current, then superseded), each newest first ---


def fixes_page(
    account_id: str, session_id: str, *, superseded: bool, after: str | None, limit: int
) -> tuple[list[StoredFix], str | None]:
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
    found: list[StoredFix] = []
    for _ in range(_QUERIES_PER_PAGE):
        response = dynamo.sessions_table().query(**query)
        found.extend(_to_fix(i) for i in response["Items"])
        if len(found) > limit:
            return found[:limit], found[limit - 1].id
        last = response.get("LastEvaluatedKey")
        if last is None:
            return found, None
        query["ExclusiveStartKey"] = last
    assert last is not None  # the loop above only ends here after a page that had more
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
