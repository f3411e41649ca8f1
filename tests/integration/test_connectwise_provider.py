"""The real ConnectWise provider against the real simulator over loopback HTTP, plus the PSA base contract."""

from __future__ import annotations

import base64
import json
import pickle
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from devstack.cw_simulator import CWSimulator
from flowpilot.errors import BadGateway, InvalidInput, UpstreamUnavailable
from flowpilot.psa import (
    BoardStatus,
    NoteKind,
    PSAAuthError,
    PSAError,
    PSANoteNotAmended,
    PSANoteNotFound,
    PSANoteVisibilityMismatch,
    PSAProvider,
    PSARateLimited,
    PSAStatusNotOnBoard,
    PSAStatusVerificationError,
    PSATicketNotFound,
    PSATransientError,
    PSAValidationError,
    StatusRef,
    contains_marker,
    note_marker,
    with_marker,
)
from flowpilot.psa.connectwise import ConnectWiseConnection, ConnectWiseProvider, provider_for, reset_caches
from tests.leakcheck import register_psa_credentials

PUBLIC_KEY = "pubKEY-9f8e7d6c"
PRIVATE_KEY = "privKEY-1a2b3c4d5e"
register_psa_credentials("acme", PUBLIC_KEY, PRIVATE_KEY, "provider test")
CLIENT_ID = "0c9d8e7f-1111-4a2b-8c3d-4e5f6a7b8c9d"
TOKEN = base64.b64encode(f"acme+{PUBLIC_KEY}:{PRIVATE_KEY}".encode()).decode()

Factory = Callable[..., ConnectWiseProvider]


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    reset_caches()
    yield
    reset_caches()


@pytest.fixture
def sim() -> Iterator[CWSimulator]:
    with CWSimulator(company_id="acme", public_key=PUBLIC_KEY, private_key=PRIVATE_KEY, client_id=CLIENT_ID) as s:
        s.seed_demo()
        yield s


def connection(sim: CWSimulator, **overrides: str | None) -> ConnectWiseConnection:
    fields: dict[str, str | None] = {
        "site": sim.site_url,
        "company_id": "acme",
        "public_key": PUBLIC_KEY,
        "private_key": PRIVATE_KEY,
        "client_id": CLIENT_ID,
        "base_url": sim.base_url,
    }
    fields.update(overrides)
    return ConnectWiseConnection(**fields)


@pytest.fixture
def make(sim: CWSimulator) -> Iterator[Factory]:
    made: list[ConnectWiseProvider] = []

    def factory(timeout: float = 5.0, **overrides: str | None) -> ConnectWiseProvider:
        provider = ConnectWiseProvider(connection(sim, **overrides), timeout=timeout)
        made.append(provider)
        return provider

    yield factory
    for provider in made:
        provider.close()


@pytest.fixture
def cw(make: Factory) -> ConnectWiseProvider:
    return make()


def api_calls(sim: CWSimulator) -> list[tuple[str, str]]:
    """(method, path under the API base) of every recorded call."""
    base = sim.base_path
    return [(r.method, r.path.removeprefix(base)) for r in sim.requests]


# --- connection, headers, base URL -----------------------------------------------------------------


def test_provider_satisfies_the_protocol(cw: ConnectWiseProvider) -> None:
    provider: PSAProvider = cw
    assert provider.name == "connectwise"


def test_sends_cw_auth_headers(sim: CWSimulator, cw: ConnectWiseProvider) -> None:
    cw.fetch_ticket("1001")
    (req,) = sim.requests
    assert req.headers["authorization"] == f"Basic {TOKEN}"
    assert req.headers["clientid"] == CLIENT_ID
    assert req.headers["content-type"] == "application/json"
    assert req.headers["accept"] == "application/json"


def test_discovers_the_codebase_from_companyinfo_once(sim: CWSimulator, make: Factory) -> None:
    first = make(base_url=None)
    assert first.fetch_ticket("1001").id == "1001"
    assert [r.path for r in sim.requests] == [
        "/login/companyinfo/acme",
        "/v4_6_release/apis/3.0/service/tickets/1001",
    ]
    assert "authorization" not in sim.requests[0].headers  # companyinfo needs no credentials
    assert first.base_url() == sim.base_url
    sim.clear_requests()
    make(base_url=None).fetch_ticket("1001")  # a new provider (next Lambda invocation) reuses the cache
    assert [r.path for r in sim.requests] == ["/v4_6_release/apis/3.0/service/tickets/1001"]


