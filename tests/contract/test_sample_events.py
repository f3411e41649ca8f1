"""events/ holds one complete, current HTTP API v2 sample per route, and each one runs through its handler."""

from __future__ import annotations

import json

import pytest

from devstack import aws, sample_events, template
from devstack.events import LambdaContext


def test_events_folder_is_current_and_complete() -> None:
    expected = sample_events.events()
    # env.local.json is `sam local invoke --env-vars` input, not an event.
    on_disk = {
        p.name: json.loads(p.read_text()) for p in sample_events.EVENTS_DIR.glob("*.json") if p.name != "env.local.json"
    }
    assert on_disk == expected, "events/ is stale: run `python -m devstack.sample_events`"


@pytest.mark.parametrize("name", sorted(sample_events.events()))
def test_each_sample_runs_through_its_handler(aws_env: dict, name: str) -> None:
    event = json.loads((sample_events.EVENTS_DIR / name).read_text())
    route = next(r for r in template.routes() if r.route_key == event["routeKey"])
    result = aws.handler(route.function)(event, LambdaContext())
    # The sample's session does not exist in an empty account: a clean 404, never a 500.
    assert result["statusCode"] in {200, 201, 404}, result
    body = json.loads(result["body"])
    assert body
    if result["statusCode"] == 404:  # the sample's own session is missing, not the route
        assert body["error"]["code"] == "session_not_found", body
