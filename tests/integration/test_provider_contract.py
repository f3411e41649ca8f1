"""One contract, three PSAs: every case here runs against the ConnectWise, Autotask and HaloPSA simulators,
through the real handlers and the real state machine (moto), over each vendor's own wire format.

What a 200 claims is read back from the simulator in vendor-neutral terms (`sim.note_views`, `sim.status_id`):
exactly one note, with the approved text, visible to the customer for a resolution and hidden for an
escalation, and the ticket in the target status.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import PROVIDERS, Api, connect_simulator, simulated_psa

NOTE = "Reinstalled the VPN client and reset the adapter.\n\nThe connection has been stable for 30 minutes."
PACKAGE = "## Problem\nMailbox migration stuck at 95%.\n\n## Tried\nRestarted the move request."
PREFIX = {"connectwise": "cw", "autotask": "autotask", "halopsa": "halo"}


def target(sim: Any, kind: str) -> int:
    return int(sim.preferences()[f"{PREFIX[sim.provider]}_{kind}_status_id"])


def ticket_session(api: Api, sim: Any, ticket_id: str) -> dict[str, Any]:
    return api.new_session(psa_ticket={"provider": sim.provider, "ticket_id": ticket_id})


def resolve(api: Api, session_id: str, markdown: str = NOTE) -> Any:
    return api.post(f"/ai-sessions/{session_id}/resolution-note/post", {"markdown": markdown})


def escalate(api: Api, session_id: str, markdown: str = PACKAGE) -> Any:
    return api.post(f"/ai-sessions/{session_id}/escalation-package/post", {"markdown": markdown})


def the_one_note(sim: Any, ticket_id: str, marker: str) -> Any:
    views = sim.note_views(ticket_id)
    marked = [v for v in views if marker in v.text]
    assert len(views) == 1 and len(marked) == 1, f"expected exactly one note with {marker}: {views}"
    return marked[0]


def writeback(api: Api, session_id: str, writeback_id: str) -> dict[str, Any]:
    response = api.get(f"/ai-sessions/{session_id}/writebacks/{writeback_id}")
    assert response.status == 200, response.text
    return response.body  # type: ignore[no-any-return]


# --- happy paths -----------------------------------------------------------------------------------------


def test_a_resolution_ends_verified_with_one_customer_visible_note(api: Api, any_psa: Any) -> None:
    session = ticket_session(api, any_psa, "1001")
    response = resolve(api, session["id"])
    assert response.status == 200, response.text
    body = response.body
    assert body["outcome"] == "resolved"
    assert body["verified_status_id"] == target(any_psa, "resolved") == any_psa.status_id(1001)
    assert body["note_amended"] is False
    ledger = writeback(api, session["id"], body["writeback_id"])
    note = the_one_note(any_psa, "1001", ledger["note_marker"])
    assert note.id == body["external_id"]
    assert note.customer_visible is True
    assert "Reinstalled the VPN client and reset the adapter." in note.text
    assert "stable for 30 minutes" in note.text
    assert api.get(f"/ai-sessions/{session['id']}").body["status"] == "resolved"


def test_an_escalation_ends_verified_with_one_internal_note(api: Api, any_psa: Any) -> None:
    session = ticket_session(api, any_psa, "1002")
    response = escalate(api, session["id"])
    assert response.status == 200, response.text
    assert response.body["outcome"] == "escalated"
    assert response.body["verified_status_id"] == target(any_psa, "escalated") == any_psa.status_id(1002)
    ledger = writeback(api, session["id"], response.body["writeback_id"])
    note = the_one_note(any_psa, "1002", ledger["note_marker"])
    assert note.customer_visible is False
    assert "Mailbox migration stuck" in note.text


# --- the PSA says yes and does not do it ----------------------------------------------------------------


def test_a_silent_reject_is_a_502_and_the_repost_resumes_with_one_note(api: Api, any_psa: Any) -> None:
    before = any_psa.status_id(1003)
    session = ticket_session(api, any_psa, "1003")  # the simulator accepts the status change and ignores it
    first = resolve(api, session["id"])
    assert first.status == 502, first.text
    error = first.body["error"]
    assert error["code"] == "psa_status_not_applied"
    assert error["details"]["expected_status_id"] == target(any_psa, "resolved")
    assert error["details"]["actual_status_id"] == before
    assert len(any_psa.note_views(1003)) == 1
    assert api.get(f"/ai-sessions/{session['id']}").body["status"] == "active"

    any_psa.set_faults(1003, ignore_status_change=False)  # an admin fixes the workflow
    second = resolve(api, session["id"])
    assert second.status == 200, second.text
    assert second.body["verified_status_id"] == any_psa.status_id(1003) == target(any_psa, "resolved")
    views = any_psa.note_views(1003)
    assert len(views) == 1 and views[0].id == second.body["external_id"]


@pytest.mark.parametrize("edited", [False, True], ids=["same-text", "edited"])
def test_a_kept_note_survives_a_failed_post_to_another_ticket(api: Api, any_psa: Any, edited: bool) -> None:
    """Relink away after a 502, fail there too, relink back: the first ticket's note is resumed, not posted again."""
    any_psa.set_faults(1006, ignore_status_change=True)
    session = ticket_session(api, any_psa, "1003")
    link = f"/ai-sessions/{session['id']}/psa-ticket"
    assert resolve(api, session["id"]).status == 502
    [first] = any_psa.note_views(1003)

    assert api.put(link, {"provider": any_psa.provider, "ticket_id": "1006"}).status == 200
    assert resolve(api, session["id"]).status == 502
    assert len(any_psa.note_views(1006)) == 1

    assert api.put(link, {"provider": any_psa.provider, "ticket_id": " 01003"}).status == 200
    any_psa.set_faults(1003, ignore_status_change=False)
    text = NOTE + "\n\nThe user confirmed it the next morning." if edited else NOTE
    response = resolve(api, session["id"], text)
    assert response.status == 200, response.text
    [note] = any_psa.note_views(1003)
    assert note.id == first.id == response.body["external_id"]
    assert ("confirmed it the next morning" in note.text) is edited
    assert response.body["note_amended"] is edited
    assert len(any_psa.note_views(1006)) == 1  # the other ticket's note is its own, untouched


