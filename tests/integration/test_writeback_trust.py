"""What a 200 claims is what the ticket shows.

Through the real handlers, the executed ASL and the ConnectWise simulator: visibility read back and
repaired, edited re-posts amended in place, the ticket fixed for the whole write-back, canonical ticket
ids, and text hygiene on the way to the ticket.
"""

from __future__ import annotations

from typing import Any

import pytest

from flowpilot.psa.base import contains_marker
from tests.conftest import Api

NOTE = "Reinstalled the VPN client and reset the adapter.\n\nThe connection has been stable for 30 minutes."
EDITED = "Replaced the faulty dock; the VPN has stayed connected all afternoon.\n\nNo further action needed."
HANDOFF = "## Problem\nMailbox stuck.\n## What we've confirmed\nQuota is fine."


def ticket_session(api: Api, ticket_id: str) -> dict[str, Any]:
    response = api.post("/ai-sessions", {"title": "t", "problem": "p", "psa_ticket": _ticket(ticket_id)})
    assert response.status == 201, response.text
    return dict(response.body)


def _ticket(ticket_id: str) -> dict[str, str]:
    return {"provider": "connectwise", "ticket_id": ticket_id}


def resolve(api: Api, session_id: str, markdown: str = NOTE) -> Any:
    return api.post(f"/ai-sessions/{session_id}/resolution-note/post", {"markdown": markdown})


def escalate(api: Api, session_id: str, markdown: str = HANDOFF) -> Any:
    return api.post(f"/ai-sessions/{session_id}/escalation-package/post", {"markdown": markdown})


def note_calls(sim: Any, ticket_id: int) -> list[str]:
    return [r.method for r in sim.requests if f"/service/tickets/{ticket_id}/notes/" in r.path]


def is_internal_only(note: dict[str, Any]) -> bool:
    visible = note["detailDescriptionFlag"] or note["resolutionFlag"] or note.get("issueFlag")
    return bool(note["internalAnalysisFlag"]) and not visible


# --- visibility is read back and enforced ----------------------------------------------------------


def test_escalation_stored_customer_visible_is_repaired_before_the_200(api: Api, psa: Any) -> None:
    psa.set_faults(1002, note_flag_overrides={"detailDescriptionFlag": True})  # the tenant's default
    session = ticket_session(api, "1002")
    response = escalate(api, session["id"])
    assert response.status == 200, response.text
    notes = psa.notes(1002)
    assert len(notes) == 1 and is_internal_only(notes[0])
    assert note_calls(psa, 1002) == ["GET", "PATCH", "GET"]  # read back, repaired, read back again


def test_visibility_that_cannot_be_repaired_is_a_502_on_every_post(api: Api, psa: Any) -> None:
    psa.set_faults(1002, note_flag_overrides={"detailDescriptionFlag": True}, note_flag_overrides_sticky=True)
    session = ticket_session(api, "1002")
    for attempt in range(3):
        response = escalate(api, session["id"])
        assert response.status == 502, (attempt, response.text)
        error = response.body["error"]
        assert error["code"] == "psa_note_visibility_mismatch"
        assert error["details"]["customer_visible"] is True
        assert error["details"]["note_id"] == str(psa.notes(1002)[0]["id"])
    assert len(psa.notes(1002)) == 1
    stored = api.get(f"/ai-sessions/{session['id']}").body
    assert stored["status"] == "active"
    assert stored["last_writeback"]["error_code"] == "psa_note_visibility_mismatch"


def test_repost_repairs_once_the_tenant_lets_it(api: Api, psa: Any) -> None:
    psa.set_faults(1002, note_flag_overrides={"detailDescriptionFlag": True}, note_flag_overrides_sticky=True)
    session = ticket_session(api, "1002")
    assert escalate(api, session["id"]).status == 502
    psa.set_faults(1002, note_flag_overrides={}, note_flag_overrides_sticky=False)
    response = escalate(api, session["id"])
    assert response.status == 200, response.text
    notes = psa.notes(1002)
    assert len(notes) == 1 and is_internal_only(notes[0])
    assert response.body["external_id"] == str(notes[0]["id"])


