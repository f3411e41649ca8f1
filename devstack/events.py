"""The one builder of API Gateway HTTP API (payload v2.0) events and of a Lambda context.

Used by the local stack's HTTP server, by every test and to write the samples in events/.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from devstack.template import LOCAL_ACCOUNT, LOCAL_REGION, match_route


def http_event(
    method: str,
    path: str,
    *,
    body: Any = None,
    raw_body: str | bytes | None = None,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    account_id: str | None = "acct-dev",
    user_id: str | None = "engineer-dev",
    stage: str = "$default",
    route_key: str | None = None,
    path_parameters: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An event as API Gateway would send it. `account_id`/`user_id` become JWT claims (None: no authorizer)."""
    hdrs = {"user-agent": "flowpilot-tests", "host": "api.flowpilot.local"}
    is_base64 = False
    text: str | None = None
    if body is not None:
        text = json.dumps(body)
        hdrs["content-type"] = "application/json"
    elif raw_body is not None:
        if isinstance(raw_body, bytes):
            text, is_base64 = base64.b64encode(raw_body).decode(), True
        else:
            text = raw_body
    hdrs.update({k.lower(): v for k, v in (headers or {}).items()})
    if route_key is None or path_parameters is None:
        matched = match_route(method, path)
        if matched is not None:
            route_key = route_key or matched[0].route_key
            path_parameters = path_parameters if path_parameters is not None else matched[1]
    request_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    raw_path = path if stage == "$default" else f"/{stage}{path}"
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key or "$default",
        "rawPath": raw_path,
        "rawQueryString": urlencode(query or {}),
        "headers": hdrs,
        "requestContext": {
            "accountId": LOCAL_ACCOUNT,
            "apiId": "flowpilot",
            "domainName": "api.flowpilot.local",
            "domainPrefix": "api",
            "http": {
                "method": method.upper(),
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": hdrs["user-agent"],
            },
            "requestId": request_id,
            "routeKey": route_key or "$default",
            "stage": stage,
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": is_base64,
    }
    if query:
        event["queryStringParameters"] = dict(query)
    if path_parameters:
        event["pathParameters"] = path_parameters
    if text is not None:
        event["body"] = text
    if account_id is not None and user_id is not None:
        event["requestContext"]["authorizer"] = {
            "jwt": {
                "claims": {
                    "sub": user_id,
                    "custom:account_id": account_id,
                    "iss": f"https://cognito-idp.{LOCAL_REGION}.amazonaws.com/{LOCAL_REGION}_flowpilot",
                    "token_use": "id",
                },
                "scopes": None,
            }
        }
    return event


@dataclass
class LambdaContext:
    """Enough of the Lambda context object for Powertools."""

    function_name: str = "flowpilot-local"
    memory_limit_in_mb: int = 512
    aws_request_id: str = ""
    invoked_function_arn: str = f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT}:function:flowpilot-local"
    log_group_name: str = "/aws/lambda/flowpilot-local"
    log_stream_name: str = "local"

    def __post_init__(self) -> None:
        self.aws_request_id = self.aws_request_id or str(uuid.uuid4())

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 29_000
