"""The real HaloPSA provider against the real Halo simulator over loopback HTTP (plus a mocked Halo for wire
shapes the simulator does not produce)."""

from __future__ import annotations

import json
import pickle
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from devstack.halo_simulator import (
    CLOSED_STATUS_ID,
    ESCALATED_STATUS_ID,
    HIDDEN_STATUS_ID,
    PRIVATE_NOTE_OUTCOME_ID,
    RESOLUTION_OUTCOME_ID,
    RESTRICTED_OUTCOME_ID,
    HaloSimulator,
)
from devstack.loopback import loopback_psa
from flowpilot import resets
from flowpilot.errors import BadGateway, UpstreamUnavailable
from flowpilot.psa import (
    BoardStatus,
    NoteKind,
    PSAAuthError,
    PSAError,
    PSANotConfigured,
    PSANoteNotFound,
    PSAProvider,
    PSARateLimited,
    PSAStatusNotOnBoard,
    PSATicketNotFound,
    PSATransientError,
    PSAValidationError,
    StatusRef,
    note_marker,
    with_marker,
)
from flowpilot.psa.base import same_text
from flowpilot.psa.halo import (
    HaloConnection,
    HaloProvider,
    from_note_html,
    provider_for,
    reset_caches,
    to_note_html,
)
from tests.leakcheck import register_secret

CLIENT_ID = "9a8b7c6d-halo-test-client"
CLIENT_SECRET = "haloSECRET-7e6d5c4b3a"
register_secret(CLIENT_SECRET, "Halo provider test client secret")

Factory = Callable[..., HaloProvider]


class Clock:
    """A clock the test moves by hand (token expiry without sleeping)."""

    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _fresh_caches_and_loopback() -> Iterator[None]:
    reset_caches()
    with loopback_psa():
        yield
    reset_caches()


