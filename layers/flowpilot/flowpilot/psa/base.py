"""The PSA provider interface: the ticket/note/status shapes every provider returns, the errors every
provider raises, and the plain-text marker that lets a retried note POST find the note it already made.

Nothing here knows a wire format; `connectwise.py` (and later Autotask/Halo) translate into these types.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, Self

from flowpilot.errors import BadGateway, FlowPilotError, InvalidInput, UpstreamUnavailable


class NoteKind(StrEnum):
    resolution = "resolution"
    internal_analysis = "internal_analysis"


@dataclass(frozen=True, slots=True)
class StatusRef:
    id: int
    name: str


@dataclass(frozen=True, slots=True)
class BoardStatus:
    id: int
    name: str
    board_id: int
    inactive: bool
    closed: bool


@dataclass(frozen=True, slots=True)
class Ticket:
    id: str
    summary: str
    board_id: int
    board_name: str
    status: StatusRef
    closed: bool
    # ConnectWise: ServiceTicket, ProjectTicket or ProjectIssue; only service tickets are written back.
    record_type: str = "ServiceTicket"


@dataclass(frozen=True, slots=True)
class PostedNote:
    """A note as the PSA shows it (read back, never as we sent it)."""

    id: str
    ticket_id: str
    text: str
    customer_visible: bool
    internal_analysis: bool
    # The provider's own visibility fields as read, for loud errors (ConnectWise: its note flags;
    # Autotask: `publish`; Halo: `hiddenfromuser`).
    flags: Mapping[str, object] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# Errors. Each subclass names its status explicitly: with two bases, the MRO would otherwise pick
# PSAError's status over the HTTP base's.


def _rebuild_error(cls: type[PSAError], args: tuple[Any, ...], state: dict[str, Any]) -> PSAError:
    err = cls.__new__(cls)
    err.args = args
    err.__dict__.update(state)
    return err


class PSAError(FlowPilotError):
    """The PSA refused or misbehaved. Messages and details never carry credentials."""

    status = 502
    code = "psa_error"

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses have their own constructors; rebuild from state so every one pickles.
        return (_rebuild_error, (type(self), self.args, dict(self.__dict__)))


class PSATransientError(PSAError, UpstreamUnavailable):
    """Worth retrying later: 5xx, timeouts, dropped connections. A write may or may not have applied."""

    status = 503
    code = "psa_unavailable"


class PSARateLimited(PSATransientError):
    """429; `retry_after` is the PSA's Retry-After in seconds."""

    status = 503
    code = "psa_rate_limited"


class PSAAuthError(PSAError, BadGateway):
    """The PSA rejected our credentials or the API member lacks the security role."""

    status = 502
    code = "psa_auth_failed"


class PSATicketNotFound(PSAError, InvalidInput):
    status = 422
    code = "psa_ticket_not_found"


class PSAValidationError(PSAError, InvalidInput):
    """The PSA rejected the request body; details={"psa_errors": [{code, message, field}]}."""

    status = 422
    code = "psa_validation_failed"


class PSAStatusNotOnBoard(PSAError, InvalidInput):
    """Our pre-check: the target status is not an active status of the ticket's board."""

    status = 422
    code = "psa_status_not_on_board"

    def __init__(
        self,
        *,
        board_id: int,
        board_name: str,
        status_id: int,
        valid_statuses: Sequence[BoardStatus],
        inactive: bool = False,
    ) -> None:
        valid = [{"id": s.id, "name": s.name} for s in valid_statuses]
        listed = ", ".join(f"{s['name']} ({s['id']})" for s in valid) or "none"
        why = "is inactive on" if inactive else "is not a status of"
        super().__init__(
            f"Status {status_id} {why} board {board_id} '{board_name}'. Valid statuses: {listed}.",
            details={
                "board_id": board_id,
                "board_name": board_name,
                "requested_status_id": status_id,
                "requested_status_inactive": inactive,
                "valid_statuses": valid,
            },
        )


class PSANotConfigured(PSAError, InvalidInput):
    """Something the write-back needs is not in the account's settings (a connection, a Halo outcome...);
    the message names the setting. Raised before anything is posted."""

    status = 422
    code = "psa_not_configured"


class PSAVisibilityUnknown(PSAError, InvalidInput):
    """The PSA's own configuration does not say which value gives a note the visibility its kind needs
    (Autotask: the `publish` picklist's labels are ambiguous); the message lists what the PSA offers and
    names the preference that pins it. Raised before anything is posted."""

    status = 422
    code = "psa_visibility_unknown"


