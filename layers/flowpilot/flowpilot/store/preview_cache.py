"""The PreviewCache table: one written preview per (account, session, kind, state_version), with a TTL,
and the lease that lets one request at a time write it.

  preview   PK=A#{account}#S#{session}  SK=P#{kind}#V#{state_version:010d}   markdown, …, expires_at
  lease     the same key                                                     lease_holder, expires_at

The state_version in the key is what invalidates: any change to a session bumps it, so the next preview
misses. A lease sits where the preview will go: the holder's `put_preview` replaces it, a failed holder
deletes it, and a crashed holder's lease simply expires (`expires_at` is also the table's TTL attribute).
DynamoDB deletes expired items lazily (up to days late), so a read treats them as absent.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from flowpilot.config import settings
from flowpilot.models import CachedPreview, PreviewKind
from flowpilot.store import dynamo

_NOT_PREVIEW_FIELDS = frozenset({"PK", "SK", "expires_at", "account_id"})


@dataclass(frozen=True)
class WriterLease:
    """Another request is writing this preview; it holds the lease until `expires_at` (epoch seconds)."""

    holder: str
    expires_at: int


class CacheWriteFailed(Exception):
    """The preview could not be stored (throttling, an outage); `code` is DynamoDB's error code."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def preview_key(account_id: str, session_id: str, kind: PreviewKind, state_version: int) -> dict[str, str]:
    return {"PK": dynamo.session_pk(account_id, session_id), "SK": f"P#{kind.value}#V#{state_version:010d}"}


def lookup(
    account_id: str, session_id: str, kind: PreviewKind, state_version: int
) -> CachedPreview | WriterLease | None:
    """The cached preview of exactly this state, the lease of a request writing it, or None (nothing
    there, or past its expiry). One consistent GetItem."""
    response = dynamo.preview_cache_table().get_item(
        Key=preview_key(account_id, session_id, kind, state_version), ConsistentRead=True
    )
    item = response.get("Item")
    if not item:
        return None
    item = dynamo.plain(item)
    if int(item.get("expires_at", 0)) <= int(time.time()):
        return None
    if "lease_holder" in item:
        return WriterLease(holder=str(item["lease_holder"]), expires_at=int(item["expires_at"]))
    return CachedPreview.model_validate({k: v for k, v in item.items() if k not in _NOT_PREVIEW_FIELDS})


def take_lease(
    account_id: str, session_id: str, kind: PreviewKind, state_version: int, *, holder: str, seconds: int
) -> bool:
    """Become the one writer of this preview for `seconds`: True if the slot was empty or expired
    (a crashed holder's lease, a stale preview), False if a live preview or lease is there."""
    now = time.time()
    try:
        dynamo.preview_cache_table().put_item(
            Item={
                **preview_key(account_id, session_id, kind, state_version),
                "account_id": account_id,
                "lease_holder": holder,
                # Rounded up: a lease never lasts less than asked.
                "expires_at": math.ceil(now) + seconds,
            },
            ConditionExpression="attribute_not_exists(SK) OR expires_at <= :now",
            ExpressionAttributeValues={":now": int(now)},
        )
    except ClientError as error:
        if dynamo.is_condition_failure(error):
            return False
        raise
    return True


def release_lease(account_id: str, session_id: str, kind: PreviewKind, state_version: int, *, holder: str) -> None:
    """Give the lease back so the next request writes at once. Best effort: a lease that was taken over
    or replaced by a preview is left alone, and one that cannot be deleted expires on its own."""
    try:
        dynamo.preview_cache_table().delete_item(
            Key=preview_key(account_id, session_id, kind, state_version),
            ConditionExpression="lease_holder = :holder",
            ExpressionAttributeValues={":holder": holder},
        )
    except ClientError:
        return


def put_preview(account_id: str, session_id: str, preview: CachedPreview) -> None:
    """Store a complete preview (replacing the writer's lease); it expires `preview_ttl_seconds` from now.
    Raises CacheWriteFailed if DynamoDB refuses the write."""
    item: dict[str, Any] = preview.model_dump(mode="json", exclude_none=True)
    item.update(
        preview_key(account_id, session_id, preview.kind, preview.state_version),
        account_id=account_id,
        expires_at=int(time.time()) + settings().preview_ttl_seconds,
    )
    try:
        dynamo.preview_cache_table().put_item(Item=item)
    except ClientError as error:
        raise CacheWriteFailed(str(error.response.get("Error", {}).get("Code", "unknown"))) from error
