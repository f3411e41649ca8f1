"""What the domain needs of the store, as protocols: the real modules satisfy them structurally, and the
unit tests' in-memory fakes are typed against them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence

    from flowpilot.models import (
        CachedPreview,
        EvidenceKind,
        PreviewKind,
        PsaTicketRef,
        ScriptTemplate,
        Session,
        SessionStatus,
        StoredFix,
        StoredSession,
        WritebackKind,
        WritebackSummary,
    )
    from flowpilot.store.preview_cache import WriterLease
    from flowpilot.store.sessions import EvidenceBudget, NewestEvidence, SetUndecidedFix, Write
    from flowpilot.writeback_state import GuardedNote, LedgerEntry, LedgerError, PendingNote, TicketRef


class WritebackLedger(Protocol):
    """The write-back ledger and the session fields a write-back owns (`flowpilot.store.writebacks`).

    A conditional write that loses raises `flowpilot.store.dynamo.ConditionFailed`.
    """

    def get(self, account_id: str, session_id: str, writeback_id: str) -> LedgerEntry | None: ...

    def update(self, account_id: str, session_id: str, writeback_id: str, values: dict[str, Any]) -> LedgerEntry:
        """Set `values` (models or plain JSON; None values skipped) on an existing entry."""
        ...

    def record_note_id(
        self, account_id: str, session_id: str, writeback_id: str, note_id: str, now: str
    ) -> LedgerEntry:
        """First writer wins: the entry as stored afterwards, whichever note id it holds."""
        ...

    def replace_note_id(
        self, account_id: str, session_id: str, writeback_id: str, lost_id: str, note_id: str, now: str
    ) -> LedgerEntry:
        """Only in place of `lost_id`."""
        ...

    def mark_post_attempted(self, account_id: str, session_id: str, writeback_id: str, now: str) -> bool:
        """A note POST is about to go out; False when the write-back no longer runs (abandoned)."""
        ...

    def record_error(
        self, account_id: str, session_id: str, writeback_id: str, error: LedgerError, now: str
    ) -> None: ...

    def take_lock_and_start(self, account_id: str, entry: LedgerEntry, ticket: TicketRef | None, taken_at: int) -> None:
        """The entry is put and the lock taken together, only on an active, unlocked session still linking `ticket`."""
        ...

    def close_session(
        self,
        account_id: str,
        session_id: str,
        writeback_id: str,
        *,
        status: SessionStatus,
        kind: WritebackKind,
        last_writeback: WritebackSummary,
        ticket: TicketRef | None,
        summary: str | None,
        now: str,
    ) -> None: ...

    def release_session(
        self,
        account_id: str,
        session_id: str,
        writeback_id: str,
        *,
        kind: WritebackKind,
        last_writeback: WritebackSummary,
        pending: PendingNote | None,
        guards: list[GuardedNote],
        now: str,
    ) -> None: ...

    def record_drift(self, account_id: str, session_id: str, last_writeback: WritebackSummary) -> None: ...

    def mark_finished(self, account_id: str, session_id: str, writeback_id: str, state: str) -> None: ...

    def finished_state(self, account_id: str, session_id: str, writeback_id: str) -> str | None: ...

    def pending_notes(self, session_item: dict[str, Any], kind: WritebackKind) -> list[PendingNote]: ...

    def guarded_notes(self, session_item: dict[str, Any]) -> list[GuardedNote]: ...

    def held_lock(self, session_item: dict[str, Any]) -> tuple[str, int] | None:
        """The write-back holding the session's lock and when it took it."""
        ...

    def abandon(
        self,
        account_id: str,
        session_id: str,
        entry: LedgerEntry,
        *,
        reason: str,
        pending: PendingNote | None,
        now: str,
    ) -> bool:
        """Release the lock of a write-back that will never record an end; whether this call did it."""
        ...


class SessionStore(Protocol):
    """`flowpilot.store.sessions`, as `flowpilot.sessions` (and the fixes and previews through it) use it."""

    def get_session(self, account_id: str, session_id: str) -> StoredSession | None: ...

    def put_new_session(self, account_id: str, session: Session) -> None: ...

    def link_ticket(self, account_id: str, session_id: str, ticket: PsaTicketRef, now: str) -> Session: ...

    def put_with_version_bump(
        self,
        account_id: str,
        session_id: str,
        now: str,
        writes: Sequence[Write],
        change: SetUndecidedFix | None = None,
    ) -> None: ...

    def read_newest_evidence(
        self,
        account_id: str,
        session_id: str,
        *,
        kinds: frozenset[EvidenceKind],
        up_to_version: int,
        budget: EvidenceBudget,
    ) -> NewestEvidence: ...


class FixStore(Protocol):
    """`flowpilot.store.suggested_fixes`, as `flowpilot.suggested_fixes` uses it to read."""

    def get_fix(self, account_id: str, session_id: str, fix_id: str) -> StoredFix | None: ...

    def get_script_template(self, account_id: str, template_id: str) -> ScriptTemplate | None: ...

    def undecided_fix_ids(self, account_id: str, session: StoredSession) -> list[str]: ...


class PreviewCacheStore(Protocol):
    """`flowpilot.store.preview_cache`."""

    def lookup(
        self, account_id: str, session_id: str, kind: PreviewKind, state_version: int
    ) -> CachedPreview | WriterLease | None: ...

    def take_lease(
        self, account_id: str, session_id: str, kind: PreviewKind, state_version: int, *, holder: str, seconds: int
    ) -> bool: ...

    def release_lease(
        self, account_id: str, session_id: str, kind: PreviewKind, state_version: int, *, holder: str
    ) -> None: ...

    def put_preview(self, account_id: str, session_id: str, preview: CachedPreview) -> None: ...


if TYPE_CHECKING:
    from flowpilot.store import preview_cache, sessions, suggested_fixes, writebacks

    # mypy checks here that the real store modules keep satisfying the protocols the fakes implement.
    _ledger: WritebackLedger = writebacks
    _sessions: SessionStore = sessions
    _fixes: FixStore = suggested_fixes
    _previews: PreviewCacheStore = preview_cache