def test_explicit_codebase_skips_companyinfo(sim: CWSimulator, make: Factory) -> None:
    make(base_url=None, codebase="v4_6_release/").fetch_ticket("1001")
    assert [r.path for r in sim.requests] == ["/v4_6_release/apis/3.0/service/tickets/1001"]


def test_unknown_company_and_wrong_codebase_are_misconfiguration(sim: CWSimulator, make: Factory) -> None:
    with pytest.raises(PSAError) as unknown:
        make(base_url=None, company_id="nobody").fetch_ticket("1001")
    assert unknown.value.code == "psa_misconfigured"
    # IIS's HTML 404 for a wrong codebase must not read as "ticket not found".
    with pytest.raises(PSAError) as wrong:
        make(base_url=None, codebase="v2019_1/").fetch_ticket("1001")
    assert not isinstance(wrong.value, PSATicketNotFound)
    assert wrong.value.code == "psa_misconfigured"


def test_connection_and_provider_reprs_hide_the_keys(sim: CWSimulator, cw: ConnectWiseProvider) -> None:
    conn = connection(sim)
    for text in (repr(conn), str(conn), repr(cw)):
        assert PUBLIC_KEY not in text and PRIVATE_KEY not in text and TOKEN not in text
    assert "acme" in repr(conn)
    with pytest.raises(ValueError) as missing:
        connection(sim, private_key="")
    assert "private_key" in str(missing.value)


def test_injected_client_is_used_and_not_closed(sim: CWSimulator) -> None:
    with httpx.Client() as http:
        provider = provider_for(connection(sim), http=http)
        assert provider.fetch_ticket("1002").status.name == "In Progress"
        provider.close()
        assert not http.is_closed
        assert http.get(sim.site_url + "/login/companyinfo/acme").status_code == 200


# --- tickets ---------------------------------------------------------------------------------------


def test_fetch_ticket_maps_cw_fields(cw: ConnectWiseProvider) -> None:
    ticket = cw.fetch_ticket("1005")
    assert (ticket.id, ticket.board_id, ticket.board_name) == ("1005", 2, "Escalations")
    assert ticket.status == StatusRef(id=22, name="Triage")
    assert ticket.summary == "Firewall firmware bug" and ticket.closed is False


def test_unknown_ticket_is_ticket_not_found(sim: CWSimulator, cw: ConnectWiseProvider) -> None:
    with pytest.raises(PSATicketNotFound) as err:
        cw.fetch_ticket("9999")
    assert err.value.status == 422 and err.value.code == "psa_ticket_not_found"
    assert "9999" in err.value.message


@pytest.mark.parametrize("bad", ["../boards/1", "12a", "", "1/notes"])
def test_non_numeric_ticket_ids_never_reach_the_wire(sim: CWSimulator, cw: ConnectWiseProvider, bad: str) -> None:
    with pytest.raises(PSATicketNotFound):
        cw.fetch_ticket(bad)
    assert sim.requests == []


# --- notes -----------------------------------------------------------------------------------------


def test_resolution_note_is_sent_customer_visible_with_notifications(sim: CWSimulator, cw: ConnectWiseProvider) -> None:
    note = cw.post_note("1001", "Reinstalled the VPN client.", NoteKind.resolution)
    (req,) = sim.requests
    assert req.method == "POST" and req.status == 201
    assert req.body == {
        "text": "Reinstalled the VPN client.",
        "detailDescriptionFlag": True,
        "resolutionFlag": True,
        "internalAnalysisFlag": False,
        "issueFlag": False,
        "customerUpdatedFlag": False,
        "processNotifications": True,
    }
    assert note.customer_visible is True and note.internal_analysis is False
    assert note.ticket_id == "1001" and note.id == str(sim.notes(1001)[0]["id"])
    assert sim.ticket(1001)["customerUpdatedFlag"] is False


