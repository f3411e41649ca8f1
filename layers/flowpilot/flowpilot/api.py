"""The one HTTP layer every function shares: resolver, identity, error-to-response mapping, observability.

A function's app.py declares a `Router` of thin routes and exports `lambda_handler = handler_for(router)`.
"""

from __future__ import annotations

import base64
import contextvars
import json
import math
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from flowpilot.config import settings
from flowpilot.errors import BadRequest, FlowPilotError, InvalidInput, NotFound, UnsupportedMediaType
from flowpilot.identity import Caller, caller_from_event
from flowpilot.models import ErrorResponse
from flowpilot.observability import logger, metrics

_event: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("flowpilot_event")


_ERROR_DESCRIPTIONS = {
    400: "The body is not UTF-8 JSON",
    401: "No, or a malformed, account and engineer identity",
    404: "Not found (another account's resources are indistinguishable from missing ones)",
    409: "Conflict: the session is closed, a write-back is running, or the fix was already decided",
    415: "The body is not JSON (Content-Type: application/json)",
    422: "Invalid input, or a PSA refusal that needs a change before retrying",
    502: "The PSA or the model answered wrongly (e.g. a status change that was not applied)",
    503: "The PSA or the model is unavailable; retry after Retry-After seconds",
    504: "The model did not answer in time",
}
BODY_ERRORS = (400, 415)


def responses(
    success: Any, *errors: int, status: int = 200, more: dict[int, OpenAPIResponse] | None = None
) -> dict[int, OpenAPIResponse]:
    """A route's documented responses: its success model, and every error code it can answer with."""
    documented: dict[int, OpenAPIResponse] = {
        status: {
            "description": "Created" if status == 201 else "OK",
            "content": {"application/json": {"model": success}},
        },
    }
    for code in sorted({401, 422, *errors}):
        documented[code] = {
            "description": _ERROR_DESCRIPTIONS[code],
            "content": {"application/json": {"model": ErrorResponse}},
        }
    return documented | (more or {})


def caller() -> Caller:
    """The identity of the request being handled (raises Unauthorized when there is none)."""
    return caller_from_event(_event.get())


def error_response(error: FlowPilotError) -> Response[Any]:
    return Response(
        status_code=error.status,
        content_type=content_types.APPLICATION_JSON,
        body=error.body(),
        headers=error.headers(),
    )


def _message(error: dict[str, Any]) -> str:
    """pydantic's message, except where it quotes the input: a wrong `provider` could be a pasted key."""
    if error.get("type") == "union_tag_invalid":
        ctx = error.get("ctx") or {}
        return f"{ctx.get('discriminator', 'the tag')} must be one of {ctx.get('expected_tags', '')}"
    return str(error.get("msg", error.get("type")))


