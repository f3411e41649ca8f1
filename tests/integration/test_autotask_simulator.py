"""The Autotask simulator over real loopback HTTP: zones, auth, envelopes, picklists, validation and fault knobs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.autotask_simulator import (
    DEMO_INTEGRATION_CODE,
    DEMO_SECRET,
    DEMO_USERNAME,
    THREAD_LIMIT_MESSAGE,
    AutotaskSimulator,
    AutotaskTicketFaults,
)

REPO = Path(__file__).resolve().parents[2]


def auth_headers(
    username: str = DEMO_USERNAME, secret: str = DEMO_SECRET, code: str = DEMO_INTEGRATION_CODE
) -> dict[str, str]:
    return {
        "ApiIntegrationCode": code,
        "UserName": username,
        "Secret": secret,
        "Content-Type": "application/json",
        "Accept": "application/json",
    }


@pytest.fixture
def sim() -> Iterator[AutotaskSimulator]:
    with AutotaskSimulator() as s:
        s.seed_demo()
        yield s


@pytest.fixture
def at(sim: AutotaskSimulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.zone_url + "V1.0", headers=auth_headers(), timeout=5) as client:
        yield client


def picklist(fields: dict[str, Any], name: str) -> dict[int, tuple[str, bool, bool]]:
    (field,) = [f for f in fields["fields"] if f["name"] == name]
    assert field["isPickList"] is True
    return {int(v["value"]): (v["label"], v["isActive"], v["isDefaultValue"]) for v in field["picklistValues"]}


def post_note(at: httpx.Client, ticket_id: int = 1001, **overrides: Any) -> httpx.Response:
    body = {"ticketID": ticket_id, "title": "t", "description": "Fixed it.", "noteType": 1, "publish": 1}
    body.update(overrides)
    return at.post(f"/Tickets/{ticket_id}/Notes", json={k: v for k, v in body.items() if v is not None})


# --- zones ---------------------------------------------------------------------------------------------------


def test_zone_lookup_needs_no_auth_and_answers_the_zone(sim: AutotaskSimulator) -> None:
    assert sim.zone_lookup_url == f"{sim.site_url}/atservicesrest/"
    assert sim.zone_url == f"{sim.site_url}/ATServicesRest/"
    for path in ("/atservicesrest/V1.0/zoneInformation", "/ATServicesRest/v1.0/ZONEINFORMATION"):
        resp = httpx.get(sim.site_url + path, params={"user": DEMO_USERNAME.upper()})
        assert resp.status_code == 200
        assert resp.json() == {
            "zoneName": "Simulated Zone",
            "url": sim.zone_url,
            "webUrl": f"{sim.site_url}/web/",
            "ci": 12345,
        }


@pytest.mark.parametrize("user", ["someone@else.example", "", None])
def test_zone_lookup_of_an_unknown_or_blank_user_is_500(sim: AutotaskSimulator, user: str | None) -> None:
    params = {} if user is None else {"user": user}
    resp = httpx.get(sim.zone_lookup_url + "V1.0/zoneInformation", params=params)
    assert resp.status_code == 500
    (message,) = resp.json()["errors"]
    assert "Zone information could not be determined" in message


def test_the_wrong_zone_answers_401_and_a_moved_database_changes_zones(sim: AutotaskSimulator) -> None:
    wrong = httpx.get(sim.wrong_zone_url + "V1.0/Tickets/1001", headers=auth_headers())
    assert (wrong.status_code, wrong.content) == (401, b"")
    old_zone = sim.zone_url
    sim.move_zone()
    assert sim.zone_url == sim.site_url + "/zone2/ATServicesRest/" and sim.wrong_zone_url == old_zone
    assert httpx.get(old_zone + "V1.0/Tickets/1001", headers=auth_headers()).status_code == 401
    assert httpx.get(sim.zone_url + "V1.0/Tickets/1001", headers=auth_headers()).json()["item"]["id"] == 1001
    lookup = httpx.get(sim.zone_lookup_url + "V1.0/zoneInformation", params={"user": DEMO_USERNAME})
    assert lookup.json()["url"] == sim.zone_url


def test_paths_outside_the_api_and_unknown_routes(sim: AutotaskSimulator, at: httpx.Client) -> None:
    outside = httpx.get(f"{sim.site_url}/somewhere/V1.0/Tickets/1001", headers=auth_headers())
    assert outside.status_code == 404 and outside.headers["content-type"].startswith("text/html")
    unknown = at.get("/Companies/1")
    assert (unknown.status_code, unknown.json()) == (404, {"errors": ["Resource not found"]})
    assert at.delete("/Tickets/1001").status_code == 405
    # Any case: Autotask's routing is case-insensitive.
    assert httpx.get(sim.site_url + "/atservicesrest/v1.0/tickets/1001", headers=auth_headers()).status_code == 200


def test_ticket_notes_root_is_a_404_notes_are_created_under_their_ticket(at: httpx.Client) -> None:
    resp = at.post("/TicketNotes", json={"ticketID": 1001, "description": "x", "noteType": 1, "publish": 1})
    assert (resp.status_code, resp.json()) == (404, {"errors": ["Resource not found"]})


# --- auth ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        auth_headers(secret="wrong-secret"),
        auth_headers(code="WRONGCODE"),
        auth_headers(username="other@demo-msp.example"),
        {k: v for k, v in auth_headers().items() if k != "ApiIntegrationCode"},
    ],
    ids=["none", "bad-secret", "bad-code", "bad-user", "no-code"],
)
def test_every_api_call_needs_the_three_headers(sim: AutotaskSimulator, headers: dict[str, str]) -> None:
    resp = httpx.get(sim.zone_url + "V1.0/Tickets/1001", headers=headers)
    assert resp.status_code == 401
    assert resp.json() == {"errors": ["The user name, secret or API integration code is not valid."]}


def test_user_name_is_case_insensitive_and_revoked_credentials_are_refused(
    sim: AutotaskSimulator, at: httpx.Client
) -> None:
    upper = httpx.get(sim.zone_url + "V1.0/Tickets/1001", headers=auth_headers(username=DEMO_USERNAME.upper()))
    assert upper.status_code == 200
    sim.revoke_credentials()
    assert at.get("/Tickets/1001").status_code == 401
    # Zone discovery needs no credentials, so it still answers.
    assert httpx.get(sim.zone_lookup_url + "V1.0/zoneInformation", params={"user": DEMO_USERNAME}).status_code == 200
    sim.restore_credentials()
    assert at.get("/Tickets/1001").status_code == 200


# --- tickets -------------------------------------------------------------------------------------------------


def test_ticket_envelope_and_missing_ticket_is_item_null(at: httpx.Client) -> None:
    item = at.get("/Tickets/1005").json()["item"]
    assert (item["id"], item["title"], item["status"], item["queueID"]) == (1005, "Firewall firmware bug", 13, 29682834)
    assert item["ticketNumber"] == "T20250101.1005" and item["completedDate"] is None
    missing = at.get("/Tickets/9999")
    assert (missing.status_code, missing.json()) == (200, {"item": None})


def test_ticket_fields_picklists(at: httpx.Client) -> None:
    fields = at.get("/Tickets/entityInformation/fields").json()
    statuses = picklist(fields, "status")
    assert statuses == {
        1: ("New", True, True),
        5: ("Complete", True, False),
        8: ("In Progress", True, False),
        13: ("Waiting Customer", True, False),
        14: ("Escalated", True, False),
        99: ("Old - Do Not Use", False, False),
    }
    raw = next(f for f in fields["fields"] if f["name"] == "status")["picklistValues"][0]
    assert raw["value"] == "1" and set(raw) >= {"sortOrder", "parentValue", "isSystem"}  # values are strings
    assert picklist(fields, "queueID")[29682833] == ("Service Desk", True, True)
    assert picklist(fields, "queueID")[29682899] == ("Old Queue", False, False)


def test_patch_ticket_is_sparse_drops_unknown_fields_and_sets_completed_date(
    sim: AutotaskSimulator, at: httpx.Client
) -> None:
    resp = at.patch("/Tickets", json={"id": 1001, "status": 5, "noSuchField": 1, "ticketNumber": "X"})
    assert (resp.status_code, resp.json()) == (200, {"itemId": 1001})
    item = sim.ticket(1001)
    assert item["status"] == 5 and item["completedDate"] and item["ticketNumber"] == "T20250101.1001"
    assert item["title"] == "VPN drops every 10 minutes"  # untouched: PATCH is sparse
    # PascalCase keys work too; leaving Complete clears completedDate.
    assert at.patch("/Tickets", json={"Id": 1001, "Status": 8}).status_code == 200
    assert (sim.ticket(1001)["status"], sim.ticket(1001)["completedDate"]) == (8, None)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"id": 1001, "status": 99}, "The value '99' is not an active picklist value for the field status."),
        ({"id": 1001, "status": 777}, "The value '777' is not an active picklist value for the field status."),
        ({"status": 5}, "The id field is required to update a Ticket."),
        ({"id": 9999, "status": 5}, "Value does not reference an existing entity for id."),
    ],
)
def test_patch_ticket_validation_errors_are_500_with_errors(
    sim: AutotaskSimulator, at: httpx.Client, body: dict[str, int], message: str
) -> None:
    resp = at.patch("/Tickets", json=body)
    assert (resp.status_code, resp.json()) == (500, {"errors": [message]})
    assert sim.status_id(1001) == 8


def test_put_ticket_is_refused_with_a_clear_500(sim: AutotaskSimulator, at: httpx.Client) -> None:
    resp = at.put("/Tickets", json={"id": 1001, "status": 5})
    assert resp.status_code == 500
    assert "Use PATCH" in resp.json()["errors"][0]
    assert sim.status_id(1001) == 8


def test_writes_need_a_json_object(at: httpx.Client) -> None:
    text = at.patch("/Tickets", content=b"id=1", headers={"Content-Type": "text/plain"})
    assert text.status_code == 415 and "text/plain" in text.json()["Message"]
    assert at.patch("/Tickets", json=[{"id": 1001}]).status_code == 500
    assert at.patch("/Tickets", content=b"{oops", headers={"Content-Type": "application/json"}).status_code == 500


def test_set_status_out_of_band(sim: AutotaskSimulator) -> None:
    sim.set_status(1001, 14)
    assert sim.status_id(1001) == 14
    with pytest.raises(ValueError):
        sim.set_status(1001, 99)


# --- notes ---------------------------------------------------------------------------------------------------


def test_note_post_answers_item_id_and_get_returns_the_note(sim: AutotaskSimulator, at: httpx.Client) -> None:
    resp = post_note(at, description="Reinstalled the VPN client.", noteType=17, publish=2, extra="dropped")
    assert resp.status_code == 200
    (key,) = resp.json()
    note_id = resp.json()["itemId"]
    assert key == "itemId" and isinstance(note_id, int)
    item = at.get(f"/Tickets/1001/Notes/{note_id}").json()["item"]
    assert item["ticketID"] == 1001 and item["description"] == "Reinstalled the VPN client."
    assert (item["noteType"], item["publish"], item["title"]) == (17, 2, "t")
    assert "extra" not in item and item["creatorResourceID"] == 29682885
    assert sim.note_views(1001)[0].customer_visible is False  # 2 = Internal Project Team
    assert at.get("/Tickets/1001/Notes/123").json() == {"item": None}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"description": None}, "The description field is required and must be plain text."),
        ({"description": "  "}, "The description field is required and must be plain text."),
        ({"description": {"html": "<b>x</b>"}}, "The description field is required and must be plain text."),
        ({"description": "x" * 32001}, "The description field exceeds its maximum length of 32000."),
        ({"ticketID": 1002}, "The ticketID 1002 does not match the parent ticket 1001 of the URL."),
        ({"publish": 4}, "The value '4' is not an active picklist value for the field publish."),
        ({"publish": None}, "The publish field is required."),
        ({"noteType": 19}, "The value '19' is not an active picklist value for the field noteType."),
        ({"title": "t" * 251}, "The title field must be text of at most 250 characters."),
    ],
    ids=[
        "no-description",
        "blank",
        "rich",
        "too-long",
        "ticket-mismatch",
        "inactive-publish",
        "no-publish",
        "inactive-type",
        "long-title",
    ],
)
def test_note_post_validation_errors_are_500_with_errors(
    sim: AutotaskSimulator, at: httpx.Client, overrides: dict[str, Any], message: str
) -> None:
    resp = post_note(at, **overrides)
    assert (resp.status_code, resp.json()) == (500, {"errors": [message]})
    assert sim.notes(1001) == []


def test_note_post_on_an_unknown_ticket(at: httpx.Client) -> None:
    resp = post_note(at, ticket_id=9999)
    assert (resp.status_code, resp.json()) == (
        500,
        {"errors": ["Value does not reference an existing entity for ticketID."]},
    )


def test_note_patch_updates_publish_and_description(sim: AutotaskSimulator, at: httpx.Client) -> None:
    note_id = post_note(at, publish=1).json()["itemId"]
    resp = at.patch("/Tickets/1001/Notes", json={"id": note_id, "publish": 2, "description": "Amended."})
    assert (resp.status_code, resp.json()) == (200, {"itemId": note_id})
    (note,) = sim.notes(1001)
    assert (note["publish"], note["description"], note["noteType"]) == (2, "Amended.", 1)
    bad = at.patch("/Tickets/1001/Notes", json={"id": note_id, "publish": 7})
    assert bad.status_code == 500 and sim.notes(1001)[0]["publish"] == 2
    other_ticket = at.patch("/Tickets/1002/Notes", json={"id": note_id, "publish": 1})
    assert other_ticket.json() == {"errors": ["Value does not reference an existing entity for id."]}


def test_note_lists_page_with_absolute_next_urls(sim: AutotaskSimulator, at: httpx.Client) -> None:
    for i in range(5):
        sim.add_note(1006, f"note {i}", publish=2)
    sim.page_size = 2
    first = at.get("/Tickets/1006/Notes").json()
    assert [n["description"] for n in first["items"]] == ["note 0", "note 1"]
    assert first["pageDetails"] == {
        "count": 2,
        "requestCount": 2,
        "prevPageUrl": None,
        "nextPageUrl": f"{sim.zone_url}V1.0/Tickets/1006/Notes?page=2",
    }
    last = httpx.get(
        httpx.get(first["pageDetails"]["nextPageUrl"], headers=auth_headers()).json()["pageDetails"]["nextPageUrl"],
        headers=auth_headers(),
    ).json()
    assert [n["description"] for n in last["items"]] == ["note 4"]
    assert last["pageDetails"]["nextPageUrl"] is None
    assert last["pageDetails"]["prevPageUrl"] == f"{sim.zone_url}V1.0/Tickets/1006/Notes?page=2"
    assert at.get("/Tickets/9999/Notes").json()["items"] == []


def test_note_fields_and_the_three_publish_variants() -> None:
    expected = {
        "standard": (
            {
                1: ("All Autotask Users", True, True),
                2: ("Internal Project Team", True, False),
                4: ("Internal Only (retired)", False, False),
            },
            1,
            2,
        ),
        "swapped": (
            {
                1: ("Internal Only", True, True),
                2: ("Customer Portal (retired)", False, False),
                3: ("All Autotask Users", True, False),
            },
            3,
            1,
        ),
        "ambiguous": (
            {
                1: ("All Users", True, True),
                2: ("Internal Project Team", True, False),
                4: ("Internal Only", True, False),
            },
            1,
            4,
        ),
    }
    for variant, (publish, public, internal) in expected.items():
        with AutotaskSimulator(tenant_variant=variant) as sim:  # type: ignore[arg-type]
            sim.seed_demo()
            fields = httpx.get(sim.zone_url + "V1.0/TicketNotes/entityInformation/fields", headers=auth_headers())
            assert picklist(fields.json(), "publish") == publish
            assert (sim.public_publish_value, sim.internal_publish_value) == (public, internal)
            description = next(f for f in fields.json()["fields"] if f["name"] == "description")
            assert description["length"] == 32000
            note_types = picklist(fields.json(), "noteType")
            assert note_types[1] == ("Task Notes", True, True) and note_types[19][1] is False
            sim.add_person_note(1001, "seen by the customer", customer_visible=True)
            sim.add_person_note(1001, "internal", customer_visible=False)
            assert [n["publish"] for n in sim.notes(1001)] == [public, internal]
            assert [v.customer_visible for v in sim.note_views(1001)] == [True, False]
    with pytest.raises(ValueError):
        AutotaskSimulator(tenant_variant="other")  # type: ignore[arg-type]


def test_set_picklist_replaces_a_picklist(sim: AutotaskSimulator, at: httpx.Client) -> None:
    sim.set_picklist("TicketNotes", "noteType", [{"value": 40, "label": "Only Type"}])
    assert sim.picklist("TicketNotes", "noteType") == [
        {
            "value": "40",
            "label": "Only Type",
            "isDefaultValue": False,
            "sortOrder": 1,
            "parentValue": "",
            "isActive": True,
            "isSystem": False,
        }
    ]
    assert post_note(at, noteType=1).status_code == 500
    assert post_note(at, noteType=40).status_code == 200
    with pytest.raises(ValueError):
        sim.set_picklist("Tickets", "nothing", [])


# --- fault knobs ---------------------------------------------------------------------------------------------


def test_faults_type_and_thread_limit_is_a_non_429_rejection(sim: AutotaskSimulator, at: httpx.Client) -> None:
    faults = sim.set_faults(1001, thread_limit_next=1)
    assert isinstance(faults, AutotaskTicketFaults)
    resp = at.get("/Tickets/1001")
    assert resp.status_code == 500
    assert resp.json() == {"errors": [THREAD_LIMIT_MESSAGE]}
    assert "Itgenatr005" in THREAD_LIMIT_MESSAGE and "thread threshold" in THREAD_LIMIT_MESSAGE
    assert at.get("/Tickets/1001").status_code == 200
    # The ticket of a PATCH /Tickets is in the body.
    sim.set_faults(1002, thread_limit_next=1)
    assert at.patch("/Tickets", json={"id": 1002, "status": 5}).status_code == 500
    assert sim.status_id(1002) == 8


def test_rate_limit_fail_and_auth_fail(sim: AutotaskSimulator, at: httpx.Client) -> None:
    sim.set_faults(1001, rate_limit_next=1, retry_after=9, fail_next=1)
    limited = at.get("/Tickets/1001")
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "9")
    failed = at.get("/Tickets/1001")
    assert (failed.status_code, failed.json()) == (500, {"Message": "An error has occurred."})  # no errors array
    assert at.get("/Tickets/1001").status_code == 200
    sim.set_faults(1001, auth_fail=True)
    assert at.get("/Tickets/1001/Notes").status_code == 401
    assert at.get("/Tickets/1002").status_code == 200


def test_ignore_status_change_and_immediate_revert(sim: AutotaskSimulator, at: httpx.Client) -> None:
    assert at.patch("/Tickets", json={"id": 1003, "status": 5}).json() == {"itemId": 1003}  # seeded: ignored
    assert sim.status_id(1003) == 1
    sim.set_faults(1001, revert_status_after=0)
    assert at.patch("/Tickets", json={"id": 1001, "status": 5}).status_code == 200
    item = at.get("/Tickets/1001").json()["item"]
    assert (item["status"], item["completedDate"]) == (8, None)


def test_revert_after_a_delay(sim: AutotaskSimulator, at: httpx.Client) -> None:
    assert at.patch("/Tickets", json={"id": 1004, "status": 14}).status_code == 200  # seeded: reverts after 1 s
    deadline = time.monotonic() + 60  # waits for the revert itself, not a fixed time
    while sim.status_id(1004) != 8 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sim.status_id(1004) == 8


def test_drop_after_commit_stores_the_note_and_answers_nothing(sim: AutotaskSimulator, at: httpx.Client) -> None:
    sim.set_faults(1001, drop_after_commit_next=1)
    with pytest.raises(httpx.TransportError):
        post_note(at, description="dropped")
    assert [n["description"] for n in sim.notes(1001)] == ["dropped"]
    assert sim.requests[-1].status == 0
    assert post_note(at).status_code == 200


def test_forced_visibility_on_create_and_sticky_on_update(sim: AutotaskSimulator, at: httpx.Client) -> None:
    sim.set_faults(1002, force_note_visibility="customer")
    note_id = post_note(at, 1002, publish=2).json()["itemId"]
    assert sim.notes(1002)[0]["publish"] == 1 and sim.note_views(1002)[0].customer_visible
    at.patch("/Tickets/1002/Notes", json={"id": note_id, "publish": 2})
    assert sim.notes(1002)[0]["publish"] == 2  # not sticky: the update repairs it
    sim.set_faults(1002, force_note_visibility="internal", force_note_visibility_sticky=True)
    at.patch("/Tickets/1002/Notes", json={"id": note_id, "publish": 1})
    assert sim.notes(1002)[0]["publish"] == 2


def test_ignore_note_update(sim: AutotaskSimulator, at: httpx.Client) -> None:
    note_id = post_note(at, publish=2, description="first").json()["itemId"]
    sim.set_faults(1001, ignore_note_update=True)
    resp = at.patch("/Tickets/1001/Notes", json={"id": note_id, "publish": 1, "description": "second"})
    assert (resp.status_code, resp.json()) == (200, {"itemId": note_id})
    (note,) = sim.notes(1001)
    assert (note["publish"], note["description"]) == (2, "first")


def test_control_endpoint(sim: AutotaskSimulator) -> None:
    base = f"{sim.site_url}/__simulator/tickets/1001"
    assert httpx.post(f"{base}/faults", json={"thread_limit_next": 2}).status_code == 200
    assert httpx.post(f"{base}/status", json={"status_id": 14}).status_code == 200
    state = httpx.get(base).json()
    assert state["ticket"]["status"] == 14 and state["faults"]["thread_limit_next"] == 2
    assert httpx.post(f"{base}/status", json={"status_id": 99}).status_code == 400
    assert httpx.get(f"{sim.site_url}/__simulator/tickets/9999").status_code == 404


# --- seed, settings, standalone ------------------------------------------------------------------------------


def test_seed_settings_and_preferences() -> None:
    with AutotaskSimulator(tenant_variant="swapped") as sim:
        seed = sim.seed_demo()
        assert seed["tickets"] == {
            "1001": "resolve: happy path",
            "1002": "escalate: internal note + Escalated",
            "1003": "silent reject: PATCH 200, status unchanged",
            "1004": "workflow revert: status flips back after 1 s",
            "1005": "spare, in the Escalations queue",
            "1006": "spare",
        }
        assert seed["statuses"] == {"resolved": 5, "escalated": 14}
        assert seed["publish"] == {"1": "Internal Only", "2": "Customer Portal (retired)", "3": "All Autotask Users"}
        assert (seed["zone_url"], seed["zone_lookup_url"]) == (sim.zone_url, sim.zone_lookup_url)
        assert sim.faults(1003).ignore_status_change and sim.faults(1004).revert_status_after == 1.0
        assert sim.connection_settings() == {
            "provider": "autotask",
            "username": DEMO_USERNAME,
            "secret": DEMO_SECRET,
            "integration_code": DEMO_INTEGRATION_CODE,
        }
        assert sim.connection_settings(with_base_url=True)["base_url"] == sim.zone_url
        assert sim.preferences() == {"autotask_resolved_status_id": 5, "autotask_escalated_status_id": 14}


def test_main_runs_standalone_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack.autotask_simulator", "--port", "0", "--variant", "swapped"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert proc.stdout is not None
        zone_url = proc.stdout.readline().split(": ", 1)[1].strip()
        assert zone_url.endswith("/ATServicesRest/")
        resp = httpx.get(f"{zone_url}V1.0/Tickets/1001", headers=auth_headers(), timeout=5)
        assert resp.json()["item"]["title"] == "VPN drops every 10 minutes"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