def test_internal_note_is_internal_despite_cws_external_flag_echo(sim: CWSimulator, cw: ConnectWiseProvider) -> None:
    marker = note_marker("wb-esc-1")
    note = cw.post_note("1002", with_marker("Needs tier 2: mailbox locked.", marker), NoteKind.internal_analysis)
    assert sim.requests[0].body == {
        "text": with_marker("Needs tier 2: mailbox locked.", marker),
        "internalAnalysisFlag": True,
        "detailDescriptionFlag": False,
        "resolutionFlag": False,
        "issueFlag": False,
        "customerUpdatedFlag": False,
        "processNotifications": False,  # escalations never notify the customer
    }
    # The 201 said externalFlag: true (simulator unit tests pin that quirk); the provider ignored it.
    assert note.customer_visible is False and note.internal_analysis is True
    found = cw.find_note_by_marker("1002", marker)  # the GET form, with internal/externalFlag null
    assert found == note


def test_internal_note_stored_customer_visible_is_returned_as_the_psa_shows_it(
    sim: CWSimulator, cw: ConnectWiseProvider
) -> None:
    sim.set_faults(1002, note_flag_overrides={"detailDescriptionFlag": True})
    note = cw.post_note("1002", "internal only", NoteKind.internal_analysis)
    stored = sim.notes(1002)
    assert len(stored) == 1 and note.id == str(stored[0]["id"])  # the note exists: the caller must repair it
    assert note.customer_visible is True and note.flags["detailDescriptionFlag"] is True
    assert cw.visibility_matches(note, NoteKind.internal_analysis) is False
    assert cw.visibility_matches(cw.get_note("1002", note.id), NoteKind.internal_analysis) is False


def test_resolution_note_stored_without_resolution_flag_does_not_match(
    sim: CWSimulator, cw: ConnectWiseProvider
) -> None:
    sim.set_faults(1001, note_flag_overrides={"resolutionFlag": False})
    note = cw.post_note("1001", "fixed", NoteKind.resolution)
    assert note.customer_visible is True and note.flags["resolutionFlag"] is False
    assert cw.visibility_matches(note, NoteKind.resolution) is False


def test_note_update_repairs_visibility_and_text_without_notifying(sim: CWSimulator, cw: ConnectWiseProvider) -> None:
    sim.set_faults(1002, note_flag_overrides={"detailDescriptionFlag": True})
    note = cw.post_note("1002", "first text", NoteKind.internal_analysis)
    sim.clear_requests()
    cw.update_note("1002", note.id, kind=NoteKind.internal_analysis, text="second text")
    (patch,) = [r for r in sim.requests if r.method == "PATCH"]
    assert patch.path.endswith(f"/service/tickets/1002/notes/{note.id}")
    ops = {op["path"]: op["value"] for op in patch.body}
    assert ops == {
        "text": "second text",
        "internalAnalysisFlag": True,
        "detailDescriptionFlag": False,
        "resolutionFlag": False,
        "issueFlag": False,
        "processNotifications": False,
    }
    after = cw.get_note("1002", note.id)
    assert after.text == "second text" and cw.visibility_matches(after, NoteKind.internal_analysis)
    assert cw.visibility_matches(after, NoteKind.resolution) is False


def test_a_deleted_note_reads_as_not_found(sim: CWSimulator, cw: ConnectWiseProvider) -> None:
    with pytest.raises(PSANoteNotFound) as err:
        cw.get_note("1001", "987654")
    assert err.value.status == 502 and err.value.details["note_id"] == "987654"
    with pytest.raises(PSANoteNotFound):
        cw.get_note("1001", "../1")


def test_note_without_text_surfaces_cws_validation_message(cw: ConnectWiseProvider) -> None:
    with pytest.raises(PSAValidationError) as err:
        cw.post_note("1001", "", NoteKind.resolution)
    assert "text is required." in err.value.message
    assert err.value.details["psa_errors"] == [
        {"code": "MissingRequiredField", "message": "text is required.", "field": "text"}
    ]


