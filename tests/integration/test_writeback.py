"""Write-back end to end: real handlers, the real ASL executed by moto, the ConnectWise simulator over HTTP."""

from __future__ import annotations

from typing import Any

from tests.conftest import Api, connect_psa

NOTE = "Reinstalled the VPN client and reset the adapter.\n\nThe connection has been stable for 30 minutes."


def ticket_session(api: Api, ticket_id: str) -> dict[str, Any]:
    return api.new_session(psa_ticket={"provider": "connectwise", "ticket_id": ticket_id})


def resolve(api: Api, session_id: str, markdown: str = NOTE, **extra: Any) -> Any:
    return api.post(f"/ai-sessions/{session_id}/resolution-note/post", {"markdown": markdown, **extra})


def test_local_only_path(api: Api) -> None:
    session = api.new_session()
    response = resolve(api, session["id"])
    assert response.status == 200, response.text
    body = response.body
    assert body["outcome"] == "resolved_local"
    assert body["session_status"] == "resolved"
    assert body["external_id"] is None
    stored = api.get(f"/ai-sessions/{session['id']}").body
    assert stored["status"] == "resolved"
    assert stored["resolution_summary"] == "Reinstalled the VPN client and reset the adapter."
    ledger = api.get(f"/ai-sessions/{session['id']}/writebacks/{body['writeback_id']}").body
    assert ledger["markdown"] == NOTE and ledger["state"] == "succeeded"


def test_psa_happy_path_verified(api: Api, psa: Any) -> None:
    session = ticket_session(api, "1001")
    psa.clear_requests()
    response = resolve(api, session["id"])
    assert response.status == 200, response.text
    body = response.body
    assert body["outcome"] == "resolved"
    assert body["verified_status_id"] == 5
    assert body["verified_status_name"] == "Resolved"
    assert body["status_transition_skipped_reason"] is None
    notes = psa.notes(1001)
    assert len(notes) == 1
    assert str(notes[0]["id"]) == body["external_id"]
    assert notes[0]["resolutionFlag"] is True and notes[0]["detailDescriptionFlag"] is True
    assert notes[0]["internalAnalysisFlag"] is False
    assert psa.ticket(1001)["status"]["id"] == 5
    assert api.get(f"/ai-sessions/{session['id']}").body["status"] == "resolved"


def escalate(api: Api, session_id: str, markdown: str = "## Problem\nMailbox stuck.", **extra: Any) -> Any:
    return api.post(f"/ai-sessions/{session_id}/escalation-package/post", {"markdown": markdown, **extra})


def psa_calls(sim: Any) -> list[str]:
    return [f"{r.method} {r.path}" for r in sim.requests if "/apis/3.0/" in r.path]


def test_verification_failure_is_a_502_naming_expected_and_actual(api: Api, psa: Any) -> None:
    session = ticket_session(api, "1003")  # the simulator answers 200 to the PATCH and changes nothing
    response = resolve(api, session["id"])
    assert response.status == 502, response.text
    error = response.body["error"]
    assert error["code"] == "psa_status_not_applied"
    assert error["details"]["expected_status_id"] == 5
    assert error["details"]["actual_status_id"] == 1
    assert error["details"]["note_kept"] is True
    assert len(psa.notes(1003)) == 1
    stored = api.get(f"/ai-sessions/{session['id']}").body
    assert stored["status"] == "active"
    assert stored["last_writeback"]["error_code"] == "psa_status_not_applied"


def test_resume_after_502_posts_no_second_note(api: Api, psa: Any) -> None:
    session = ticket_session(api, "1003")
    assert resolve(api, session["id"]).status == 502
    first_note = psa.notes(1003)[0]
    psa.set_faults(1003, ignore_status_change=False)  # someone fixed the board's workflow
    response = resolve(api, session["id"], markdown="An edited note that must not be posted twice.")
    assert response.status == 200, response.text
    assert response.body["verified_status_id"] == 5
    assert response.body["external_id"] == str(first_note["id"])
    assert len(psa.notes(1003)) == 1
    ledger = api.get(f"/ai-sessions/{session['id']}/writebacks/{response.body['writeback_id']}").body
    assert ledger["note_reused_from"]


def test_skipped_transition_when_no_status_configured(api: Api, cw: Any) -> None:
    connect_psa(api, cw, resolved=None, escalated=None)
    session = ticket_session(api, "1001")
    response = resolve(api, session["id"])
    assert response.status == 200, response.text
    body = response.body
    assert body["outcome"] == "resolved"
    assert body["verified_status_id"] is None
    assert "No resolve status is configured for board 'Service Desk' (1)" in body["status_transition_skipped_reason"]
    assert len(cw.notes(1001)) == 1
    assert cw.ticket(1001)["status"]["id"] == 2
    assert not [r for r in cw.requests if r.method == "PATCH"]


