"""The design floor of the cold-start benchmark: what any handler built from the design card must import.

Not a function of the product. It is the least a handler of this design imports at init, with nothing of
FlowPilot in it: boto3 (the store), a pydantic model with constraints and a secret field (request bodies
are parsed by pydantic, never by hand), and Powertools' Logger and Metrics created as
`flowpilot.observability` creates them. Its ratio to `import boto3` is the part of the import budget no
product code can spend; what is left of the budget is all the product has for its models, domain code,
routing and validation. `make bench` measures it beside the six functions.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import boto3
from aws_lambda_powertools import Logger, Metrics
from pydantic import BaseModel, ConfigDict, Field, SecretStr

logger = Logger(service="flowpilot-writeback", log_uncaught_exceptions=True)
metrics = Metrics(namespace="FlowPilot", service="flowpilot-writeback")


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    text: Annotated[str, Field(min_length=1, max_length=20_000)]
    kind: Literal["resolution", "escalation"]
    ticket_id: Annotated[int, Field(gt=0)]
    api_key: SecretStr | None = None


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    body = Body.model_validate_json(event.get("body") or "{}")
    table = boto3.resource("dynamodb").Table("floor")
    logger.info("floor", extra={"kind": body.kind, "table": table.name})
    return {"statusCode": 204}