def test_find_note_by_marker_follows_link_pages(sim: CWSimulator, cw: ConnectWiseProvider) -> None:
    marker = note_marker("wb-old")
    for i in range(120):
        text = with_marker(f"note {i}", marker) if i == 10 else f"note {i}"
        sim.add_note(1006, text, internalAnalysisFlag=True)
    found = cw.find_note_by_marker("1006", marker)
    assert found is not None and found.text.startswith("note 10\n")
    assert found.internal_analysis is True and found.customer_visible is False
    pages = [(r.query.get("page"), r.query["pageSize"], r.query["orderBy"]) for r in sim.requests]
    assert pages == [(None, "50", "id desc"), ("2", "50", "id desc"), ("3", "50", "id desc")]


def test_find_note_by_marker_stops_after_three_pages(sim: CWSimulator, cw: ConnectWiseProvider) -> None:
    for i in range(200):
        sim.add_note(1006, with_marker(f"note {i}", note_marker("too-old")) if i == 5 else f"note {i}")
    assert cw.find_note_by_marker("1006", note_marker("too-old")) is None
    assert len(sim.requests) == 3


def test_find_note_by_marker_matches_whole_markers_only(sim: CWSimulator, cw: ConnectWiseProvider) -> None:
    sim.add_note(1006, with_marker("other write-back", note_marker("wb-12")))
    assert cw.find_note_by_marker("1006", note_marker("wb-1")) is None
    assert cw.find_note_by_marker("1006", note_marker("wb-12")) is not None
    assert cw.find_note_by_marker("1001", note_marker("wb-12")) is None


# --- statuses --------------------------------------------------------------------------------------


def test_change_status_sends_one_json_patch_op(sim: CWSimulator, cw: ConnectWiseProvider) -> None:
    assert cw.change_status("1001", 5) is None
    (req,) = sim.requests
    assert (req.method, req.status) == ("PATCH", 200)
    assert req.body == [{"op": "replace", "path": "status", "value": {"id": 5}}]
    ticket = cw.fetch_ticket("1001")
    assert ticket.status == StatusRef(5, "Resolved") and ticket.closed is True


def test_status_of_another_board_surfaces_cws_400(sim: CWSimulator, cw: ConnectWiseProvider) -> None:
    with pytest.raises(PSAValidationError) as err:
        cw.change_status("1001", 21)
    assert "Service Status 21 not found for Service Board 1" in err.value.message
    assert "ticket object is invalid" in err.value.message
    assert err.value.status == 422 and err.value.code == "psa_validation_failed"
    assert err.value.details["psa_errors"] == [
        {
            "code": "NotFound",
            "message": "Service Status 21 not found for Service Board 1",
            "field": "status/id",
        }
    ]


def test_check_target_status_accepts_an_active_status_of_the_board(cw: ConnectWiseProvider) -> None:
    ticket = cw.fetch_ticket("1001")
    assert cw.check_target_status(ticket, 5) == BoardStatus(5, "Resolved", 1, inactive=False, closed=True)


@pytest.mark.parametrize(("status_id", "inactive"), [(21, False), (8, True), (999, False)])
def test_check_target_status_refuses_and_names_the_valid_statuses(
    cw: ConnectWiseProvider, status_id: int, inactive: bool
) -> None:
    ticket = cw.fetch_ticket("1001")
    with pytest.raises(PSAStatusNotOnBoard) as err:
        cw.check_target_status(ticket, status_id)
    details = err.value.details
    assert (details["board_id"], details["board_name"], details["requested_status_id"]) == (
        1,
        "Service Desk",
        status_id,
    )
    assert details["requested_status_inactive"] is inactive
    assert details["valid_statuses"] == [
        {"id": 1, "name": "New"},
        {"id": 2, "name": "In Progress"},
        {"id": 3, "name": "Waiting on Customer"},
        {"id": 5, "name": "Resolved"},
        {"id": 6, "name": "Escalated - Tier 2"},
        {"id": 7, "name": ">Closed"},
    ]
    assert "Escalated - Tier 2 (6)" in err.value.message
    assert err.value.status == 422 and err.value.code == "psa_status_not_on_board"


