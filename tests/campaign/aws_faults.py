"""AWS-side faults for the fault campaign (issue 15, point 4), armed per session by the campaign's plans.

- throttle: DynamoDB answers `ProvisionedThroughputExceededException` to calls made while one write-back step
  of the session runs (a botocore `before-call` hook on the product's DynamoDB client; the step is known
  from the Lambda dispatch, which runs the step's handler on the execution's thread). The first `skip`
  calls of that step pass, the next `calls` are throttled; `transient_errors()` turns them into
  StoreUnavailable and the ASL's Retry runs the step again.
- note_write: `store.writebacks.record_note_id` raises StoreUnavailable once, right after the PSA stored the
  note (the post step's retry must find the note by its marker: still one note).
- kill_start: the post's `executions.start_writeback` raises a BaseException (a runtime kill: no `except`
  runs), leaving the lock taken and no execution; the next post heals it.
- record_failure: the RecordFailure step raises StoreUnavailable every time; ReleaseLock must free the session.
- stop: StopExecution when the simulator stored the note, or right after a step ran.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

THROTTLE_CODE = "ProvisionedThroughputExceededException"
AWS_FAULTS = ("throttle", "note_write", "kill_start", "record_failure", "stop")
# Steps whose table calls a throttle may hit (RecordDriftCheckFailure has no Retry and only runs after the
# drift re-check failed for good, which no plan does).
THROTTLE_STEPS = ("prepare", "post_note", "transition", "verify", "record_success", "drift_check", "record_failure")
# "note_post": the moment the simulator stored the note; a step name: right after that step ran.
STOP_POINTS = ("note_post", "prepare", "post_note", "transition", "verify")
ABANDON_REASONS = {"never_started", "ended_without_recording", "recording_failed"}


class Killed(BaseException):
    """A Lambda runtime kill as our code sees it: nothing catches it."""


class AwsFaults:
    def __init__(self, counts: Counter[str], count: Callable[[str], None]) -> None:
        self.count = count
        self.counts = counts
        self.local = threading.local()
        self._lock = threading.Lock()
        # session id -> [step, calls to let pass, calls to throttle]
        self.throttle: dict[str, list[Any]] = {}
        self.note_write: set[str] = set()
        self.kill_start: set[str] = set()
        # session id -> the writeback id whose start was killed
        self.killed: dict[str, str] = {}
        self.record_failure: set[str] = set()
        # session id -> stop point; ticket id -> session id (for "note_post"); session id -> stopped writeback id
        self.stop_at: dict[str, str] = {}
        self.stop_on_note: dict[int, str] = {}
        self.stopped: dict[str, str] = {}
        self.stop_fired: dict[str, threading.Event] = {}
        self._stop: Callable[[str], None] = lambda _wb: None

    # --- installing the hooks ---

    def install(self, monkeypatch: Any, stop_execution: Callable[[str], None]) -> None:
        from flowpilot import writeback_steps
        from flowpilot.errors import StoreUnavailable
        from flowpilot.store import executions
        from flowpilot.store import writebacks as ledger

        self._stop = stop_execution
        self.hook_dynamodb()

        start = executions.start_writeback

        def start_or_die(name: str, payload: dict[str, Any]) -> str:
            sid = str(payload.get("session_id"))
            with self._lock:
                kill = sid in self.kill_start
                self.kill_start.discard(sid)
            if kill:
                self.killed[sid] = name
                self.count("aws_kill_start")
                raise Killed
            return start(name, payload)

        monkeypatch.setattr(executions, "start_writeback", start_or_die)

        record_note_id = ledger.record_note_id

        def record_note_id_once_failing(account_id: str, session_id: str, *args: Any) -> Any:
            with self._lock:
                fail = session_id in self.note_write
                self.note_write.discard(session_id)
            if fail:
                self.count("aws_note_write")
                raise StoreUnavailable("AWS answered ProvisionedThroughputExceededException; retrying later.")
            return record_note_id(account_id, session_id, *args)

        monkeypatch.setattr(ledger, "record_note_id", record_note_id_once_failing)

        record_failure = writeback_steps.STEPS["record_failure"]

        def record_failure_failing(state: Any) -> Any:
            if state.session_id in self.record_failure:
                self.count("aws_record_failure_attempts")
                raise StoreUnavailable("AWS answered ProvisionedThroughputExceededException; retrying later.")
            return record_failure(state)

        monkeypatch.setitem(writeback_steps.STEPS, "record_failure", record_failure_failing)

    def hook_dynamodb(self) -> None:
        """(Again) on the product's current DynamoDB client: idempotent, so call it before every step."""
        from flowpilot.store import dynamo

        dynamo.client().meta.events.register_first(
            "before-call.dynamodb", self._maybe_throttle, unique_id="flowpilot-campaign-throttle"
        )

    def _maybe_throttle(self, model: Any, **_: Any) -> None:
        current = getattr(self.local, "step", None)
        if current is None:
            return
        sid, action = current
        with self._lock:
            armed = self.throttle.get(sid)
            if armed is None or armed[0] != action:
                return
            if armed[1] > 0:
                armed[1] -= 1
                return
            armed[2] -= 1
            if armed[2] <= 0:
                del self.throttle[sid]
        self.count("aws_throttled_calls")
        error: Any = {
            "Error": {"Code": THROTTLE_CODE, "Message": "The configured provisioned throughput was exceeded"},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }
        raise ClientError(error, model.name)

    # --- called by the campaign's Lambda dispatch and the simulator ---

    def around_step(
        self, sid: str, action: str, writeback_id: str, invoke: Callable[[], tuple[Any, str | None]]
    ) -> tuple[Any, str | None]:
        """Run one step invocation with the thread marked as that step's; stop the execution after it if armed
        (`invoke` answers (result, error type or None), as `devstack.aws.invoke_function`)."""
        self.hook_dynamodb()
        self.local.step = (sid, action)
        try:
            result = invoke()
        finally:
            self.local.step = None
        with self._lock:
            # Between steps: after an invocation that answered (moto reports an execution stopped while a
            # Retry is pending as FAILED, where AWS says ABORTED).
            stop = self.stop_at.get(sid) == action and result[1] is None
            if stop:
                del self.stop_at[sid]
        if stop:
            self._fire_stop(sid, writeback_id)
        return result

    def note_stored(self, ticket_id: int, text: str, marker_of: Callable[[str], str | None]) -> None:
        with self._lock:
            sid = self.stop_on_note.pop(ticket_id, None)
        if sid is None:
            return
        writeback_id = marker_of(text)
        if writeback_id is not None:
            self._fire_stop(sid, writeback_id)

    def _fire_stop(self, sid: str, writeback_id: str) -> None:
        self._stop(writeback_id)
        self.stopped[sid] = writeback_id
        self.count("aws_stop")
        if event := self.stop_fired.get(sid):
            event.set()

    def disarm(self, sid: str, ticket_ids: tuple[int, ...] = ()) -> None:
        with self._lock:
            self.throttle.pop(sid, None)
            self.note_write.discard(sid)
            self.kill_start.discard(sid)
            self.record_failure.discard(sid)
            self.stop_at.pop(sid, None)
            for t in ticket_ids:
                self.stop_on_note.pop(t, None)
