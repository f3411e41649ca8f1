"""Sessions API through the real handler and moto DynamoDB."""

from __future__ import annotations

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
    response = api.post(f"/ai-sessions/{session['id']}/evidence", {"kind": "tried", "text": "Reinstalled VPN client", "result": "Still drops"})
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