def test_board_statuses_are_cached_per_board(sim: CWSimulator, make: Factory) -> None:
    cw = make()
    ticket = cw.fetch_ticket("1001")
    cw.check_target_status(ticket, 5)
    sim.clear_requests()
    cw.check_target_status(ticket, 6)
    make().check_target_status(ticket, 2)  # another provider instance, same tenant: same cache
    assert sim.requests == []
    cw.check_target_status(cw.fetch_ticket("1005"), 25)
    assert api_calls(sim) == [("GET", "/service/tickets/1005"), ("GET", "/service/boards/2/statuses")]
    reset_caches()
    sim.clear_requests()
    cw.board_statuses(1)
    assert api_calls(sim) == [("GET", "/service/boards/1/statuses")]


def test_a_status_added_since_caching_is_found_with_one_refresh(sim: CWSimulator, cw: ConnectWiseProvider) -> None:
    ticket = cw.fetch_ticket("1001")
    cw.board_statuses(1)
    sim.add_board(
        1,
        "Service Desk",
        [{"id": 1, "name": "New"}, {"id": 2, "name": "In Progress"}, {"id": 9, "name": "Escalated - Vendor"}],
    )
    sim.clear_requests()
    assert cw.check_target_status(ticket, 9).name == "Escalated - Vendor"
    assert api_calls(sim) == [("GET", "/service/boards/1/statuses")]


def test_board_statuses_follow_link_pages(sim: CWSimulator, cw: ConnectWiseProvider) -> None:
    sim.add_board(7, "Huge", [{"id": 1000 + i, "name": f"S{i}"} for i in range(1200)])
    statuses = cw.board_statuses(7)
    assert len(statuses) == 1200 and statuses[-1].id == 2199
    assert [r.query.get("page") for r in sim.requests] == [None, "2"]
    assert all(r.query["pageSize"] == "1000" for r in sim.requests)


def test_happy_path_costs_exactly_four_calls_once_statuses_are_cached(
    sim: CWSimulator, cw: ConnectWiseProvider
) -> None:
    cw.board_statuses(1)  # warm (an earlier write-back on this board)
    sim.clear_requests()

    ticket = cw.fetch_ticket("1001")
    target = cw.check_target_status(ticket, 5)
    note = cw.post_note("1001", with_marker("Fixed.", note_marker("wb-1")), NoteKind.resolution)
    cw.change_status("1001", target.id)
    after = cw.fetch_ticket("1001")

    assert after.status.id == 5 and note.customer_visible
    assert api_calls(sim) == [
        ("GET", "/service/tickets/1001"),
        ("POST", "/service/tickets/1001/notes"),
        ("PATCH", "/service/tickets/1001"),
        ("GET", "/service/tickets/1001"),
    ]


def test_ignored_status_change_answers_200_but_a_refetch_shows_the_old_status(
    sim: CWSimulator, cw: ConnectWiseProvider
) -> None:
    before = cw.fetch_ticket("1003")  # seeded with ignore_status_change
    cw.change_status("1003", 5)  # no error: CW said 200
    assert sim.requests[-1].status == 200
    after = cw.fetch_ticket("1003")
    assert after.status == before.status == StatusRef(1, "New")
    err = PSAStatusVerificationError(5, after.status)  # what the caller raises on this evidence
    assert err.details == {"expected_status_id": 5, "actual_status_id": 1, "actual_status_name": "New"}


def test_workflow_revert_after_a_delay(sim: CWSimulator, cw: ConnectWiseProvider) -> None:
    # 2 s: the immediate check must land before the revert even on a busy CI machine.
    sim.set_faults(1001, revert_status_after=2.0)
    cw.change_status("1001", 6)
    assert cw.fetch_ticket("1001").status.id == 6  # the immediate check passes...
    deadline = time.monotonic() + 60  # waits for the revert itself, not a fixed time
    while sim.ticket(1001)["status"]["id"] != 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cw.fetch_ticket("1001").status == StatusRef(2, "In Progress")  # ...the delayed one does not


def test_workflow_revert_immediately(sim: CWSimulator, cw: ConnectWiseProvider) -> None:
    sim.set_faults(1001, revert_status_after=0)
    cw.change_status("1001", 5)
    after = cw.fetch_ticket("1001")
    assert after.status.id == 2 and after.closed is False


