"""The account's settings item: preferences and the non-secret half of the PSA connection."""

from __future__ import annotations

from typing import Any

from flowpilot.store import dynamo

SETTINGS_SK = "SETTINGS"


def _key(account_id: str) -> dict[str, str]:
    return {"PK": dynamo.account_pk(account_id), "SK": SETTINGS_SK}


def get(account_id: str) -> dict[str, Any]:
    item = dynamo.sessions_table().get_item(Key=_key(account_id)).get("Item")
    return dynamo.plain(item) if item else {}


def put_field(account_id: str, field: str, value: dict[str, Any], now: str) -> dict[str, Any]:
    response = dynamo.sessions_table().update_item(
        Key=_key(account_id),
        UpdateExpression="SET #f = :v, updated_at = :now",
        ExpressionAttributeNames={"#f": field},
        ExpressionAttributeValues={":v": value, ":now": now},
        ReturnValues="ALL_NEW",
    )
    return dynamo.plain(response["Attributes"])