def shown_without_marker(view: Any) -> str:
    body = view.text.replace("\r\n", "\n").rsplit("\n---\n", 1)[0]
    return "\n".join(line.rstrip() for line in body.split("\n")).strip("\n")


def test_a_repost_that_changes_only_indentation_amends_and_the_ledger_shows_the_ticket(api: Api, any_psa: Any) -> None:
    """In Markdown four leading spaces make a code block: "    code" and "code" are different notes."""
    session = ticket_session(api, any_psa, "1003")
    assert resolve(api, session["id"], "    Get-Service spooler\nRestarted it.").status == 502
    any_psa.set_faults(1003, ignore_status_change=False)
    response = resolve(api, session["id"], "Get-Service spooler\nRestarted it.")
    assert response.status == 200, response.text
    assert response.body["note_amended"] is True
    [note] = any_psa.note_views(1003)
    assert shown_without_marker(note) == "Get-Service spooler\nRestarted it."
    recorded = writeback(api, session["id"], response.body["writeback_id"])["markdown"]
    assert recorded == shown_without_marker(note)


@pytest.mark.parametrize(
    ("sent", "recorded"),
    [
        ("   padded text   \n\n\n", "   padded text"),
        ("Line one  \nLine two\u00a0", "Line one\nLine two"),
        ("\n\nDone.\r\n\r\n", "Done."),
    ],
)
def test_the_ledger_records_the_text_the_ticket_shows(api: Api, any_psa: Any, sent: str, recorded: str) -> None:
    session = ticket_session(api, any_psa, "1001")
    response = resolve(api, session["id"], sent)
    assert response.status == 200, response.text
    [note] = any_psa.note_views(1001)
    entry = writeback(api, session["id"], response.body["writeback_id"])
    assert entry["markdown"] == recorded == shown_without_marker(note)
    assert entry["requested_markdown"] == sent.replace("\r\n", "\n")  # as cleaned: line endings are LF


def test_an_edited_repost_amends_the_kept_note(api: Api, any_psa: Any) -> None:
    session = ticket_session(api, any_psa, "1003")
    assert resolve(api, session["id"]).status == 502
    any_psa.set_faults(1003, ignore_status_change=False)
    edited = NOTE + "\n\nFollow-up: the user confirmed the fix the next morning."
    response = resolve(api, session["id"], edited)
    assert response.status == 200, response.text
    assert response.body["note_amended"] is True
    views = any_psa.note_views(1003)
    assert len(views) == 1
    assert "confirmed the fix the next morning" in views[0].text
    assert writeback(api, session["id"], response.body["writeback_id"])["markdown"] == edited


def test_a_note_the_psa_made_customer_visible_is_repaired(api: Api, any_psa: Any) -> None:
    any_psa.set_faults(1002, force_note_visibility="customer")  # a tenant default that publishes every note
    session = ticket_session(api, any_psa, "1002")
    response = escalate(api, session["id"])
    assert response.status == 200, response.text
    views = any_psa.note_views(1002)
    assert len(views) == 1 and views[0].customer_visible is False


