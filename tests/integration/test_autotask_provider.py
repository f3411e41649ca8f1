"""The real Autotask provider against the real Autotask simulator over loopback HTTP (zone discovery included),
plus the wire shapes the simulator does not produce, through httpx's MockTransport."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from devstack.autotask_simulator import AutotaskSimulator, TenantVariant
from devstack.loopback import loopback_psa
from flowpilot.errors import BadGateway, InvalidInput, UpstreamUnavailable
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
    PSAVisibilityUnknown,
    StatusRef,
    autotask,
    egress,
    note_marker,
    with_marker,
)
from flowpilot.psa.autotask import AutotaskConnection, AutotaskProvider, provider_for, reset_caches
from tests.leakcheck import register_secret

USERNAME = "api-user@acme-msp.example"
SECRET = "atSECRET-7c6b5a4d3e2f"
CODE = "ATCODE0INTEGRATION0123456789"
register_secret(SECRET, "Autotask provider test secret")
register_secret(CODE, "Autotask provider test integration code")
SERVICE_DESK, ESCALATIONS = 29682833, 29682834

Make = Callable[..., AutotaskProvider]


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    reset_caches()
    yield
    reset_caches()


@pytest.fixture
def start(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., AutotaskSimulator]]:
    """Starts a seeded simulator and points zone discovery at it; the simulator listens on loopback."""
    started: list[AutotaskSimulator] = []

    def run(variant: TenantVariant = "standard") -> AutotaskSimulator:
        sim = AutotaskSimulator(username=USERNAME, secret=SECRET, integration_code=CODE, tenant_variant=variant)
        sim.start()
        started.append(sim)
        sim.seed_demo()
        monkeypatch.setattr(autotask, "zone_lookup_url", sim.zone_lookup_url)
        return sim

    with loopback_psa():
        yield run
    for sim in started:
        sim.stop()


@pytest.fixture
def sim(start: Callable[..., AutotaskSimulator]) -> AutotaskSimulator:
    return start()


def connection(**overrides: Any) -> AutotaskConnection:
    fields: dict[str, Any] = {"username": USERNAME, "secret": SECRET, "integration_code": CODE, "base_url": None}
    fields.update(overrides)
    return AutotaskConnection(**fields)


@pytest.fixture
def make() -> Iterator[Make]:
    made: list[AutotaskProvider] = []

    def factory(timeout: float = 5.0, connect: dict[str, Any] | None = None, **kw: Any) -> AutotaskProvider:
        provider = AutotaskProvider(connection(**(connect or {})), timeout=timeout, **kw)
        made.append(provider)
        return provider

    yield factory
    for provider in made:
        provider.close()


@pytest.fixture
def at(sim: AutotaskSimulator, make: Make) -> AutotaskProvider:
    return make()


def calls(sim: AutotaskSimulator) -> list[tuple[str, str]]:
    """(method, path below V1.0, with the page when there is one) of every recorded request."""
    out = []
    for r in sim.requests:
        path = r.path[r.path.lower().find("/v1.0/") + len("/v1.0") :]
        out.append((r.method, path + (f"?page={r.query['page']}" if "page" in r.query else "")))
    return out


def posted_bodies(sim: AutotaskSimulator) -> list[Any]:
    return [r.body for r in sim.requests if r.method == "POST"]


# --- zone, headers, connection -------------------------------------------------------------------------------


def test_provider_satisfies_the_protocol(at: AutotaskProvider) -> None:
    provider: PSAProvider = at
    assert provider.name == "autotask"


def test_discovers_the_zone_once_per_process(sim: AutotaskSimulator, make: Make) -> None:
    first = make()
    assert first.fetch_ticket("1001").id == "1001"
    lookup = sim.requests[0]
    assert (lookup.method, lookup.path, lookup.query) == (
        "GET",
        "/atservicesrest/V1.0/zoneInformation",
        {"user": USERNAME},
    )
    assert not {"apiintegrationcode", "username", "secret"} & lookup.headers.keys()  # no credentials to discover
    assert first.zone_url() == sim.zone_url
    sim.clear_requests()
    make().fetch_ticket("1002")  # a new provider (the next Lambda invocation) reuses the zone
    assert calls(sim) == [("GET", "/Tickets/1002")]
    assert sum(1 for r in sim.requests if "zoneinformation" in r.path.lower()) == 0


@pytest.mark.parametrize("suffix", ["", "V1.0", "V1.0/"])
def test_base_url_skips_discovery(sim: AutotaskSimulator, make: Make, suffix: str) -> None:
    provider = make(connect={"base_url": sim.zone_url + suffix})
    assert provider.fetch_ticket("1001").status == StatusRef(8, "In Progress")
    assert [r.path for r in sim.requests] == [
        "/ATServicesRest/V1.0/Tickets/1001",
        "/ATServicesRest/V1.0/Tickets/entityInformation/fields",
    ]


def test_sends_autotasks_three_auth_headers(sim: AutotaskSimulator, make: Make) -> None:
    make(connect={"base_url": sim.zone_url}).fetch_ticket("1001")
    headers = sim.requests[0].headers
    assert headers["apiintegrationcode"] == CODE
    assert headers["username"] == USERNAME
    assert headers["secret"] == SECRET
    assert headers["content-type"] == "application/json" and headers["accept"] == "application/json"
    assert "authorization" not in headers


def test_unknown_api_user_is_an_auth_error(sim: AutotaskSimulator, make: Make) -> None:
    with pytest.raises(PSAAuthError) as err:
        make(connect={"username": "nobody@acme-msp.example"}).fetch_ticket("1001")
    assert "does not know the API user 'nobody@acme-msp.example'" in err.value.message
    assert err.value.status == 502 and err.value.code == "psa_auth_failed"
    assert len(sim.requests) == 1  # nothing was asked of a zone


def test_a_zone_outside_the_egress_rules_is_misconfiguration(sim: AutotaskSimulator, make: Make) -> None:
    provider = make()
    saved, egress.rules = egress.rules, egress.EgressRules()  # AWS's rules: no http, no loopback
    try:
        with pytest.raises(PSAError) as err:
            provider.fetch_ticket("1001")
    finally:
        egress.rules = saved
    assert err.value.code == "psa_misconfigured"
    assert "is not an address FlowPilot may call" in err.value.message
    assert [r.path for r in sim.requests] == ["/atservicesrest/V1.0/zoneInformation"]


def test_wrong_zone_base_url_is_an_auth_error_without_discovery(sim: AutotaskSimulator, make: Make) -> None:
    with pytest.raises(PSAAuthError) as err:
        make(connect={"base_url": sim.wrong_zone_url}).fetch_ticket("1001")
    assert err.value.details["psa_status"] == 401
    assert [r.path for r in sim.requests] == ["/zone2/ATServicesRest/V1.0/Tickets/1001"]


def test_a_moved_database_is_found_again_by_one_rediscovery(sim: AutotaskSimulator, make: Make) -> None:
    provider = make()
    provider.fetch_ticket("1001")
    sim.move_zone()
    sim.clear_requests()
    assert provider.fetch_ticket("1001").id == "1001"
    assert [(r.path, r.status) for r in sim.requests] == [
        ("/ATServicesRest/V1.0/Tickets/1001", 401),
        ("/atservicesrest/V1.0/zoneInformation", 200),
        ("/zone2/ATServicesRest/V1.0/Tickets/1001", 200),
        ("/zone2/ATServicesRest/V1.0/Tickets/entityInformation/fields", 200),  # picklists are cached per zone
    ]
    assert provider.zone_url() == sim.zone_url
    sim.clear_requests()
    make().fetch_ticket("1002")  # the rediscovered zone is the cached one now
    assert [r.path for r in sim.requests] == ["/zone2/ATServicesRest/V1.0/Tickets/1002"]


def test_rejected_credentials_rediscover_once_then_fail_as_auth(sim: AutotaskSimulator, make: Make) -> None:
    provider = make()
    sim.revoke_credentials()
    with pytest.raises(PSAAuthError) as err:
        provider.fetch_ticket("1001")
    assert isinstance(err.value, BadGateway) and err.value.code == "psa_auth_failed"
    assert "check the API user's username, secret and integration code" in err.value.message
    assert "The user name, secret or API integration code is not valid." in err.value.message
    assert [(r.path, r.status) for r in sim.requests] == [
        ("/atservicesrest/V1.0/zoneInformation", 200),
        ("/ATServicesRest/V1.0/Tickets/1001", 401),
        ("/atservicesrest/V1.0/zoneInformation", 200),
        ("/ATServicesRest/V1.0/Tickets/1001", 401),
    ]


def test_per_ticket_auth_fault_on_a_write_is_an_auth_error(sim: AutotaskSimulator, at: AutotaskProvider) -> None:
    at.check_note_settings(NoteKind.resolution)
    sim.set_faults(1001, auth_fail=True)
    with pytest.raises(PSAAuthError):
        at.post_note("1001", "x", NoteKind.resolution)
    assert sim.notes(1001) == []


def test_connection_and_provider_reprs_hide_the_secrets(sim: AutotaskSimulator, at: AutotaskProvider) -> None:
    at.fetch_ticket("1001")
    conn = connection()
    for text in (repr(conn), str(conn), repr(at)):
        assert SECRET not in text and CODE not in text
    assert USERNAME in repr(conn) and sim.zone_url in repr(at)
    with pytest.raises(ValueError) as missing:
        connection(secret="", integration_code="  ")
    assert str(missing.value) == "Autotask connection is missing: secret, integration_code"


def test_injected_client_is_used_and_not_closed(sim: AutotaskSimulator) -> None:
    with httpx.Client() as client:
        provider = provider_for(connection(), http=client)
        assert provider.fetch_ticket("1002").summary == "Exchange mailbox migration stuck"
        provider.close()
        assert not client.is_closed


# --- tickets -------------------------------------------------------------------------------------------------


def test_fetch_ticket_maps_autotask_fields(at: AutotaskProvider) -> None:
    ticket = at.fetch_ticket("1005")
    assert (ticket.id, ticket.summary) == ("1005", "Firewall firmware bug")
    assert (ticket.board_id, ticket.board_name) == (ESCALATIONS, "Escalations")
    assert ticket.status == StatusRef(13, "Waiting Customer")
    assert ticket.closed is False and ticket.record_type == "ServiceTicket"


def test_ticket_without_a_known_queue(sim: AutotaskSimulator, at: AutotaskProvider) -> None:
    sim.add_ticket(2001, status=1, queue_id=None, title="No queue")
    sim.add_ticket(2002, status=1, queue_id=4242, title="Unlisted queue")
    assert (at.fetch_ticket("2001").board_id, at.fetch_ticket("2001").board_name) == (0, "no queue")
    assert (at.fetch_ticket("2002").board_id, at.fetch_ticket("2002").board_name) == (4242, "queue 4242")


def test_item_null_is_ticket_not_found(at: AutotaskProvider) -> None:
    with pytest.raises(PSATicketNotFound) as err:
        at.fetch_ticket("9999")
    assert err.value.status == 422 and err.value.code == "psa_ticket_not_found"
    assert err.value.message == "Autotask ticket 9999 was not found."


@pytest.mark.parametrize("bad", ["../Companies/1", "12a", "", "1/Notes"])
def test_non_numeric_ids_never_reach_the_wire(sim: AutotaskSimulator, at: AutotaskProvider, bad: str) -> None:
    with pytest.raises(PSATicketNotFound):
        at.fetch_ticket(bad)
    with pytest.raises(PSANoteNotFound):
        at.get_note("1001", bad)
    assert sim.requests == []


# --- notes: publish by label ---------------------------------------------------------------------------------


def test_resolution_note_in_the_standard_tenant(sim: AutotaskSimulator, at: AutotaskProvider) -> None:
    text = with_marker("Reinstalled the VPN client.", note_marker("wb-1"))
    note = at.post_note("1001", text, NoteKind.resolution)
    assert posted_bodies(sim) == [
        {"ticketID": 1001, "title": "FlowPilot resolution", "description": text, "noteType": 1, "publish": 1}
    ]
    (post,) = [r for r in sim.requests if r.method == "POST"]
    assert post.path == "/atservicesrest/V1.0/Tickets/1001/Notes".replace("atservicesrest", "ATServicesRest")
    (stored,) = sim.notes(1001)
    assert note.id == str(stored["id"]) and note.ticket_id == "1001" and note.text == text
    assert (note.customer_visible, note.internal_analysis, dict(note.flags)) == (True, False, {"publish": 1})
    read = at.get_note("1001", note.id)
    assert read == note
    assert at.visibility_matches(read, NoteKind.resolution) is True
    assert at.visibility_matches(read, NoteKind.internal_analysis) is False
    assert sim.note_views(1001)[0].customer_visible is True


def test_internal_note_in_the_standard_tenant(sim: AutotaskSimulator, at: AutotaskProvider) -> None:
    note = at.post_note("1002", "Needs tier 2: mailbox locked.", NoteKind.internal_analysis)
    assert posted_bodies(sim)[0]["publish"] == 2 and posted_bodies(sim)[0]["title"] == "FlowPilot escalation"
    read = at.get_note("1002", note.id)
    assert (read.customer_visible, read.internal_analysis, read.flags["publish"]) == (False, True, 2)
    assert at.visibility_matches(read, NoteKind.internal_analysis) is True
    assert sim.note_views(1002)[0].customer_visible is False


def test_swapped_tenant_publishes_by_label_not_by_number(start: Callable[..., AutotaskSimulator], make: Make) -> None:
    sim = start("swapped")  # 1 = "Internal Only", 3 = "All Autotask Users"
    at = make()
    internal = at.post_note("1002", "handoff", NoteKind.internal_analysis)
    resolution = at.post_note("1001", "fixed", NoteKind.resolution)
    assert [body["publish"] for body in posted_bodies(sim)] == [1, 3]
    read_internal, read_resolution = at.get_note("1002", internal.id), at.get_note("1001", resolution.id)
    assert (read_internal.customer_visible, read_internal.internal_analysis) == (False, True)
    assert (read_resolution.customer_visible, read_resolution.internal_analysis) == (True, False)
    assert [v.customer_visible for v in sim.note_views(1002) + sim.note_views(1001)] == [False, True]
    assert at.visibility_matches(read_internal, NoteKind.internal_analysis)
    assert at.visibility_matches(read_resolution, NoteKind.resolution)


@pytest.mark.parametrize(
    ("kind", "preference"),
    [
        (NoteKind.resolution, "autotask_public_publish_value"),
        (NoteKind.internal_analysis, "autotask_internal_publish_value"),
    ],
)
def test_ambiguous_labels_are_a_422_listing_them_before_anything_is_posted(
    start: Callable[..., AutotaskSimulator], make: Make, kind: NoteKind, preference: str
) -> None:
    sim = start("ambiguous")
    at = make()
    for attempt in (lambda: at.check_note_settings(kind), lambda: at.post_note("1001", "x", kind)):
        with pytest.raises(PSAVisibilityUnknown) as err:
            attempt()
        assert isinstance(err.value, InvalidInput)
        assert (err.value.status, err.value.code) == (422, "psa_visibility_unknown")
        assert "Active values: 1 = 'All Users', 2 = 'Internal Project Team', 4 = 'Internal Only'." in err.value.message
        assert f"Set the preference {preference}" in err.value.message
        assert err.value.details["preference"] == preference
    assert posted_bodies(sim) == [] and sim.notes(1001) == []


def test_pinned_publish_values_decide_in_the_ambiguous_tenant(
    start: Callable[..., AutotaskSimulator], make: Make
) -> None:
    sim = start("ambiguous")
    at = make(public_publish_value=1, internal_publish_value=4)
    resolution = at.post_note("1001", "fixed", NoteKind.resolution)
    internal = at.post_note("1002", "handoff", NoteKind.internal_analysis)
    assert [body["publish"] for body in posted_bodies(sim)] == [1, 4]
    read = at.get_note("1002", internal.id)
    assert (read.customer_visible, read.internal_analysis) == (False, True)
    assert at.visibility_matches(read, NoteKind.internal_analysis)
    assert at.get_note("1001", resolution.id).customer_visible is True
    # "Internal Project Team" (2) is neither pin: not internal by the pin, and not the public value either.
    note = sim.add_note(1001, "typed in the UI", publish=2)
    assert at.get_note("1001", str(note["id"])).customer_visible is False


def test_only_the_internal_value_is_known_so_anything_else_counts_as_visible(
    start: Callable[..., AutotaskSimulator], make: Make
) -> None:
    sim = start("ambiguous")
    at = make(internal_publish_value=4)  # no public value: the labels don't give one
    for publish, visible in ((1, True), (2, True), (4, False)):
        note = sim.add_note(1001, f"publish {publish}", publish=publish)
        read = at.get_note("1001", str(note["id"]))
        assert (read.customer_visible, read.internal_analysis) == (visible, not visible)


@pytest.mark.parametrize(
    ("pins", "kind", "preference", "value"),
    [
        ({"internal_publish_value": 3}, NoteKind.internal_analysis, "autotask_internal_publish_value", 3),
        ({"internal_publish_value": 4}, NoteKind.internal_analysis, "autotask_internal_publish_value", 4),  # inactive
        ({"public_publish_value": 9}, NoteKind.resolution, "autotask_public_publish_value", 9),
    ],
)
def test_a_pinned_publish_value_that_is_not_active_is_refused_loudly(
    sim: AutotaskSimulator, make: Make, pins: dict[str, int], kind: NoteKind, preference: str, value: int
) -> None:
    with pytest.raises(PSAVisibilityUnknown) as err:
        make(**pins).post_note("1001", "x", kind)
    assert f"The preference {preference} = {value} is not an active value" in err.value.message
    assert "1 = 'All Autotask Users', 2 = 'Internal Project Team'" in err.value.message
    assert posted_bodies(sim) == []


def test_note_type_default_and_preferences(sim: AutotaskSimulator, make: Make) -> None:
    make().post_note("1001", "a", NoteKind.internal_analysis)
    make(resolution_note_type_id=17, escalation_note_type_id=18).post_note("1001", "b", NoteKind.resolution)
    make(resolution_note_type_id=17, escalation_note_type_id=18).post_note("1001", "c", NoteKind.internal_analysis)
    assert [body["noteType"] for body in posted_bodies(sim)] == [1, 17, 18]
    assert [n["noteType"] for n in sim.notes(1001)] == [1, 17, 18]


def test_an_inactive_note_type_preference_is_not_configured(sim: AutotaskSimulator, make: Make) -> None:
    with pytest.raises(PSANotConfigured) as err:
        make(resolution_note_type_id=19).post_note("1001", "x", NoteKind.resolution)
    assert (err.value.status, err.value.code) == (422, "psa_not_configured")
    assert "autotask_resolution_note_type_id = 19 is not an active Autotask note type" in err.value.message
    assert posted_bodies(sim) == []


def test_no_default_note_type_needs_the_preference(sim: AutotaskSimulator, make: Make) -> None:
    sim.set_picklist("TicketNotes", "noteType", [{"value": 40, "label": "Escalation Handoff"}])
    with pytest.raises(PSANotConfigured) as err:
        make().check_note_settings(NoteKind.internal_analysis)
    assert "no default; set the preference autotask_escalation_note_type_id" in err.value.message
    assert "40 = 'Escalation Handoff'" in err.value.message
    make(escalation_note_type_id=40).post_note("1002", "handoff", NoteKind.internal_analysis)
    assert [body["noteType"] for body in posted_bodies(sim)] == [40]


def test_picklists_are_cached_per_zone_and_user(sim: AutotaskSimulator, make: Make) -> None:
    first = make()
    first.check_note_settings(NoteKind.resolution)
    first.board_statuses(SERVICE_DESK)
    sim.clear_requests()
    second = make()
    second.check_note_settings(NoteKind.internal_analysis)
    second.check_target_status(second.fetch_ticket("1001"), 5)
    assert calls(sim) == [("GET", "/Tickets/1001")]
    reset_caches()
    sim.clear_requests()
    second.board_statuses(SERVICE_DESK)
    assert calls(sim) == [("GET", "/Tickets/entityInformation/fields")]


def test_a_picklist_fixed_since_caching_is_read_afresh_before_refusing(
    start: Callable[..., AutotaskSimulator], make: Make
) -> None:
    sim = start("ambiguous")
    at = make()
    with pytest.raises(PSAVisibilityUnknown):
        at.check_note_settings(NoteKind.resolution)
    sim.set_picklist(
        "TicketNotes",
        "publish",
        [{"value": 7, "label": " all autotask users "}, {"value": 8, "label": "Internal Only"}],
    )
    sim.clear_requests()
    note = at.post_note("1001", "fixed", NoteKind.resolution)
    assert calls(sim) == [("GET", "/TicketNotes/entityInformation/fields"), ("POST", "/Tickets/1001/Notes")]
    assert posted_bodies(sim)[0]["publish"] == 7 and note.customer_visible is True


def test_a_description_longer_than_the_field_is_refused_before_sending(
    sim: AutotaskSimulator, at: AutotaskProvider
) -> None:
    note = at.post_note("1001", "short", NoteKind.resolution)
    sim.clear_requests()
    with pytest.raises(PSAValidationError) as err:
        at.post_note("1001", "x" * 32001, NoteKind.resolution)
    assert "holds at most 32000" in err.value.message
    assert err.value.details["psa_errors"][0]["field"] == "description"
    with pytest.raises(PSAValidationError):
        at.update_note("1001", note.id, kind=NoteKind.resolution, text="y" * 32001)
    assert sim.requests == []
    at.post_note("1001", "x" * 32000, NoteKind.resolution)
    assert len(sim.notes(1001)) == 2


# --- notes: read back, repair, find ------------------------------------------------------------------------


def test_forced_visibility_is_read_back_and_repaired_by_an_update(sim: AutotaskSimulator, at: AutotaskProvider) -> None:
    sim.set_faults(1002, force_note_visibility="customer")
    note = at.post_note("1002", "internal only", NoteKind.internal_analysis)
    assert note.flags["publish"] == 2  # what we sent and Autotask accepted; only a read shows the truth
    read = at.get_note("1002", note.id)
    assert (read.customer_visible, read.flags["publish"]) == (True, 1)
    assert at.visibility_matches(read, NoteKind.internal_analysis) is False
    sim.clear_requests()
    at.update_note("1002", note.id, kind=NoteKind.internal_analysis)
    (patch,) = sim.requests
    assert (patch.method, calls(sim)[0][1], patch.body) == (
        "PATCH",
        "/Tickets/1002/Notes",
        {"id": int(note.id), "publish": 2},
    )
    after = at.get_note("1002", note.id)
    assert at.visibility_matches(after, NoteKind.internal_analysis) and after.customer_visible is False


def test_sticky_forced_visibility_survives_the_update(sim: AutotaskSimulator, at: AutotaskProvider) -> None:
    sim.set_faults(1002, force_note_visibility="customer", force_note_visibility_sticky=True)
    note = at.post_note("1002", "internal only", NoteKind.internal_analysis)
    at.update_note("1002", note.id, kind=NoteKind.internal_analysis)
    assert at.visibility_matches(at.get_note("1002", note.id), NoteKind.internal_analysis) is False


def test_update_note_amends_the_text(sim: AutotaskSimulator, at: AutotaskProvider) -> None:
    note = at.post_note("1001", "first text", NoteKind.resolution)
    sim.clear_requests()
    at.update_note("1001", note.id, kind=NoteKind.resolution, text="second text")
    assert sim.requests[0].body == {"id": int(note.id), "publish": 1, "description": "second text"}
    after = at.get_note("1001", note.id)
    assert (after.text, after.flags["publish"]) == ("second text", 1)


def test_a_missing_note_is_not_found(sim: AutotaskSimulator, at: AutotaskProvider) -> None:
    with pytest.raises(PSANoteNotFound) as err:
        at.get_note("1001", "987654")
    assert err.value.status == 502 and err.value.code == "psa_note_not_found"
    assert err.value.details == {"ticket_id": "1001", "note_id": "987654"}


def test_find_note_by_marker_follows_next_page_urls(sim: AutotaskSimulator, at: AutotaskProvider) -> None:
    marker = note_marker("wb-old")
    for i in range(5):
        sim.add_note(1006, with_marker(f"note {i}", marker) if i == 4 else f"note {i}", publish=2)
    sim.page_size = 2
    found = at.find_note_by_marker("1006", marker)
    assert found is not None and found.text.startswith("note 4\n")
    assert (found.internal_analysis, found.customer_visible, found.ticket_id) == (True, False, "1006")
    assert calls(sim) == [
        ("GET", "/zoneInformation"),
        ("GET", "/Tickets/1006/Notes"),
        ("GET", "/Tickets/1006/Notes?page=2"),
        ("GET", "/Tickets/1006/Notes?page=3"),
        ("GET", "/TicketNotes/entityInformation/fields"),
    ]
    sim.clear_requests()
    assert at.find_note_by_marker("1006", note_marker("wb-other")) is None
    assert len(sim.requests) == 3


def test_find_note_by_marker_matches_whole_markers_only(sim: AutotaskSimulator, at: AutotaskProvider) -> None:
    sim.add_note(1006, with_marker("other write-back", note_marker("wb-12")), publish=1)
    assert at.find_note_by_marker("1006", note_marker("wb-1")) is None
    assert at.find_note_by_marker("1006", note_marker("wb-12")) is not None
    assert at.find_note_by_marker("1001", note_marker("wb-12")) is None


def test_dropped_note_post_is_transient_and_the_marker_finds_it(sim: AutotaskSimulator, at: AutotaskProvider) -> None:
    marker = note_marker("wb-drop")
    sim.set_faults(1001, drop_after_commit_next=1)
    with pytest.raises(PSATransientError) as err:
        at.post_note("1001", with_marker("Resolved.", marker), NoteKind.resolution)
    assert err.value.details["may_have_applied"] is True
    (stored,) = sim.notes(1001)
    found = at.find_note_by_marker("1001", marker)  # what a retry does before posting again
    assert found is not None and found.id == str(stored["id"]) and found.customer_visible is True
    assert len(sim.notes(1001)) == 1


# --- statuses ------------------------------------------------------------------------------------------------


def test_board_statuses_are_the_status_picklist(at: AutotaskProvider) -> None:
    assert at.board_statuses(ESCALATIONS) == [
        BoardStatus(1, "New", ESCALATIONS, inactive=False, closed=False),
        BoardStatus(5, "Complete", ESCALATIONS, inactive=False, closed=True),
        BoardStatus(8, "In Progress", ESCALATIONS, inactive=False, closed=False),
        BoardStatus(13, "Waiting Customer", ESCALATIONS, inactive=False, closed=False),
        BoardStatus(14, "Escalated", ESCALATIONS, inactive=False, closed=False),
        BoardStatus(99, "Old - Do Not Use", ESCALATIONS, inactive=True, closed=False),
    ]


def test_check_target_status_accepts_an_active_status(at: AutotaskProvider) -> None:
    ticket = at.fetch_ticket("1001")
    assert at.check_target_status(ticket, 14) == BoardStatus(14, "Escalated", SERVICE_DESK, False, False)


@pytest.mark.parametrize(("status_id", "inactive"), [(99, True), (777, False)])
def test_check_target_status_refuses_before_any_write(
    sim: AutotaskSimulator, at: AutotaskProvider, status_id: int, inactive: bool
) -> None:
    ticket = at.fetch_ticket("1001")
    with pytest.raises(PSAStatusNotOnBoard) as err:
        at.check_target_status(ticket, status_id)
    details = err.value.details
    assert (details["board_id"], details["board_name"], details["requested_status_id"]) == (
        SERVICE_DESK,
        "Service Desk",
        status_id,
    )
    assert details["requested_status_inactive"] is inactive
    assert details["valid_statuses"] == [
        {"id": 1, "name": "New"},
        {"id": 5, "name": "Complete"},
        {"id": 8, "name": "In Progress"},
        {"id": 13, "name": "Waiting Customer"},
        {"id": 14, "name": "Escalated"},
    ]
    assert (err.value.status, err.value.code) == (422, "psa_status_not_on_board")
    assert all(r.method == "GET" for r in sim.requests)


def test_a_status_added_since_caching_is_found_with_one_refresh(sim: AutotaskSimulator, at: AutotaskProvider) -> None:
    ticket = at.fetch_ticket("1001")
    sim.set_picklist(
        "Tickets",
        "status",
        [{"value": 1, "label": "New"}, {"value": 8, "label": "In Progress"}, {"value": 20, "label": "Vendor"}],
    )
    sim.clear_requests()
    assert at.check_target_status(ticket, 20) == BoardStatus(20, "Vendor", SERVICE_DESK, False, False)
    assert calls(sim) == [("GET", "/Tickets/entityInformation/fields")]


@pytest.mark.parametrize("notify", [True, False])
def test_change_status_is_a_sparse_patch(sim: AutotaskSimulator, at: AutotaskProvider, notify: bool) -> None:
    assert at.change_status("1001", 5, notify_customer=notify) is None
    (req,) = sim.requests[1:]  # after the zone lookup
    assert (req.method, calls(sim)[1][1], req.status, req.body) == ("PATCH", "/Tickets", 200, {"id": 1001, "status": 5})
    ticket = at.fetch_ticket("1001")
    assert ticket.status == StatusRef(5, "Complete") and ticket.closed is True


@pytest.mark.parametrize("bad", [0, -1, True])
def test_change_status_rejects_non_ids_locally(sim: AutotaskSimulator, at: AutotaskProvider, bad: int) -> None:
    with pytest.raises(PSAValidationError):
        at.change_status("1001", bad)
    assert sim.requests == []


def test_ignored_status_change_answers_200_and_a_refetch_shows_the_old_status(
    sim: AutotaskSimulator, at: AutotaskProvider
) -> None:
    at.change_status("1003", 5)  # seeded with ignore_status_change
    assert sim.requests[-1].status == 200
    assert at.fetch_ticket("1003").status == StatusRef(1, "New")


def test_immediate_workflow_revert(sim: AutotaskSimulator, at: AutotaskProvider) -> None:
    sim.set_faults(1001, revert_status_after=0)
    at.change_status("1001", 5)
    after = at.fetch_ticket("1001")
    assert after.status.id == 8 and after.closed is False


# --- failures ------------------------------------------------------------------------------------------------


def test_autotasks_500_errors_are_validation_errors_with_its_messages(at: AutotaskProvider) -> None:
    with pytest.raises(PSAValidationError) as err:
        at.change_status("1001", 99)  # skipping check_target_status: Autotask itself refuses
    message = "The value '99' is not an active picklist value for the field status."
    assert err.value.message == f"Autotask rejected the request to change the status of ticket 1001 to 99: {message}"
    assert (err.value.status, err.value.code) == (422, "psa_validation_failed")
    assert err.value.details == {"psa_status": 500, "psa_errors": [{"code": "", "message": message, "field": None}]}


def test_the_thread_limit_rejection_is_rate_limiting(sim: AutotaskSimulator, at: AutotaskProvider) -> None:
    at.check_note_settings(NoteKind.resolution)
    sim.set_faults(1001, thread_limit_next=2)
    with pytest.raises(PSARateLimited) as err:
        at.fetch_ticket("1001")
    assert sim.requests[-1].status == 500  # not a 429
    assert (err.value.retry_after, err.value.code, err.value.status) == (2, "psa_rate_limited", 503)
    assert "Itgenatr005" in err.value.message and "thread limit" in err.value.message
    with pytest.raises(PSARateLimited):
        at.post_note("1001", "x", NoteKind.resolution)
    assert sim.notes(1001) == []
    assert at.fetch_ticket("1001").id == "1001"


def test_429_is_rate_limited_with_its_retry_after(sim: AutotaskSimulator, at: AutotaskProvider) -> None:
    sim.set_faults(1001, rate_limit_next=1, retry_after=7)
    with pytest.raises(PSARateLimited) as err:
        at.fetch_ticket("1001")
    assert isinstance(err.value, UpstreamUnavailable)
    assert err.value.retry_after == 7 and err.value.headers() == {"Retry-After": "7"}
    assert at.fetch_ticket("1001").id == "1001"  # no retry inside: the next call is the caller's


@pytest.mark.parametrize(("write", "may_have_applied"), [(True, True), (False, False)])
def test_500_without_errors_is_transient(
    sim: AutotaskSimulator, at: AutotaskProvider, write: bool, may_have_applied: bool
) -> None:
    at.fetch_ticket("1002")
    sim.set_faults(1001, fail_next=1)
    with pytest.raises(PSATransientError) as err:
        at.change_status("1001", 5) if write else at.fetch_ticket("1001")
    assert not isinstance(err.value, PSARateLimited)
    assert (err.value.status, err.value.code) == (503, "psa_unavailable")
    assert err.value.details == {"psa_status": 500, "may_have_applied": may_have_applied}
    assert "An error has occurred." in err.value.message
    assert sim.status_id(1001) == 8


def test_slow_answer_past_the_timeout_is_transient(sim: AutotaskSimulator, make: Make) -> None:
    sim.set_faults(1001, latency=60.0)  # Autotask would answer after a minute; the simulator's thread is a daemon
    with pytest.raises(PSATransientError) as err:
        make(timeout=0.5).fetch_ticket("1001")
    assert "did not answer within 0.5s" in err.value.message


def test_a_path_that_is_not_the_api_is_misconfiguration(sim: AutotaskSimulator, make: Make) -> None:
    with pytest.raises(PSAError) as err:
        make(connect={"base_url": f"{sim.site_url}/somewhere/"}).fetch_ticket("1001")
    assert not isinstance(err.value, PSATicketNotFound)
    assert err.value.code == "psa_misconfigured"


def test_no_error_or_repr_carries_the_secrets(sim: AutotaskSimulator, make: Make) -> None:
    # A timeout far from every other call's duration: a busy machine must not turn a refusal into a timeout.
    at = make(timeout=2.0)
    sim.set_faults(1001, rate_limit_next=1, fail_next=1, thread_limit_next=1)
    sim.set_faults(1004, latency=60.0)
    sim.set_faults(1002, drop_after_commit_next=1)
    attempts: list[Callable[[], object]] = [
        lambda: at.fetch_ticket("1001"),  # 429
        lambda: at.fetch_ticket("1001"),  # 500 without errors
        lambda: at.fetch_ticket("1001"),  # thread limit
        lambda: at.post_note("1002", "x", NoteKind.resolution),  # dropped
        lambda: at.fetch_ticket("1004"),  # timeout
        lambda: at.fetch_ticket("9999"),  # item null
        lambda: at.change_status("1001", 99),  # 500 errors
        lambda: at.check_target_status(at.fetch_ticket("1001"), 99),  # inactive
        lambda: at.get_note("1002", "424242"),  # note not found
        lambda: make(public_publish_value=9).check_note_settings(NoteKind.resolution),  # bad pin
        lambda: make(resolution_note_type_id=19).check_note_settings(NoteKind.resolution),  # bad note type
        lambda: make(connect={"secret": SECRET + "-wrong"}).fetch_ticket("1001"),  # 401, twice
        lambda: make(connect={"username": "x@y.example"}).fetch_ticket("1001"),  # unknown user
    ]
    seen: list[type[PSAError]] = []
    for attempt in attempts:
        with pytest.raises(PSAError) as err:
            attempt()
        seen.append(type(err.value))
        copy = pickle.loads(pickle.dumps(err.value))
        for text in (
            str(err.value),
            repr(err.value),
            json.dumps(err.value.body()),
            str(err.value.__cause__),
            str(err.value.__context__),
            str(copy),
            json.dumps(copy.details),
        ):
            assert SECRET not in text and CODE not in text
    assert seen == [
        PSARateLimited,
        PSATransientError,
        PSARateLimited,
        PSATransientError,
        PSATransientError,
        PSATicketNotFound,
        PSAValidationError,
        PSAStatusNotOnBoard,
        PSANoteNotFound,
        PSAVisibilityUnknown,
        PSANotConfigured,
        PSAAuthError,
        PSAAuthError,
    ]


def test_happy_path_calls_once_picklists_are_cached(sim: AutotaskSimulator, at: AutotaskProvider) -> None:
    at.check_note_settings(NoteKind.resolution)
    at.board_statuses(SERVICE_DESK)
    sim.clear_requests()

    ticket = at.fetch_ticket("1001")
    target = at.check_target_status(ticket, 5)
    note = at.post_note("1001", with_marker("Fixed.", note_marker("wb-1")), NoteKind.resolution)
    assert at.visibility_matches(at.get_note("1001", note.id), NoteKind.resolution)
    at.change_status("1001", target.id)
    assert at.fetch_ticket("1001").status.id == 5
    assert calls(sim) == [
        ("GET", "/Tickets/1001"),
        ("POST", "/Tickets/1001/Notes"),
        ("GET", f"/Tickets/1001/Notes/{note.id}"),
        ("PATCH", "/Tickets"),
        ("GET", "/Tickets/1001"),
    ]


# --- wire shapes the simulator does not produce (production URLs, proxies, odd answers) ----------------------

ZONE = "https://webservices5.autotask.net/ATServicesRest/"
TICKET_FIELDS = {
    "fields": [
        {
            "name": "status",
            "isPickList": True,
            "picklistValues": [{"value": "1", "label": "New", "isDefaultValue": True, "isActive": True}],
        }
    ]
}
NOTE_FIELDS = {
    "fields": [
        {
            "name": "publish",
            "isPickList": True,
            "picklistValues": [
                {"value": "1", "label": "All Autotask Users", "isActive": True},
                {"value": "2", "label": "Internal Only", "isActive": True},
            ],
        },
        {
            "name": "noteType",
            "isPickList": True,
            "picklistValues": [{"value": "1", "label": "Note", "isDefaultValue": True}],
        },
    ]
}


def mocked(handler: Callable[[httpx.Request], httpx.Response], *, base_url: str | None = ZONE) -> AutotaskProvider:
    conn = AutotaskConnection(username=USERNAME, secret=SECRET, integration_code=CODE, base_url=base_url)
    return AutotaskProvider(conn, http=httpx.Client(transport=httpx.MockTransport(handler)))


def test_default_zone_lookup_url_and_the_production_zone_url() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.path.endswith("zoneInformation"):
            return httpx.Response(
                200, json={"zoneName": "America East 2", "url": ZONE, "webUrl": "https://ww5.autotask.net/"}
            )
        if request.url.path.endswith("entityInformation/fields"):
            return httpx.Response(200, json=TICKET_FIELDS)
        return httpx.Response(200, json={"item": {"id": 1, "status": 1, "queueID": None, "title": "t"}})

    assert autotask.zone_lookup_url == "https://webservices.autotask.net/atservicesrest/"
    assert mocked(handler, base_url=None).fetch_ticket("1").status == StatusRef(1, "New")
    assert seen == [
        "https://webservices.autotask.net/atservicesrest/V1.0/zoneInformation?user=api-user%40acme-msp.example",
        "https://webservices5.autotask.net/ATServicesRest/V1.0/Tickets/1",
        "https://webservices5.autotask.net/ATServicesRest/V1.0/Tickets/entityInformation/fields",
    ]


@pytest.mark.parametrize("zone", ["https://10.0.0.5/ATServicesRest/", "http://webservices5.autotask.net/x/", 42])
def test_a_zone_url_the_egress_rules_refuse_is_misconfiguration(zone: object) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"url": zone})

    with pytest.raises(PSAError) as err:
        mocked(handler, base_url=None).fetch_ticket("1")
    assert err.value.code == ("psa_bad_response" if zone == 42 else "psa_misconfigured")
    assert len(seen) == 1  # never called the refused zone


@pytest.mark.parametrize(
    ("response", "expected", "code"),
    [
        (httpx.Response(405, text="Itgenatr005 thread threshold exceeded"), PSARateLimited, "psa_rate_limited"),
        (
            httpx.Response(500, json={"errors": ["Thread limit reached (Itgenatr005)"]}),
            PSARateLimited,
            "psa_rate_limited",
        ),
        (httpx.Response(502, text="<html>Bad Gateway</html>"), PSATransientError, "psa_unavailable"),
        (httpx.Response(503, text=""), PSATransientError, "psa_unavailable"),
        (httpx.Response(500, json={"Message": "An error has occurred."}), PSATransientError, "psa_unavailable"),
        (httpx.Response(500, json={"errors": ["Bad value"]}), PSAValidationError, "psa_validation_failed"),
        (httpx.Response(400, json={"errors": ["Malformed"]}), PSAValidationError, "psa_validation_failed"),
        (httpx.Response(404, json={"errors": ["Resource not found"]}), PSAError, "psa_misconfigured"),
        (httpx.Response(404, text="<html>not found</html>"), PSAError, "psa_misconfigured"),
        (httpx.Response(404, json={"errors": ["No Ticket 1 here."]}), PSATicketNotFound, "psa_ticket_not_found"),
        (httpx.Response(403, json={"errors": ["No rights"]}), PSAAuthError, "psa_auth_failed"),
        (httpx.Response(302, headers={"Location": "https://login.example.test/"}), PSAError, "psa_error"),
        (httpx.Response(200, text="<html>login</html>"), PSAError, "psa_bad_response"),
        (httpx.Response(200, json={"items": []}), PSAError, "psa_bad_response"),
        (httpx.Response(200, json={"item": [1]}), PSAError, "psa_bad_response"),
        (httpx.Response(200, json={"item": {"id": 1, "status": "open"}}), PSAError, "psa_bad_response"),
    ],
)
def test_odd_answers_map_to_psa_errors(response: httpx.Response, expected: type[PSAError], code: str) -> None:
    with pytest.raises(expected) as err:
        mocked(lambda request: response).fetch_ticket("1")
    assert type(err.value) is expected and err.value.code == code


@pytest.mark.parametrize(("header", "seconds"), [({"Retry-After": "12"}, 12), ({}, 2)])
def test_thread_limit_retry_after(header: dict[str, str], seconds: int) -> None:
    response = httpx.Response(500, json={"errors": ["Itgenatr005: thread threshold exceeded"]}, headers=header)
    with pytest.raises(PSARateLimited) as err:
        mocked(lambda request: response).fetch_ticket("1")
    assert err.value.retry_after == seconds


def test_garbled_note_answer_says_it_may_have_applied() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("entityInformation/fields"):
            return httpx.Response(200, json=NOTE_FIELDS)
        return httpx.Response(200, text="{truncated")

    with pytest.raises(PSAError) as err:
        mocked(handler).post_note("1", "x", NoteKind.resolution)
    assert err.value.code == "psa_bad_response" and err.value.details["may_have_applied"] is True


@pytest.mark.parametrize(
    ("next_url", "followed"),
    [
        ("https://evil.example.test/ATServicesRest/V1.0/Tickets/1/Notes?page=2", False),
        ("http://webservices5.autotask.net/ATServicesRest/V1.0/Tickets/1/Notes?page=2", False),
        ("https://webservices5.autotask.net:8443/ATServicesRest/V1.0/Tickets/1/Notes?page=2", False),
        ("https://webservices5.autotask.net/other/V1.0/Tickets/1/Notes?page=2", False),
        ("https://WEBSERVICES5.autotask.net/atservicesrest/V1.0/Tickets/1/Notes?page=2", True),
    ],
)
def test_next_pages_are_followed_only_inside_the_zone(next_url: str, followed: bool) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("entityInformation/fields"):
            return httpx.Response(200, json=NOTE_FIELDS)
        seen.append(request)
        if len(seen) == 1:
            page = {"count": 1, "requestCount": 1, "prevPageUrl": None, "nextPageUrl": next_url}
            return httpx.Response(200, json={"items": [{"id": 1, "description": "no"}], "pageDetails": page})
        page = {"count": 1, "requestCount": 1, "prevPageUrl": None, "nextPageUrl": None}
        items = [{"id": 2, "ticketID": 1, "description": "ref:fp-x", "publish": 2}]
        return httpx.Response(200, json={"items": items, "pageDetails": page})

    provider = mocked(handler)
    if followed:
        found = provider.find_note_by_marker("1", "ref:fp-x")
        assert found is not None and (found.id, found.internal_analysis) == ("2", True)
        assert seen[1].url == httpx.URL(next_url) and seen[1].headers["secret"] == SECRET
    else:
        with pytest.raises(PSAError) as err:
            provider.find_note_by_marker("1", "ref:fp-x")
        assert err.value.code == "psa_bad_response" and "points outside the zone" in err.value.message
        assert len(seen) == 1  # the credentials never went to the other URL