@pytest.mark.parametrize("bad", [0, -1, True])
def test_change_status_rejects_non_ids_locally(sim: CWSimulator, cw: ConnectWiseProvider, bad: int) -> None:
    with pytest.raises(PSAValidationError):
        cw.change_status("1001", bad)
    assert sim.requests == []


# --- failures --------------------------------------------------------------------------------------


def test_429_is_rate_limited_with_cws_retry_after(sim: CWSimulator, cw: ConnectWiseProvider) -> None:
    sim.set_faults(1001, rate_limit_next=1, retry_after=7)
    with pytest.raises(PSARateLimited) as err:
        cw.fetch_ticket("1001")
    assert isinstance(err.value, PSATransientError) and isinstance(err.value, UpstreamUnavailable)
    assert err.value.retry_after == 7 and err.value.headers() == {"Retry-After": "7"}
    assert err.value.status == 503 and err.value.code == "psa_rate_limited"
    assert cw.fetch_ticket("1001").id == "1001"  # no retry inside: the next call is the caller's


def test_500_is_transient_and_a_write_may_have_applied(sim: CWSimulator, cw: ConnectWiseProvider) -> None:
    sim.set_faults(1001, fail_next=1)
    with pytest.raises(PSATransientError) as err:
        cw.change_status("1001", 5)
    assert not isinstance(err.value, PSARateLimited)
    assert err.value.status == 503 and err.value.code == "psa_unavailable"
    assert err.value.details["may_have_applied"] is True and err.value.details["psa_status"] == 500
    assert err.value.details["psa_request_id"]
    assert len(sim.requests) == 1


def test_dropped_connection_after_commit_is_transient_and_the_marker_finds_the_note(
    sim: CWSimulator, cw: ConnectWiseProvider
) -> None:
    marker = note_marker("wb-drop")
    sim.set_faults(1001, drop_after_commit_next=1)
    with pytest.raises(PSATransientError) as err:
        cw.post_note("1001", with_marker("Resolved.", marker), NoteKind.resolution)
    assert err.value.details["may_have_applied"] is True
    (stored,) = sim.notes(1001)
    found = cw.find_note_by_marker("1001", marker)  # what a retry does before posting again
    assert found is not None and found.id == str(stored["id"])
    assert found.customer_visible is True
    assert len(sim.notes(1001)) == 1


def test_slow_answer_past_the_timeout_is_transient(sim: CWSimulator, make: Factory) -> None:
    sim.set_faults(1001, latency=60.0)  # CW would answer after a minute; the simulator's thread is a daemon
    cw = make(timeout=0.5)
    started = time.monotonic()
    with pytest.raises(PSATransientError) as err:
        cw.fetch_ticket("1001")
    assert time.monotonic() - started < 30  # gave up at our timeout, did not wait for CW
    assert "did not answer within 0.5s" in err.value.message


def test_connection_refused_is_transient(sim: CWSimulator) -> None:
    port = int(sim.site_url.rsplit(":", 1)[1])
    conn = connection(sim, base_url=f"http://127.0.0.1:{port}/v4_6_release/apis/3.0")
    sim.stop()
    with ConnectWiseProvider(conn, timeout=1) as cw, pytest.raises(PSATransientError):
        cw.fetch_ticket("1001")


@pytest.mark.parametrize(
    ("knob", "status"),
    [({"auth_fail": True}, 401), ({"security_denied": True}, 403)],
)
def test_401_and_403_are_auth_errors(
    sim: CWSimulator, cw: ConnectWiseProvider, knob: dict[str, bool], status: int
) -> None:
    sim.set_faults(1001, **knob)
    with pytest.raises(PSAAuthError) as err:
        cw.post_note("1001", "x", NoteKind.resolution)
    assert isinstance(err.value, BadGateway)
    assert err.value.status == 502 and err.value.code == "psa_auth_failed"
    assert err.value.details["psa_status"] == status