def test_a_visibility_the_psa_will_not_change_is_a_loud_502(api: Api, any_psa: Any) -> None:
    any_psa.set_faults(1002, force_note_visibility="customer", force_note_visibility_sticky=True)
    session = ticket_session(api, any_psa, "1002")
    response = escalate(api, session["id"])
    assert response.status == 502, response.text
    assert response.body["error"]["code"] == "psa_note_visibility_mismatch"
    assert len(any_psa.note_views(1002)) == 1
    again = escalate(api, session["id"])
    assert again.status == 502, again.text  # never a 200 while the internal note is customer-visible
    assert len(any_psa.note_views(1002)) == 1


# --- refused before anything is posted ------------------------------------------------------------------


def test_a_target_status_that_is_not_active_for_the_ticket_is_a_422_before_posting(api: Api, any_psa: Any) -> None:
    connect_simulator(api, any_psa, **{f"{PREFIX[any_psa.provider]}_resolved_status_id": 4242})
    session = ticket_session(api, any_psa, "1001")
    response = resolve(api, session["id"])
    assert response.status == 422, response.text
    error = response.body["error"]
    assert error["code"] == "psa_status_not_on_board"
    assert target(any_psa, "resolved") in [s["id"] for s in error["details"]["valid_statuses"]]
    assert any_psa.note_views(1001) == []
    assert not [r for r in any_psa.requests if r.method != "GET" and "token" not in r.path]


def test_rejected_credentials_are_a_502_and_change_nothing(api: Api, any_psa: Any) -> None:
    session = ticket_session(api, any_psa, "1001")
    any_psa.revoke_credentials()
    response = resolve(api, session["id"])
    assert response.status == 502, response.text
    assert response.body["error"]["code"] == "psa_auth_failed"
    assert any_psa.note_views(1001) == []
    assert api.get(f"/ai-sessions/{session['id']}").body["status"] == "active"
    any_psa.restore_credentials()
    assert resolve(api, session["id"]).status == 200


def test_a_ticket_of_another_psa_is_a_422_psa_provider_mismatch(api: Api, any_psa: Any) -> None:
    other = next(p for p in PROVIDERS if p != any_psa.provider)
    session = api.new_session(psa_ticket={"provider": other, "ticket_id": "1001"})
    response = resolve(api, session["id"])
    assert response.status == 422, response.text
    assert response.body["error"]["code"] == "psa_provider_mismatch"
    assert any_psa.provider in response.body["error"]["message"] and other in response.body["error"]["message"]
    assert any_psa.note_views(1001) == []
    assert any_psa.requests == []
    assert api.get(f"/ai-sessions/{session['id']}").body["last_writeback"] is None


# --- transient trouble ------------------------------------------------------------------------------------


def test_rate_limits_are_waited_out(api: Api, any_psa: Any) -> None:
    session = ticket_session(api, any_psa, "1001")
    any_psa.set_faults(1001, rate_limit_next=2, retry_after=1)
    response = resolve(api, session["id"])
    assert response.status == 200, response.text
    assert [r.status for r in any_psa.requests].count(429) == 2
    assert len(any_psa.note_views(1001)) == 1


def test_server_errors_are_retried(api: Api, any_psa: Any) -> None:
    session = ticket_session(api, any_psa, "1001")
    any_psa.set_faults(1001, fail_next=2)
    response = resolve(api, session["id"])
    assert response.status == 200, response.text
    assert len(any_psa.note_views(1001)) == 1


def test_a_note_committed_before_the_connection_dropped_is_found_not_posted_twice(api: Api, any_psa: Any) -> None:
    session = ticket_session(api, any_psa, "1001")
    any_psa.set_faults(1001, drop_after_commit_next=1)
    response = resolve(api, session["id"])
    assert response.status == 200, response.text
    views = any_psa.note_views(1001)
    assert len(views) == 1 and views[0].id == response.body["external_id"]
    assert [r.status for r in any_psa.requests].count(0) == 1  # the one dropped answer


def test_a_workflow_that_reverts_the_status_is_a_502(api: Api, any_psa: Any) -> None:
    any_psa.set_faults(1006, revert_status_after=0)
    before = any_psa.status_id(1006)
    session = ticket_session(api, any_psa, "1006")
    response = resolve(api, session["id"])
    assert response.status == 502, response.text
    assert response.body["error"]["code"] == "psa_status_not_applied"
    assert response.body["error"]["details"]["actual_status_id"] == before
    assert len(any_psa.note_views(1006)) == 1


