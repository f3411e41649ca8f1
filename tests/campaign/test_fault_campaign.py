"""Fault campaign (issue 6 §1): hundreds of write-backs through the real handlers, the executed state
machine and the ConnectWise simulator, each with its own seeded mix of PSA faults, checked against the
write-back invariants after every one.

Seeded and reproducible: the seed is printed; `FLOWPILOT_CAMPAIGN_SEED=<seed>` replays a campaign,
`FLOWPILOT_CAMPAIGN_ONLY=<i,j,...>` replays only some write-backs of it (every write-back's plan depends
on the seed and its index only), `FLOWPILOT_CAMPAIGN_SIZE=<n>` changes how many are run,
`FLOWPILOT_CAMPAIGN_VERBOSE=1` prints every write-back's plan and duration.

    FLOWPILOT_CAMPAIGN_SEED=20260611 .venv/bin/pytest tests/campaign -s

Faults per write-back (random mix): 429 bursts with Retry-After 1 s, 5xx (`fail_next`, sometimes more
than the state machine retries), latency 0-50 ms, note POSTs committed then dropped, silently ignored
status changes, workflow reverts (immediately, or 0.2 s later with a 1 s drift re-check), the ticket
breaking (5xx or 401) the moment the note is stored, a step's Lambda answer lost after it ran (so the
state machine runs it again), 2-5 concurrent posts of one session (sometimes of both kinds), a client
retrying a post that timed out (202), and a resume after a failure once the fault is cleared.

Checked after every write-back, once its executions ended: at most one note per write-back and exactly
one when the outcome says posted (the ledger's note id is that note), note flags per kind, the ledger
terminal and agreeing with what the API answered, the session agreeing with the ticket (a claimed
status that is no longer on the ticket only with drift recorded; a 502 psa_status_not_applied leaves
the session active and the ticket off the target), no 500, no execution left running.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import boto3
import pytest

from devstack import aws
from devstack.gateway import ApiResponse
from tests.conftest import Api

DEFAULT_SEED = 20260611
DEFAULT_SIZE = 200
FIRST_TICKET_ID = 30000

KINDS = ("resolve", "escalate")
POST_PATH = {"resolve": "resolution-note/post", "escalate": "escalation-package/post"}
CLOSED_STATUS = {"resolve": "resolved", "escalate": "escalated"}
OUTCOME = {"resolve": "resolved", "escalate": "escalated"}
# Board 1 (Service Desk) uses the account defaults (5, 6); board 2 (Escalations) a per-board mapping.
TARGET = {(1, "resolve"): 5, (1, "escalate"): 6, (2, "resolve"): 25, (2, "escalate"): 23}
OPEN_STATUSES = {1: (1, 2, 3), 2: (21, 22, 24)}
NOTE_FLAGS = {
    "resolve": {"detailDescriptionFlag": True, "resolutionFlag": True, "internalAnalysisFlag": False},
    "escalate": {"detailDescriptionFlag": False, "resolutionFlag": False, "internalAnalysisFlag": True},
}
MARKER = re.compile(r"ref:fp-([A-Za-z0-9_-]+)")
TERMINAL = {"succeeded", "failed"}
# The state machine's Retry: MaxAttempts 4, i.e. 5 attempts of a step. Up to 3 failures always recover.
RECOVERABLE_FAILURES = 3
EXHAUSTING_FAILURES = 5
SETTLE_TIMEOUT = 60.0
REDELIVERABLE_STEPS = (
    "prepare",
    "post_note",
    "transition",
    "verify",
    "record_success",
    "drift_check",
    "record_failure",
)


def campaign_seed() -> int:
    return int(os.environ.get("FLOWPILOT_CAMPAIGN_SEED") or DEFAULT_SEED)


def campaign_indices() -> list[int]:
    only = os.environ.get("FLOWPILOT_CAMPAIGN_ONLY", "").strip()
    if only:
        return [int(i) for i in only.split(",") if i.strip()]
    return list(range(int(os.environ.get("FLOWPILOT_CAMPAIGN_SIZE") or DEFAULT_SIZE)))


def reproduce_hint(seed: int, indices: list[int] | None = None) -> str:
    only = f"FLOWPILOT_CAMPAIGN_ONLY={','.join(map(str, indices))} " if indices else ""
    return f"FLOWPILOT_CAMPAIGN_SEED={seed} {only}.venv/bin/pytest tests/campaign -s"


# --------------------------------------------------------------------------------------------------
# Plans


@dataclass(frozen=True)
class Plan:
    """One write-back of the campaign: its ticket, what is posted, and what the PSA does wrong."""

    index: int
    kind: str
    board_id: int
    start_status: int
    latency: float
    rate_limit_next: int
    fail_next: int
    drop_after_commit_next: int
    ignore_status_change: bool
    revert_status_after: float | None
    # The moment the note is stored (before its answer, or the dropped connection), the ticket breaks:
    # "5xx" = every call fails more often than the retries allow, "auth" = 401s (the keys were rotated).
    after_note: str
    # At-least-once delivery: this step's first Lambda invocation runs (and commits) but its answer is
    # lost (Lambda.ServiceException), so the state machine's Retry invokes it again.
    redeliver_step: str
    # Kinds of the posts sent at once (one element: a single post).
    concurrent_kinds: tuple[str, ...]
    client_timeout_retry: bool
    resume: bool

    @property
    def ticket_id(self) -> int:
        return FIRST_TICKET_ID + self.index

    @property
    def target(self) -> int:
        return TARGET[(self.board_id, self.kind)]

    @property
    def exhausts_retries(self) -> bool:
        return self.fail_next >= EXHAUSTING_FAILURES

    @property
    def status_change_lost(self) -> bool:
        """The PATCH is answered 200 but the status is not there when we verify."""
        return self.ignore_status_change or self.revert_status_after == 0

    @property
    def late_revert(self) -> bool:
        return bool(self.revert_status_after) and not self.ignore_status_change

    @property
    def drift_check_seconds(self) -> int:
        return 1 if self.late_revert else 0

    def faults(self) -> dict[str, Any]:
        return {
            "latency": self.latency,
            "rate_limit_next": self.rate_limit_next,
            "retry_after": 1,
            "fail_next": self.fail_next,
            "drop_after_commit_next": self.drop_after_commit_next,
            "ignore_status_change": self.ignore_status_change,
            "revert_status_after": self.revert_status_after,
        }

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self).items())


def make_plan(seed: int, index: int) -> Plan:
    rng = random.Random(f"flowpilot-campaign:{seed}:{index}")
    kind = rng.choice(KINDS)
    board_id = 1 if rng.random() < 0.8 else 2
    start_status = rng.choice(OPEN_STATUSES[board_id])
    latency = round(rng.uniform(0.0, 0.05), 3) if rng.random() < 0.3 else 0.0
    # Each 429 really waits its Retry-After (1 s) inside the step: few and short bursts.
    rate_limit_next = (1 if rng.random() < 0.75 else 2) if rng.random() < 0.06 else 0
    roll = rng.random()
    if roll < 0.03:
        fail_next = rng.randint(EXHAUSTING_FAILURES, EXHAUSTING_FAILURES + 1)
    elif roll < 0.23:
        fail_next = rng.randint(1, RECOVERABLE_FAILURES)
    else:
        fail_next = 0
    drop_after_commit_next = rng.randint(1, 2) if rng.random() < 0.15 else 0
    roll = rng.random()
    after_note = "5xx" if roll < 0.05 else "auth" if roll < 0.075 else ""
    redeliver_step = rng.choice(REDELIVERABLE_STEPS) if rng.random() < 0.08 else ""
    roll = rng.random()
    ignore_status_change = roll < 0.09
    # 0: the workflow reverts right after the PATCH answer (verification sees it: 502); 0.2 s: after we
    # verified (200), caught by the drift re-check 1 s later (or, on a slow machine, a 502).
    revert_status_after = 0.0 if 0.09 <= roll < 0.13 else 0.2 if 0.13 <= roll < 0.20 else None
    concurrent_kinds: tuple[str, ...] = (kind,)
    if rng.random() < 0.12:
        mixed = rng.random() < 0.3
        others = [rng.choice(KINDS) if mixed else kind for _ in range(rng.randint(1, 4))]
        concurrent_kinds = (kind, *others)
    client_timeout_retry = len(concurrent_kinds) == 1 and rng.random() < 0.10
    resume = rng.random() < 0.6
    return Plan(
        index=index,
        kind=kind,
        board_id=board_id,
        start_status=start_status,
        latency=latency,
        rate_limit_next=rate_limit_next,
        fail_next=fail_next,
        drop_after_commit_next=drop_after_commit_next,
        ignore_status_change=ignore_status_change,
        revert_status_after=revert_status_after,
        after_note=after_note,
        redeliver_step=redeliver_step,
        concurrent_kinds=concurrent_kinds,
        client_timeout_retry=client_timeout_retry,
        resume=resume,
    )


def markdown_for(kind: str, index: int, attempt: int) -> str:
    if kind == "resolve":
        return (
            f"Campaign write-back {index}.{attempt}: reinstalled the VPN client and reset the adapter.\n\n"
            "The connection has been stable for 30 minutes."
        )
    return (
        f"## Problem\nCampaign write-back {index}.{attempt}: mailbox migration stuck.\n\n## Tried\n- Restarted the job"
    )


# --------------------------------------------------------------------------------------------------
# The campaign


class Violation(AssertionError):
    pass


def check(condition: Any, message: str) -> None:
    if not condition:
        raise Violation(message)


@dataclass
class Pending:
    """A write-back whose posts were answered; its invariants are checked once its executions ended."""

    plan: Plan
    sid: str
    # Every response, in the order they were answered: (kind posted, response).
    answered: list[tuple[str, ApiResponse]] = field(default_factory=list)
    started: float = 0.0

    def writeback_ids(self) -> list[str]:
        return list(dict.fromkeys(wb for _, r in self.answered if (wb := Campaign.writeback_id_of(r))))


class Campaign:
    def __init__(self, seed: int, api: Api, cw: Any, monkeypatch: pytest.MonkeyPatch, machines: list[str]):
        self.seed = seed
        self.api = api
        self.cw = cw
        self.monkeypatch = monkeypatch
        self.machines = machines
        self.sfn = boto3.client("stepfunctions")
        # ticket id -> fault knobs to set the moment the simulator stored a note on it.
        self.after_note: dict[int, dict[str, Any]] = {}
        store_note = cw._post_note

        def post_note_then_fail(req: Any, match: re.Match[str]) -> Any:
            reply = store_note(req, match)
            if faults := self.after_note.pop(int(match.group(1)), None):
                cw.set_faults(int(match.group(1)), **faults)
            return reply

        monkeypatch.setattr(cw, "_post_note", post_note_then_fail)
        self.counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()

        # session id -> the write-back step whose next invocation is redelivered.
        self.redeliver: dict[str, str] = {}
        invoke = aws.invoke_function

        def invoke_maybe_twice(logical_id: str, payload: Any) -> tuple[Any, str | None]:
            result, error = invoke(logical_id, payload)
            action = payload.get("action") if isinstance(payload, dict) else None
            sid = ((payload.get("state") or {}) if isinstance(payload, dict) else {}).get("session_id")
            if action and error is None and sid and self.redeliver.get(sid) == action:
                del self.redeliver[sid]
                self.count("redelivered")
                lost = "The function ran, but its response was lost."
                return {"errorType": "Lambda.ServiceException", "errorMessage": lost}, "Lambda.ServiceException"
            return result, error

        monkeypatch.setattr(aws, "invoke_function", invoke_maybe_twice)
        self.violations: list[tuple[Plan, str]] = []
        self.resumed: set[str] = set()
        self.writebacks: set[str] = set()
        self.phase: defaultdict[str, float] = defaultdict(float)

    # --- plumbing ---

    def count(self, what: str, n: int = 1) -> None:
        with self._counts_lock:  # posts and steps run on several threads
            self.counts[what] += n

    def configure(self, *, drift_check_seconds: int, wait_seconds: float) -> None:
        from flowpilot.config import settings

        self.monkeypatch.setenv("DRIFT_CHECK_SECONDS", str(drift_check_seconds))
        self.monkeypatch.setenv("WRITEBACK_WAIT_SECONDS", f"{wait_seconds:g}")
        settings.cache_clear()

    def post(self, session_id: str, kind: str, index: int, attempt: int) -> ApiResponse:
        t = time.perf_counter()
        response = self.api.post(
            f"/ai-sessions/{session_id}/{POST_PATH[kind]}", {"markdown": markdown_for(kind, index, attempt)}
        )
        self.count(f"http_{response.status}")
        self.count("posts")
        with self._counts_lock:
            self.phase["post"] += time.perf_counter() - t
        return response

    def ledger(self, session_id: str, writeback_id: str) -> dict[str, Any]:
        response = self.api.get(f"/ai-sessions/{session_id}/writebacks/{writeback_id}")
        check(response.status == 200, f"ledger of {writeback_id} answered {response.status}: {response.text}")
        return response.body

    def poll_until_terminal(self, session_id: str, writeback_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while True:
            entry = self.ledger(session_id, writeback_id)
            if entry["state"] in TERMINAL:
                return entry
            check(
                time.monotonic() < deadline, f"write-back {writeback_id} still {entry['state']} after {SETTLE_TIMEOUT}s"
            )
            time.sleep(0.05)

    def settle(self, sid: str, writeback_ids: list[str]) -> None:
        """Wait until these write-backs' executions ended (the drift re-check included)."""
        t = time.perf_counter()
        try:
            arns = [str(self.ledger(sid, wb).get("execution_arn") or "") for wb in writeback_ids]
            check(all(arns), f"write-backs without an execution: {dict(zip(writeback_ids, arns, strict=True))}")
            deadline = time.monotonic() + SETTLE_TIMEOUT
            while running := [arn for arn in arns if self.execution_status(arn) == "RUNNING"]:
                check(time.monotonic() < deadline, f"executions still running after {SETTLE_TIMEOUT}s: {running}")
                time.sleep(0.02)
        finally:
            self.phase["settle"] += time.perf_counter() - t

    def finished(self, sid: str, writeback_ids: list[str]) -> bool:
        return all(
            self.execution_status(self.ledger(sid, wb).get("execution_arn") or "") != "RUNNING" for wb in writeback_ids
        )

    def execution_status(self, arn: str) -> str:
        return str(self.sfn.describe_execution(executionArn=arn)["status"])

    @staticmethod
    def writeback_id_of(response: ApiResponse) -> str | None:
        body = response.body or {}
        if response.status in (200, 202):
            return body["writeback_id"]
        if response.status == 409:
            return None
        details = (body.get("error") or {}).get("details") or {}
        return details.get("writeback_id")

    def check_response(self, response: ApiResponse) -> None:
        check(
            response.status in (200, 202, 409, 502, 503),
            f"unexpected HTTP {response.status}: {response.text}",
        )
        if response.status == 409:
            code = response.body["error"]["code"]
            check(
                code in {"writeback_in_progress", "session_already_closed"},
                f"409 with code {code!r}: {response.text}",
            )
            self.counts[f"409_{code}"] += 1
        if response.status == 202:
            check(
                response.body["state"] == "running"
                and response.body["status_url"].endswith(f"/writebacks/{response.body['writeback_id']}"),
                f"202 without a usable status_url: {response.text}",
            )
        if response.status in (502, 503):
            check(
                self.writeback_id_of(response),
                f"HTTP {response.status} without the writeback id in its details: {response.text}",
            )

    # --- one write-back ---

    def start(self, plan: Plan) -> Pending:
        """Make the ticket and session, set the faults, post; returns once every write-back is terminal."""
        cw, api = self.cw, self.api
        tid = plan.ticket_id
        t0 = time.perf_counter()
        cw.add_ticket(tid, board_id=plan.board_id, status_id=plan.start_status, summary=f"Campaign ticket {plan.index}")
        session = api.new_session(
            title=f"Campaign write-back {plan.index}",
            psa_ticket={"provider": "connectwise", "ticket_id": str(tid)},
        )
        sid = session["id"]
        self.phase["setup"] += time.perf_counter() - t0
        cw.set_faults(tid, **plan.faults())
        if plan.redeliver_step:
            self.redeliver[sid] = plan.redeliver_step
        if plan.after_note == "5xx":
            self.after_note[tid] = {"fail_next": EXHAUSTING_FAILURES + 1}
        elif plan.after_note == "auth":
            self.after_note[tid] = {"auth_fail": True}
        self.configure(
            drift_check_seconds=plan.drift_check_seconds, wait_seconds=0 if plan.client_timeout_retry else 20
        )
        pending = Pending(plan, sid)
        answered = pending.answered

        if len(plan.concurrent_kinds) > 1:
            self.counts["concurrent_groups"] += 1
            with ThreadPoolExecutor(max_workers=len(plan.concurrent_kinds)) as pool:
                responses = list(
                    pool.map(
                        lambda item: self.post(sid, item[1], plan.index, item[0]),
                        enumerate(plan.concurrent_kinds),
                    )
                )
            answered += zip(plan.concurrent_kinds, responses, strict=True)
            for response in responses:
                self.check_response(response)
            winners = [r for r in responses if r.status != 409]
            check(winners, f"all {len(responses)} concurrent posts answered 409: {[r.text for r in responses]}")
        else:
            first = self.post(sid, plan.kind, plan.index, 0)
            self.check_response(first)
            answered.append((plan.kind, first))
            if plan.client_timeout_retry and first.status == 202:
                self.counts["client_timeouts"] += 1
                # The client gave up waiting and posts again while the machine is still working.
                again = self.post(sid, plan.kind, plan.index, 1)
                self.check_response(again)
                answered.append((plan.kind, again))
                if again.status == 409 and again.body["error"]["code"] == "session_already_closed":
                    entry = self.ledger(sid, first.body["writeback_id"])
                    check(
                        entry["state"] == "succeeded",
                        f"session_already_closed while the first write-back is {entry['state']}",
                    )
        self.configure(drift_check_seconds=0, wait_seconds=20)
        for writeback_id in pending.writeback_ids():
            self.poll_until_terminal(sid, writeback_id)
        return pending

    def finish(self, pending: Pending) -> None:
        """Once the executions ended: the invariants, then maybe a resume."""
        plan, sid, answered = pending.plan, pending.sid, pending.answered
        self.settle(sid, pending.writeback_ids())
        if plan.client_timeout_retry and answered[0][1].status == 202:
            entry = self.ledger(sid, answered[0][1].body["writeback_id"])
            if entry["state"] == "succeeded":
                # Once it is done, another retry of the client is told the session is closed.
                late = self.post(sid, plan.kind, plan.index, 2)
                self.check_response(late)
                check(
                    late.status == 409 and late.body["error"]["code"] == "session_already_closed",
                    f"a post after the write-back succeeded answered {late.status}: {late.text}",
                )
                answered.append((plan.kind, late))

        self.check_invariants(plan, sid, answered)
        self.check_expected_outcome(plan, sid, answered)

        if plan.resume and self.session(sid)["status"] == "active":
            self.resume(plan, sid, answered)
        self.counts["notes"] += len(self.cw.notes(plan.ticket_id))

    def resume(self, plan: Plan, sid: str, answered: list[tuple[str, ApiResponse]]) -> None:
        """The admin fixed the board's workflow (or CW recovered): the engineer posts again."""
        tid = plan.ticket_id
        last = self.session(sid)["last_writeback"]
        check(last and last["state"] == "failed", f"the session is active, its last write-back is {last}")
        failed = self.ledger(sid, last["writeback_id"])
        kind = failed["kind"]
        notes_before = self.cw.notes(tid)
        kept = [n for n in notes_before if failed["note_marker"] in n["text"]]
        self.after_note.pop(tid, None)
        self.cw.set_faults(
            tid,
            ignore_status_change=False,
            revert_status_after=None,
            fail_next=0,
            rate_limit_next=0,
            drop_after_commit_next=0,
            auth_fail=False,
        )
        self.configure(drift_check_seconds=0, wait_seconds=20)
        response = self.post(sid, kind, plan.index, 9)
        self.check_response(response)
        answered.append((kind, response))
        self.resumed.add(self.writeback_id_of(response) or "")
        self.counts["resumes"] += 1
        check(response.status == 200, f"the resumed post answered {response.status}: {response.text}")
        self.settle(sid, [response.body["writeback_id"]])
        self.check_invariants(plan, sid, answered)
        notes = self.cw.notes(tid)
        entry = self.ledger(sid, response.body["writeback_id"])
        if kept:
            # The note of the failed write-back stands; the resume only changes the status.
            check(
                [n["id"] for n in notes] == [n["id"] for n in notes_before],
                f"the resume changed the notes: before {[n['id'] for n in notes_before]}, "
                f"after {[n['id'] for n in notes]}",
            )
            check(
                response.body["external_id"] == str(kept[0]["id"]),
                f"the resume answered note {response.body['external_id']}, the failed write-back "
                f"posted {kept[0]['id']}",
            )
            check(
                entry.get("note_reused_from") == failed["writeback_id"],
                f"the resumed ledger says note_reused_from={entry.get('note_reused_from')!r}",
            )
        else:
            new = [n for n in notes if n["id"] not in {m["id"] for m in notes_before}]
            check(
                len(new) == 1 and entry["note_marker"] in new[0]["text"],
                f"the resume (nothing posted before) made notes {[n['id'] for n in new]}",
            )
        check(
            self.cw.ticket(tid)["status"]["id"] == TARGET[(plan.board_id, kind)],
            f"after the resume the ticket is at {self.cw.ticket(tid)['status']}",
        )

    def session(self, sid: str) -> dict[str, Any]:
        response = self.api.get(f"/ai-sessions/{sid}")
        check(response.status == 200, f"GET session answered {response.status}")
        return response.body

    def count_psa_faults(self) -> None:
        for request in self.cw.requests:
            if request.status == 429:
                self.counts["psa_429"] += 1
            elif request.status >= 500:
                self.counts["psa_5xx"] += 1
            elif request.status == 0:
                self.counts["psa_dropped"] += 1

    # --- invariants ---

    def check_invariants(self, plan: Plan, sid: str, answered: list[tuple[str, ApiResponse]]) -> None:
        t = time.perf_counter()
        try:
            self._check_invariants(plan, sid, answered)
        finally:
            self.phase["invariants"] += time.perf_counter() - t

    def _check_invariants(self, plan: Plan, sid: str, answered: list[tuple[str, ApiResponse]]) -> None:
        cw = self.cw
        tid = plan.ticket_id
        writeback_ids = list(dict.fromkeys(wb for _, r in answered if (wb := self.writeback_id_of(r))))
        self.writebacks.update(writeback_ids)
        entries = {wb: self.ledger(sid, wb) for wb in writeback_ids}

        # The ledger always ends terminal.
        for wb, entry in entries.items():
            check(entry["state"] in TERMINAL, f"ledger {wb} left {entry['state']!r}")

        # What the API answered is what the ledger says.
        for kind, response in answered:
            wb = self.writeback_id_of(response)
            if wb is None or response.status == 202:
                continue
            entry = entries[wb]
            check(entry["kind"] == kind, f"ledger {wb} is a {entry['kind']}, the post was a {kind}")
            if response.status == 200:
                body = response.body
                check(
                    entry["state"] == "succeeded",
                    f"HTTP 200 {body['outcome']} but ledger {wb} is {entry['state']}: error={entry.get('error')} "
                    f"last_error={entry.get('last_error')} note_id={entry.get('note_id')} drift={entry.get('drift')}",
                )
                check(body["outcome"] == entry["outcome"] == OUTCOME[kind], f"200 with outcome {body['outcome']}")
                check(
                    body["session_status"] == CLOSED_STATUS[kind], f"200 with session_status {body['session_status']}"
                )
                check(
                    body["external_id"] == entry["note_id"] and body["external_id"],
                    f"200 says note {body['external_id']}, ledger says {entry['note_id']}",
                )
                check(
                    body["verified_status_id"] == entry["verified_status_id"],
                    f"200 says verified {body['verified_status_id']}, ledger says {entry['verified_status_id']}",
                )
            else:
                check(entry["state"] == "failed", f"HTTP {response.status} but ledger {wb} is {entry['state']}")
                code = response.body["error"]["code"]
                check(
                    entry["error"]["code"] == code,
                    f"HTTP {response.status} {code} but the ledger recorded {entry['error']['code']}",
                )

        # Notes: every note on the ticket is one of these write-backs', at most one per write-back
        # (a resume reuses its predecessor's marker), and each carries the flags of its kind.
        notes = cw.notes(tid)
        by_marker: dict[str, list[dict[str, Any]]] = {}
        for note in notes:
            found = MARKER.findall(note["text"])
            check(len(found) == 1, f"note {note['id']} carries markers {found}")
            by_marker.setdefault(f"ref:fp-{found[0]}", []).append(note)
        kind_of_marker = {e["note_marker"]: e["kind"] for e in entries.values()}
        for marker, marked in by_marker.items():
            check(
                marker in kind_of_marker, f"note(s) {[n['id'] for n in marked]} with marker {marker} of no write-back"
            )
            check(len(marked) == 1, f"{len(marked)} notes {[n['id'] for n in marked]} for marker {marker}")
            note = marked[0]
            kind = kind_of_marker[marker]
            flags = {name: note[name] for name in NOTE_FLAGS[kind]}
            check(flags == NOTE_FLAGS[kind], f"{kind} note {note['id']} stored with flags {flags}")
        notes_by_id = {str(n["id"]): n for n in notes}
        for wb, entry in entries.items():
            if entry.get("note_id"):
                note = notes_by_id.get(str(entry["note_id"])) or {}
                check(note, f"ledger {wb} names note {entry['note_id']}, not on the ticket")
                check(entry["note_marker"] in note["text"], f"note {entry['note_id']} lacks {entry['note_marker']}")
            if entry.get("outcome") in (OUTCOME["resolve"], OUTCOME["escalate"]):
                check(entry.get("note_id"), f"ledger {wb} says {entry['outcome']} without a note id")
                check(
                    len(by_marker.get(entry["note_marker"], [])) == 1,
                    f"ledger {wb} says {entry['outcome']} but the ticket has "
                    f"{len(by_marker.get(entry['note_marker'], []))} notes of it",
                )
                check(entry["external_id"] == entry["note_id"], f"ledger {wb}: external_id != note_id")

        # The session agrees with the ticket.
        session = self.session(sid)
        ticket_status = cw.ticket(tid)["status"]["id"]
        succeeded = [e for e in entries.values() if e["state"] == "succeeded"]
        check(len(succeeded) <= 1, f"{len(succeeded)} write-backs of one session succeeded")
        if succeeded:
            entry = succeeded[0]
            kind = entry["kind"]
            target = TARGET[(plan.board_id, kind)]
            check(session["status"] == CLOSED_STATUS[kind], f"ledger succeeded, session is {session['status']}")
            check(
                entry["verified_status_id"] == target,
                f"succeeded with verified status {entry['verified_status_id']}, target {target}",
            )
            drift: dict[str, Any] = entry.get("drift") or {}
            check(
                drift, f"succeeded write-back {entry['writeback_id']} has no drift re-check after its execution ended"
            )
            check(not drift.get("error"), f"the drift re-check failed: {drift}")
            last = session["last_writeback"]
            if ticket_status == target:
                check(not drift["drifted"], f"ticket at the target {target}, drift says {drift}")
                check(last["drift_detected"] is False, f"no drift, session says {last}")
            else:
                # The API claimed a status that is no longer on the ticket: only with drift recorded.
                check(
                    drift["drifted"] is True and drift["status_id"] == ticket_status,
                    f"ticket now at {ticket_status}, verified {target}, drift recorded {drift}",
                )
                check(last["drift_detected"] is True, f"drift on the ledger, session says {last}")
                self.counts["drift"] += 1
            if plan.late_revert and entry["writeback_id"] not in self.resumed:
                check(drift["drifted"] is True, f"a workflow reverted the ticket, drift says {drift}")
        else:
            states = [
                (e["writeback_id"], e["state"], e.get("outcome"), (e.get("error") or {}).get("code"))
                for e in entries.values()
            ]
            check(
                session["status"] == "active",
                f"no write-back succeeded, yet the session is {session['status']} (ticket at {ticket_status}); "
                f"ledger: {states}",
            )
            for entry in entries.values():
                if entry["error"]["code"] == "psa_status_not_applied":
                    target = TARGET[(plan.board_id, entry["kind"])]
                    check(ticket_status != target, f"502 psa_status_not_applied, ticket is at the target {target}")
                    details = entry["error"].get("details") or {}
                    check(details.get("expected_status_id") == target, f"502 details {details}")
                    check(
                        details.get("note_kept") is True and entry.get("note_id"),
                        f"502 after the note was posted, but note_kept={details.get('note_kept')}, "
                        f"note_id={entry.get('note_id')}",
                    )
        newest = max(entries.values(), key=lambda e: (e["created_at"], e["writeback_id"]), default=None)
        if newest is not None:
            last = session["last_writeback"] or {}
            check(
                last.get("writeback_id") == newest["writeback_id"] and last.get("state") == newest["state"],
                f"session.last_writeback {last} is not the newest write-back {newest['writeback_id']} "
                f"({newest['state']})",
            )

    def check_expected_outcome(self, plan: Plan, sid: str, answered: list[tuple[str, ApiResponse]]) -> None:
        """Bounded faults always recover; the planned failures fail the way they should."""
        started = {wb for _, r in answered if (wb := self.writeback_id_of(r))}
        check(started, "no post started a write-back")
        entries = [self.ledger(sid, wb) for wb in started]
        first = min(entries, key=lambda e: (e["created_at"], e["writeback_id"]))
        code = (first.get("error") or {}).get("code")
        mixed = len(set(plan.concurrent_kinds)) > 1
        marked = [n["id"] for n in self.cw.notes(plan.ticket_id) if first["note_marker"] in n["text"]]
        if plan.exhausts_retries:
            check(code == "psa_unavailable", f"{plan.fail_next} 5xx in a row ended {first['state']} {code}")
            check(not first.get("note_id") and not marked, f"the retries ran out before the note, but notes {marked}")
            self.counts["exhausted"] += 1
        elif plan.after_note and not mixed:
            expected = "psa_unavailable" if plan.after_note == "5xx" else "psa_auth_failed"
            check(code == expected, f"{plan.after_note} after the note ended {first['state']} {code}")
            check(len(marked) == 1, f"the write-back failed after the note was stored; its notes: {marked}")
            self.counts[f"{plan.after_note}_after_note"] += 1
        elif plan.status_change_lost and not mixed:
            check(
                code == "psa_status_not_applied",
                f"the status change was lost, write-back ended {first['state']} {code}",
            )
            self.counts["status_not_applied"] += 1
        elif plan.late_revert and not mixed:
            check(
                first["state"] == "succeeded" or code == "psa_status_not_applied",
                f"a late workflow revert ended {first['state']} {code}",
            )
            self.counts["status_not_applied" if code else "late_revert_verified"] += 1
        elif not mixed:
            check(
                first["state"] == "succeeded", f"recoverable faults ended {first['state']} {code}: {first.get('error')}"
            )
        if first["state"] == "succeeded":
            self.counts[first["outcome"]] += 1


