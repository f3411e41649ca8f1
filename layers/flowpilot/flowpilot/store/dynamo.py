"""Table handles and key layout of the single Sessions table and the PreviewCache table.

Sessions table keys (every partition key starts with the account, so no query can cross accounts):
  session      PK=A#{account}#S#{session}  SK=SESSION   GSI1 ByAccount, GSI2 ByStatus (newest first)
  evidence     PK=A#{account}#S#{session}  SK=EV#{evidence id}      (time-ordered ids)
  fix          PK=A#{account}#S#{session}  SK=FIX#{fix id}
  writeback    PK=A#{account}#S#{session}  SK=WB#{writeback id}
  its end      PK=A#{account}#S#{session}  SK=WBEND#{writeback id}   (state only: what a waiting post polls)
  draft        PK=A#{account}#DRAFTS       SK=DT#{draft id}
  template     PK=A#{account}#TEMPLATES    SK=TPL#{template id}  (script templates)
  settings     PK=A#{account}              SK=SETTINGS
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from flowpilot import resets
from flowpilot.config import aws_endpoint_url, settings
from flowpilot.errors import StoreUnavailable

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.service_resource import Table

BY_ACCOUNT_INDEX = "ByAccount"
BY_STATUS_INDEX = "ByStatus"


@cache
def _resource() -> Any:
    return boto3.resource("dynamodb", endpoint_url=aws_endpoint_url())


def sessions_table() -> Table:
    return _resource().Table(settings().sessions_table)


def preview_cache_table() -> Table:
    return _resource().Table(settings().preview_cache_table)


def client() -> DynamoDBClient:
    """The resource's client: it (de)serialises plain Python values, transactions included."""
    return _resource().meta.client


@resets.register
def reset_caches() -> None:
    """Forget cached clients (tests switch moto backends and endpoints between cases)."""
    _resource.cache_clear()


def session_pk(account_id: str, session_id: str) -> str:
    return f"A#{account_id}#S#{session_id}"


def account_pk(account_id: str) -> str:
    return f"A#{account_id}"


def status_pk(account_id: str, status: str) -> str:
    return f"A#{account_id}#ST#{status}"


class ConditionFailed(Exception):
    """A conditional write lost: the item is missing or not in the expected state."""


# DynamoDB's answers that mean "later may work": throttling, its own 5xx, a transaction that lost a race.
_TRANSIENT_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionInProgressException",
        "TransactionConflictException",
        "LimitExceededException",
    }
)


@contextlib.contextmanager
def transient_errors() -> Iterator[None]:
    """Turn AWS's transient failures (throttling, 5xx, dropped connections) into `StoreUnavailable`, the one
    error type the write-back state machine retries with backoff for anything on the AWS side."""
    try:
        yield
    except ClientError as error:
        info = error.response.get("Error", {})
        reasons = {r.get("Code") for r in error.response.get("CancellationReasons", []) if isinstance(r, dict)}
        throttled_transaction = info.get("Code") == "TransactionCanceledException" and bool(
            reasons & {"ThrottlingError", "TransactionConflict", "ProvisionedThroughputExceeded"}
        )
        if info.get("Code") in _TRANSIENT_CODES or throttled_transaction:
            raise StoreUnavailable(f"AWS answered {info.get('Code')}; retrying later.") from None
        raise
    except (BotoConnectionError, HTTPClientError) as error:
        raise StoreUnavailable(f"AWS did not answer ({type(error).__name__}); retrying later.") from None


def is_condition_failure(error: ClientError) -> bool:
    code = error.response.get("Error", {}).get("Code", "")
    return code in {"ConditionalCheckFailedException", "TransactionCanceledException"}


def set_clause(
    values: dict[str, Any], remove: Sequence[str] = (), increment: Sequence[str] = ()
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """`SET #name = :name, …` for `values` (`#name = #name + 1` for `increment`), and `REMOVE …`,
    with the expression's attribute names and values."""
    assignments = [f"#{k} = :{k}" for k in values] + [f"#{k} = #{k} + :one" for k in increment]
    expression = "SET " + ", ".join(assignments) + (" REMOVE " + ", ".join(remove) if remove else "")
    names = {f"#{k}": k for k in [*values, *increment]}
    attr_values = {f":{k}": v for k, v in values.items()} | ({":one": 1} if increment else {})
    return expression, names, attr_values


def update_item(
    key: dict[str, str],
    values: dict[str, Any],
    *,
    condition: str,
    names: dict[str, str] | None = None,
    condition_values: dict[str, Any] | None = None,
    remove: Sequence[str] = (),
    increment: Sequence[str] = (),
) -> dict[str, Any]:
    """A conditional update of a Sessions-table item; the new item, or ConditionFailed."""
    expression, attr_names, attr_values = set_clause(values, remove, increment)
    try:
        response = sessions_table().update_item(
            Key=key,
            UpdateExpression=expression,
            ConditionExpression=condition,
            ExpressionAttributeNames=attr_names | (names or {}),
            ExpressionAttributeValues=attr_values | (condition_values or {}),
            ReturnValues="ALL_NEW",
        )
    except ClientError as error:
        if is_condition_failure(error):
            raise ConditionFailed from error
        raise
    return plain(response["Attributes"])


def plain(value: Any) -> Any:
    """DynamoDB's Decimals back to ints (we store no floats)."""
    from decimal import Decimal

    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
