"""Domain exceptions. Each carries its HTTP status and machine code; `api.py` maps them in one place."""

from __future__ import annotations

from typing import Any, ClassVar


class FlowPilotError(Exception):
    """Base of every error a client may see. `code` is stable; `message` is for people."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code  # type: ignore[misc]
        self.details = details or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return {"error": error}

    def headers(self) -> dict[str, str]:
        return {}


class BadRequest(FlowPilotError):
    status = 400
    code = "bad_request"


class Unauthorized(FlowPilotError):
    status = 401
    code = "unauthorized"


class NotFound(FlowPilotError):
    status = 404
    code = "not_found"


class Conflict(FlowPilotError):
    status = 409
    code = "conflict"


class UnsupportedMediaType(FlowPilotError):
    status = 415
    code = "unsupported_media_type"


class InvalidInput(FlowPilotError):
    status = 422
    code = "invalid_input"


class UpstreamUnavailable(FlowPilotError):
    """A dependency (model, PSA) is overloaded or down after our retries; the client may retry."""

    status = 503
    code = "upstream_unavailable"

    def __init__(self, message: str, *, retry_after: int = 5, code: str | None = None, **kw: Any):
        super().__init__(message, code=code, **kw)
        self.retry_after = max(1, int(retry_after))

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class UpstreamTimeout(FlowPilotError):
    status = 504
    code = "upstream_timeout"


class BadGateway(FlowPilotError):
    """The PSA answered, but wrongly (e.g. accepted a status change and did not apply it)."""

    status = 502
    code = "bad_gateway"


_BY_STATUS: dict[int, type[FlowPilotError]] = {
    cls.status: cls
    for cls in (
        Unauthorized,
        NotFound,
        Conflict,
        InvalidInput,
        UpstreamUnavailable,
        UpstreamTimeout,
        BadGateway,
    )
}


def error_from_record(record: dict[str, Any]) -> FlowPilotError:
    """Rebuild a client-facing error from what a write-back step recorded on the ledger."""
    cls = _BY_STATUS.get(int(record.get("status") or 502), BadGateway)
    details = record.get("details") or None
    message = str(record.get("message") or "The write-back failed.")
    code = str(record.get("code") or "writeback_failed")
    if cls is UpstreamUnavailable:
        return UpstreamUnavailable(
            message, code=code, details=details, retry_after=int(record.get("retry_after") or 30)
        )
    return cls(message, code=code, details=details)


def error_record(error: FlowPilotError) -> dict[str, Any]:
    """What the ledger keeps of an error: enough to answer the client exactly as if it had happened inline."""
    record: dict[str, Any] = {"code": error.code, "message": error.message, "status": error.status}
    if error.details:
        record["details"] = error.details
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        record["retry_after"] = int(retry_after)
    return record


class StoreUnavailable(UpstreamUnavailable):
    """DynamoDB throttled us or failed transiently; the state machine retries the step with backoff."""

    code = "store_unavailable"
