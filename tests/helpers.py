"""Small helpers more than one test module needs: what a table holds, and a Messages API answer."""

from __future__ import annotations

import json
from typing import Any

from devstack import template

SESSIONS_TABLE = "SessionsTable"

# What the fake Messages API reports by default: a cached prefix, as a warm prompt cache reports it.
MESSAGE_USAGE = {
    "input_tokens": 1200,
    "output_tokens": 240,
    "cache_read_input_tokens": 900,
    "cache_creation_input_tokens": 300,
}


def table_items(logical_id: str = SESSIONS_TABLE) -> list[dict[str, Any]]:
    """Every item of a table from template.yaml, read consistently over all pages, in a stable order.

    The table is named by its logical id, as the template names it, on whichever AWS the test runs against.
    """
    import boto3  # here, not at import: the unit tests that import this module never touch AWS

    table = boto3.resource("dynamodb", region_name=template.LOCAL_REGION).Table(template.physical_name(logical_id))
    items: list[dict[str, Any]] = []
    scan: dict[str, Any] = {"ConsistentRead": True}
    while True:
        page = table.scan(**scan)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            break
        scan["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return sorted(items, key=lambda item: json.dumps(item, sort_keys=True, default=str))


def anthropic_message(
    text: str | list[str],
    *,
    stop_reason: str = "end_turn",
    usage: dict[str, Any] | None = None,
    model: str = "claude-sonnet-5-5",
) -> dict[str, Any]:
    """A Messages API answer as the API sends it: one text block per string in `text`."""
    texts = [text] if isinstance(text, str) else text
    return {
        "id": "msg_01FakeFakeFake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": part} for part in texts],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": dict(usage or MESSAGE_USAGE),
    }
