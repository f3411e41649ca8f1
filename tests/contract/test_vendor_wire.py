"""Every request body the Autotask and Halo providers send, held against the field names of the vendors'
published API schemas (tests/fixtures/vendor_schemas.json: Autotask's REST swagger, Halo's OpenAPI v2).

Both PSAs drop body keys they do not know without an error, so a misspelt key is a write that answers 200
and does nothing: exactly the kind of silent failure the write-back exists to catch. The bodies are the ones
the simulators recorded while whole write-backs ran through the API (resolve, escalate with a visibility
repair, an edited re-post that amends the note), so nothing is hand-written here.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import Api, connect_simulator, simulated_psa
from tests.contract import vendor_schemas

# (method, path pattern) -> the schema entity the body must fit; a write not listed here fails the test.
ENTITIES: dict[str, list[tuple[str, re.Pattern[str], str]]] = {
    "autotask": [
        ("PATCH", re.compile(r"/V1\.0/Tickets/?$", re.I), "Ticket"),
        ("POST", re.compile(r"/V1\.0/Tickets/\d+/Notes/?$", re.I), "TicketNote"),
        ("PATCH", re.compile(r"/V1\.0/Tickets/\d+/Notes/?$", re.I), "TicketNote"),
    ],
    "halopsa": [
        ("POST", re.compile(r"/api/Actions/?$"), "Action"),
        ("POST", re.compile(r"/api/Tickets/?$"), "Ticket"),
        ("POST", re.compile(r"/auth/token/?$"), "TokenRequest"),
    ],
}


def _write_backs(api: Api, sim: Any) -> None:
    """A resolve, an escalation whose note the PSA made public (repaired), and an amended re-post."""

    def session(ticket_id: str) -> str:
        body = api.new_session(psa_ticket={"provider": sim.provider, "ticket_id": ticket_id})
        return str(body["id"])

    note = "Replaced the switch port's patch cable.\n\nLink stable for an hour."
    assert api.post(f"/ai-sessions/{session('1001')}/resolution-note/post", {"markdown": note}).status == 200
    sim.set_faults(1002, force_note_visibility="customer")
    escalated = api.post(f"/ai-sessions/{session('1002')}/escalation-package/post", {"markdown": "## Problem\nX"})
    assert escalated.status == 200, escalated.text
    resumed = session("1003")
    assert api.post(f"/ai-sessions/{resumed}/resolution-note/post", {"markdown": note}).status == 502
    sim.set_faults(1003, ignore_status_change=False)
    amended = api.post(f"/ai-sessions/{resumed}/resolution-note/post", {"markdown": note + "\n\nConfirmed."})
    assert amended.status == 200 and amended.body["note_amended"] is True, amended.text


def _entity_for(provider: str, method: str, path: str) -> str | None:
    return next((e for m, pattern, e in ENTITIES[provider] if m == method and pattern.search(path)), None)


@pytest.mark.parametrize("provider", ["autotask", "halopsa"])
def test_every_body_sent_uses_only_the_vendors_field_names(api: Api, aws_env: dict[str, str], provider: str) -> None:
    with simulated_psa(provider, aws_env) as sim:
        connect_simulator(api, sim)
        _write_backs(api, sim)
        writes = [r for r in sim.requests if r.method != "GET" and not r.path.startswith("/__simulator")]
    checked: dict[str, int] = {}
    for request in writes:
        entity = _entity_for(provider, request.method, request.path)
        assert entity is not None, f"{provider}: a write the wire test does not know: {request.method} {request.path}"
        bodies = request.body if isinstance(request.body, list) else [request.body]
        for body in bodies:
            assert isinstance(body, dict), f"{request.method} {request.path}: body {body!r} is not an object"
            unknown = vendor_schemas.unknown_fields(provider, entity, body)
            assert unknown == [], f"{request.method} {request.path} sends {unknown}, not in the {entity} schema"
            checked[entity] = checked.get(entity, 0) + 1
    # The flow above sends each kind of body at least once (a test that checked nothing would pass).
    expected = {e for _, _, e in ENTITIES[provider]}
    assert set(checked) == expected, f"bodies checked per entity: {checked}"


def test_the_check_catches_a_misspelt_key() -> None:
    assert vendor_schemas.unknown_fields("halopsa", "Action", {"ticket_id": 1, "status_id": 9}) == ["status_id"]
    assert vendor_schemas.unknown_fields("halopsa", "Action", {"Ticket_Id": 1}) == ["Ticket_Id"]  # Halo: exact
    assert vendor_schemas.unknown_fields("autotask", "TicketNote", {"TicketID": 1, "visibility": 1}) == ["visibility"]
    assert vendor_schemas.unknown_fields("autotask", "Ticket", {"id": 1, "statusID": 5}) == ["statusID"]
