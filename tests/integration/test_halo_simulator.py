"""The HaloPSA simulator over real loopback HTTP: Halo's token endpoint, Bearer checks, array bodies, outcomes,
error shapes and fault knobs."""

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

from devstack.halo_simulator import (
    CLOSED_STATUS_ID,
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    ESCALATED_STATUS_ID,
    HIDDEN_STATUS_ID,
    NO_ACCESS,
    OUTCOME_REQUIRED,
    PRIVATE_NOTE_OUTCOME_ID,
    RATE_LIMIT_TEXT,
    RESOLUTION_OUTCOME_ID,
    RESTRICTED_OUTCOME_ID,
    HaloSimulator,
    HaloTicketFaults,
    note_text,
)
from devstack.psa_sim import NoteView

REPO = Path(__file__).resolve().parents[2]


class Clock:
    """A clock the test moves by hand (token expiry without sleeping)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def token_form(**overrides: str | None) -> dict[str, str]:
    form: dict[str, str | None] = {
        "grant_type": "client_credentials",
        "client_id": DEMO_CLIENT_ID,
        "client_secret": DEMO_CLIENT_SECRET,
        "scope": "all",
    }
    form.update(overrides)
    return {k: v for k, v in form.items() if v is not None}


def get_token(sim: HaloSimulator, **params: str) -> str:
    resp = httpx.post(f"{sim.base_url}/auth/token", data=token_form(), params=params)
    assert resp.status_code == 200, resp.text
    token = resp.json()["access_token"]
    assert isinstance(token, str)
    return token


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sim(clock: Clock) -> Iterator[HaloSimulator]:
    with HaloSimulator(clock=clock) as s:
        s.seed_demo()
        yield s


@pytest.fixture
def halo(sim: HaloSimulator) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {get_token(sim)}", "Accept": "application/json"}
    with httpx.Client(base_url=f"{sim.base_url}/api", headers=headers, timeout=5) as client:
        yield client


def post_actions(halo: httpx.Client, *actions: dict[str, Any]) -> httpx.Response:
    return halo.post("/Actions", json=list(actions))


# --- routing ---------------------------------------------------------------------------------------


def test_urls_and_unknown_paths(sim: HaloSimulator, halo: httpx.Client) -> None:
    assert sim.base_url == sim.site_url and sim.base_url.startswith("http://127.0.0.1:")
    outside = httpx.get(f"{sim.base_url}/halo/api/Tickets/1001")
    assert outside.status_code == 404 and outside.headers["content-type"].startswith("text/html")
    unknown = halo.get("/Nothing/here")
    assert unknown.status_code == 404 and unknown.headers["content-type"].startswith("text/html")
    missing = halo.get("/Tickets/9999")
    assert missing.status_code == 404
    assert missing.json() == {"ClassName": "System.Exception", "Message": "Ticket 9999 not found"}
    assert halo.delete("/Tickets/1001").status_code == 405


def test_unstarted_simulator_has_no_url() -> None:
    with pytest.raises(RuntimeError):
        _ = HaloSimulator().base_url


# --- the token endpoint ----------------------------------------------------------------------------


def test_token_endpoint_issues_bearer_tokens_from_a_form(sim: HaloSimulator) -> None:
    resp = httpx.post(f"{sim.base_url}/auth/token", data=token_form())
    assert resp.status_code == 200
    body = resp.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert len(body["access_token"]) >= 32
    assert sim.tokens_issued == 1 and sim.issued_tokens == [body["access_token"]]
    (req,) = sim.requests
    assert req.body == token_form()  # form bodies are recorded as fields
    assert req.headers["content-type"] == "application/x-www-form-urlencoded"
    second = get_token(sim)
    assert second != body["access_token"] and sim.tokens_issued == 2


@pytest.mark.parametrize(
    ("send", "status", "error"),
    [
        ({"json": token_form()}, 400, "unsupported_grant_type"),
        ({"data": token_form(grant_type="password")}, 400, "unsupported_grant_type"),
        ({"data": token_form(client_secret="wrong-secret")}, 401, "invalid_client"),
        ({"data": token_form(client_id="someone-else")}, 401, "invalid_client"),
        ({"data": token_form(client_secret=None)}, 401, "invalid_client"),
        ({"data": token_form(scope="read:tickets")}, 400, "invalid_scope"),
    ],
    ids=["json-body", "wrong-grant", "wrong-secret", "wrong-client", "no-secret", "other-scope"],
)
def test_token_endpoint_refusals(sim: HaloSimulator, send: dict[str, Any], status: int, error: str) -> None:
    resp = httpx.post(f"{sim.base_url}/auth/token", **send)
    assert resp.status_code == status
    assert resp.json()["error"] == error
    assert sim.tokens_issued == 0


def test_token_endpoint_is_post_only(sim: HaloSimulator) -> None:
    assert httpx.get(f"{sim.base_url}/auth/token").status_code == 405


def test_tenant_parameter_is_required_when_the_instance_has_one() -> None:
    with HaloSimulator(tenant="acme") as sim:
        url = f"{sim.base_url}/auth/token"
        missing = httpx.post(url, data=token_form())
        assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
        wrong = httpx.post(url, data=token_form(), params={"tenant": "other"})
        assert wrong.status_code == 401 and wrong.json() == {"error": "invalid_client"}
        assert httpx.post(url, data=token_form(), params={"tenant": "acme"}).status_code == 200
        assert sim.connection_settings()["tenant"] == "acme"


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer not-a-token", "Bearer", f"Basic {DEMO_CLIENT_SECRET}"],
    ids=["none", "unknown", "scheme-only", "basic"],
)
def test_api_calls_need_a_valid_bearer_token(sim: HaloSimulator, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    resp = httpx.get(f"{sim.base_url}/api/Tickets/1001", headers=headers)
    assert resp.status_code == 401
    assert resp.content == b""
    assert 'error="invalid_token"' in resp.headers["www-authenticate"]


def test_tokens_expire_after_token_ttl_on_the_simulators_clock(sim: HaloSimulator, clock: Clock) -> None:
    sim.token_ttl = 100
    token = get_token(sim)
    url, headers = f"{sim.base_url}/api/Tickets/1001", {"Authorization": f"Bearer {token}"}
    clock.now += 99
    assert httpx.get(url, headers=headers).status_code == 200
    clock.now += 1
    assert httpx.get(url, headers=headers).status_code == 401
    assert httpx.get(url, headers={"Authorization": f"Bearer {get_token(sim)}"}).status_code == 200


def test_expire_tokens_invalidates_every_issued_token(sim: HaloSimulator, halo: httpx.Client) -> None:
    assert halo.get("/Tickets/1001").status_code == 200
    sim.expire_tokens()
    assert halo.get("/Tickets/1001").status_code == 401
    fresh = get_token(sim)
    assert httpx.get(f"{sim.base_url}/api/Tickets/1001", headers={"Authorization": f"Bearer {fresh}"}).is_success


def test_revoked_credentials_refuse_tokens_and_api_calls(sim: HaloSimulator, halo: httpx.Client) -> None:
    sim.revoke_credentials()
    assert halo.get("/Tickets/1001").status_code == 401
    refused = httpx.post(f"{sim.base_url}/auth/token", data=token_form())
    assert refused.status_code == 401 and refused.json() == {"error": "invalid_client"}
    sim.restore_credentials()
    assert halo.get("/Tickets/1001").status_code == 401  # the old token stays dead
    get_token(sim)


# --- tickets, statuses, outcomes -------------------------------------------------------------------


def test_ticket_shape(sim: HaloSimulator, halo: httpx.Client) -> None:
    ticket = halo.get("/Tickets/1001", params={"includedetails": "true"}).json()
    assert (ticket["id"], ticket["summary"]) == (1001, "VPN drops every 10 minutes")
    assert (ticket["tickettype_id"], ticket["tickettype_name"]) == (1, "Incident")
    assert (ticket["status_id"], ticket["status_name"]) == (2, "In Progress")
    assert ticket["hasbeenclosed"] is False and ticket["dateclosed"] is None
    assert {"client_id", "agent_id", "lastactiondate", "dateoccurred"} <= set(ticket)
    assert sim.ticket(1001) == ticket
    assert halo.get("/Tickets/1005").json()["tickettype_name"] == "Service Request"


def test_statuses_per_ticket_type(halo: httpx.Client) -> None:
    incident = halo.get("/Status", params={"tickettype_id": 1}).json()
    assert [(s["id"], s["name"]) for s in incident] == [
        (1, "New"),
        (2, "In Progress"),
        (3, "Waiting on User"),
        (9, "Closed"),
        (21, "Escalated - Tier 2"),
    ]
    assert {"shortname", "type", "sequence", "colour"} <= set(incident[0])
    every = halo.get("/Status", params={"tickettype_id": 1, "showall": "true"}).json()
    assert HIDDEN_STATUS_ID in [s["id"] for s in every]  # hidden statuses only with showall
    service = halo.get("/Status", params={"tickettype_id": 2}).json()
    assert [s["id"] for s in service] == [1, 2, 3, 9, 22]
    assert halo.get("/Status", params={"tickettype_id": 77}).json() == []


def test_outcomes_carry_their_defaults(halo: httpx.Client) -> None:
    outcomes = {o["id"]: o for o in halo.get("/Outcome").json()}
    assert set(outcomes) == {PRIVATE_NOTE_OUTCOME_ID, 8, RESOLUTION_OUTCOME_ID, RESTRICTED_OUTCOME_ID}
    private = outcomes[PRIVATE_NOTE_OUTCOME_ID]
    assert (private["outcome"], private["hidefromuser"], private["sendemail"]) == ("Private Note", True, 0)
    resolution = outcomes[RESOLUTION_OUTCOME_ID]
    assert (resolution["hidefromuser"], resolution["sendemail"]) == (False, 1)


def test_status_changes_through_post_tickets_with_an_array(sim: HaloSimulator, halo: httpx.Client) -> None:
    resp = halo.post("/Tickets", json=[{"id": 1001, "status_id": CLOSED_STATUS_ID, "closeddate": "x", "bogus": 1}])
    assert resp.status_code == 200
    assert resp.json()["status_id"] == CLOSED_STATUS_ID  # one ticket: the ticket object
    closed = sim.ticket(1001)
    assert closed["hasbeenclosed"] is True and closed["dateclosed"] and closed["status_name"] == "Closed"
    halo.post("/Tickets", json=[{"id": 1001, "status_id": "2"}])  # Halo's binder reads digit strings
    reopened = sim.ticket(1001)
    assert (reopened["status_id"], reopened["hasbeenclosed"], reopened["dateclosed"]) == (2, False, None)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"id": 1001, "status_id": 9}, "The request body must be a JSON array of Tickets."),
        ([{"id": 1001, "status_id": 22}], "Status 22 is not valid for Ticket Type 'Incident'"),
        ([{"id": 1001, "status_id": "closed"}], "Status closed is not valid for Ticket Type 'Incident'"),
        ([], "The request body must be a JSON array of Tickets."),
    ],
    ids=["object", "other-type", "not-an-id", "empty"],
)
def test_post_tickets_refusals_are_exception_bodies(
    sim: HaloSimulator, halo: httpx.Client, body: Any, message: str
) -> None:
    resp = halo.post("/Tickets", json=body)
    assert resp.status_code == 400
    assert resp.json() == {"ClassName": "System.Exception", "Message": message}
    assert sim.status_id(1001) == 2


def test_hidden_status_is_accepted_by_the_api_but_not_listed(sim: HaloSimulator, halo: httpx.Client) -> None:
    assert halo.post("/Tickets", json=[{"id": 1001, "status_id": HIDDEN_STATUS_ID}]).status_code == 200
    assert sim.status_id(1001) == HIDDEN_STATUS_ID


def test_set_status_out_of_band(sim: HaloSimulator) -> None:
    sim.set_status(1001, 3)
    assert sim.ticket(1001)["status_name"] == "Waiting on User"
    for refused in (22, HIDDEN_STATUS_ID, 404):
        with pytest.raises(ValueError):
            sim.set_status(1001, refused)


# --- actions ---------------------------------------------------------------------------------------


def test_action_needs_an_outcome(sim: HaloSimulator, halo: httpx.Client) -> None:
    for action in ({"ticket_id": 1001, "note_html": "<p>x</p>"}, {"ticket_id": 1001, "outcome_id": 404}):
        resp = post_actions(halo, action)
        assert resp.status_code == 400
        assert resp.json() == {"ClassName": "System.Exception", "Message": OUTCOME_REQUIRED}
    assert sim.notes(1001) == []


def test_an_outcome_the_api_agent_may_not_use_is_refused(sim: HaloSimulator, halo: httpx.Client) -> None:
    resp = post_actions(halo, {"ticket_id": 1001, "outcome_id": RESTRICTED_OUTCOME_ID, "note_html": "<p>x</p>"})
    assert resp.status_code == 400
    assert resp.json() == {"ClassName": "System.Exception", "Message": NO_ACCESS}
    assert sim.notes(1001) == []


def test_action_body_must_be_an_array(sim: HaloSimulator, halo: httpx.Client) -> None:
    resp = halo.post("/Actions", json={"ticket_id": 1001, "outcome_id": PRIVATE_NOTE_OUTCOME_ID, "note": "x"})
    assert resp.status_code == 400 and resp.json()["ClassName"] == "System.Exception"
    not_json = halo.post("/Actions", content=b"[{", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400
    form = halo.post("/Actions", data={"ticket_id": "1001"})
    assert form.status_code == 415
    assert sim.notes(1001) == []


def test_omitted_flags_take_the_outcomes_defaults(sim: HaloSimulator, halo: httpx.Client) -> None:
    resolution = post_actions(halo, {"ticket_id": 1001, "outcome_id": RESOLUTION_OUTCOME_ID, "note_html": "<p>a</p>"})
    assert resolution.status_code == 200
    created = resolution.json()
    # The outcome's defaults: shown on the portal AND emailed to the end user.
    assert (created["hiddenfromuser"], created["sendemail"]) == (False, True)
    assert sim.emails_sent == [{"ticket_id": 1001, "action_id": created["id"]}]
    private = post_actions(halo, {"ticket_id": 1001, "outcome": "private note", "note_html": "<p>b</p>"}).json()
    assert (private["hiddenfromuser"], private["sendemail"], private["outcome_id"]) == (True, False, 7)
    explicit = post_actions(
        halo,
        {
            "ticket_id": 1001,
            "outcome_id": RESOLUTION_OUTCOME_ID,
            "note_html": "<p>c</p>",
            "hiddenfromuser": True,
            "sendemail": False,
        },
    ).json()
    assert (explicit["hiddenfromuser"], explicit["sendemail"]) == (True, False)
    assert len(sim.emails_sent) == 1
    assert [v.customer_visible for v in sim.note_views(1001)] == [True, False, False]


def test_status_keys_on_an_action_are_silently_ignored(sim: HaloSimulator, halo: httpx.Client) -> None:
    resp = post_actions(
        halo,
        {
            "ticket_id": 1001,
            "outcome_id": PRIVATE_NOTE_OUTCOME_ID,
            "note_html": "<p>closing</p>",
            "status_id": CLOSED_STATUS_ID,
            "new_status_id": CLOSED_STATUS_ID,
            "new_status": CLOSED_STATUS_ID,
        },
    )
    assert resp.status_code == 200
    assert "status_id" not in resp.json() and "new_status" not in resp.json()
    assert sim.status_id(1001) == 2 and sim.ticket(1001)["hasbeenclosed"] is False


def test_actions_store_html_and_a_plain_note(sim: HaloSimulator, halo: httpx.Client) -> None:
    html_note = "<p>Line &lt;one&gt; &amp; more<br>two</p><p>three</p>"
    created = post_actions(
        halo, {"ticket_id": 1002, "outcome_id": PRIVATE_NOTE_OUTCOME_ID, "note_html": html_note}
    ).json()
    assert created["note_html"] == html_note
    assert created["note"] == "Line <one> & more\ntwo\n\nthree"
    plain = post_actions(halo, {"ticket_id": 1002, "outcome_id": PRIVATE_NOTE_OUTCOME_ID, "note": "a <b>\nc"}).json()
    assert plain["note_html"] == "<p>a &lt;b&gt;<br>c</p>" and plain["note"] == "a <b>\nc"
    assert {"who", "datetime", "outcome", "ticket_id"} <= set(created)
    assert note_text("<div>x</div>\n  <div>y</div>") == "x\ny"


def test_action_ids_are_numbered_per_ticket_and_reads_need_the_ticket(sim: HaloSimulator, halo: httpx.Client) -> None:
    first = post_actions(halo, {"ticket_id": 1001, "outcome_id": 7, "note": "one"}).json()
    other = post_actions(halo, {"ticket_id": 1002, "outcome_id": 7, "note": "other"}).json()
    second = post_actions(halo, {"ticket_id": 1001, "outcome_id": 7, "note": "two"}).json()
    assert (first["id"], other["id"], second["id"]) == (1, 1, 2)
    got = halo.get(f"/Actions/{second['id']}", params={"ticket_id": 1001})
    assert got.json()["note"] == "two" and got.json()["note_html"] == "<p>two</p>"
    assert halo.get("/Actions/2").status_code == 400  # no ticket_id
    missing = halo.get("/Actions/99", params={"ticket_id": 1001})
    assert missing.status_code == 404 and missing.json()["Message"] == "Action 99 not found"
    assert halo.get("/Actions/1", params={"ticket_id": 9999}).status_code == 404


def test_action_list_envelope_newest_first(sim: HaloSimulator, halo: httpx.Client) -> None:
    for i in range(5):
        post_actions(halo, {"ticket_id": 1006, "outcome_id": 7, "note": f"n{i}"})
    listed = halo.get("/Actions", params={"ticket_id": 1006, "count": 3, "includehtmlnote": "true"}).json()
    assert listed["record_count"] == 5
    assert [a["note"] for a in listed["actions"]] == ["n4", "n3", "n2"]
    assert listed["actions"][0]["note_html"] == "<p>n4</p>"
    without_html = halo.get("/Actions", params={"ticket_id": 1006}).json()["actions"]
    assert len(without_html) == 5 and all("note_html" not in a for a in without_html)
    assert halo.get("/Actions").status_code == 400


def test_action_update_by_id(sim: HaloSimulator, halo: httpx.Client) -> None:
    created = post_actions(halo, {"ticket_id": 1002, "outcome_id": 8, "note": "first"}).json()
    assert created["hiddenfromuser"] is False
    resp = post_actions(
        halo,
        {
            "id": created["id"],
            "ticket_id": 1002,
            "note_html": "<p>second</p>",
            "hiddenfromuser": True,
            "sendemail": False,
        },
    )
    assert resp.status_code == 200
    (stored,) = sim.notes(1002)
    assert (stored["note"], stored["hiddenfromuser"], stored["outcome_id"]) == ("second", True, 8)
    changed = post_actions(halo, {"id": created["id"], "ticket_id": 1002, "outcome_id": 7}).json()
    assert changed["outcome"] == "Private Note" and len(sim.notes(1002)) == 1
    assert post_actions(halo, {"id": 42, "ticket_id": 1002, "note": "x"}).status_code == 404
    denied = post_actions(halo, {"id": created["id"], "ticket_id": 1002, "outcome_id": RESTRICTED_OUTCOME_ID})
    assert denied.status_code == 400 and denied.json()["Message"] == NO_ACCESS
    assert sim.emails_sent == []


def test_person_notes_and_note_views(sim: HaloSimulator) -> None:
    visible = sim.add_person_note(1006, "Called the user", customer_visible=True)
    hidden = sim.add_person_note(1006, "Internal: <check> & see", customer_visible=False)
    assert sim.note_views(1006) == [
        NoteView(id=visible.id, text="Called the user", customer_visible=True),
        NoteView(id=hidden.id, text="Internal: <check> & see", customer_visible=False),
    ]
    assert sim.notes(1006)[1]["who"] == "Jane Doe" and sim.notes(1006)[1]["hiddenfromuser"] is True


# --- fault knobs -----------------------------------------------------------------------------------


def test_rate_limit_is_halos_plain_text_429(sim: HaloSimulator, halo: httpx.Client) -> None:
    sim.set_faults(1001, rate_limit_next=2, retry_after=7)
    limited = halo.get("/Tickets/1001")
    assert limited.status_code == 429 and limited.text == RATE_LIMIT_TEXT
    assert limited.headers["retry-after"] == "7" and limited.headers["content-type"].startswith("text/plain")
    sim.set_faults(1001, retry_after=0)
    assert "retry-after" not in halo.get("/Tickets/1001").headers
    assert halo.get("/Tickets/1002").status_code == 200
    assert halo.get("/Tickets/1001").status_code == 200


def test_fail_next_is_a_500_exception_and_stores_nothing(sim: HaloSimulator, halo: httpx.Client) -> None:
    sim.set_faults(1001, fail_next=1)
    failed = post_actions(halo, {"ticket_id": 1001, "outcome_id": 7, "note": "x"})
    assert failed.status_code == 500
    assert failed.json()["ClassName"] == "System.NullReferenceException"
    assert sim.notes(1001) == []
    assert post_actions(halo, {"ticket_id": 1001, "outcome_id": 7, "note": "x"}).status_code == 200


def test_expire_token_next_answers_401_and_kills_that_token(sim: HaloSimulator, halo: httpx.Client) -> None:
    sim.set_faults(1001, expire_token_next=1)
    assert isinstance(sim.faults(1001), HaloTicketFaults)
    assert halo.get("/Tickets/1001").status_code == 401
    assert halo.get("/Tickets/1002").status_code == 401  # the token itself is dead now
    fresh = {"Authorization": f"Bearer {get_token(sim)}"}
    assert httpx.get(f"{sim.base_url}/api/Tickets/1001", headers=fresh).status_code == 200
    assert sim.faults(1001).expire_token_next == 0


def test_auth_fail_refuses_one_ticket(sim: HaloSimulator, halo: httpx.Client) -> None:
    sim.set_faults(1001, auth_fail=True)
    assert halo.get("/Tickets/1001").status_code == 401
    assert halo.get("/Actions", params={"ticket_id": 1001}).status_code == 401
    assert halo.get("/Tickets/1002").status_code == 200


def test_ignore_status_change_answers_200_and_changes_nothing(sim: HaloSimulator, halo: httpx.Client) -> None:
    resp = halo.post("/Tickets", json=[{"id": 1003, "status_id": CLOSED_STATUS_ID}])  # seeded with the knob
    assert resp.status_code == 200 and resp.json()["status_id"] == 1
    assert sim.status_id(1003) == 1
    assert halo.post("/Tickets", json=[{"id": 1003, "status_id": 22}]).status_code == 400  # still validated


def test_revert_status_immediately(sim: HaloSimulator, halo: httpx.Client) -> None:
    sim.set_faults(1001, revert_status_after=0)
    assert halo.post("/Tickets", json=[{"id": 1001, "status_id": ESCALATED_STATUS_ID}]).json()["status_id"] == 21
    assert halo.get("/Tickets/1001").json()["status_id"] == 2


def test_revert_status_after_a_delay(sim: HaloSimulator, halo: httpx.Client) -> None:
    sim.set_faults(1001, revert_status_after=2.0)  # the immediate read lands first even on a busy machine
    halo.post("/Tickets", json=[{"id": 1001, "status_id": CLOSED_STATUS_ID}])
    assert halo.get("/Tickets/1001").json()["status_id"] == CLOSED_STATUS_ID
    deadline = time.monotonic() + 60  # waits for the revert itself, not a fixed time
    while sim.status_id(1001) != 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sim.ticket(1001)["status_id"] == 2 and sim.ticket(1001)["hasbeenclosed"] is False


def test_drop_after_commit_stores_the_action_and_answers_nothing(sim: HaloSimulator, halo: httpx.Client) -> None:
    sim.set_faults(1001, drop_after_commit_next=1)
    with pytest.raises(httpx.TransportError):
        post_actions(halo, {"ticket_id": 1001, "outcome_id": 7, "note": "stored anyway"})
    assert [a["note"] for a in sim.notes(1001)] == ["stored anyway"]
    assert sim.requests[-1].status == 0
    assert post_actions(halo, {"ticket_id": 1001, "outcome_id": 7, "note": "second"}).status_code == 200


def test_forced_visibility_on_create_and_sticky_on_update(sim: HaloSimulator, halo: httpx.Client) -> None:
    sim.set_faults(1002, force_note_visibility="customer")
    created = post_actions(halo, {"ticket_id": 1002, "outcome_id": 7, "hiddenfromuser": True, "note": "x"}).json()
    assert created["hiddenfromuser"] is False
    post_actions(halo, {"id": created["id"], "ticket_id": 1002, "hiddenfromuser": True})
    assert sim.notes(1002)[0]["hiddenfromuser"] is True  # not sticky: an update fixes it
    sim.set_faults(1002, force_note_visibility="customer", force_note_visibility_sticky=True)
    post_actions(halo, {"id": created["id"], "ticket_id": 1002, "hiddenfromuser": True})
    assert sim.notes(1002)[0]["hiddenfromuser"] is False
    sim.set_faults(1001, force_note_visibility="internal")
    forced = post_actions(halo, {"ticket_id": 1001, "outcome_id": 8, "hiddenfromuser": False, "note": "y"}).json()
    assert forced["hiddenfromuser"] is True


def test_ignore_note_update_answers_200_and_changes_nothing(sim: HaloSimulator, halo: httpx.Client) -> None:
    created = post_actions(halo, {"ticket_id": 1001, "outcome_id": 7, "note": "original"}).json()
    sim.set_faults(1001, ignore_note_update=True)
    resp = post_actions(halo, {"id": created["id"], "ticket_id": 1001, "note": "changed", "hiddenfromuser": False})
    assert resp.status_code == 200
    (stored,) = sim.notes(1001)
    assert (stored["note"], stored["hiddenfromuser"]) == ("original", True)


def test_latency_delays_the_answer(sim: HaloSimulator, halo: httpx.Client) -> None:
    sim.set_faults(1001, latency=0.3)
    started = time.monotonic()
    assert halo.get("/Tickets/1001").status_code == 200
    assert time.monotonic() - started >= 0.3  # a lower bound: load only makes it longer


def test_unknown_fault_knob_is_an_error(sim: HaloSimulator) -> None:
    with pytest.raises(TypeError):
        sim.set_faults(1001, ignore_everything=True)


def test_control_endpoint(sim: HaloSimulator) -> None:
    sim.add_person_note(1001, "hello", customer_visible=False)
    state = httpx.get(f"{sim.base_url}/__simulator/tickets/1001").json()
    assert state["ticket"]["id"] == 1001 and state["notes"][0]["note"] == "hello"
    assert state["note_views"] == [{"id": "1", "text": "hello", "customer_visible": False}]
    assert state["faults"]["expire_token_next"] == 0
    resp = httpx.post(f"{sim.base_url}/__simulator/tickets/1001/faults", json={"expire_token_next": 2})
    assert resp.status_code == 200 and sim.faults(1001).expire_token_next == 2
    moved = httpx.post(f"{sim.base_url}/__simulator/tickets/1001/status", json={"status_id": 3})
    assert moved.status_code == 200 and sim.status_id(1001) == 3
    assert httpx.post(f"{sim.base_url}/__simulator/tickets/1001/status", json={"status_id": 22}).status_code == 400


# --- seed, settings, standalone ----------------------------------------------------------------------


def test_seed_settings_and_preferences(sim: HaloSimulator) -> None:
    with HaloSimulator() as fresh:
        seed = fresh.seed_demo()
        assert set(seed["tickets"]) == {"1001", "1002", "1003", "1004", "1005", "1006"}
        assert seed["ticket_types"]["1"]["statuses"]["21"] == "Escalated - Tier 2"
        assert seed["outcomes"][str(PRIVATE_NOTE_OUTCOME_ID)] == "Private Note"
        assert fresh.faults(1003).ignore_status_change is True
        assert fresh.faults(1004).revert_status_after == 1.0
        assert fresh.connection_settings() == {
            "provider": "halopsa",
            "base_url": fresh.site_url,
            "client_id": DEMO_CLIENT_ID,
            "client_secret": DEMO_CLIENT_SECRET,
        }
        assert fresh.preferences() == {
            "halo_resolved_status_id": CLOSED_STATUS_ID,
            "halo_escalated_status_id": ESCALATED_STATUS_ID,
            "halo_resolution_outcome_id": RESOLUTION_OUTCOME_ID,
            "halo_escalation_outcome_id": PRIVATE_NOTE_OUTCOME_ID,
        }


def test_main_runs_standalone_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack.halo_simulator", "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().split(": ", 1)[1].strip()
        token = httpx.post(f"{base_url}/auth/token", data=token_form(), timeout=5).json()["access_token"]
        resp = httpx.get(f"{base_url}/api/Tickets/1001", headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert resp.json()["summary"] == "VPN drops every 10 minutes"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