def _validation_message(errors: list[dict[str, Any]]) -> str:
    parts = []
    for err in errors[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {err.get('msg', err.get('type'))}")
    more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
    return "Invalid request: " + "; ".join(parts) + more


def _media_type(event: dict[str, Any]) -> str:
    """The request's media type, lower-cased (media types are case-insensitive), without parameters."""
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    return headers.get("content-type", "").split(";")[0].strip().lower()


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")


def _for_resolver(event: dict[str, Any]) -> dict[str, Any]:
    """The event with its media type spelled the one way Powertools' body parser reads as JSON.

    The parser takes only a content type starting with lower-case `application/json` (anything else is a
    415 of its own shape, and an empty `multipart/form-data` without a boundary an exception), while
    `APPLICATION/JSON` or `application/merge-patch+json` are JSON all the same. A body that is not JSON is
    refused before this (`_body_error`); an empty body has no media type to honour, so its header is
    dropped and the route answers as for a missing body. The caller's event is not changed.
    """
    headers = event.get("headers") or {}
    media_type = _media_type(event)
    if not media_type or headers.get("content-type") == "application/json":
        return event
    rest = {k: v for k, v in headers.items() if str(k).lower() != "content-type"}
    if not event.get("body"):
        return {**event, "headers": rest}
    if _is_json(media_type):
        return {**event, "headers": {**rest, "content-type": "application/json"}}
    return event  # a non-JSON body on a GET or DELETE: no route reads it


def _body_error(event: dict[str, Any]) -> FlowPilotError | None:
    """Bodies must be UTF-8 JSON: a form or text body is a 415, undecodable bytes a 400, never a 500."""
    method = ((event.get("requestContext") or {}).get("http") or {}).get("method", "")
    body = event.get("body")
    if not body or method not in {"POST", "PUT", "PATCH"}:
        return None
    if not _is_json(_media_type(event)):
        return _not_json_body()
    try:
        raw = base64.b64decode(body, validate=True) if event.get("isBase64Encoded") else str(body).encode()
        text = raw.decode("utf-8")
    except (ValueError, UnicodeError):
        return BadRequest("The body is not UTF-8 encoded JSON.", code="invalid_json")
    return _hostile_json(text)


def _not_json_body() -> FlowPilotError:
    return UnsupportedMediaType("Send the body as JSON (Content-Type: application/json).")


MAX_BODY_DEPTH = 32


class BodyNotAnObject(InvalidInput):
    """Every body is a JSON object; the resolver would take a list's first element as the body."""

    code = "validation_error"

    def body(self) -> dict[str, Any]:
        return {**super().body(), "detail": [{"loc": ["body"], "type": "model_type", "msg": self.message}]}


def _not_json(_constant: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


def _hostile_json(text: str) -> FlowPilotError | None:
    """A body the resolver would mishandle: a 500 (parser recursion, overlong integers) or a non-object taken as one.

    Malformed JSON is left to the resolver (its 422). Refused here: nesting deeper than MAX_BODY_DEPTH (the
    parser's recursion would fail first), integers longer than Python converts, NaN/Infinity and floats that
    overflow, escaped lone surrogates (valid JSON, but no UTF-8 can store them), and top-level non-objects.
    """
    try:
        parsed = json.loads(text, parse_constant=_not_json)
    except json.JSONDecodeError:
        return None
    except RecursionError:
        return _too_deep()
    except ValueError:  # an integer past sys.get_int_max_str_digits(), or NaN/Infinity
        return BadRequest("The body has a number JSON cannot carry.", code="invalid_json")
    if not isinstance(parsed, dict):
        return BodyNotAnObject("The body must be a JSON object.")
    pending: list[tuple[Any, int]] = [(parsed, 1)]
    while pending:  # iterative: a recursive walk would fail on exactly the bodies it looks for
        value, depth = pending.pop()
        if isinstance(value, str):
            if not value.isascii() and not _is_unicode(value):
                return BadRequest("The body has a string that is not valid Unicode.", code="invalid_json")
        elif isinstance(value, float):
            if not math.isfinite(value):
                return BadRequest("The body has a number JSON cannot carry.", code="invalid_json")
        elif isinstance(value, (dict, list)):
            if depth > MAX_BODY_DEPTH:
                return _too_deep()
            children = [*value.keys(), *value.values()] if isinstance(value, dict) else value
            pending.extend((child, depth + 1) for child in children if isinstance(child, (str, float, dict, list)))
    return None


def _too_deep() -> FlowPilotError:
    return BadRequest(f"The body is nested deeper than {MAX_BODY_DEPTH} levels.", code="invalid_json")


def _is_unicode(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _bind_session(app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response[Any]:
    route_args = app.context.get("_route_args") or {}
    if "session_id" in route_args:
        logger.append_keys(session_id=route_args["session_id"])
    return next_middleware(app)


def make_app(*routers: Router) -> APIGatewayHttpResolver:
    app = APIGatewayHttpResolver(enable_validation=True)
    app.use(middlewares=[_bind_session])

    @app.exception_handler(FlowPilotError)
    def _domain_error(error: FlowPilotError) -> Response[Any]:
        logger.info("request refused", extra={"error_code": error.code, "status": error.status})
        metrics.add_metric(name="ClientError" if error.status < 500 else "UpstreamError", unit="Count", value=1)
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    def _invalid(error: RequestValidationError) -> Response[Any]:
        detail = [{"loc": list(e.get("loc", ())), "type": e.get("type"), "msg": _message(e)} for e in error.errors()]
        body = {
            "error": {"code": "validation_error", "message": _validation_message(detail)},
            "detail": detail,
        }
        metrics.add_metric(name="ClientError", unit=MetricUnit.Count, value=1)
        return Response(HTTPStatus.UNPROCESSABLE_ENTITY, content_types.APPLICATION_JSON, body)

    @app.exception_handler(RequestUnsupportedContentType)
    def _not_json(_: RequestUnsupportedContentType) -> Response[Any]:  # e.g. an empty text/plain body
        return _domain_error(_not_json_body())

    @app.not_found
    def _no_route(_: NotFoundError) -> Response[Any]:
        event = app.current_event
        return error_response(NotFound(f"No route {event.http_method} {event.path}.", code="route_not_found"))

    for router in routers:
        app.include_router(router)
    return app


def handler_for(
    *routers: Router, requires: tuple[str, ...] = ()
) -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
    """The Lambda entry point for a function made of `routers`, with logging and metrics wired.

    Runs at the function's cold start, and so validates its settings there: a missing table name, or one of
    the optional settings the function `requires` (e.g. `state_machine_arn`), fails the init loudly.
    """
    settings().require(*requires)
    app = make_app(*routers)

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
    @metrics.log_metrics
    def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        token = _event.set(event)
        try:
            metrics.add_metric(name="Request", unit=MetricUnit.Count, value=1)
            refused = _body_error(event)
            if refused is not None:
                return {
                    "statusCode": refused.status,
                    "headers": {"Content-Type": "application/json"},
                    "body": json.dumps(refused.body()),
                    "isBase64Encoded": False,
                }
            return app.resolve(_for_resolver(event), context)
        finally:
            _event.reset(token)

    lambda_handler.app = app  # type: ignore[attr-defined]  # the OpenAPI generator reads the resolver
    return lambda_handler
