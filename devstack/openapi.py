"""The API's OpenAPI document, generated from the functions' resolvers (`make openapi` writes docs/openapi.json)."""

from __future__ import annotations

import json

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

from devstack import aws, template

TITLE = "FlowPilot Writeback API"
VERSION = "1.0.0"
DESCRIPTION = (
    "Suggested fixes, resolution note and escalation package previews, and verified write-back to the "
    "customer's PSA ticket. Identity comes from the JWT authorizer (custom:account_id, sub)."
)


def document() -> dict[str, object]:
    app = APIGatewayHttpResolver(enable_validation=True)
    for logical_id in sorted(template.functions()):
        router = getattr(aws.load_function_module(logical_id), "router", None)
        if router is not None:
            app.include_router(router)
    schema = app.get_openapi_json_schema(title=TITLE, version=VERSION, description=DESCRIPTION)
    return json.loads(schema)


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    aws.apply_environment(aws.environment())
    print(render(), end="")