@pytest.fixture
def sim() -> Iterator[HaloSimulator]:
    with HaloSimulator(client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as s:
        s.seed_demo()
        yield s


def connection(sim: HaloSimulator, **overrides: str | None) -> HaloConnection:
    fields: dict[str, Any] = {"base_url": sim.base_url, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    fields.update(overrides)
    return HaloConnection(**fields)


@pytest.fixture
def make(sim: HaloSimulator) -> Iterator[Factory]:
    made: list[HaloProvider] = []

    def factory(
        timeout: float = 5.0,
        *,
        resolution_outcome_id: int | None = RESOLUTION_OUTCOME_ID,
        escalation_outcome_id: int | None = PRIVATE_NOTE_OUTCOME_ID,
        notify_customer_on_resolve: bool = True,
        clock: Callable[[], float] = time.monotonic,
        **overrides: str | None,
    ) -> HaloProvider:
        provider = HaloProvider(
            connection(sim, **overrides),
            timeout=timeout,
            resolution_outcome_id=resolution_outcome_id,
            escalation_outcome_id=escalation_outcome_id,
            notify_customer_on_resolve=notify_customer_on_resolve,
            clock=clock,
        )
        made.append(provider)
        return provider

    yield factory
    for provider in made:
        provider.close()


@pytest.fixture
def halo(make: Factory) -> HaloProvider:
    return make()


def calls(sim: HaloSimulator) -> list[tuple[str, str, int]]:
    """(method, path, status) of every recorded request."""
    return [(r.method, r.path, r.status) for r in sim.requests]


def action_posts(sim: HaloSimulator) -> list[list[dict[str, Any]]]:
    return [r.body for r in sim.requests if (r.method, r.path) == ("POST", "/api/Actions")]


# --- connection, token, headers --------------------------------------------------------------------


def test_provider_satisfies_the_protocol(halo: HaloProvider) -> None:
    provider: PSAProvider = halo
    assert provider.name == "halopsa"
    assert reset_caches in resets.registered()


def test_connection_refuses_missing_fields_without_values(sim: HaloSimulator) -> None:
    with pytest.raises(ValueError) as missing:
        HaloConnection(base_url=sim.base_url, client_id="", client_secret=" ")
    assert str(missing.value) == "HaloPSA connection is missing: client_id, client_secret"
    conn = connection(sim, tenant="acme")
    assert CLIENT_SECRET not in repr(conn) and "acme" in repr(conn)
    assert HaloConnection("acme.halopsa.com/api/", "c", "s").root_url == "https://acme.halopsa.com"


def test_token_request_is_a_client_credentials_form(sim: HaloSimulator, halo: HaloProvider) -> None:
    halo.fetch_ticket("1001")
    token_req, ticket_req = sim.requests[0], sim.requests[1]
    assert (token_req.method, token_req.path, token_req.query) == ("POST", "/auth/token", {})
    assert token_req.headers["content-type"] == "application/x-www-form-urlencoded"
    assert token_req.body == {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scope": "all",
    }
    (token,) = sim.issued_tokens
    assert (ticket_req.method, ticket_req.path, ticket_req.query) == (
        "GET",
        "/api/Tickets/1001",
        {"includedetails": "true"},
    )
    assert ticket_req.headers["authorization"] == f"Bearer {token}"
    assert ticket_req.headers["content-type"] == "application/json"
    assert ticket_req.headers["accept"] == "application/json"


def test_token_is_fetched_once_and_reused_across_calls_and_providers(sim: HaloSimulator, make: Factory) -> None:
    first = make()
    first.fetch_ticket("1001")
    first.fetch_ticket("1002")
    make().fetch_ticket("1003")  # the next Lambda invocation: same tenant, same cached token
    assert sim.tokens_issued == 1
    assert [c for c in calls(sim) if c[1] == "/auth/token"] == [("POST", "/auth/token", 200)]
    make(client_id=CLIENT_ID, base_url=sim.base_url + "/").fetch_ticket("1001")  # same tenant spelled differently
    assert sim.tokens_issued == 1
    reset_caches()
    make().fetch_ticket("1001")
    assert sim.tokens_issued == 2


def test_token_is_refreshed_shortly_before_it_expires(sim: HaloSimulator, make: Factory) -> None:
    clock = Clock()
    halo = make(clock=clock)
    halo.fetch_ticket("1001")
    clock.now += 3600 - 61  # still more than a minute left
    halo.fetch_ticket("1001")
    assert sim.tokens_issued == 1
    clock.now += 2  # within the last minute: fetch a new one before Halo refuses the old
    halo.fetch_ticket("1001")
    assert sim.tokens_issued == 2
    assert all(status != 401 for _, _, status in calls(sim))


def test_a_short_lived_token_is_not_reused(make: Factory) -> None:
    with HaloSimulator(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, token_ttl=1, clock=lambda: 0.0) as short:
        short.seed_demo()
        halo = make(base_url=short.base_url)
        halo.fetch_ticket("1001")
        halo.fetch_ticket("1002")
        api_calls = [r for r in short.requests if r.path.startswith("/api/")]
        assert len(api_calls) == 3  # two tickets, one status list
        assert short.tokens_issued == 3  # reusable for half a second: not worth caching, one token per call


def test_an_expired_token_is_refreshed_once_and_the_call_succeeds(sim: HaloSimulator, halo: HaloProvider) -> None:
    halo.fetch_ticket("1001")
    halo.check_note_settings(NoteKind.internal_analysis)  # the outcome list is cached from here on
    sim.expire_tokens()
    sim.clear_requests()
    note = halo.post_note("1001", "after expiry", NoteKind.internal_analysis)
    assert note.internal_analysis is True
    assert calls(sim) == [
        ("POST", "/api/Actions", 401),
        ("POST", "/auth/token", 200),
        ("POST", "/api/Actions", 200),
    ]
    assert sim.tokens_issued == 2 and len(sim.notes(1001)) == 1
    assert sim.requests[2].headers["authorization"] == f"Bearer {sim.issued_tokens[1]}"
    halo.fetch_ticket("1001")
    assert sim.tokens_issued == 2  # the new token is cached


def test_expire_token_next_exercises_the_refresh_once_path(sim: HaloSimulator, halo: HaloProvider) -> None:
    sim.set_faults(1001, expire_token_next=1)
    assert halo.fetch_ticket("1001").id == "1001"
    assert sim.tokens_issued == 2


def test_a_second_401_is_an_auth_error(sim: HaloSimulator, halo: HaloProvider) -> None:
    sim.set_faults(1001, expire_token_next=2)
    with pytest.raises(PSAAuthError) as err:
        halo.fetch_ticket("1001")
    assert isinstance(err.value, BadGateway)
    assert err.value.status == 502 and err.value.code == "psa_auth_failed"
    assert err.value.details["psa_status"] == 401
    assert "also after fetching a new one" in err.value.message
    assert sim.tokens_issued == 2
    assert [c[1] for c in calls(sim)] == ["/auth/token", "/api/Tickets/1001", "/auth/token", "/api/Tickets/1001"]


def test_auth_fail_is_an_auth_error_after_one_refresh(sim: HaloSimulator, halo: HaloProvider) -> None:
    sim.set_faults(1001, auth_fail=True)
    with pytest.raises(PSAAuthError):
        halo.post_note("1001", "x", NoteKind.resolution)
    assert sim.tokens_issued == 2 and sim.notes(1001) == []


@pytest.mark.parametrize(
    "overrides",
    [{"client_secret": "haloSECRET-wrong-0000"}, {"client_id": "someone-else"}],
    ids=["secret", "client-id"],
)
def test_rejected_client_credentials_are_an_auth_error(
    sim: HaloSimulator, make: Factory, overrides: dict[str, str]
) -> None:
    with pytest.raises(PSAAuthError) as err:
        make(**overrides).fetch_ticket("1001")
    assert "invalid_client" in err.value.message and err.value.details["psa_status"] == 401
    assert "haloSECRET" not in err.value.message and "haloSECRET" not in repr(err.value)
    assert [c[1] for c in calls(sim)] == ["/auth/token"]


def test_revoked_credentials_are_an_auth_error(sim: HaloSimulator, halo: HaloProvider) -> None:
    halo.fetch_ticket("1001")
    sim.revoke_credentials()
    with pytest.raises(PSAAuthError) as err:
        halo.fetch_ticket("1001")
    assert "client credentials" in err.value.message  # the refresh was refused too


def test_tenant_is_sent_to_the_token_endpoint(make: Factory) -> None:
    with HaloSimulator(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, tenant="acme") as tenanted:
        tenanted.seed_demo()
        assert make(base_url=tenanted.base_url, tenant="acme").fetch_ticket("1001").id == "1001"
        assert tenanted.requests[0].query == {"tenant": "acme"}
        reset_caches()
        with pytest.raises(PSAAuthError):
            make(base_url=tenanted.base_url, tenant="other").fetch_ticket("1001")
        with pytest.raises(PSAAuthError):
            make(base_url=tenanted.base_url).fetch_ticket("1001")


def test_a_base_url_that_is_not_halo_is_misconfiguration(sim: HaloSimulator, make: Factory) -> None:
    with pytest.raises(PSAError) as err:
        make(base_url=sim.base_url + "/halo").fetch_ticket("1001")
    assert err.value.code == "psa_misconfigured"
    assert f"{sim.base_url}/halo/auth/token" in err.value.message
    assert make(base_url=sim.base_url + "/api").fetch_ticket("1001").id == "1001"  # a pasted API URL works


def test_injected_client_is_used_and_not_closed(sim: HaloSimulator) -> None:
    with httpx.Client() as client:
        provider = provider_for(connection(sim), http=client, resolution_outcome_id=RESOLUTION_OUTCOME_ID)
        assert provider.fetch_ticket("1002").status.name == "In Progress"
        provider.close()
        assert not client.is_closed
        assert client.get(sim.base_url + "/__simulator/tickets/1001").status_code == 200


def test_outcome_preferences_must_be_positive_ids(sim: HaloSimulator) -> None:
    for bad in (0, -3, True):
        with pytest.raises(ValueError) as err:
            HaloProvider(connection(sim), escalation_outcome_id=bad)
        assert "halo_escalation_outcome_id" in str(err.value)


# --- tickets and statuses --------------------------------------------------------------------------


def test_fetch_ticket_maps_halo_fields(sim: HaloSimulator, halo: HaloProvider) -> None:
    ticket = halo.fetch_ticket("1005")
    assert (ticket.id, ticket.board_id, ticket.board_name) == ("1005", 2, "Service Request")
    assert ticket.status == StatusRef(22, "Awaiting Approval")
    assert ticket.summary == "Firewall firmware bug" and ticket.closed is False
    assert ticket.record_type == "ServiceTicket"
    assert ("GET", "/api/Status", 200) in calls(sim)
    assert next(r for r in sim.requests if r.path == "/api/Status").query == {"tickettype_id": "2"}


def test_unknown_ticket_is_ticket_not_found(halo: HaloProvider) -> None:
    with pytest.raises(PSATicketNotFound) as err:
        halo.fetch_ticket("9999")
    assert err.value.status == 422 and "9999" in err.value.message


@pytest.mark.parametrize("bad", ["../Status", "12a", "", "1/Actions"])
def test_non_numeric_ids_never_reach_the_wire(sim: HaloSimulator, halo: HaloProvider, bad: str) -> None:
    with pytest.raises(PSATicketNotFound):
        halo.fetch_ticket(bad)
    with pytest.raises(PSANoteNotFound):
        halo.get_note("1001", bad)
    assert sim.requests == []


def test_check_target_status_accepts_a_status_of_the_ticket_type(halo: HaloProvider) -> None:
    ticket = halo.fetch_ticket("1001")
    assert halo.check_target_status(ticket, CLOSED_STATUS_ID) == BoardStatus(
        9, "Closed", 1, inactive=False, closed=True
    )
    escalated = halo.check_target_status(ticket, ESCALATED_STATUS_ID)
    assert (escalated.name, escalated.closed) == ("Escalated - Tier 2", False)


@pytest.mark.parametrize("status_id", [22, HIDDEN_STATUS_ID, 999])
def test_check_target_status_refuses_and_names_the_valid_statuses(
    sim: HaloSimulator, halo: HaloProvider, status_id: int
) -> None:
    ticket = halo.fetch_ticket("1001")
    with pytest.raises(PSAStatusNotOnBoard) as err:
        halo.check_target_status(ticket, status_id)
    details = err.value.details
    assert (details["board_id"], details["board_name"], details["requested_status_id"]) == (1, "Incident", status_id)
    assert details["valid_statuses"] == [
        {"id": 1, "name": "New"},
        {"id": 2, "name": "In Progress"},
        {"id": 3, "name": "Waiting on User"},
        {"id": 9, "name": "Closed"},
        {"id": 21, "name": "Escalated - Tier 2"},
    ]
    assert "Escalated - Tier 2 (21)" in err.value.message
    assert err.value.status == 422 and err.value.code == "psa_status_not_on_board"
    assert not any(r.method == "POST" and r.path.startswith("/api/") for r in sim.requests)  # nothing written


def test_statuses_are_cached_per_ticket_type_with_one_refresh(sim: HaloSimulator, make: Factory) -> None:
    halo = make()
    ticket = halo.fetch_ticket("1001")
    sim.clear_requests()
    halo.check_target_status(ticket, 2)
    make().check_target_status(ticket, 9)  # another provider, same tenant: same cache
    assert sim.requests == []
    sim.add_status(40, "Escalated - Vendor")
    sim.add_ticket_type(1, "Incident", [1, 2, 3, 9, 21, 40])
    assert halo.check_target_status(ticket, 40).name == "Escalated - Vendor"
    assert [(r.path, r.query) for r in sim.requests] == [("/api/Status", {"tickettype_id": "1"})]


def test_change_status_posts_an_array_to_tickets(sim: HaloSimulator, halo: HaloProvider) -> None:
    halo.fetch_ticket("1001")
    sim.clear_requests()
    assert halo.change_status("1001", CLOSED_STATUS_ID) is None
    (req,) = sim.requests
    assert (req.method, req.path, req.status) == ("POST", "/api/Tickets", 200)
    assert req.body == [{"id": 1001, "status_id": 9}]
    after = halo.fetch_ticket("1001")
    assert after.status == StatusRef(9, "Closed") and after.closed is True


def test_status_of_another_ticket_type_surfaces_halos_400(sim: HaloSimulator, halo: HaloProvider) -> None:
    with pytest.raises(PSAValidationError) as err:
        halo.change_status("1001", 22)
    assert "Status 22 is not valid for Ticket Type 'Incident'" in err.value.message
    assert err.value.status == 422 and err.value.code == "psa_validation_failed"
    assert err.value.details["psa_errors"] == [
        {"code": "System.Exception", "message": "Status 22 is not valid for Ticket Type 'Incident'", "field": None}
    ]
    assert sim.status_id(1001) == 2


@pytest.mark.parametrize("bad", [0, -1, True])
def test_change_status_rejects_non_ids_locally(sim: HaloSimulator, halo: HaloProvider, bad: int) -> None:
    with pytest.raises(PSAValidationError):
        halo.change_status("1001", bad)
    assert sim.requests == []


def test_ignored_status_change_answers_200_but_a_refetch_shows_the_old_status(
    sim: HaloSimulator, halo: HaloProvider
) -> None:
    halo.change_status("1003", CLOSED_STATUS_ID)  # seeded with ignore_status_change
    assert sim.requests[-1].status == 200
    assert halo.fetch_ticket("1003").status == StatusRef(1, "New")


def test_workflow_revert_immediately(sim: HaloSimulator, halo: HaloProvider) -> None:
    sim.set_faults(1001, revert_status_after=0)
    halo.change_status("1001", CLOSED_STATUS_ID)
    after = halo.fetch_ticket("1001")
    assert after.status.id == 2 and after.closed is False


# --- notes -----------------------------------------------------------------------------------------


def test_resolution_note_is_visible_and_emails_the_user(sim: HaloSimulator, halo: HaloProvider) -> None:
    marker = note_marker("wb-res-1")
    text = with_marker("Reinstalled the VPN client.", marker)
    note = halo.post_note("1001", text, NoteKind.resolution)
    assert action_posts(sim) == [
        [
            {
                "ticket_id": 1001,
                "outcome_id": RESOLUTION_OUTCOME_ID,
                "note_html": to_note_html(text),
                "hiddenfromuser": False,
                "sendemail": True,
            }
        ]
    ]
    assert (note.customer_visible, note.internal_analysis, note.flags) == (True, False, {"hiddenfromuser": False})
    (stored,) = sim.notes(1001)
    assert note.id == str(stored["id"]) and note.ticket_id == "1001"
    assert same_text(note.text, text) and same_text(sim.note_views(1001)[0].text, text)
    assert sim.emails_sent == [{"ticket_id": 1001, "action_id": stored["id"]}]
    assert halo.visibility_matches(note, NoteKind.resolution) is True
    assert halo.visibility_matches(note, NoteKind.internal_analysis) is False


def test_resolution_without_notifying_sends_sendemail_false(sim: HaloSimulator, make: Factory) -> None:
    halo = make(notify_customer_on_resolve=False)
    halo.post_note("1001", "Fixed quietly.", NoteKind.resolution)
    ((action,),) = action_posts(sim)
    # Explicitly false: outcome 12 would email the end user if the flag were left out.
    assert (action["outcome_id"], action["hiddenfromuser"], action["sendemail"]) == (12, False, False)
    assert sim.emails_sent == []


def test_internal_note_is_hidden_and_never_emails(sim: HaloSimulator, halo: HaloProvider) -> None:
    note = halo.post_note("1002", "Needs tier 2: mailbox locked.", NoteKind.internal_analysis)
    ((action,),) = action_posts(sim)
    assert action == {
        "ticket_id": 1002,
        "outcome_id": PRIVATE_NOTE_OUTCOME_ID,
        "note_html": "<p>Needs tier 2: mailbox locked.</p>",
        "hiddenfromuser": True,
        "sendemail": False,
    }
    assert note.internal_analysis is True and note.customer_visible is False
    assert halo.visibility_matches(note, NoteKind.internal_analysis) is True
    assert sim.emails_sent == []
    assert [v.customer_visible for v in sim.note_views(1002)] == [False]


def test_every_action_body_carries_outcome_and_both_flags_and_never_a_status(sim: HaloSimulator, make: Factory) -> None:
    for notify in (True, False):
        halo = make(notify_customer_on_resolve=notify)
        ticket = halo.fetch_ticket("1001")
        halo.check_target_status(ticket, CLOSED_STATUS_ID)
        resolution = halo.post_note("1001", "fixed", NoteKind.resolution)
        internal = halo.post_note("1001", "internal", NoteKind.internal_analysis)
        halo.update_note("1001", resolution.id, kind=NoteKind.resolution, text="fixed, amended")
        halo.update_note("1001", internal.id, kind=NoteKind.internal_analysis)
        halo.change_status("1001", CLOSED_STATUS_ID)
    actions = [action for body in action_posts(sim) for action in body]
    assert len(actions) == 8
    for action in actions:
        assert {"ticket_id", "outcome_id", "hiddenfromuser", "sendemail"} <= set(action)
        assert isinstance(action["hiddenfromuser"], bool) and isinstance(action["sendemail"], bool)
        assert not {"status_id", "new_status", "new_status_id"} & set(action)
    updates = [a for a in actions if "id" in a]
    assert len(updates) == 4 and all(a["sendemail"] is False for a in updates)  # an update never emails
    status_posts = [r.body for r in sim.requests if r.path == "/api/Tickets"]
    assert status_posts == [[{"id": 1001, "status_id": 9}]] * 2


@pytest.mark.parametrize(
    ("kind", "preference"),
    [(NoteKind.resolution, "halo_resolution_outcome_id"), (NoteKind.internal_analysis, "halo_escalation_outcome_id")],
)
def test_missing_outcome_preference_is_not_configured_and_posts_nothing(
    sim: HaloSimulator, make: Factory, kind: NoteKind, preference: str
) -> None:
    halo = make(resolution_outcome_id=None, escalation_outcome_id=None)
    for attempt in (lambda: halo.check_note_settings(kind), lambda: halo.post_note("1001", "x", kind)):
        with pytest.raises(PSANotConfigured) as err:
            attempt()
        assert err.value.status == 422 and err.value.code == "psa_not_configured"
        assert preference in err.value.message and "Nothing was posted" in err.value.message
        assert err.value.details == {"preference": preference}
    assert sim.requests == []


def test_an_outcome_halo_does_not_have_is_not_configured(sim: HaloSimulator, make: Factory) -> None:
    halo = make(resolution_outcome_id=99)
    with pytest.raises(PSANotConfigured) as err:
        halo.post_note("1001", "x", NoteKind.resolution)
    assert "halo_resolution_outcome_id" in err.value.message and "no outcome 99" in err.value.message
    assert "Private Note (7)" in err.value.message
    assert action_posts(sim) == [] and sim.notes(1001) == []
    halo.check_note_settings(NoteKind.internal_analysis)  # 7 exists; the outcome list is cached
    assert [r.path for r in sim.requests].count("/api/Outcome") == 1


def test_an_outcome_the_agent_may_not_use_is_a_422_naming_the_setting(sim: HaloSimulator, make: Factory) -> None:
    """Not rejected credentials (a 502 psa_auth_failed said so): a setting to change, and nothing was posted."""
    halo = make(resolution_outcome_id=RESTRICTED_OUTCOME_ID)
    with pytest.raises(PSANotConfigured) as err:
        halo.post_note("1001", "x", NoteKind.resolution)
    assert (err.value.status, err.value.code) == (422, "psa_not_configured")
    assert "You do not have access to this Action at the moment" in err.value.message
    assert f"outcome {RESTRICTED_OUTCOME_ID} (halo_resolution_outcome_id)" in err.value.message
    assert err.value.details == {"psa_status": 400, "preference": "halo_resolution_outcome_id"}
    assert sim.notes(1001) == []


def test_get_note_reads_the_action_back(sim: HaloSimulator, halo: HaloProvider) -> None:
    posted = halo.post_note("1002", "escalating", NoteKind.internal_analysis)
    sim.clear_requests()
    note = halo.get_note("1002", posted.id)
    assert note == posted
    (req,) = sim.requests
    assert (req.path, req.query) == (f"/api/Actions/{posted.id}", {"ticket_id": "1002", "includehtmlnote": "true"})


def test_a_missing_action_or_ticket_reads_as_note_not_found(halo: HaloProvider) -> None:
    for ticket_id in ("1001", "9999"):
        with pytest.raises(PSANoteNotFound) as err:
            halo.get_note(ticket_id, "424242")
        assert err.value.status == 502 and err.value.details["note_id"] == "424242"
    with pytest.raises(PSANoteNotFound):
        halo.update_note("1001", "424242", kind=NoteKind.resolution, text="x")


def test_note_forced_visible_is_repaired_by_an_update(sim: HaloSimulator, halo: HaloProvider) -> None:
    sim.set_faults(1002, force_note_visibility="customer")
    note = halo.post_note("1002", "internal only", NoteKind.internal_analysis)
    assert note.customer_visible is True and note.flags == {"hiddenfromuser": False}
    assert halo.visibility_matches(note, NoteKind.internal_analysis) is False
    sim.clear_requests()
    halo.update_note("1002", note.id, kind=NoteKind.internal_analysis, text="internal, amended")
    assert action_posts(sim) == [
        [
            {
                "id": int(note.id),
                "ticket_id": 1002,
                "hiddenfromuser": True,
                "sendemail": False,
                "outcome_id": PRIVATE_NOTE_OUTCOME_ID,
                "note_html": "<p>internal, amended</p>",
            }
        ]
    ]
    after = halo.get_note("1002", note.id)
    assert after.text == "internal, amended" and halo.visibility_matches(after, NoteKind.internal_analysis)
    assert len(sim.notes(1002)) == 1


def test_sticky_forced_visibility_survives_the_update(sim: HaloSimulator, halo: HaloProvider) -> None:
    sim.set_faults(1002, force_note_visibility="customer", force_note_visibility_sticky=True)
    note = halo.post_note("1002", "internal only", NoteKind.internal_analysis)
    halo.update_note("1002", note.id, kind=NoteKind.internal_analysis)
    assert halo.visibility_matches(halo.get_note("1002", note.id), NoteKind.internal_analysis) is False


def test_forced_internal_on_a_resolution_does_not_match(sim: HaloSimulator, halo: HaloProvider) -> None:
    sim.set_faults(1001, force_note_visibility="internal")
    note = halo.post_note("1001", "fixed", NoteKind.resolution)
    assert note.internal_analysis is True and halo.visibility_matches(note, NoteKind.resolution) is False


def test_resolution_forced_internal_is_repaired_visible_without_an_email(
    sim: HaloSimulator, halo: HaloProvider
) -> None:
    sim.set_faults(1001, force_note_visibility="internal")
    note = halo.post_note("1001", "fixed", NoteKind.resolution)
    sim.set_faults(1001, force_note_visibility=None)
    emails = len(sim.emails_sent)
    sim.clear_requests()
    halo.update_note("1001", note.id, kind=NoteKind.resolution)
    assert action_posts(sim) == [
        [
            {
                "id": int(note.id),
                "ticket_id": 1001,
                "hiddenfromuser": False,
                "sendemail": False,
                "outcome_id": RESOLUTION_OUTCOME_ID,
            }
        ]
    ]
    after = halo.get_note("1001", note.id)
    assert halo.visibility_matches(after, NoteKind.resolution) and after.text == "fixed"
    assert len(sim.emails_sent) == emails


def test_ignored_note_update_leaves_the_text(sim: HaloSimulator, halo: HaloProvider) -> None:
    note = halo.post_note("1001", "first text", NoteKind.resolution)
    sim.set_faults(1001, ignore_note_update=True)
    halo.update_note("1001", note.id, kind=NoteKind.resolution, text="second text")  # Halo said 200
    assert halo.get_note("1001", note.id).text == "first text"
    assert len(sim.emails_sent) == 1  # the create emailed; the update did not


def test_find_note_by_marker(sim: HaloSimulator, halo: HaloProvider) -> None:
    marker = note_marker("wb-find")
    for i in range(3):
        sim.add_person_note(1006, f"note {i}", customer_visible=i == 1)
    sim.add_person_note(1006, with_marker("ours", marker), customer_visible=False)
    sim.add_person_note(1006, with_marker("someone else's", note_marker("wb-find-2")), customer_visible=True)
    sim.clear_requests()
    found = halo.find_note_by_marker("1006", marker)
    assert found is not None and found.text.startswith("ours\n") and found.internal_analysis is True
    (req,) = [r for r in sim.requests if r.path.startswith("/api/")]
    assert (req.path, req.query) == (
        "/api/Actions",
        {"ticket_id": "1006", "excludesys": "true", "includehtmlnote": "true", "count": "50"},
    )
    assert halo.find_note_by_marker("1006", note_marker("wb-fin")) is None  # whole markers only
    assert halo.find_note_by_marker("1001", marker) is None


# --- failures --------------------------------------------------------------------------------------


def test_429_is_rate_limited_with_halos_retry_after(sim: HaloSimulator, halo: HaloProvider) -> None:
    sim.set_faults(1001, rate_limit_next=1, retry_after=7)
    with pytest.raises(PSARateLimited) as err:
        halo.fetch_ticket("1001")
    assert isinstance(err.value, PSATransientError) and isinstance(err.value, UpstreamUnavailable)
    assert err.value.retry_after == 7 and err.value.status == 503 and err.value.code == "psa_rate_limited"
    assert "Rate Limit Reached - 300 Requests per rolling 5 minute window" in err.value.message


def test_429_without_retry_after_waits_for_the_window(sim: HaloSimulator, halo: HaloProvider) -> None:
    sim.set_faults(1001, rate_limit_next=1, retry_after=0)
    with pytest.raises(PSARateLimited) as err:
        halo.post_note("1001", "x", NoteKind.resolution)
    assert err.value.retry_after == 30 and err.value.headers() == {"Retry-After": "30"}
    assert sim.notes(1001) == []


def test_500_is_transient_and_a_write_may_have_applied(sim: HaloSimulator, halo: HaloProvider) -> None:
    sim.set_faults(1001, fail_next=1)
    with pytest.raises(PSATransientError) as err:
        halo.change_status("1001", CLOSED_STATUS_ID)
    assert not isinstance(err.value, PSARateLimited)
    assert err.value.status == 503 and err.value.code == "psa_unavailable"
    assert err.value.details == {"psa_status": 500, "may_have_applied": True}
    assert "Object reference not set to an instance of an object." in err.value.message


def test_dropped_connection_after_commit_is_transient_and_the_marker_finds_the_one_note(
    sim: HaloSimulator, halo: HaloProvider
) -> None:
    marker = note_marker("wb-drop")
    sim.set_faults(1001, drop_after_commit_next=1)
    with pytest.raises(PSATransientError) as err:
        halo.post_note("1001", with_marker("Resolved.", marker), NoteKind.resolution)
    assert err.value.details["may_have_applied"] is True
    (stored,) = sim.notes(1001)
    found = halo.find_note_by_marker("1001", marker)  # what a retry does before posting again
    assert found is not None and found.id == str(stored["id"]) and found.customer_visible is True
    assert len(sim.notes(1001)) == 1


def test_slow_answer_past_the_timeout_is_transient(sim: HaloSimulator, make: Factory) -> None:
    halo = make(timeout=0.5)
    halo.board_statuses(1)  # token and statuses first: only the slow ticket call may time out
    sim.set_faults(1001, latency=60.0)
    started = time.monotonic()
    with pytest.raises(PSATransientError) as err:
        halo.fetch_ticket("1001")
    assert time.monotonic() - started < 30
    assert "did not answer within 0.5s" in err.value.message


def test_connection_refused_is_transient(sim: HaloSimulator) -> None:
    conn = connection(sim)
    sim.stop()
    with HaloProvider(conn, timeout=1) as halo, pytest.raises(PSATransientError):
        halo.fetch_ticket("1001")


def test_no_error_message_or_repr_carries_the_secret_or_a_token(sim: HaloSimulator, make: Factory) -> None:
    halo = make(timeout=2.0)
    sim.set_faults(1001, rate_limit_next=1, fail_next=1, drop_after_commit_next=1)
    sim.set_faults(1004, latency=60.0)
    sim.set_faults(1005, expire_token_next=2)
    attempts: list[Callable[[], object]] = [
        lambda: halo.fetch_ticket("1001"),  # 429
        lambda: halo.fetch_ticket("1001"),  # 500
        lambda: halo.post_note("1001", "x", NoteKind.resolution),  # dropped
        lambda: halo.fetch_ticket("1004"),  # timeout
        lambda: halo.fetch_ticket("9999"),  # 404
        lambda: halo.change_status("1001", 22),  # 400
        lambda: halo.check_target_status(halo.fetch_ticket("1001"), 22),  # not a status of the type
        lambda: halo.get_note("1002", "424242"),  # action not found
        lambda: halo.fetch_ticket("1005"),  # 401 twice
        lambda: make(resolution_outcome_id=RESTRICTED_OUTCOME_ID).post_note("1001", "x", NoteKind.resolution),
        lambda: make(resolution_outcome_id=None).post_note("1001", "x", NoteKind.resolution),
        lambda: make(client_secret="haloSECRET-wrong-1111").fetch_ticket("1001"),  # token refused
    ]
    seen: list[type[PSAError]] = []
    errors: list[PSAError] = []
    for attempt in attempts:
        with pytest.raises(PSAError) as err:
            attempt()
        seen.append(type(err.value))
        errors.append(err.value)
    assert seen == [
        PSARateLimited,
        PSATransientError,
        PSATransientError,
        PSATransientError,
        PSATicketNotFound,
        PSAValidationError,
        PSAStatusNotOnBoard,
        PSANoteNotFound,
        PSAAuthError,
        PSANotConfigured,  # an outcome the agent may not use: a setting to change
        PSANotConfigured,
        PSAAuthError,
    ]
    watched = [CLIENT_SECRET, "haloSECRET", *sim.issued_tokens]
    assert len(sim.issued_tokens) >= 3
    for error in errors:
        copy = pickle.loads(pickle.dumps(error))
        for text in (
            str(error),
            repr(error),
            json.dumps(error.body()),
            str(error.__cause__),
            str(error.__context__),
            str(copy),
            json.dumps(copy.details),
        ):
            for secret in watched:
                assert secret not in text
    for text in (repr(halo), str(halo), repr(connection(sim))):
        for secret in watched:
            assert secret not in text


# --- note_html round trip ----------------------------------------------------------------------------

HOSTILE = [
    "plain",
    "<script>alert('x')</script>",
    "AT&amp;T &lt;b&gt; & <b>bold</b> &copy; &#39;",
    "quotes \" and ' and `back`",
    "unicode: é ü 中文 🚀 \u00a0nbsp \u200b zero-width",
    "para one\n\npara two\n\n\nthree blank lines above\n",
    "  leading spaces\n\ttab\nline<br>literal</p><p>",
    "trailing spaces   \nCRLF\r\nline\rCR",
    with_marker("# Heading\n- item *one*\n- item `two`\n\n> quote", note_marker("wb-html_1")),
    "",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_note_html_round_trip(text: str) -> None:
    written = to_note_html(text)
    assert written.startswith("<p>") and written.endswith("</p>")
    assert "<script>" not in written and "\n" not in written
    assert same_text(from_note_html(written), text)


@pytest.mark.parametrize("text", HOSTILE[:-1])
def test_note_html_round_trip_through_halo(sim: HaloSimulator, halo: HaloProvider, text: str) -> None:
    posted = halo.post_note("1006", text, NoteKind.internal_analysis)
    assert same_text(posted.text, text)
    assert same_text(halo.get_note("1006", posted.id).text, text)
    assert same_text(sim.note_views(1006)[0].text, text)  # Halo's own plain `note` agrees


@pytest.mark.parametrize(
    ("shown", "text"),
    [
        ("<p>a<br />b</p>", "a\nb"),
        ("<p>a</p><p>b</p>", "a\n\nb"),
        ("<div>a</div>\n<div>b &amp; c</div>", "a\nb & c"),
        ("<p>\n  a<BR>b\n</p>", "a\nb"),
        ("<p>\n    a\n    b<br>\n    c\n</p>", "a b\nc"),  # a line break between words renders as a space
        ("<p><span style='x'>ref:fp-wb</span></p>", "ref:fp-wb"),
    ],
)
def test_reading_html_halo_may_have_normalised(shown: str, text: str) -> None:
    assert same_text(from_note_html(shown), text)


# --- wire shapes the simulator does not produce -------------------------------------------------------


def mocked(handler: Callable[[httpx.Request], httpx.Response], **kw: Any) -> HaloProvider:
    def with_token(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/token":
            return httpx.Response(
                200, json={"access_token": "tok-abcdef123456", "token_type": "Bearer", "expires_in": 3600}
            )
        return handler(request)

    conn = HaloConnection(base_url="https://acme.halopsa.test", client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    kw.setdefault("resolution_outcome_id", 12)
    kw.setdefault("escalation_outcome_id", 7)
    return HaloProvider(conn, http=httpx.Client(transport=httpx.MockTransport(with_token)), **kw)


@pytest.mark.parametrize(
    ("response", "expected", "message"),
    [
        (
            httpx.Response(400, json={"ClassName": "System.Exception", "Message": "Bad thing"}),
            PSAValidationError,
            "Bad thing",
        ),
        (
            httpx.Response(400, json={"resultCode": 1, "errorMessage": "Result says no"}),
            PSAValidationError,
            "Result says no",
        ),
        (httpx.Response(400, json={"Message": "Only a message"}), PSAValidationError, "Only a message"),
        (
            httpx.Response(400, json={"error": "invalid_request", "error_description": "why"}),
            PSAValidationError,
            "invalid_request: why",
        ),
        (httpx.Response(400, text="plain words"), PSAValidationError, "plain words"),
        (httpx.Response(403, json={"Message": "Forbidden"}), PSAAuthError, "lacks the permission"),
        (
            httpx.Response(403, json={"Message": "You do not have access to this Action at the moment"}),
            PSAAuthError,
            "may not use that outcome",
        ),
        (httpx.Response(502, text="<html>Bad Gateway</html>"), PSATransientError, "HTTP 502"),
        (
            httpx.Response(404, text="<html>not here</html>", headers={"Content-Type": "text/html"}),
            PSAError,
            "web page",
        ),
        (httpx.Response(302, headers={"Location": "https://login.example.test/"}), PSAError, "HTTP 302"),
        (httpx.Response(200, text="<html>login</html>"), PSAError, "without a JSON object"),
        (httpx.Response(200, json=[]), PSAError, "without a JSON object"),
        (httpx.Response(200, json={"id": 1, "status_id": 2}), PSAError, "tickettype_id"),
    ],
)
def test_odd_answers_map_to_psa_errors(response: httpx.Response, expected: type[PSAError], message: str) -> None:
    with pytest.raises(expected) as err:
        mocked(lambda request: response).fetch_ticket("1")
    assert message in err.value.message
    if response.status_code == 404:
        assert err.value.code == "psa_misconfigured"


def test_ticket_without_a_type_name_and_unlisted_status() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/Status":
            return httpx.Response(200, json={"statuses": [{"id": 1, "name": "New"}]})  # an envelope this time
        return httpx.Response(200, json={"id": 5, "tickettype_id": 3, "status_id": 8, "status_name": "Parked"})

    ticket = mocked(handler).fetch_ticket("5")
    assert (ticket.board_name, ticket.status) == ("ticket type 3", StatusRef(8, "Parked"))


def test_statuses_flagged_inactive_are_inactive() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=[{"id": 1, "name": "New"}, {"id": 4, "name": "Old", "inactive": True}])

    halo = mocked(handler)
    assert [s.inactive for s in halo.board_statuses(1)] == [False, True]


def test_a_created_action_may_come_back_as_an_array_and_with_only_a_plain_note() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/Outcome":
            return httpx.Response(200, json=[{"id": 12, "outcome": "Resolution"}, {"id": 7, "outcome": "Private"}])
        return httpx.Response(
            200, json=[{"id": 44, "ticket_id": 1, "note": "plain text only", "hiddenfromuser": False}]
        )

    note = mocked(handler).post_note("1", "plain text only", NoteKind.resolution)
    assert (note.id, note.text, note.customer_visible) == ("44", "plain text only", True)


def test_an_action_of_another_ticket_is_not_found() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"id": 44, "ticket_id": 2, "note": "x", "hiddenfromuser": True})

    with pytest.raises(PSANoteNotFound):
        mocked(handler).get_note("1", "44")


def test_outcome_list_the_agent_may_not_read_does_not_block_the_post() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/Outcome":
            return httpx.Response(403, json={"Message": "Forbidden"})
        return httpx.Response(200, json={"id": 3, "ticket_id": 1, "note_html": "<p>x</p>", "hiddenfromuser": True})

    note = mocked(handler).post_note("1", "x", NoteKind.internal_analysis)
    assert note.internal_analysis is True


def test_token_answers_without_a_token_are_bad_responses() -> None:
    conn = HaloConnection(base_url="https://acme.halopsa.test", client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    for answer in (
        httpx.Response(200, text="<html>sign in</html>"),
        httpx.Response(200, json={"token_type": "Bearer"}),
        httpx.Response(200, json={"access_token": "tok-x", "token_type": "MAC"}),
    ):
        client = httpx.Client(transport=httpx.MockTransport(lambda request, answer=answer: answer))
        with pytest.raises(PSAError) as err, HaloProvider(conn, http=client) as halo:
            halo.fetch_ticket("1")
        assert err.value.code == "psa_bad_response"


def test_halo_text_echoing_the_token_or_secret_is_scrubbed() -> None:
    echoed = f"Bad token tok-abcdef123456 for secret {CLIENT_SECRET}"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"ClassName": "System.Exception", "Message": echoed})

    with pytest.raises(PSAValidationError) as err:
        mocked(handler).fetch_ticket("1")
    text = err.value.message + json.dumps(err.value.details)
    assert "Bad token *** for secret ***" in err.value.message
    assert "tok-abcdef123456" not in text and CLIENT_SECRET not in text
