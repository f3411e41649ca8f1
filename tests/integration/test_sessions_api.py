"""Sessions API through the real handler and moto DynamoDB."""

from __future__ import annotations

import pytest

from tests.conftest import Api


def test_create_and_get_session(api: Api) -> None:
    created = api.new_session(psa_ticket={"provider": "connectwise", "ticket_id": "1001"})
    assert created["status"] == "active"
    assert created["state_version"] == 1
    assert created["created_by"] == "engineer-a"
    assert created["psa_ticket"] == {"provider": "connectwise", "ticket_id": "1001"}
    fetched = api.get(f"/ai-sessions/{created['id']}")
    assert fetched.status == 200
    assert fetched.body == created


def test_evidence_bumps_state_version(api: Api) -> None:
    session = api.new_session()
    response = api.post(
        f"/ai-sessions/{session['id']}/evidence",
        {"kind": "tried", "text": "Reinstalled VPN client", "result": "Still drops"},
    )
    assert response.status == 201, response.text
    assert response.body["state_version"] == 2
    assert response.body["kind"] == "tried"
    assert api.get(f"/ai-sessions/{session['id']}").body["state_version"] == 2


def test_link_ticket_bumps_state_version(api: Api) -> None:
    session = api.new_session()
    response = api.put(f"/ai-sessions/{session['id']}/psa-ticket", {"provider": "connectwise", "ticket_id": "42"})
    assert response.status == 200, response.text
    assert response.body["psa_ticket"] == {"provider": "connectwise", "ticket_id": "42"}
    assert response.body["state_version"] == 2


def test_pagination_over_250_sessions_returns_each_once_newest_first(api: Api) -> None:
    from flowpilot.identity import Caller
    from flowpilot.models import SessionCreateRequest
    from flowpilot.sessions import create_session

    caller = Caller("acct-a", "engineer-a")
    created = [create_session(caller, SessionCreateRequest(title=f"s{i}", problem="p")).id for i in range(250)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = {"limit": "40"} | ({"cursor": cursor} if cursor else {})
        page = api.get("/ai-sessions", query=query)
        assert page.status == 200, page.text
        seen += [s["id"] for s in page.body["items"]]
        pages += 1
        cursor = page.body["next_cursor"]
        if not cursor:
            break
    assert pages == 7
    assert seen == list(reversed(created))
    assert len(set(seen)) == 250


def test_status_filter_and_cursor_bound_to_its_listing(api: Api) -> None:
    for i in range(3):
        api.new_session(title=f"s{i}")
    page = api.get("/ai-sessions", query={"status": "active", "limit": "1"})
    assert page.status == 200 and len(page.body["items"]) == 1
    cursor = page.body["next_cursor"]
    assert api.get("/ai-sessions", query={"status": "resolved", "cursor": cursor}).status == 422
    assert api.get("/ai-sessions", query={"status": "escalated"}).body["items"] == []


def test_another_accounts_cursor_cannot_reach_its_sessions(api: Api, api_b: Api) -> None:
    for i in range(3):
        api.new_session(title=f"a{i}")
    cursor = api.get("/ai-sessions", query={"limit": "1"}).body["next_cursor"]
    page = api_b.get("/ai-sessions", query={"cursor": cursor})
    assert page.status == 200
    assert page.body["items"] == []


@pytest.mark.parametrize(
    ("method", "path", "kw"),
    [
        ("POST", "/ai-sessions", {"body": {"problem": "missing title"}}),
        ("POST", "/ai-sessions", {"body": {"title": 5, "problem": "wrong type"}}),
        ("POST", "/ai-sessions", {"body": {"title": "x" * 201, "problem": "oversized"}}),
        ("POST", "/ai-sessions", {"body": {"title": "t", "problem": "p", "extra": 1}}),
        (
            "POST",
            "/ai-sessions",
            {"body": {"title": "t", "problem": "p", "psa_ticket": {"provider": "jira", "ticket_id": "1"}}},
        ),
        ("POST", "/ai-sessions", {"raw_body": "{not json", "headers": {"content-type": "application/json"}}),
        ("POST", "/ai-sessions", {"body": ["a", "list"]}),
        ("GET", "/ai-sessions", {"query": {"limit": "0"}}),
        ("GET", "/ai-sessions", {"query": {"limit": "abc"}}),
        ("GET", "/ai-sessions", {"query": {"status": "deleted"}}),
        ("GET", "/ai-sessions", {"query": {"cursor": "not-a-cursor"}}),
        ("GET", "/ai-sessions/bad$id", {}),
    ],
)
def test_invalid_input_is_a_4xx_json_error(api: Api, method: str, path: str, kw: dict) -> None:
    response = api.call(method, path, **kw)
    assert 400 <= response.status < 500, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert "error" in response.body or "detail" in response.body


def test_non_json_content_type_is_415(api: Api) -> None:
    response = api.call(
        "POST",
        "/ai-sessions",
        raw_body="title=x&problem=y",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status == 415
    assert response.body["error"]["code"] == "unsupported_media_type"


def test_invalid_evidence_kind_and_oversized_text(api: Api) -> None:
    session = api.new_session()
    bad_kind = api.post(f"/ai-sessions/{session['id']}/evidence", {"kind": "guess", "text": "x"})
    assert bad_kind.status == 422
    too_long = api.post(f"/ai-sessions/{session['id']}/evidence", {"kind": "tried", "text": "x" * 10_001})
    assert too_long.status == 422
    assert api.get(f"/ai-sessions/{session['id']}").body["state_version"] == 1


def test_unknown_route_is_404_json(api: Api) -> None:
    response = api.get("/ai-sessions/x/nothing-here")
    assert response.status == 404
    assert response.body["error"]["code"] == "route_not_found"


def test_closed_session_refuses_evidence_and_ticket_link(api: Api) -> None:
    session = api.new_session()
    assert api.post(f"/ai-sessions/{session['id']}/resolution-note/post", {"markdown": "Done."}).status == 200
    evidence = api.post(f"/ai-sessions/{session['id']}/evidence", {"kind": "tried", "text": "late"})
    assert evidence.status == 409
    assert evidence.body["error"]["code"] == "session_already_closed"
    link = api.put(f"/ai-sessions/{session['id']}/psa-ticket", {"provider": "connectwise", "ticket_id": "9"})
    assert link.status == 409


def test_missing_identity_is_401(aws_env: dict) -> None:
    from devstack import gateway

    response = gateway.call("GET", "/ai-sessions")
    assert response.status == 401
    assert response.body["error"]["code"] == "unauthorized"