def test_resolve_after_a_leaked_escalation_never_answers_200_while_it_leaks(api: Api, psa: Any) -> None:
    psa.set_faults(1002, note_flag_overrides={"detailDescriptionFlag": True}, note_flag_overrides_sticky=True)
    session = ticket_session(api, "1002")
    assert escalate(api, session["id"]).status == 502
    blocked = resolve(api, session["id"])
    assert blocked.status == 502, blocked.text
    assert blocked.body["error"]["code"] == "psa_note_visibility_mismatch"
    assert len(psa.notes(1002)) == 1  # no resolution note was posted beside the leaking handoff
    psa.set_faults(1002, note_flag_overrides={}, note_flag_overrides_sticky=False)
    response = resolve(api, session["id"])
    assert response.status == 200, response.text
    handoff, resolution = psa.notes(1002)
    assert is_internal_only(handoff) and resolution["resolutionFlag"] is True


# --- edited re-post --------------------------------------------------------------------------------


def test_edited_repost_amends_the_kept_note_in_place(api: Api, psa: Any) -> None:
    session = ticket_session(api, "1003")  # accepts the status change and ignores it: 502
    assert resolve(api, session["id"]).status == 502
    psa.set_faults(1003, ignore_status_change=False)
    response = resolve(api, session["id"], EDITED)
    assert response.status == 200, response.text
    assert response.body["note_amended"] is True
    notes = psa.notes(1003)
    assert len(notes) == 1
    assert notes[0]["text"].startswith(EDITED) and "Reinstalled" not in notes[0]["text"]
    assert response.body["external_id"] == str(notes[0]["id"])
    ledger = api.get(f"/ai-sessions/{session['id']}/writebacks/{response.body['writeback_id']}").body
    assert ledger["markdown"] == EDITED and ledger["note_amended"] is True
    assert contains_marker(notes[0]["text"], ledger["note_marker"])
    stored = api.get(f"/ai-sessions/{session['id']}").body
    assert stored["resolution_summary"] == "Replaced the faulty dock; the VPN has stayed connected all afternoon."


def test_repost_with_the_same_text_is_not_an_amendment(api: Api, psa: Any) -> None:
    session = ticket_session(api, "1003")
    assert resolve(api, session["id"]).status == 502
    psa.set_faults(1003, ignore_status_change=False)
    response = resolve(api, session["id"])
    assert response.status == 200, response.text
    assert response.body["note_amended"] is False
    assert "PATCH" not in note_calls(psa, 1003)


def test_an_amendment_the_psa_drops_is_a_502_and_nothing_claims_the_new_text(api: Api, psa: Any) -> None:
    session = ticket_session(api, "1003")
    assert resolve(api, session["id"]).status == 502
    psa.set_faults(1003, ignore_status_change=False, ignore_note_update=True)
    response = resolve(api, session["id"], EDITED)
    assert response.status == 502, response.text
    assert response.body["error"]["code"] == "psa_note_not_amended"
    ledger = api.get(f"/ai-sessions/{session['id']}/writebacks/{response.body['error']['details']['writeback_id']}")
    assert ledger.body["markdown"] is None and ledger.body["requested_markdown"] == EDITED
    assert psa.ticket(1003)["status"]["id"] == 1  # no status change was attempted on an unverified note
    stored = api.get(f"/ai-sessions/{session['id']}").body
    assert stored["status"] == "active" and stored["resolution_summary"] is None


# --- the ticket cannot move under a write-back -----------------------------------------------------


