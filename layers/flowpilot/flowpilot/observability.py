"""Logger and Metrics, created once for every handler, and the timing of calls that leave the process.

Nothing sensitive reaches a log line. There is no tracing SDK: Lambda's `Tracing: Active` records the
function and init segments natively, log lines carry the request id (`correlation_id`,
`function_request_id`), the session id and the X-Ray trace id (`xray_trace_id`, from `_X_AMZN_TRACE_ID`),
and `timed_call` gives PSA and model calls their latency as a metric and a log field.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from flowpilot import snapstart

SERVICE = "flowpilot-writeback"
METRICS_NAMESPACE = "FlowPilot"

# Keys whose values are never logged, wherever they appear in a structured log record.
_SENSITIVE_KEY = re.compile(r"(pass(word)?|secret|token|private|public_key|api[_-]?key|authorization|credential)", re.I)
REDACTED = "***redacted***"


def redact(value: Any) -> Any:
    """A copy of `value` with every sensitive key's value replaced."""
    if isinstance(value, dict):
        return {k: REDACTED if _SENSITIVE_KEY.search(str(k)) else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


class _RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, val in list(record.__dict__.items()):
            if _SENSITIVE_KEY.search(key) and key not in {"exc_info"}:
                record.__dict__[key] = REDACTED
            elif isinstance(val, dict | list):
                record.__dict__[key] = redact(val)
        if isinstance(record.msg, dict):
            record.msg = redact(record.msg)
        return True


# These libraries log request bodies and headers at DEBUG (Secrets Manager values, PSA auth headers):
# pinned, so no log-level change anywhere can make them print a secret.
for _noisy in ("botocore", "boto3", "urllib3", "httpx", "httpcore", "httpx2", "anthropic"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)

logger = Logger(service=SERVICE, log_uncaught_exceptions=True)
logger.addFilter(_RedactingFilter())
# Every function imports this module at init, so every SnapStart snapshot carries the after-restore hook.
snapstart.register()


metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)


def emit(name: str, unit: MetricUnit, value: float, dimensions: dict[str, str]) -> None:
    """One metric with its own dimensions (provider, operation, outcome...), flushed at once.

    The shared `metrics` store has one set of dimensions per invocation; a value per provider or per
    outcome does not fit it, so it goes out on its own EMF line (`single_metric`).
    """
    if is_metrics_disabled():  # single_metric prints whatever POWERTOOLS_METRICS_DISABLED says
        return
    with single_metric(
        name=name,
        unit=unit,
        value=value,
        namespace=METRICS_NAMESPACE,
        default_dimensions={"service": SERVICE, **dimensions},
    ):
        pass


@contextmanager
def timed_call(metric: str, dimensions: dict[str, str]) -> Iterator[dict[str, Any]]:
    """Time one call that leaves the process (a PSA request, a model call): its latency as the metric
    `metric` with `dimensions`, and one log line with the same fields plus whatever the caller puts in
    the yielded dict (e.g. the HTTP status). A call that raises is timed too, with `outcome: error`.
    """
    fields: dict[str, Any] = {}
    outcome = "ok"
    start = time.perf_counter()
    try:
        yield fields
    except BaseException:
        outcome = "error"
        raise
    finally:
        latency_ms = round((time.perf_counter() - start) * 1000, 1)
        emit(metric, MetricUnit.Milliseconds, latency_ms, dimensions)
        logger.info(
            "timed call", extra={"call": metric, **dimensions, **fields, "outcome": outcome, "latency_ms": latency_ms}
        )
