"""The write-back state machine's Lambda task: `{"action": step, "state": {...}}` in, the new state out."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from flowpilot import writeback_steps
from flowpilot.config import settings
from flowpilot.observability import logger, metrics

settings()  # a missing table name fails the cold start, not the first write-back


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return writeback_steps.run(event["action"], event["state"])