def test_relink_between_read_and_lock_writes_and_records_one_ticket(
    api: Api, psa: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flowpilot import writeback

    session = ticket_session(api, "1001")
    configured = writeback.check_configured
    relinked: list[int] = []

    def relink_once(account_id: str, provider: str) -> None:
        # Runs between the post's session read and its lock: the moment the outside race hit.
        if not relinked:
            relinked.append(api.put(f"/ai-sessions/{session['id']}/psa-ticket", _ticket("1006")).status)
        configured(account_id, provider)

    monkeypatch.setattr(writeback, "check_configured", relink_once)
    response = resolve(api, session["id"])
    assert relinked == [200]
    assert response.status == 200, response.text
    assert psa.notes(1001) == [] and len(psa.notes(1006)) == 1
    assert psa.ticket(1001)["status"]["id"] != 5 and psa.ticket(1006)["status"]["id"] == 5
    stored = api.get(f"/ai-sessions/{session['id']}").body
    assert stored["psa_ticket"] == _ticket("1006")


def test_relink_while_a_writeback_holds_the_lock_is_409(api: Api, psa: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from flowpilot import writeback

    session = ticket_session(api, "1001")
    started = writeback.executions.start_writeback
    answers: list[Any] = []

    def relink_then_start(writeback_id: str, payload: dict[str, Any]) -> str:
        answers.append(api.put(f"/ai-sessions/{session['id']}/psa-ticket", _ticket("1006")))
        return started(writeback_id, payload)

    monkeypatch.setattr(writeback.executions, "start_writeback", relink_then_start)
    response = resolve(api, session["id"])
    assert response.status == 200, response.text
    assert answers[0].status == 409 and answers[0].body["error"]["code"] == "writeback_in_progress"
    assert len(psa.notes(1001)) == 1 and psa.notes(1006) == []
    assert api.get(f"/ai-sessions/{session['id']}").body["psa_ticket"] == _ticket("1001")


# --- canonical ticket ids --------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "stored"), [(" 01005", "1005"), ("1005", "1005"), ("0000042\t", "42")])
def test_ticket_ids_are_stored_canonical(api: Api, aws_env: Any, given: str, stored: str) -> None:
    created = api.post("/ai-sessions", {"title": "t", "problem": "p", "psa_ticket": _ticket(given)})
    assert created.status == 201, created.text
    assert created.body["psa_ticket"]["ticket_id"] == stored
    relinked = api.put(f"/ai-sessions/{created.body['id']}/psa-ticket", _ticket(given))
    assert relinked.body["psa_ticket"]["ticket_id"] == stored


@pytest.mark.parametrize("bad", ["0", "000", "-5", "+5", "abc", "1e3", "12 34", "", " ", "١٢٣", "1" * 13, "5.0"])
def test_ticket_ids_that_are_not_positive_integers_are_422(api: Api, aws_env: Any, bad: str) -> None:
    created = api.post("/ai-sessions", {"title": "t", "problem": "p", "psa_ticket": _ticket(bad)})
    assert created.status == 422, (bad, created.text)
    session = api.new_session()
    relinked = api.put(f"/ai-sessions/{session['id']}/psa-ticket", _ticket(bad))
    assert relinked.status == 422, (bad, relinked.text)
    assert api.get(f"/ai-sessions/{session['id']}").body["state_version"] == session["state_version"]


def test_relink_under_another_spelling_resumes_without_a_second_note(api: Api, psa: Any) -> None:
    session = ticket_session(api, "1003")
    assert resolve(api, session["id"]).status == 502
    assert api.put(f"/ai-sessions/{session['id']}/psa-ticket", _ticket("001003")).status == 200
    psa.set_faults(1003, ignore_status_change=False)
    response = resolve(api, session["id"])
    assert response.status == 200, response.text
    assert len(psa.notes(1003)) == 1


# --- text hygiene ----------------------------------------------------------------------------------


@pytest.mark.parametrize("blank", ["   ", "\n\t \n", "\u00a0\u3000", "\u200b\u200b", "\x00\x1b[0m  "])
def test_blank_markdown_is_422_and_posts_nothing(api: Api, psa: Any, blank: str) -> None:
    session = ticket_session(api, "1001")
    for response in (resolve(api, session["id"], blank), escalate(api, session["id"], blank)):
        assert response.status == 422, (blank, response.text)
    assert psa.notes(1001) == []
    assert api.get(f"/ai-sessions/{session['id']}").body["status"] == "active"


def _hidden(c: str) -> bool:
    """Control characters but newline and tab, and the explicit bidi controls (embeddings, overrides, isolates)."""
    code = ord(c)
    return (
        (code < 32 and c not in "\n\t") or 0x7F <= code <= 0x9F or 0x202A <= code <= 0x202E or 0x2066 <= code <= 0x2069
    )


@pytest.mark.parametrize(
    ("sent", "shown"),
    [
        (
            "Reset\x00 the \x1b[31madapter\x1b[0m\x07.\r\nStable\x7f for \x9b2J30 minutes.\tDone.",
            "Reset the adapter.\nStable for 30 minutes.\tDone.",
        ),
        # An override can make a customer-visible note read differently than the engineer approved it.
        (
            "Refund of \u202e00.001$\u202c approved.\nSee \u2066file\u2069 and \u202aleft\u202b right\u202c\u202d.",
            "Refund of 00.001$ approved.\nSee file and left right.",
        ),
    ],
    ids=["control", "bidi"],
)
def test_control_and_bidi_characters_never_reach_the_ticket(api: Api, psa: Any, sent: str, shown: str) -> None:
    session = ticket_session(api, "1001")
    response = resolve(api, session["id"], sent)
    assert response.status == 200, response.text
    text = psa.notes(1001)[0]["text"]
    assert text.startswith(shown)
    assert not any(_hidden(c) for c in text)


# --- the secret check before a customer-visible post ----------------------------------------------

WITH_A_SECRET = "Reset the VPN account.\nThe admin password is Hunter2!x9 until you change it."


def test_a_secret_in_the_customer_note_is_422_with_where_and_posts_nothing(api: Api, psa: Any) -> None:
    session = ticket_session(api, "1001")
    response = resolve(api, session["id"], WITH_A_SECRET)
    assert response.status == 422, response.text
    assert response.body["error"]["code"] == "sensitive_content"
    warnings = response.body["error"]["details"]["warnings"]
    assert [w["line"] for w in warnings] == [2] and "Hunter2!x9" not in response.text
    assert psa.notes(1001) == [] and psa.requests == []
    assert api.get(f"/ai-sessions/{session['id']}").body["status"] == "active"

    acknowledged = api.post(
        f"/ai-sessions/{session['id']}/resolution-note/post", {"markdown": WITH_A_SECRET, "acknowledge_warnings": True}
    )
    assert acknowledged.status == 200, acknowledged.text
    assert len(psa.notes(1001)) == 1


@pytest.mark.parametrize("flag", ["yes", "on", "1", "true", 1, "false", 0, None, [True]])
def test_acknowledge_warnings_must_be_a_json_boolean(api: Api, psa: Any, flag: Any) -> None:
    """Only `true` acknowledges: a string or a number that a lax parser would take as true posts nothing."""
    session = ticket_session(api, "1001")
    for kind in ("resolution-note", "escalation-package"):
        body = {"markdown": WITH_A_SECRET if kind == "resolution-note" else HANDOFF, "acknowledge_warnings": flag}
        response = api.post(f"/ai-sessions/{session['id']}/{kind}/post", body)
        assert response.status == 422, (kind, flag, response.text)
        assert response.body["error"]["code"] == "validation_error"
        assert "acknowledge_warnings" in response.body["error"]["message"]
    assert psa.notes(1001) == [] and psa.requests == []
    assert api.get(f"/ai-sessions/{session['id']}").body["state_version"] == session["state_version"]
