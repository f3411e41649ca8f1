"""Starting write-back executions in Step Functions (the only code that touches the states API)."""

from __future__ import annotations

import json
from functools import cache
from typing import Any, Literal

import boto3
from botocore.exceptions import ClientError

from flowpilot import resets
from flowpilot.config import aws_endpoint_url, settings


@cache
def _client() -> Any:
    return boto3.client("stepfunctions", endpoint_url=aws_endpoint_url())


@resets.register
def reset_caches() -> None:
    _client.cache_clear()


def writeback_execution(name: str) -> Literal["running", "ended", "missing"]:
    """Where the write-back's execution is: still running, ended (any way), or never started."""
    machine = settings().writeback_state_machine_arn
    arn = machine.replace(":stateMachine:", ":execution:", 1) + f":{name}"
    try:
        status = _client().describe_execution(executionArn=arn)["status"]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ExecutionDoesNotExist":
            return "missing"
        raise
    return "running" if status in {"RUNNING", "PENDING_REDRIVE"} else "ended"


def start_writeback(name: str, payload: dict[str, Any]) -> str:
    """Start the write-back state machine; the execution is named by the writeback id (unique per run)."""
    response = _client().start_execution(
        stateMachineArn=settings().writeback_state_machine_arn, name=name, input=json.dumps(payload)
    )
    return str(response["executionArn"])
