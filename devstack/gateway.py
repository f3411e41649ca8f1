"""API Gateway's part, in-process: match a route from template.yaml, build the v2 event, call the handler.

The local HTTP server and the tests' API client both go through `call`, so both see exactly the routes
of the template and the real `lambda_handler` of each function. Identity is the JWT authorizer's claims, as
in AWS; on the local stack (`dev_identity`) the claims come from the X-Dev-Account-Id / X-Dev-User-Id
headers, which is the only place those headers mean anything. `isolate_logger_keys` gives each thread
its own Powertools Logger keys, as each Lambda invocation has in AWS.
"""

from __future__ import annotations

import base64
import json
import threading
from abc import ABCMeta
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from devstack import aws, template
from devstack.events import LambdaContext, http_event


@dataclass
class ApiResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    text: str = ""
    route: str | None = None  # the template's route key, e.g. "GET /ai-sessions/{session_id}"

    @property
    def body(self) -> Any:
        return json.loads(self.text) if self.text else None


DEV_ACCOUNT_HEADER = "x-dev-account-id"
DEV_USER_HEADER = "x-dev-user-id"
DEFAULT_DEV_ACCOUNT = "acct-dev"
DEFAULT_DEV_ENGINEER = "engineer-dev"


def dev_claims(headers: dict[str, str] | None) -> tuple[str, str]:
    """The (account, engineer) the local stack's X-Dev headers name, or the documented defaults."""
    lowered = {str(k).lower(): v for k, v in (headers or {}).items()}
    return lowered.get(DEV_ACCOUNT_HEADER) or DEFAULT_DEV_ACCOUNT, lowered.get(DEV_USER_HEADER) or DEFAULT_DEV_ENGINEER


_NOT_FOUND = json.dumps({"error": {"code": "route_not_found", "message": "No such route."}})


def allowed_methods(path: str) -> list[str]:
    """The methods template.yaml routes for `path` (empty: no route has this path)."""
    return sorted({route.method for route in template.routes() if route.pattern.match(path)})


def call(
    method: str,
    path: str,
    *,
    body: Any = None,
    raw_body: str | bytes | None = None,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    account_id: str | None = None,
    user_id: str | None = None,
    dev_identity: bool = False,
) -> ApiResponse:
    """Call the route as API Gateway would: `account_id`/`user_id` are the JWT claims (None: no authorizer),
    or with `dev_identity` (the local stack) both are taken from the X-Dev headers."""
    if dev_identity:
        account_id, user_id = dev_claims(headers)
    matched = template.match_route(method, path)
    if matched is None:
        # API Gateway answers unknown routes itself, before any function runs.
        return ApiResponse(404, {"content-type": "application/json"}, _NOT_FOUND)
    route, params = matched
    isolate_router_state()
    event = http_event(
        method,
        path,
        body=body,
        raw_body=raw_body,
        query=query,
        headers=headers,
        account_id=account_id,
        user_id=user_id,
        route_key=route.route_key,
        path_parameters=params,
    )
    result, error_type = _invoke(route.function, event)
    if error_type is not None:
        # What API Gateway returns when the integration fails; the tests treat it as a defect.
        return ApiResponse(500, {"content-type": "application/json"}, json.dumps({"message": "Internal Server Error"}))
    response = _to_response(result)
    response.route = route.route_key
    return response


def _invoke(logical_id: str, event: dict[str, Any]) -> tuple[Any, str | None]:
    try:
        return aws.handler(logical_id)(event, LambdaContext(function_name=template.physical_name(logical_id))), None
    except Exception as error:
        import traceback

        traceback.print_exception(error)
        return None, type(error).__name__


def _to_response(result: dict[str, Any]) -> ApiResponse:
    headers = {k.lower(): str(v) for k, v in (result.get("headers") or {}).items()}
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers[name.lower()] = ", ".join(values)
    text = result.get("body") or ""
    if result.get("isBase64Encoded"):
        text = base64.b64decode(text).decode()
    return ApiResponse(int(result.get("statusCode", 200)), headers, text)


_thread_log_keys: ContextVar[dict[str, Any] | None] = ContextVar("flowpilot_local_log_keys", default=None)


def isolate_logger_keys() -> None:
    """Give every thread its own Powertools Logger keys (idempotent).

    In AWS each invocation has its process to itself; here the writebacks API handler waits in one thread
    while the state machine's steps run in another, and the Logger's keys (function_name, step, ...) live on
    one shared formatter, so each handler's lines carried the other's keys. Threads start with an empty
    context, so a ContextVar gives each request and each execution its own keys.
    """
    from flowpilot.observability import logger

    formatter = logger.registered_formatter
    if isinstance(formatter, _PerThreadKeys) or "log_format" not in vars(formatter):
        return
    initial = dict(vars(formatter).pop("log_format"))
    formatter.__class__ = type(f"PerThread{type(formatter).__name__}", (_PerThreadKeys, type(formatter)), {})
    formatter.initial_keys = initial  # type: ignore[attr-defined]  # the class was just swapped for one that has it


class _PerThreadKeys:
    """Put in front of the Logger formatter's class by `isolate_logger_keys`: `log_format` per thread."""

    initial_keys: dict[str, Any]

    @property
    def log_format(self) -> dict[str, Any]:
        keys = _thread_log_keys.get()
        if keys is None:
            keys = dict(self.initial_keys)
            _thread_log_keys.set(keys)
        return keys

    @log_format.setter
    def log_format(self, keys: dict[str, Any]) -> None:
        _thread_log_keys.set(keys)


_router_state = threading.local()


def isolate_router_state() -> None:
    """Give every thread its own Powertools resolver event and context (idempotent).

    Powertools keeps the current event on the `BaseRouter` class (`BaseRouter.current_event = ...`), which is
    safe in AWS, where an invocation has its process to itself, and wrong here, where concurrent requests run
    as threads of one process: a request could read another's body. Both the class-level attribute (through
    a metaclass property) and the instance-level one (through a class property) are backed by a thread-local.
    """
    from aws_lambda_powertools.event_handler.api_gateway import BaseRouter

    if isinstance(BaseRouter, _PerThreadRouterMeta):
        return
    for name in ("current_event", "lambda_context"):
        setattr(BaseRouter, name, _per_thread(name))
    setattr(BaseRouter, "__class__", _PerThreadRouterMeta)  # noqa: B010 (mypy refuses the plain assignment)


def _per_thread(name: str) -> property:
    return property(lambda _: getattr(_router_state, name, None), lambda _, value: setattr(_router_state, name, value))


class _PerThreadRouterMeta(ABCMeta):
    current_event = _per_thread("current_event")
    lambda_context = _per_thread("lambda_context")