def test_wrong_keys_are_an_auth_error_without_the_keys(sim: CWSimulator, make: Factory) -> None:
    with pytest.raises(PSAAuthError) as err:
        make(private_key="privKEY-wrong-0000").fetch_ticket("1001")
    assert "privKEY" not in err.value.message and "privKEY" not in repr(err.value)


# --- keys never leak -------------------------------------------------------------------------------


def test_no_error_carries_the_keys(sim: CWSimulator, make: Factory) -> None:
    # A timeout far from every other call's duration: a busy machine must not turn a 404 into a timeout.
    cw = make(timeout=2.0)
    sim.set_faults(1001, rate_limit_next=1, fail_next=1, drop_after_commit_next=1)
    sim.set_faults(1004, latency=60.0)
    sim.set_faults(1002, note_flag_overrides={"detailDescriptionFlag": True})
    attempts: list[Callable[[], object]] = [
        lambda: cw.fetch_ticket("1001"),  # 429
        lambda: cw.fetch_ticket("1001"),  # 500
        lambda: cw.post_note("1001", "x", NoteKind.resolution),  # dropped
        lambda: cw.fetch_ticket("1004"),  # timeout
        lambda: cw.fetch_ticket("9999"),  # 404
        lambda: cw.change_status("1001", 21),  # 400
        lambda: cw.check_target_status(cw.fetch_ticket("1001"), 21),  # not on board
        lambda: cw.get_note("1002", "424242"),  # note not found
        lambda: make(public_key="pubKEY-wrong").fetch_ticket("1001"),  # 401
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
            str(copy),
            json.dumps(copy.details),
        ):
            for secret in (PUBLIC_KEY, PRIVATE_KEY, TOKEN, "pubKEY", "privKEY"):
                assert secret not in text
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
    ]


# --- base contract: errors and markers -------------------------------------------------------------


def test_error_classes_map_to_one_status_and_code() -> None:
    table = {
        PSAError: (502, "psa_error"),
        PSATransientError: (503, "psa_unavailable"),
        PSARateLimited: (503, "psa_rate_limited"),
        PSAAuthError: (502, "psa_auth_failed"),
        PSATicketNotFound: (422, "psa_ticket_not_found"),
        PSAValidationError: (422, "psa_validation_failed"),
        PSAStatusNotOnBoard: (422, "psa_status_not_on_board"),
        PSAStatusVerificationError: (502, "psa_status_not_applied"),
        PSANoteVisibilityMismatch: (502, "psa_note_visibility_mismatch"),
        PSANoteNotAmended: (502, "psa_note_not_amended"),
        PSANoteNotFound: (502, "psa_note_not_found"),
    }
    assert {cls: (cls.status, cls.code) for cls in table} == table
    assert issubclass(PSATicketNotFound, InvalidInput) and issubclass(PSAStatusVerificationError, BadGateway)


def test_every_error_pickles_with_its_state() -> None:
    errors: list[PSAError] = [
        PSAError("x", code="psa_bad_response", details={"a": 1}),
        PSARateLimited("slow down", retry_after=9),
        PSAStatusVerificationError(5, StatusRef(2, "In Progress")),
        PSAStatusNotOnBoard(
            board_id=1,
            board_name="Service Desk",
            status_id=21,
            valid_statuses=[BoardStatus(1, "New", 1, inactive=False, closed=False)],
        ),
        PSAValidationError("bad", details={"psa_errors": []}),
    ]
    for err in errors:
        copy = pickle.loads(pickle.dumps(err))
        assert type(copy) is type(err)
        assert (copy.message, copy.code, copy.status, copy.details, copy.args) == (
            err.message,
            err.code,
            err.status,
            err.details,
            err.args,
        )
    assert pickle.loads(pickle.dumps(errors[1])).retry_after == 9
    assert "'In Progress' (2)" in errors[2].message


def test_markers_are_plain_searchable_and_idempotent() -> None:
    marker = note_marker("wb_01-A")
    assert marker == "ref:fp-wb_01-A"
    text = with_marker("Resolved the VPN.\n", marker)
    assert text == "Resolved the VPN.\n\n---\nFlowPilot ref:fp-wb_01-A"
    assert text.splitlines()[-1].endswith(marker)
    assert with_marker(text, marker) == text
    assert contains_marker(text, marker) and contains_marker(text.replace("\n", "\r\n"), marker)
    assert not contains_marker(text, note_marker("wb_01"))
    assert not contains_marker("ref:fp-wb_01-AB", marker)
    for bad in ("", "has space", "<b>", "x" * 65):
        with pytest.raises(ValueError):
            note_marker(bad)


