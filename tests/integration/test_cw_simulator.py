"""The ConnectWise simulator over real loopback HTTP: CW's wire format, auth, paging and fault knobs."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.cw_simulator import DEMO_CLIENT_ID, CWSimulator

REPO = Path(__file__).resolve().parents[2]


def auth_headers(
    company: str = "flowpilot-demo",
    public: str = "demo-public",
    private: str = "demo-private",
    client_id: str | None = DEMO_CLIENT_ID,
) -> dict[str, str]:
    token = base64.b64encode(f"{company}+{public}:{private}".encode()).decode()
    headers = {
        "Authorization": f"Basic {token}",
        "Content-Type": "application/json",
        "Accept": "application/json",
    }
    if client_id is not None:
        headers["clientId"] = client_id
    return headers


@pytest.fixture
def sim() -> Iterator[CWSimulator]:
    with CWSimulator() as s:
        s.seed_demo()
        yield s


@pytest.fixture
def cw(sim: CWSimulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.base_url, headers=auth_headers(), timeout=5) as client:
        yield client


def patch_status(cw: httpx.Client, ticket_id: int, path: str, value: Any) -> httpx.Response:
    return cw.patch(f"/service/tickets/{ticket_id}", json=[{"op": "replace", "path": path, "value": value}])


# --- lifecycle, companyinfo, routing ---------------------------------------------------------------


def test_urls_and_companyinfo(sim: CWSimulator) -> None:
    assert sim.site_url.startswith("http://127.0.0.1:")
    assert sim.base_url == f"{sim.site_url}/v4_6_release/apis/3.0"
    resp = httpx.get(f"{sim.site_url}/login/companyinfo/flowpilot-demo")
    assert resp.status_code == 200
    info = resp.json()
    assert info["Codebase"] == "v4_6_release/"
    assert info["CompanyID"] == "flowpilot-demo"
    assert httpx.get(f"{sim.site_url}/login/companyinfo/someone-else").status_code == 404


def test_unstarted_simulator_has_no_url() -> None:
    with pytest.raises(RuntimeError):
        _ = CWSimulator().base_url


def test_stop_is_clean_with_an_idle_keepalive_connection() -> None:
    sim = CWSimulator()
    sim.start()
    sim.seed_demo()
    client = httpx.Client(base_url=sim.base_url, headers=auth_headers(), timeout=2)
    assert client.get("/service/tickets/1001").status_code == 200  # leaves a pooled connection open
    started = time.monotonic()
    sim.stop()
    assert time.monotonic() - started < 4.5  # a hang would run into stop()'s 5 s join; busy CI takes well under 1 s
    with pytest.raises(httpx.TransportError):
        client.get("/service/tickets/1001")
    client.close()
    sim.stop()  # idempotent


def test_unknown_paths(sim: CWSimulator, cw: httpx.Client) -> None:
    resp = cw.get("/service/nothing/here")
    assert resp.status_code == 404
    assert resp.json()["code"] == "NotFound"
    # Outside the API base (e.g. a wrong codebase) it is IIS answering, not CW JSON.
    outside = httpx.get(f"{sim.site_url}/v2019_1/apis/3.0/service/tickets/1001", headers=auth_headers())
    assert outside.status_code == 404
    assert outside.headers["content-type"].startswith("text/html")
    missing = cw.get("/service/tickets/9999")
    assert missing.status_code == 404
    assert missing.json()["code"] == "NotFound"
    assert missing.json()["message"] == "Ticket ID 9999 not found."
    assert cw.delete("/service/tickets/1001").status_code == 405


# --- auth ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"clientId": DEMO_CLIENT_ID},
        auth_headers(private="wrong"),
        auth_headers(public="wrong"),
        auth_headers(company="other"),
        auth_headers(client_id=None),
        auth_headers(client_id="00000000-0000-0000-0000-000000000000"),
        {**auth_headers(), "Authorization": "Bearer abc"},
        {**auth_headers(), "Authorization": "Basic not-base64!"},
    ],
    ids=[
        "none",
        "no-auth",
        "bad-private",
        "bad-public",
        "bad-company",
        "no-client-id",
        "bad-client-id",
        "bearer",
        "junk",
    ],
)
def test_every_api_call_needs_basic_auth_and_client_id(sim: CWSimulator, headers: dict[str, str]) -> None:
    resp = httpx.get(f"{sim.base_url}/service/tickets/1001", headers=headers)
    assert resp.status_code == 401
    assert resp.json()["code"] == "Unauthorized"
    assert resp.headers["x-cw-request-id"]


def test_good_auth_passes_and_answers_carry_a_request_id(cw: httpx.Client) -> None:
    first, second = cw.get("/service/tickets/1001"), cw.get("/service/tickets/1001")
    assert first.status_code == second.status_code == 200
    assert first.headers["x-cw-request-id"] != second.headers["x-cw-request-id"]


def test_revoked_credentials_and_per_ticket_auth_faults(sim: CWSimulator, cw: httpx.Client) -> None:
    sim.revoke_credentials()
    assert cw.get("/service/tickets/1001").status_code == 401
    sim.restore_credentials()
    assert cw.get("/service/tickets/1001").status_code == 200

    sim.set_faults(1001, auth_fail=True)
    assert cw.get("/service/tickets/1001").status_code == 401
    assert cw.get("/service/tickets/1002").status_code == 200
    sim.set_faults(1001, auth_fail=False, security_denied=True)
    denied = cw.get("/service/tickets/1001/notes")
    assert denied.status_code == 403
    assert denied.json()["code"] == "Security"


def test_mutations_need_a_json_content_type(cw: httpx.Client) -> None:
    resp = cw.post("/service/tickets/1001/notes", content=b"text=hi", headers={"Content-Type": "text/plain"})
    assert resp.status_code == 415
    bad_json = cw.post("/service/tickets/1001/notes", content=b"{not json")
    assert bad_json.status_code == 400


# --- tickets and notes -----------------------------------------------------------------------------


def test_ticket_shape(sim: CWSimulator, cw: httpx.Client) -> None:
    ticket = cw.get("/service/tickets/1001").json()
    assert ticket["id"] == 1001
    assert ticket["recordType"] == "ServiceTicket"
    assert ticket["board"]["id"] == 1 and ticket["board"]["name"] == "Service Desk"
    assert ticket["board"]["_info"]["board_href"].endswith("/service/boards/1")
    assert ticket["status"] == {
        "id": 2,
        "name": "In Progress",
        "_info": {"status_href": f"{sim.base_url}/service/boards/1/statuses/2"},
    }
    assert ticket["closedFlag"] is False and ticket["customerUpdatedFlag"] is False
    assert {"lastUpdated", "dateEntered", "updatedBy", "notes_href"} <= set(ticket["_info"])
    assert sim.ticket(1001) == ticket
    only = cw.get("/service/tickets/1001", params={"fields": "id,status"}).json()
    assert set(only) == {"id", "status"}


def test_note_create_echoes_internal_and_external_true_but_get_returns_null(sim: CWSimulator, cw: httpx.Client) -> None:
    body = {
        "text": "Escalating to tier 2",
        "internalAnalysisFlag": True,
        "detailDescriptionFlag": False,
        "resolutionFlag": False,
        "customerUpdatedFlag": False,
        "processNotifications": False,
        "someUnknownField": "silently dropped",
    }
    created = cw.post("/service/tickets/1002/notes", json=body)
    assert created.status_code == 201
    note = created.json()
    assert note["internalFlag"] is True and note["externalFlag"] is True
    assert note["internalAnalysisFlag"] is True
    assert note["detailDescriptionFlag"] is False and note["resolutionFlag"] is False and note["issueFlag"] is False
    assert note["ticketId"] == 1002 and note["processNotifications"] is False
    assert note["member"]["identifier"] == "flowpilot-api" and note["createdBy"] == "flowpilot-api"
    assert "someUnknownField" not in note

    listed = cw.get("/service/tickets/1002/notes").json()
    assert [n["id"] for n in listed] == [note["id"]]
    assert listed[0]["internalFlag"] is None and listed[0]["externalFlag"] is None
    assert cw.get(f"/service/tickets/1002/notes/{note['id']}").json()["internalFlag"] is None
    assert sim.notes(1002)[0]["text"] == "Escalating to tier 2"


@pytest.mark.parametrize("body", [{}, {"text": ""}, {"text": "   "}, {"text": 42}])
def test_note_without_text_is_missing_required_field(cw: httpx.Client, body: dict[str, Any]) -> None:
    resp = cw.post("/service/tickets/1001/notes", json=body)
    assert resp.status_code == 400
    error = resp.json()
    assert error["code"] == "InvalidObject"
    assert error["errors"][0]["code"] == "MissingRequiredField"
    assert error["errors"][0]["field"] == "text"


def test_customer_updated_note_marks_the_ticket(sim: CWSimulator, cw: httpx.Client) -> None:
    cw.post("/service/tickets/1001/notes", json={"text": "hi", "detailDescriptionFlag": True})
    assert sim.ticket(1001)["customerUpdatedFlag"] is False
    cw.post("/service/tickets/1001/notes", json={"text": "hi", "customerUpdatedFlag": True})
    assert sim.ticket(1001)["customerUpdatedFlag"] is True


def test_note_flag_overrides_store_other_flags_than_sent(sim: CWSimulator, cw: httpx.Client) -> None:
    sim.set_faults(1002, note_flag_overrides={"detailDescriptionFlag": True})
    note = cw.post("/service/tickets/1002/notes", json={"text": "internal", "internalAnalysisFlag": True}).json()
    assert note["detailDescriptionFlag"] is True


# --- status changes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value"),
    [("status", {"id": 6}), ("/status", {"id": 6}), ("status/id", 6), ("/status/id", 6), ("/Status/ID", 6)],
)
def test_patch_accepts_the_four_status_path_forms(sim: CWSimulator, cw: httpx.Client, path: str, value: Any) -> None:
    resp = patch_status(cw, 1001, path, value)
    assert resp.status_code == 200
    assert resp.json()["status"]["id"] == 6
    assert resp.json()["status"]["name"] == "Escalated - Tier 2"
    assert sim.ticket(1001)["status"]["id"] == 6
    assert sim.ticket(1001)["_info"]["updatedBy"] == "flowpilot-api"


def test_patch_status_of_another_board_is_cws_400(sim: CWSimulator, cw: httpx.Client) -> None:
    resp = patch_status(cw, 1001, "status", {"id": 21})
    assert resp.status_code == 400
    assert resp.json() == {
        "code": "InvalidObject",
        "message": "ticket object is invalid",
        "errors": [
            {
                "code": "NotFound",
                "message": "Service Status 21 not found for Service Board 1",
                "resource": "ticket",
                "field": "status/id",
            }
        ],
    }
    assert sim.ticket(1001)["status"]["id"] == 2


def test_patch_inactive_status_is_400(sim: CWSimulator, cw: httpx.Client) -> None:
    resp = patch_status(cw, 1001, "status/id", 8)
    assert resp.status_code == 400
    assert "inactive" in resp.json()["errors"][0]["message"]
    assert sim.ticket(1001)["status"]["id"] == 2


@pytest.mark.parametrize(
    "ops",
    [
        [{"op": "replace", "path": "priority", "value": {"id": 1}}],
        [{"op": "add", "path": "status", "value": {"id": 5}}],
        [{"op": "remove", "path": "status/id", "value": 5}],
        [{"op": "replace", "path": "status", "value": 5}],
        [{"op": "replace", "path": "status/id", "value": "five"}],
        {"op": "replace", "path": "status", "value": {"id": 5}},
        [],
    ],
    ids=["unknown-path", "add", "remove", "status-not-object", "id-not-int", "not-an-array", "empty"],
)
def test_patch_rejects_other_paths_ops_and_shapes(sim: CWSimulator, cw: httpx.Client, ops: Any) -> None:
    resp = cw.patch("/service/tickets/1001", json=ops)
    assert resp.status_code == 400
    assert resp.json()["code"] == "InvalidObject"
    assert sim.ticket(1001)["status"]["id"] == 2


def test_patch_summary_and_customer_updated_flag(sim: CWSimulator, cw: httpx.Client) -> None:
    resp = cw.patch(
        "/service/tickets/1001",
        json=[
            {"op": "replace", "path": "summary", "value": "VPN fixed"},
            {"op": "replace", "path": "customerUpdatedFlag", "value": True},
        ],
    )
    assert resp.status_code == 200
    assert sim.ticket(1001)["summary"] == "VPN fixed"
    assert sim.ticket(1001)["customerUpdatedFlag"] is True
    too_long = cw.patch("/service/tickets/1001", json=[{"op": "replace", "path": "summary", "value": "x" * 101}])
    assert too_long.json()["errors"][0]["code"] == "MaxLengthField"


def test_closed_status_sets_and_clears_closed_flag(sim: CWSimulator, cw: httpx.Client) -> None:
    closed = patch_status(cw, 1001, "status", {"id": 5}).json()
    assert closed["closedFlag"] is True and closed["closedDate"] and closed["closedBy"] == "flowpilot-api"
    reopened = patch_status(cw, 1001, "status", {"id": 1}).json()
    assert reopened["closedFlag"] is False and reopened["closedDate"] is None


def test_set_status_out_of_band(sim: CWSimulator) -> None:
    sim.set_status(1001, 3)
    assert sim.ticket(1001)["status"]["name"] == "Waiting on Customer"
    assert sim.ticket(1001)["_info"]["updatedBy"] == "jdoe"
    with pytest.raises(ValueError):
        sim.set_status(1001, 21)
    with pytest.raises(ValueError):
        sim.set_status(1001, 8)


# --- lists -----------------------------------------------------------------------------------------


def test_board_statuses_shape_and_conditions(cw: httpx.Client) -> None:
    statuses = cw.get("/service/boards/1/statuses").json()
    assert [s["id"] for s in statuses] == [1, 2, 3, 5, 6, 7, 8]
    resolved = next(s for s in statuses if s["id"] == 5)
    assert resolved["closedStatus"] is True and resolved["board"] == {"id": 1}
    assert {"sortOrder", "inactive", "escalationStatus", "defaultFlag"} <= set(resolved)
    active = cw.get("/service/boards/1/statuses", params={"conditions": "inactive=false"}).json()
    assert 8 not in [s["id"] for s in active] and len(active) == 6
    spaced = cw.get("/service/boards/1/statuses", params={"conditions": "inactive = false and closedStatus = true"})
    assert [s["id"] for s in spaced.json()] == [5, 7]
    assert [s["id"] for s in cw.get("/service/boards/2/statuses").json()] == [21, 22, 23, 24, 25, 26]
    assert cw.get("/service/boards/1/statuses/5").json()["name"] == "Resolved"
    assert cw.get("/service/boards/99/statuses").status_code == 404
    assert cw.get("/service/boards/1/statuses", params={"conditions": "name like 'x%'"}).status_code == 400


def test_lists_page_with_link_headers(sim: CWSimulator, cw: httpx.Client) -> None:
    for i in range(60):
        sim.add_note(1006, f"note {i}", detailDescriptionFlag=True)
    first = cw.get("/service/tickets/1006/notes", params={"orderBy": "id desc"})
    assert len(first.json()) == 25  # default page size
    assert first.json()[0]["text"] == "note 59"
    assert set(first.links) == {"next", "last"}
    assert "page=3" in first.links["last"]["url"]

    third = cw.get(first.links["last"]["url"])
    assert [n["text"] for n in third.json()] == [f"note {i}" for i in range(9, -1, -1)]
    assert "next" not in third.links and {"prev", "first"} <= set(third.links)

    second = cw.get(first.links["next"]["url"])
    assert second.json()[0]["text"] == "note 34"
    assert "orderBy=id+desc" in first.links["next"]["url"]

    big = cw.get("/service/tickets/1006/notes", params={"pageSize": 5000})
    assert len(big.json()) == 60 and "link" not in big.headers
    ascending = cw.get("/service/tickets/1006/notes", params={"pageSize": 3}).json()
    assert [n["text"] for n in ascending] == ["note 0", "note 1", "note 2"]


# --- fault knobs -----------------------------------------------------------------------------------


def test_rate_limit_next_answers_429_with_retry_after(sim: CWSimulator, cw: httpx.Client) -> None:
    sim.set_faults(1001, rate_limit_next=2, retry_after=7)
    for _ in range(2):
        resp = cw.get("/service/tickets/1001")
        assert resp.status_code == 429
        assert resp.headers["retry-after"] == "7"
        assert resp.json()["code"] == "TooManyRequests"
    assert cw.get("/service/tickets/1002").status_code == 200  # other tickets unaffected
    assert cw.get("/service/tickets/1001").status_code == 200


def test_fail_next_answers_500_then_recovers(sim: CWSimulator, cw: httpx.Client) -> None:
    sim.faults(1001).fail_next = 1
    failed = cw.post("/service/tickets/1001/notes", json={"text": "x", "resolutionFlag": True})
    assert failed.status_code == 500
    assert failed.json()["code"]
    assert sim.notes(1001) == []  # a 500 stores nothing
    assert cw.post("/service/tickets/1001/notes", json={"text": "x", "resolutionFlag": True}).status_code == 201


def test_ignore_status_change_answers_200_and_changes_nothing(sim: CWSimulator, cw: httpx.Client) -> None:
    # Ticket 1003 is seeded with ignore_status_change.
    resp = patch_status(cw, 1003, "status", {"id": 5})
    assert resp.status_code == 200
    assert resp.json()["status"]["id"] == 1
    assert sim.ticket(1003)["status"]["id"] == 1
    assert patch_status(cw, 1003, "status", {"id": 21}).status_code == 400  # still validated


def test_revert_status_immediately(sim: CWSimulator, cw: httpx.Client) -> None:
    sim.set_faults(1001, revert_status_after=0)
    resp = patch_status(cw, 1001, "status", {"id": 5})
    assert resp.json()["status"]["id"] == 5  # the PATCH answer shows the change
    after = cw.get("/service/tickets/1001").json()
    assert after["status"]["id"] == 2 and after["closedFlag"] is False
    assert after["_info"]["updatedBy"] == "Workflow"


def test_revert_status_after_a_delay(sim: CWSimulator, cw: httpx.Client) -> None:
    sim.set_faults(1001, revert_status_after=2.0)  # the immediate read lands first even on a busy machine
    patch_status(cw, 1001, "status", {"id": 6})
    assert cw.get("/service/tickets/1001").json()["status"]["id"] == 6
    deadline = time.monotonic() + 60
    while sim.ticket(1001)["status"]["id"] != 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sim.ticket(1001)["status"]["id"] == 2


def test_latency_delays_the_answer(sim: CWSimulator, cw: httpx.Client) -> None:
    sim.set_faults(1001, latency=0.3)
    started = time.monotonic()
    assert cw.get("/service/tickets/1001").status_code == 200
    assert time.monotonic() - started >= 0.3  # a lower bound: load only makes it longer
    # Per ticket: with a minute's latency on 1001, 1002 still answers within the client's timeout.
    sim.set_faults(1001, latency=60.0)
    assert cw.get("/service/tickets/1002").status_code == 200


def test_drop_after_commit_stores_the_note_and_sends_nothing(sim: CWSimulator, cw: httpx.Client) -> None:
    sim.set_faults(1001, drop_after_commit_next=1)
    with pytest.raises(httpx.TransportError):
        cw.post("/service/tickets/1001/notes", json={"text": "stored anyway", "resolutionFlag": True})
    assert [n["text"] for n in sim.notes(1001)] == ["stored anyway"]
    assert sim.requests[-1].status == 0
    resp = cw.post("/service/tickets/1001/notes", json={"text": "second", "resolutionFlag": True})
    assert resp.status_code == 201


def test_unknown_fault_knob_is_an_error(sim: CWSimulator) -> None:
    with pytest.raises(TypeError):
        sim.set_faults(1001, ignore_everything=True)


# --- recording and concurrency ---------------------------------------------------------------------


def test_requests_are_recorded(sim: CWSimulator, cw: httpx.Client) -> None:
    sim.clear_requests()
    cw.post("/service/tickets/1001/notes?x=1", json={"text": "hello"})
    cw.get("/service/tickets/1001")
    first, second = sim.requests
    assert (first.method, first.path, first.query, first.status) == (
        "POST",
        "/v4_6_release/apis/3.0/service/tickets/1001/notes",
        {"x": "1"},
        201,
    )
    assert first.body == {"text": "hello"}
    assert first.headers["clientid"] == DEMO_CLIENT_ID
    assert (second.method, second.status, second.body) == ("GET", 200, None)


def test_concurrent_requests(sim: CWSimulator) -> None:
    latency, workers = 0.5, 16  # one after another would take 8 s; in parallel about 0.5 s, well under 4 s
    sim.set_faults(1001, latency=latency)
    statuses: list[int] = []
    limits = httpx.Limits(max_connections=workers)
    with httpx.Client(base_url=sim.base_url, headers=auth_headers(), timeout=10, limits=limits) as client:

        def post(i: int) -> None:
            statuses.append(client.post("/service/tickets/1001/notes", json={"text": f"n{i}"}).status_code)

        threads = [threading.Thread(target=post, args=(i,)) for i in range(workers)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
    assert statuses == [201] * workers
    assert elapsed < workers * latency / 2  # served in parallel, not one after another
    ids = [n["id"] for n in sim.notes(1001)]
    assert len(set(ids)) == workers


def test_seed_demo_describes_what_it_made() -> None:
    with CWSimulator() as fresh:
        seed = fresh.seed_demo()
        assert set(seed["tickets"]) == {"1001", "1002", "1003", "1004", "1005", "1006"}
        assert seed["base_url"] == fresh.base_url
        assert seed["boards"]["1"]["statuses"]["5"] == "Resolved"
        assert fresh.faults(1003).ignore_status_change is True
        assert fresh.faults(1004).revert_status_after is not None
        assert fresh.ticket(1005)["board"]["name"] == "Escalations"


def test_main_runs_standalone_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack.cw_simulator", "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert proc.stdout is not None
        first_line = proc.stdout.readline()
        base_url = first_line.split(": ", 1)[1].strip()
        assert base_url.endswith("/v4_6_release/apis/3.0")
        resp = httpx.get(f"{base_url}/service/tickets/1001", headers=auth_headers(), timeout=5)
        assert resp.json()["summary"] == "VPN drops every 10 minutes"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