class PSAStatusVerificationError(PSAError, BadGateway):
    """The PSA accepted a status change, but a re-fetch shows another status (ignored or reverted)."""

    status = 502
    code = "psa_status_not_applied"

    def __init__(self, expected_id: int, actual: StatusRef) -> None:
        super().__init__(
            f"The PSA accepted the status change to {expected_id} but the ticket is in "
            f"'{actual.name}' ({actual.id}); it was not applied or a workflow changed it back.",
            details={
                "expected_status_id": expected_id,
                "actual_status_id": actual.id,
                "actual_status_name": actual.name,
            },
        )


class PSANoteVisibilityMismatch(PSAError, BadGateway):
    """The PSA shows a note with other visibility than its kind needs (e.g. an internal note made public),
    and updating the note did not fix it.

    The note exists: details carry its id so the caller can say so loudly and fix it by hand.
    """

    status = 502
    code = "psa_note_visibility_mismatch"


class PSANoteNotAmended(PSAError, BadGateway):
    """The PSA accepted an update of the note's text but still shows other text."""

    status = 502
    code = "psa_note_not_amended"


class PSANoteNotFound(PSAError):
    """A note we posted earlier is no longer on the ticket (deleted in the PSA)."""

    status = 502
    code = "psa_note_not_found"


class PSAProvider(Protocol):
    """One tenant's PSA; a context manager (`with provider_for_account(...) as p:`) that closes its client."""

    name: str

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...

    def fetch_ticket(self, ticket_id: str) -> Ticket: ...

    def board_statuses(self, board_id: int) -> list[BoardStatus]: ...

    def check_target_status(self, ticket: Ticket, status_id: int) -> BoardStatus: ...

    def check_note_settings(self, kind: NoteKind) -> None:
        """Everything a note of `kind` needs is known (visibility values, note type, outcome), or a 422
        (`PSANotConfigured`, `PSAVisibilityUnknown`) before anything is posted. May read and cache the PSA's
        configuration (picklists)."""
        ...

    def post_note(self, ticket_id: str, text: str, kind: NoteKind) -> PostedNote:
        """Create the note; returns it as the PSA answered, whatever visibility it was given."""
        ...

    def get_note(self, ticket_id: str, note_id: str) -> PostedNote:
        """Read one note back; PSANoteNotFound when it is gone."""
        ...

    def update_note(self, ticket_id: str, note_id: str, *, kind: NoteKind, text: str | None = None) -> None:
        """Set the note's visibility to what `kind` needs (and its text, when given), never notifying anyone."""
        ...

    def visibility_matches(self, note: PostedNote, kind: NoteKind) -> bool:
        """Whether the note, as read, has exactly the visibility `kind` needs."""
        ...

    def find_note_by_marker(self, ticket_id: str, marker: str) -> PostedNote | None: ...

    def change_status(self, ticket_id: str, status_id: int, *, notify_customer: bool = True) -> None: ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------------------------------
# Dedupe marker: plain text only, since some PSAs strip HTML or store text only (none has an idempotency key).

MARKER_PREFIX = "ref:fp-"
_MARKER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_MARKER_CHARS = r"[A-Za-z0-9_-]"


def note_marker(writeback_id: str) -> str:
    """The marker embedded in a note for one write-back, e.g. `ref:fp-wb_123`."""
    if not _MARKER_ID.match(writeback_id):
        raise ValueError("writeback_id must be 1-64 letters, digits, '-' or '_'")
    return MARKER_PREFIX + writeback_id


def with_marker(text: str, marker: str) -> str:
    """`text` with the marker on its own last line; unchanged if the marker is already there."""
    if contains_marker(text, marker):
        return text
    return f"{text.rstrip()}\n\n---\nFlowPilot {marker}"


def same_text(shown: str, approved: str) -> bool:
    """Whether the PSA shows the approved text, ignoring only what PSAs normalise: line endings, whitespace at
    the end of a line, and blank lines before or after the text. Indentation counts (in Markdown four leading
    spaces make a code block), so "    code" is not "code"."""
    return _normalised(shown) == _normalised(approved)


def _normalised(text: str) -> str:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return "\n".join(lines)


def without_marker(shown: str, marker: str) -> str:
    """The text a note shows without the marker block `with_marker` added (normalised as `same_text` compares):
    what the ledger records as the note's text."""
    lines = _normalised(shown).split("\n")
    if lines and lines[-1].strip() == f"FlowPilot {marker}":
        lines.pop()
        while lines and not lines[-1].strip():
            lines.pop()
        if lines and lines[-1].strip() == "---":
            lines.pop()
    return _normalised("\n".join(lines))


def contains_marker(text: str, marker: str) -> bool:
    """Whether `marker` occurs in `text` as a whole token (`ref:fp-ab` must not match `ref:fp-abc`)."""
    pattern = rf"(?<!{_MARKER_CHARS}){re.escape(marker)}(?!{_MARKER_CHARS})"
    return re.search(pattern, text) is not None