def test_repost_after_resolution_is_409(api: Api, psa: Any) -> None:
    session = ticket_session(api, "1001")
    assert resolve(api, session["id"]).status == 200
    again = resolve(api, session["id"])
    assert again.status == 409
    assert again.body["error"]["code"] == "session_already_closed"
    assert escalate(api, session["id"]).status == 409
    assert len(psa.notes(1001)) == 1


def test_escalate_posts_internal_analysis_only(api: Api, psa: Any) -> None:
    session = ticket_session(api, "1002")
    response = escalate(api, session["id"], escalation_reason="Needs Exchange admin")
    assert response.status == 200, response.text
    assert response.body["outcome"] == "escalated"
    assert response.body["session_status"] == "escalated"
    assert response.body["verified_status_id"] == 6
    post = next(r for r in psa.requests if r.method == "POST" and r.path.endswith("/notes"))
    assert post.body["internalAnalysisFlag"] is True
    assert post.body["detailDescriptionFlag"] is False
    assert post.body["resolutionFlag"] is False
    assert post.body["processNotifications"] is False
    assert post.body["customerUpdatedFlag"] is False
    note = psa.notes(1002)[0]
    assert (note["internalAnalysisFlag"], note["detailDescriptionFlag"], note["resolutionFlag"]) == (
        True,
        False,
        False,
    )
    stored = api.get(f"/ai-sessions/{session['id']}").body
    assert stored["escalation_reason"] == "Needs Exchange admin"
    queue = api.get("/ai-sessions", query={"status": "escalated"}).body["items"]
    assert [s["id"] for s in queue] == [session["id"]]


def test_resolution_note_flags_are_customer_visible_and_explicit(api: Api, psa: Any) -> None:
    session = ticket_session(api, "1001")
    assert resolve(api, session["id"]).status == 200
    post = next(r for r in psa.requests if r.method == "POST" and r.path.endswith("/notes"))
    assert (
        post.body["detailDescriptionFlag"],
        post.body["resolutionFlag"],
        post.body["internalAnalysisFlag"],
    ) == (True, True, False)
    assert post.body["processNotifications"] is True
    assert post.body["customerUpdatedFlag"] is False


def test_crash_after_psa_committed_the_note_leaves_exactly_one(api: Api, psa: Any) -> None:
    session = ticket_session(api, "1001")
    psa.set_faults(1001, drop_after_commit_next=1)
    response = resolve(api, session["id"])
    assert response.status == 200, response.text
    notes = psa.notes(1001)
    assert len(notes) == 1
    assert response.body["external_id"] == str(notes[0]["id"])
    marker_searches = [r for r in psa.requests if r.method == "GET" and r.path.endswith("/notes")]
    assert marker_searches, "the retry must look for the committed note before posting"


def test_rate_limited_with_retry_after_then_success(api: Api, psa: Any) -> None:
    session = ticket_session(api, "1001")
    psa.set_faults(1001, rate_limit_next=2, retry_after=1)
    response = resolve(api, session["id"])
    assert response.status == 200, response.text
    assert [r.status for r in psa.requests].count(429) == 2
    assert len(psa.notes(1001)) == 1


def test_server_errors_are_retried(api: Api, psa: Any) -> None:
    session = ticket_session(api, "1001")
    psa.set_faults(1001, fail_next=2)
    response = resolve(api, session["id"])
    assert response.status == 200, response.text
    assert len(psa.notes(1001)) == 1


def test_status_of_another_board_is_422_before_any_post(api: Api, cw: Any) -> None:
    connect_psa(api, cw, resolved=25)  # 25 is "Resolved" on the Escalations board; 1001 is on Service Desk
    session = ticket_session(api, "1001")
    response = resolve(api, session["id"])
    assert response.status == 422, response.text
    error = response.body["error"]
    assert error["code"] == "psa_status_not_on_board"
    assert {"id": 5, "name": "Resolved"} in error["details"]["valid_statuses"]
    assert cw.notes(1001) == []
    assert api.get(f"/ai-sessions/{session['id']}").body["status"] == "active"


def test_per_board_status_mapping_wins(api: Api, cw: Any) -> None:
    connect_psa(api, cw, resolved=5)
    api.put(
        "/account-settings/preferences",
        {"cw_resolved_status_id": 5, "cw_resolved_status_ids_by_board": {"2": 25}},
    )
    session = ticket_session(api, "1005")  # on the Escalations board
    response = resolve(api, session["id"])
    assert response.status == 200, response.text
    assert response.body["verified_status_id"] == 25


def test_psa_auth_failure_is_clear_and_changes_nothing(api: Api, psa: Any) -> None:
    session = ticket_session(api, "1001")
    psa.revoke_credentials()
    response = resolve(api, session["id"])
    assert response.status == 502, response.text
    assert response.body["error"]["code"] == "psa_auth_failed"
    assert psa.private_key not in response.text
    stored = api.get(f"/ai-sessions/{session['id']}").body
    assert stored["status"] == "active"
    assert psa.notes(1001) == []
    psa.restore_credentials()
    assert resolve(api, session["id"]).status == 200


