"""Logger, Tracer and Metrics, created once for every handler; nothing sensitive reaches a log line."""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

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
tracer = Tracer(service=SERVICE)


class _LockedEMFProvider(AmazonCloudWatchEMFProvider):
    """EMF metrics whose store is safe to share between threads.

    A Lambda runs one invocation at a time; the local stack and the tests run an API handler and a
    state-machine step at once in one process, where an unguarded flush can fail a step that committed.
    """

    _lock = threading.RLock()

    def add_metric(self, *args: Any, **kwargs: Any) -> None:
        with self._lock:
            super().add_metric(*args, **kwargs)

    def flush_metrics(self, raise_on_empty_metrics: bool = False) -> None:
        with self._lock:
            super().flush_metrics(raise_on_empty_metrics=raise_on_empty_metrics)


_metric_store: dict[str, Any] = {}
metrics = Metrics(
    namespace=METRICS_NAMESPACE,
    service=SERVICE,
    provider=_LockedEMFProvider(namespace=METRICS_NAMESPACE, service=SERVICE, metric_set=_metric_store),
)
