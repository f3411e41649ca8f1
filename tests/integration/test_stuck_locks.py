"""No session stuck behind a dead write-back (issue: AWS-side faults).

Three ways a write-back used to leave its session locked for good, each through the real handlers, the
executed ASL and the ConnectWise simulator: the post dies between taking the lock and StartExecution;
RecordFailure fails past its retries; an operator stops the execution. Each now heals, and the next post
resumes with the same note.
"""

from __future__ import annotations

import os
import time
from typing import Any

import boto3
import pytest

from flowpilot import writeback, writeback_steps
from flowpilot.errors import StoreUnavailable
from tests.conftest import Api

NOTE = "Replaced the dock's power supply; the VPN has stayed up for an hour."


def ticket_session(api: Api, ticket_id: str) -> str:
    return str(api.new_session(psa_ticket={"provider": "connectwise", "ticket_id": ticket_id})["id"])


def resolve(api: Api, session_id: str) -> Any:
    return api.post(f"/ai-sessions/{session_id}/resolution-note/post", {"markdown": NOTE})


class _Killed(BaseException):
    """What a Lambda runtime kill looks like to our code: nothing catches it, no `except` runs."""


def test_a_post_killed_between_lock_and_start_heals_after_the_grace(
    api: Api, psa: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = ticket_session(api, "1001")

    def killed(*_: Any) -> str:
        raise _Killed

    with monkeypatch.context() as m:
        m.setattr(writeback.executions, "start_writeback", killed)
        with pytest.raises(_Killed):
            resolve(api, session)
    locked = resolve(api, session)  # within the grace the dead post may still be starting it
    assert locked.status == 409 and locked.body["error"]["code"] == "writeback_in_progress"

    monkeypatch.setattr(writeback, "LOCK_START_GRACE_SECONDS", 0)
    healed = resolve(api, session)
    assert healed.status == 200, healed.text
    assert len(psa.notes(1001)) == 1
    last = api.get(f"/ai-sessions/{session}").body["last_writeback"]
    assert last["writeback_id"] == healed.body["writeback_id"] and last["outcome"] == "resolved"
    dead = _only_abandoned(api, session)
    assert dead["abandon_reason"] == "never_started" and dead["note_id"] is None


def test_recording_a_failure_that_fails_for_good_still_releases_the_lock(
    api: Api, psa: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = ticket_session(api, "1003")  # silent status reject: the write-back fails after its note

    def throttled(state: Any) -> Any:
        raise StoreUnavailable("ProvisionedThroughputExceededException")

    with monkeypatch.context() as m:
        m.setitem(writeback_steps.STEPS, "record_failure", throttled)
        first = resolve(api, session)
    assert first.status == 502, first.text
    assert first.body["error"]["code"] == "writeback_abandoned"
    assert first.body["error"]["details"]["abandon_reason"] == "recording_failed"
    assert first.body["error"]["details"]["note_kept"] is True
    note = psa.notes(1003)[0]

    psa.set_faults(1003, ignore_status_change=False)
    resumed = resolve(api, session)
    assert resumed.status == 200, resumed.text
    assert resumed.body["external_id"] == str(note["id"]) and len(psa.notes(1003)) == 1


def test_an_operators_stop_leaves_a_session_the_next_post_resumes(
    api: Api, psa: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = ticket_session(api, "1002")
    posted = _NotePosted(psa, 1002)
    monkeypatch.setenv("WRITEBACK_WAIT_SECONDS", "0")
    writeback.settings.cache_clear()
    psa.set_faults(1002, latency=1.0)  # slow enough to stop it part-way
    started = resolve(api, session)
    assert started.status == 202, started.text
    ledger = api.get(started.body["status_url"]).body
    posted.wait_for_note()
    sfn = boto3.client("stepfunctions")
    sfn.stop_execution(executionArn=ledger["execution_arn"], cause="operator: PSA misbehaving")
    _wait_until_ended(sfn, ledger["execution_arn"])

    monkeypatch.setenv("WRITEBACK_WAIT_SECONDS", "20")
    writeback.settings.cache_clear()
    psa.set_faults(1002, latency=0.0)
    resumed = resolve(api, session)
    assert resumed.status == 200, resumed.text
    assert len(psa.notes(1002)) == 1
    stopped = api.get(started.body["status_url"]).body
    assert stopped["state"] == "abandoned" and stopped["abandon_reason"] == "ended_without_recording"
    assert resumed.body["external_id"] == str(psa.notes(1002)[0]["id"])  # the stopped attempt's note, reused


def _only_abandoned(api: Api, session: str) -> dict[str, Any]:
    """The session's one abandoned write-back, as `GET …/writebacks/{id}` shows it."""
    table = boto3.resource("dynamodb").Table(os.environ["SESSIONS_TABLE"])
    items = table.scan()["Items"]
    entries = [i for i in items if str(i["SK"]).startswith("WB#") and i.get("state") == "abandoned"]
    assert len(entries) == 1, entries
    found: dict[str, Any] = api.get(f"/ai-sessions/{session}/writebacks/{entries[0]['writeback_id']}").body
    return found


class _NotePosted:
    def __init__(self, sim: Any, ticket_id: int) -> None:
        self.sim, self.ticket_id = sim, ticket_id

    def wait_for_note(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.sim.notes(self.ticket_id):
            assert time.monotonic() < deadline, "the write-back never posted its note"
            time.sleep(0.05)


def _wait_until_ended(sfn: Any, arn: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while sfn.describe_execution(executionArn=arn)["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the stopped execution still runs"
        time.sleep(0.05)