@pytest.mark.slow
def test_fault_campaign(
    api: Api, psa: Any, aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    seed = campaign_seed()
    indices = campaign_indices()
    verbose = bool(os.environ.get("FLOWPILOT_CAMPAIGN_VERBOSE"))
    with capsys.disabled():
        print(f"\ncampaign seed={seed} plans={len(indices)}; reproduce: {reproduce_hint(seed)}", flush=True)
    response = api.put(
        "/account-settings/preferences",
        {
            "cw_resolved_status_id": 5,
            "cw_escalated_status_id": 6,
            "cw_resolved_status_ids_by_board": {"2": 25},
            "cw_escalated_status_ids_by_board": {"2": 23},
        },
    )
    assert response.status == 200, response.text
    # Time budget: the post handler polls its ledger entry with a backoff up to 0.5 s, so a write-back
    # that takes 0.4 s is answered at 0.75 s. Poll every 50 ms instead: only when the handler looks
    # changes, never what it answers (WRITEBACK_WAIT_SECONDS still bounds the wait).
    from flowpilot import writeback

    monkeypatch.setattr(writeback, "_POLL_FIRST", 0.02)
    monkeypatch.setattr(writeback, "_POLL_MAX", 0.05)
    campaign = Campaign(seed, api, psa, monkeypatch, aws_env["state_machines"].split(","))
    started = time.monotonic()
    # Write-backs waiting for their drift re-check (a 1 s Wait state): checked once it ran, while the
    # next write-backs go on. Everything else is checked right after its executions ended.
    deferred: list[Pending] = []

    def guarded(plan: Plan, step: Any, *args: Any) -> Any:
        try:
            return step(*args)
        except AssertionError as error:  # a Violation, or a 500 caught by Api.call
            campaign.violations.append((plan, f"{type(error).__name__}: {error}"))
            return None

    def finish(pending: Pending) -> None:
        guarded(pending.plan, campaign.finish, pending)
        if verbose:
            with capsys.disabled():
                print(
                    f"  write-back {pending.plan.index}: {time.monotonic() - pending.started:.2f}s "
                    f"{pending.plan.describe()}",
                    flush=True,
                )

    for index in indices:
        plan = make_plan(seed, index)
        plan_started = time.monotonic()
        pending = guarded(plan, campaign.start, plan)
        campaign.counts["plans"] += 1
        if pending is None:
            continue
        pending.started = plan_started
        if plan.late_revert:
            deferred.append(pending)
        else:
            finish(pending)
        for waiting in [p for p in deferred if guarded(p.plan, campaign.finished, p.sid, p.writeback_ids())]:
            deferred.remove(waiting)
            finish(waiting)
    for waiting in deferred:
        finish(waiting)
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while aws.running_executions(campaign.machines) and time.monotonic() < deadline:
        time.sleep(0.05)
    campaign.count_psa_faults()
    elapsed = time.monotonic() - started
    left_running = aws.running_executions(campaign.machines)

    c = campaign.counts
    summary = (
        f"campaign seed={seed} plans={c['plans']} writebacks={len(campaign.writebacks)} posts={c['posts']} "
        f"resolved={c['resolved']} escalated={c['escalated']} 200={c['http_200']} 202={c['http_202']} "
        f"409={c['http_409']} 502={c['http_502']} 503={c['http_503']} "
        f"status_not_applied={c['status_not_applied']} exhausted={c['exhausted']}+{c['5xx_after_note']} "
        f"auth_after_note={c['auth_after_note']} resumes={c['resumes']} concurrent={c['concurrent_groups']} "
        f"client_timeouts={c['client_timeouts']} redelivered={c['redelivered']} notes={c['notes']} "
        f"drift={c['drift']} retries={c['psa_429'] + c['psa_5xx'] + c['psa_dropped']} "
        f"(429={c['psa_429']} 5xx={c['psa_5xx']} dropped={c['psa_dropped']}) "
        f"violations={len(campaign.violations)} elapsed={elapsed:.1f}s"
    )
    with capsys.disabled():
        print(summary, flush=True)
        if verbose:
            print("  time by phase: " + " ".join(f"{k}={v:.1f}s" for k, v in campaign.phase.items()), flush=True)
    assert not left_running, f"executions left running at the end of the campaign (seed={seed}): {left_running}"
    if campaign.violations:
        failing = [plan.index for plan, _ in campaign.violations]
        report = "\n".join(
            f"- write-back {plan.index}: {message}\n    plan: {plan.describe()}"
            for plan, message in campaign.violations[:20]
        )
        pytest.fail(
            f"{len(campaign.violations)} write-back(s) violated the invariants (seed={seed}).\n{report}\n"
            f"reproduce: {reproduce_hint(seed, failing)}\n{summary}",
            pytrace=False,
        )