# --- wire shapes the simulator does not produce (proxies, odd headers) -------------------------------


def mocked(handler: Callable[[httpx.Request], httpx.Response]) -> ConnectWiseProvider:
    conn = ConnectWiseConnection(
        site="cw.example.test",
        company_id="acme",
        public_key=PUBLIC_KEY,
        private_key=PRIVATE_KEY,
        client_id=CLIENT_ID,
        codebase="v4_6_release/",
    )
    return ConnectWiseProvider(conn, http=httpx.Client(transport=httpx.MockTransport(handler)))


def test_default_base_url_is_https_site_codebase_apis() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={"id": 1, "board": {"id": 1}, "status": {"id": 2}})

    mocked(handler).fetch_ticket("1")
    assert seen == ["https://cw.example.test/v4_6_release/apis/3.0/service/tickets/1"]


@pytest.mark.parametrize(
    ("response", "expected", "code"),
    [
        (httpx.Response(502, text="<html>Bad Gateway</html>"), PSATransientError, "psa_unavailable"),
        (httpx.Response(503, text=""), PSATransientError, "psa_unavailable"),
        (httpx.Response(404, text="<html>not found</html>"), PSAError, "psa_misconfigured"),
        (httpx.Response(302, headers={"Location": "https://login.example.test/"}), PSAError, "psa_error"),
        (httpx.Response(200, text="<html>login</html>"), PSAError, "psa_bad_response"),
        (httpx.Response(200, json=[]), PSAError, "psa_bad_response"),
        (
            httpx.Response(400, json={"code": "Security", "message": "no rights"}),
            PSAAuthError,
            "psa_auth_failed",
        ),
        (httpx.Response(400, text="oops"), PSAValidationError, "psa_validation_failed"),
        (
            httpx.Response(409, json={"code": "Conflict", "message": "in use"}),
            PSATransientError,
            "psa_unavailable",
        ),
    ],
)
def test_odd_answers_map_to_psa_errors(response: httpx.Response, expected: type[PSAError], code: str) -> None:
    with pytest.raises(expected) as err:
        mocked(lambda request: response).fetch_ticket("1")
    assert err.value.code == code


@pytest.mark.parametrize(
    ("retry_after", "seconds"),
    [("12", 12), ("0.2", 1), ("soon", 5), ("", 5), ("inf", 5), ("Wed, 21 Oct 2015 07:28:00 GMT", 1)],
)
def test_retry_after_forms(retry_after: str, seconds: int) -> None:
    headers = {"Retry-After": retry_after} if retry_after else {}
    with pytest.raises(PSARateLimited) as err:
        mocked(lambda request: httpx.Response(429, headers=headers)).fetch_ticket("1")
    assert err.value.retry_after == seconds


def test_garbled_note_answer_says_it_may_have_applied() -> None:
    provider = mocked(lambda request: httpx.Response(201, text="{truncated"))
    with pytest.raises(PSAError) as err:
        provider.post_note("1", "x", NoteKind.resolution)
    assert err.value.code == "psa_bad_response" and err.value.details["may_have_applied"] is True


def test_next_links_to_another_host_are_applied_to_our_own_url() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            link = '<https://evil.example.test/steal?page=2&pageSize=50&orderBy=id+desc>; rel="next"'
            return httpx.Response(200, json=[{"id": 1, "text": "no"}], headers={"Link": link})
        return httpx.Response(200, json=[{"id": 2, "text": "ref:fp-x"}])

    found = mocked(handler).find_note_by_marker("1", "ref:fp-x")
    assert found is not None and found.id == "2"
    assert seen[1].url.host == "cw.example.test"
    assert seen[1].url.path == "/v4_6_release/apis/3.0/service/tickets/1/notes"
    assert seen[1].url.params["page"] == "2"