def test_concurrent_posts_make_one_writeback_and_one_note(api: Api, any_psa: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    session = ticket_session(api, any_psa, "1001")
    any_psa.set_faults(1001, latency=0.05)
    edits = [NOTE, NOTE + "\n\nEdited once.", NOTE, NOTE + "\n\nEdited twice.", NOTE]
    with ThreadPoolExecutor(max_workers=5) as pool:
        responses = list(pool.map(lambda text: resolve(api, session["id"], text), edits))
    assert sorted(r.status for r in responses) == [200, 409, 409, 409, 409], [r.text for r in responses]
    winner = next(r for r in responses if r.status == 200)
    views = any_psa.note_views(1001)
    assert len(views) == 1 and views[0].id == winner.body["external_id"]
    ledger = writeback(api, session["id"], winner.body["writeback_id"])
    assert ledger["markdown"] in edits and ledger["markdown"].splitlines()[-1] in views[0].text


# --- one provider at a time: what only that PSA can get wrong ------------------------------------------


def test_halo_without_an_outcome_for_the_note_is_a_422_naming_it(api: Api, aws_env: dict[str, str]) -> None:
    with simulated_psa("halopsa", aws_env) as sim:
        connect_simulator(api, sim, halo_escalation_outcome_id=None)
        session = ticket_session(api, sim, "1002")
        response = escalate(api, session["id"])
        assert response.status == 422, response.text
        assert response.body["error"]["code"] == "psa_not_configured"
        assert "halo_escalation_outcome_id" in response.body["error"]["message"]
        assert sim.note_views(1002) == []
        assert not [r for r in sim.requests if "/api/Actions" in r.path and r.method == "POST"]


@pytest.mark.parametrize("variant", ["standard", "swapped"])
def test_autotask_publish_is_chosen_by_label_in_every_tenant(api: Api, aws_env: dict[str, str], variant: str) -> None:
    with simulated_psa("autotask", aws_env, tenant_variant=variant) as sim:
        connect_simulator(api, sim)
        resolved = resolve(api, ticket_session(api, sim, "1001")["id"])
        escalated = escalate(api, ticket_session(api, sim, "1002")["id"])
        assert resolved.status == 200, resolved.text
        assert escalated.status == 200, escalated.text
        assert [v.customer_visible for v in sim.note_views(1001)] == [True]
        assert [v.customer_visible for v in sim.note_views(1002)] == [False]


def test_autotask_ambiguous_publish_labels_are_a_422_unless_pinned(api: Api, aws_env: dict[str, str]) -> None:
    with simulated_psa("autotask", aws_env, tenant_variant="ambiguous") as sim:
        connect_simulator(api, sim)
        session = ticket_session(api, sim, "1002")
        response = escalate(api, session["id"])
        assert response.status == 422, response.text
        assert response.body["error"]["code"] == "psa_visibility_unknown"
        assert "autotask_internal_publish_value" in response.body["error"]["message"]
        assert sim.note_views(1002) == []


@pytest.mark.parametrize(
    ("variant", "public", "internal"), [("standard", 1, 2), ("swapped", 3, 1)], ids=["standard", "swapped"]
)
def test_an_autotask_pin_never_overrules_a_label_that_says_the_opposite(
    api: Api, aws_env: dict[str, str], variant: str, public: int, internal: int
) -> None:
    """Pins settle labels that don't say; pinning the internal note to "All Autotask Users" is a 422, not a 200."""
    with simulated_psa("autotask", aws_env, tenant_variant=variant) as sim:
        connect_simulator(api, sim, autotask_internal_publish_value=public)
        escalated = escalate(api, ticket_session(api, sim, "1002")["id"])
        assert escalated.status == 422, escalated.text
        assert escalated.body["error"]["code"] == "psa_visibility_unknown"
        assert "autotask_internal_publish_value" in escalated.body["error"]["message"]
        connect_simulator(api, sim, autotask_public_publish_value=internal)
        resolved = resolve(api, ticket_session(api, sim, "1001")["id"])
        assert resolved.status == 422, resolved.text
        assert "autotask_public_publish_value" in resolved.body["error"]["message"]
        assert sim.note_views(1002) == [] and sim.note_views(1001) == []

        same = api.put(
            "/account-settings/preferences", {"autotask_public_publish_value": 2, "autotask_internal_publish_value": 2}
        )
        assert same.status == 422, same.text
        assert api.get("/account-settings").body["preferences"]["autotask_internal_publish_value"] is None


def test_halo_refusing_the_outcome_to_our_agent_is_a_422_that_says_nothing_was_posted(
    api: Api, aws_env: dict[str, str]
) -> None:
    from devstack.halo_simulator import RESTRICTED_OUTCOME_ID

    with simulated_psa("halopsa", aws_env) as sim:
        connect_simulator(api, sim, halo_resolution_outcome_id=RESTRICTED_OUTCOME_ID)
        session = ticket_session(api, sim, "1001")
        response = resolve(api, session["id"])
        assert response.status == 422, response.text
        error = response.body["error"]
        assert error["code"] == "psa_not_configured" and "halo_resolution_outcome_id" in error["message"]
        assert "may already be on the ticket" not in error["message"]
        assert sim.note_views(1001) == []
        assert api.get(f"/ai-sessions/{session['id']}").body["status"] == "active"
