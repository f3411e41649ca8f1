"""The PreviewCache table: one written preview per (account, session, kind, state_version), with a TTL.

  preview   PK=A#{account}#S#{session}  SK=P#{kind}#V#{state_version:010d}   expires_at (epoch seconds)

The state_version in the key is what invalidates: any change to a session bumps it, so the next preview
misses. DynamoDB deletes expired items lazily (up to days late), so a read also treats them as a miss.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel

from flowpilot.config import settings
from flowpilot.models import PreviewKind, PreviewUsage
from flowpilot.store import dynamo


class CachedPreview(BaseModel):
    """A complete document as the writer produced it, and what producing it cost."""

    kind: PreviewKind
    state_version: int
    markdown: str
    writer: str
    usage: PreviewUsage | None = None
    generated_at: str


def preview_key(account_id: str, session_id: str, kind: PreviewKind, state_version: int) -> dict[str, str]:
    return {"PK": dynamo.session_pk(account_id, session_id), "SK": f"P#{kind.value}#V#{state_version:010d}"}


def get_preview(account_id: str, session_id: str, kind: PreviewKind, state_version: int) -> CachedPreview | None:
    """The cached preview of exactly this state, or None (missing or past its expiry). One GetItem."""
    response = dynamo.preview_cache_table().get_item(
        Key=preview_key(account_id, session_id, kind, state_version), ConsistentRead=True
    )
    item = response.get("Item")
    if not item:
        return None
    item = dynamo.plain(item)
    if int(item.get("expires_at", 0)) <= int(time.time()):
        return None
    return CachedPreview.model_validate(
        {k: v for k, v in item.items() if k not in {"PK", "SK", "expires_at", "account_id"}}
    )


def put_preview(account_id: str, session_id: str, preview: CachedPreview) -> None:
    """Store a complete preview; it expires `preview_ttl_seconds` from now."""
    item: dict[str, Any] = preview.model_dump(mode="json", exclude_none=True)
    item.update(
        preview_key(account_id, session_id, preview.kind, preview.state_version),
        account_id=account_id,
        expires_at=int(time.time()) + settings().preview_ttl_seconds,
    )
    dynamo.preview_cache_table().put_item(Item=item)
