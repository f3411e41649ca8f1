"""Tenant isolation for EVERY route of template.yaml: another account sees nothing of A's and changes nothing.

The expectations are keyed by route; a route added to the template without an entry here fails the suite.
"""

from __future__ import annotations

from typing import Any

import pytest

from devstack import template
from devstack.sample_events import sample_body
from tests.conftest import Api
from tests.helpers import table_items

# How account B's call on A's resources must end: "404" (indistinguishable from missing) or "own-data"
# (the call succeeds but answers only from B's own, empty account).
EXPECTED: dict[str, str] = {
    "POST /ai-sessions": "own-data",
    "GET /ai-sessions": "own-data",
    "GET /ai-sessions/{session_id}": "404",
    "POST /ai-sessions/{session_id}/evidence": "404",
    "GET /ai-sessions/{session_id}/evidence": "404",
    "PUT /ai-sessions/{session_id}/psa-ticket": "404",
    "POST /ai-sessions/{session_id}/suggested-fixes": "404",
    "GET /ai-sessions/{session_id}/suggested-fixes": "404",
    "POST /ai-sessions/{session_id}/suggested-fixes/{fix_id}/decision": "404",
    "POST /ai-sessions/{session_id}/resolution-note/preview": "404",
    "POST /ai-sessions/{session_id}/escalation-package/preview": "404",
    "POST /ai-sessions/{session_id}/resolution-note/post": "404",
    "POST /ai-sessions/{session_id}/escalation-package/post": "404",
    "GET /ai-sessions/{session_id}/writebacks/{writeback_id}": "404",
    "GET /draft-templates": "own-data",
    "GET /account-settings": "own-data",
    "PUT /account-settings/preferences": "own-data",
    "PUT /account-settings/psa-connection": "own-data",
}


def test_every_route_has_an_isolation_expectation() -> None:
    routes = {r.route_key for r in template.routes()}
    assert routes == set(EXPECTED), f"routes without an isolation check: {routes - set(EXPECTED)}"


@pytest.fixture
def a_world(api: Api) -> dict[str, str]:
    """Account A: an active session with a fix, a resolved session with a write-back, a draft, settings."""
    active = api.new_session(title="A's active session")
    fix = api.post(
        f"/ai-sessions/{active['id']}/suggested-fixes",
        sample_body_for("POST /ai-sessions/{session_id}/suggested-fixes"),
    )
    assert fix.status == 201, fix.text
    drafted = api.post(
        f"/ai-sessions/{active['id']}/suggested-fixes",
        {**sample_body_for("POST /ai-sessions/{session_id}/suggested-fixes"), "title": "second"},
    )
    decided = api.post(
        f"/ai-sessions/{active['id']}/suggested-fixes/{drafted.body['id']}/decision", {"decision": "draft_template"}
    )
    assert decided.status == 200, decided.text
    closed = api.new_session(title="A's resolved session")
    posted = api.post(f"/ai-sessions/{closed['id']}/resolution-note/post", {"markdown": "Fixed."})
    assert posted.status == 200, posted.text
    api.put("/account-settings/preferences", {"cw_resolved_status_id": 5})
    return {
        "active": active["id"],
        "fix": fix.body["id"],
        "closed": closed["id"],
        "writeback": posted.body["writeback_id"],
        "draft_session": active["id"],
    }


def sample_body_for(route_key: str) -> Any:
    route = next(r for r in template.routes() if r.route_key == route_key)
    return sample_body(route)


@pytest.mark.parametrize("route", template.routes(), ids=lambda r: r.route_key)
def test_another_account_cannot_see_or_change_a(
    api: Api, api_b: Api, a_world: dict[str, str], route: template.Route
) -> None:
    session_id = a_world["closed"] if "{writeback_id}" in route.path else a_world["active"]
    path = (
        route.path.replace("{session_id}", session_id)
        .replace("{fix_id}", a_world["fix"])
        .replace("{writeback_id}", a_world["writeback"])
    )
    before = table_items()
    a_view_before = api.get(f"/ai-sessions/{a_world['active']}").body
    response = api_b.call(route.method, path, body=sample_body(route))
    expectation = EXPECTED[route.route_key]
    if expectation == "404":
        assert response.status == 404, f"{route.route_key}: {response.status} {response.text}"
        assert table_items() == before, f"{route.route_key} changed stored data for a 404"
    else:
        assert response.status in (200, 201), f"{route.route_key}: {response.status} {response.text}"
        for a_id in a_world.values():
            assert a_id not in response.text, f"{route.route_key} leaked A's {a_id} to B"
    assert api.get(f"/ai-sessions/{a_world['active']}").body == a_view_before
    assert api.get("/account-settings").body["preferences"]["cw_resolved_status_id"] == 5
