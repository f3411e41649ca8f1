"""PSA credentials in Secrets Manager: one secret per account, cached briefly in the process."""

from __future__ import annotations

import json
import threading
import time
from functools import cache
from typing import Any

import boto3
from botocore.exceptions import ClientError

from flowpilot import resets
from flowpilot.config import aws_endpoint_url, settings

_TTL_SECONDS = 300.0
_lock = threading.Lock()
_cache: dict[str, tuple[float, dict[str, Any]]] = {}


@cache
def client() -> Any:
    """The process's Secrets Manager client (PSA credentials here, the model key in `model_key`)."""
    return boto3.client("secretsmanager", endpoint_url=aws_endpoint_url())


@resets.register
def reset_caches() -> None:
    client.cache_clear()
    with _lock:
        _cache.clear()


def secret_name(account_id: str) -> str:
    return f"{settings().secret_prefix}{account_id}"


def put_psa_secret(account_id: str, value: dict[str, Any]) -> str:
    """Create or replace the account's PSA secret; returns its ARN."""
    name = secret_name(account_id)
    payload = json.dumps(value)
    try:
        arn = client().put_secret_value(SecretId=name, SecretString=payload)["ARN"]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
        arn = client().create_secret(
            Name=name,
            SecretString=payload,
            Description="FlowPilot PSA credentials for one account",
            Tags=[{"Key": "flowpilot:account", "Value": account_id}],
        )["ARN"]
    with _lock:
        _cache.pop(name, None)
    return str(arn)


def get_psa_secret(account_id: str) -> dict[str, Any] | None:
    name = secret_name(account_id)
    with _lock:
        hit = _cache.get(name)
    if hit and hit[0] > time.monotonic():
        return hit[1]
    try:
        value: dict[str, Any] = json.loads(client().get_secret_value(SecretId=name)["SecretString"])
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return None
        raise
    with _lock:
        _cache[name] = (time.monotonic() + _TTL_SECONDS, value)
    return value