def test_unconfigured_psa_is_422_and_starts_nothing(api: Api, aws_env: Any) -> None:
    session = ticket_session(api, "1001")
    response = resolve(api, session["id"])
    assert response.status == 422
    assert response.body["error"]["code"] == "psa_not_configured"
    assert api.get(f"/ai-sessions/{session['id']}").body["last_writeback"] is None


def test_happy_path_costs_five_psa_calls_once_statuses_are_cached(api: Api, psa: Any) -> None:
    warm = ticket_session(api, "1006")  # same board: its statuses get cached
    warmed = resolve(api, warm["id"])
    assert warmed.status == 200
    wait_for_drift_check(api, warm["id"], warmed.body["writeback_id"])
    session = ticket_session(api, "1001")
    psa.clear_requests()
    response = resolve(api, session["id"])
    assert response.status == 200, response.text
    wait_for_drift_check(api, session["id"], response.body["writeback_id"])
    assert psa_calls(psa) == [
        "GET /v4_6_release/apis/3.0/service/tickets/1001",
        "POST /v4_6_release/apis/3.0/service/tickets/1001/notes",
        f"GET /v4_6_release/apis/3.0/service/tickets/1001/notes/{response.body['external_id']}",  # read back
        "PATCH /v4_6_release/apis/3.0/service/tickets/1001",
        "GET /v4_6_release/apis/3.0/service/tickets/1001",
        "GET /v4_6_release/apis/3.0/service/tickets/1001",  # the later drift re-check
    ]


def wait_for_drift_check(api: Api, session_id: str, writeback_id: str, timeout: float = 60.0) -> dict[str, Any]:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = api.get(f"/ai-sessions/{session_id}/writebacks/{writeback_id}").body
        if entry.get("drift"):
            return entry  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise AssertionError("the drift re-check never ran")


def test_drift_detected_by_the_later_recheck(api: Api, psa: Any, monkeypatch: Any) -> None:
    from flowpilot.config import settings

    monkeypatch.setenv("DRIFT_CHECK_SECONDS", "1")
    settings.cache_clear()
    session = ticket_session(api, "1004")
    psa.set_faults(1004, revert_status_after=0.3)  # a board workflow flips it back after we verified
    response = resolve(api, session["id"])
    assert response.status == 200, response.text
    assert response.body["verified_status_id"] == 5
    assert response.body["drift_check"] == "pending"
    entry = wait_for_drift_check(api, session["id"], response.body["writeback_id"])
    assert entry["drift"]["drifted"] is True
    assert entry["drift"]["status_id"] == 2
    stored = api.get(f"/ai-sessions/{session['id']}").body
    assert stored["last_writeback"]["drift_detected"] is True


def test_stable_status_is_recorded_as_no_drift(api: Api, psa: Any) -> None:
    session = ticket_session(api, "1001")
    response = resolve(api, session["id"])
    entry = wait_for_drift_check(api, session["id"], response.body["writeback_id"])
    assert entry["drift"]["drifted"] is False
    assert api.get(f"/ai-sessions/{session['id']}").body["last_writeback"]["drift_detected"] is False


def test_five_concurrent_posts_make_one_writeback_and_one_note(api: Api, psa: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    session = ticket_session(api, "1001")
    psa.set_faults(1001, latency=0.05)
    with ThreadPoolExecutor(max_workers=5) as pool:
        responses = list(pool.map(lambda _: resolve(api, session["id"]), range(5)))
    statuses = sorted(r.status for r in responses)
    assert statuses == [200, 409, 409, 409, 409], [r.text for r in responses]
    codes = {r.body["error"]["code"] for r in responses if r.status == 409}
    assert codes <= {"writeback_in_progress", "session_already_closed"}
    assert len(psa.notes(1001)) == 1


def test_escalation_status_change_does_not_notify_the_customer(api: Api, psa: Any) -> None:
    session = ticket_session(api, "1002")
    assert escalate(api, session["id"]).status == 200
    patch = next(r for r in psa.requests if r.method == "PATCH")
    assert {"op": "replace", "path": "processNotifications", "value": False} in patch.body


def test_resolution_status_change_keeps_the_boards_notifications(api: Api, psa: Any) -> None:
    session = ticket_session(api, "1001")
    assert resolve(api, session["id"]).status == 200
    patch = next(r for r in psa.requests if r.method == "PATCH")
    assert patch.body == [{"op": "replace", "path": "status", "value": {"id": 5}}]


def test_project_ticket_is_refused_before_anything_is_posted(api: Api, psa: Any) -> None:
    psa.add_ticket(7001, board_id=1, status_id=2, summary="Office move", record_type="ProjectTicket")
    session = ticket_session(api, "7001")
    response = resolve(api, session["id"])
    assert response.status == 422, response.text
    assert response.body["error"]["code"] == "psa_ticket_not_service_ticket"
    assert psa.notes(7001) == []
    assert not [r for r in psa.requests if r.method in {"POST", "PATCH"}]
    assert api.get(f"/ai-sessions/{session['id']}").body["status"] == "active"
