"""In-memory stores for the sessions, suggested-fixes and previews domain, so its decisions run without moto.

The protocols (`flowpilot.store.protocols`) say what the domain needs of each store; the fakes keep
the semantics the domain relies on:
a version-bump transaction lands whole or not at all (a closed or missing session, a taken key, a fix
decided or superseded first, a moved undecided-fix record refuse it with `ConditionFailed`); a ticket is
linked only to an active session no write-back holds; a lease is taken only on an empty or expired slot.
Knobs make them misbehave the way DynamoDB does (a transaction conflict, a refused cache write).

Inject with `monkeypatch.setattr(sessions, "store", fake)` and the like (see `install`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest

from flowpilot import previews, sessions, suggested_fixes
from flowpilot.models import (
    CachedPreview,
    DraftTemplate,
    Evidence,
    EvidenceKind,
    PreviewKind,
    PsaTicketRef,
    ScriptTemplate,
    Session,
    SessionStatus,
    StoredFix,
    StoredSession,
)
from flowpilot.store import suggested_fixes as real_fix_store
from flowpilot.store.preview_cache import CacheWriteFailed, WriterLease
from flowpilot.store.protocols import FixStore, PreviewCacheStore, SessionStore
from flowpilot.store.sessions import (
    ConditionFailed,
    EvidenceBudget,
    NewestEvidence,
    NewEvidence,
    SetUndecidedFix,
    TransactionConflict,
    Write,
)
from flowpilot.store.suggested_fixes import NewDraft, NewFix, RecordDecision, SupersedeFix

# --- sessions, evidence, fixes and drafts: one table, as in DynamoDB -------------------------------------

_SessionKey = tuple[str, str]


@dataclass
class FakeSessionStore:
    sessions: dict[_SessionKey, StoredSession] = field(default_factory=dict)
    evidence: dict[_SessionKey, list[Evidence]] = field(default_factory=dict)
    fixes: dict[tuple[str, str, str], StoredFix] = field(default_factory=dict)
    drafts: dict[str, list[DraftTemplate]] = field(default_factory=dict)
    # Knobs: refuse the next N transactions as DynamoDB does when another one holds the item; run
    # `before_commit` inside the next transactions, before their conditions are checked (a racing write).
    conflicts: int = 0
    before_commit: Callable[[], None] | None = None
    transactions: int = 0

    # the protocol

    def get_session(self, account_id: str, session_id: str) -> StoredSession | None:
        stored = self.sessions.get((account_id, session_id))
        return stored.model_copy(deep=True) if stored else None

    def get_session_item(self, account_id: str, session_id: str) -> dict[str, object] | None:
        stored = self.get_session(account_id, session_id)
        return stored.model_dump(mode="json", exclude_none=True) if stored else None

    def put_new_session(self, account_id: str, session: Session) -> None:
        if (account_id, session.id) in self.sessions:
            raise ConditionFailed
        self.sessions[account_id, session.id] = StoredSession.new(session)

    def link_ticket(self, account_id: str, session_id: str, ticket: PsaTicketRef, now: str) -> Session:
        stored = self.sessions.get((account_id, session_id))
        if stored is None or stored.status is not SessionStatus.active or stored.active_writeback_id:
            raise ConditionFailed
        stored.psa_ticket = ticket
        stored.updated_at = now
        stored.state_version += 1
        return stored.to_session()

    def put_with_version_bump(
        self,
        account_id: str,
        session_id: str,
        now: str,
        writes: Sequence[Write],
        change: SetUndecidedFix | None = None,
    ) -> None:
        self.transactions += 1
        if self.before_commit is not None:
            self.before_commit()
        if self.conflicts:
            self.conflicts -= 1
            raise TransactionConflict
        stored = self.sessions.get((account_id, session_id))
        if stored is None or stored.status is not SessionStatus.active:
            raise ConditionFailed
        if change is not None and stored.undecided_fix_id != change.was:
            raise ConditionFailed
        for write in writes:
            self._check(account_id, session_id, write)
        for write in writes:
            self._apply(account_id, session_id, write)
        if change is not None:
            stored.undecided_fix_id = change.fix_id or ""
        stored.state_version += 1
        stored.updated_at = now

    def read_newest_evidence(
        self,
        account_id: str,
        session_id: str,
        *,
        kinds: frozenset[EvidenceKind],
        up_to_version: int,
        budget: EvidenceBudget,
    ) -> NewestEvidence:
        matching = [
            e
            for e in reversed(self.evidence.get((account_id, session_id), []))
            if e.kind in kinds and e.state_version <= up_to_version
        ]
        for read, item in enumerate(matching, 1):
            if not budget.take(item):
                return NewestEvidence(items=tuple(matching[:read]), older_count=len(matching) - read)
        return NewestEvidence(items=tuple(matching), older_count=0)

    # what a transaction writes

    def _check(self, account_id: str, session_id: str, write: Write) -> None:
        if isinstance(write, NewEvidence):
            taken = any(e.id == write.evidence.id for e in self.evidence.get((account_id, session_id), []))
        elif isinstance(write, NewFix):
            taken = (account_id, session_id, write.fix.id) in self.fixes
        elif isinstance(write, NewDraft):
            taken = any(d.id == write.draft.id for d in self.drafts.get(account_id, []))
        elif isinstance(write, SupersedeFix | RecordDecision):
            fix_id = write.fix_id if isinstance(write, SupersedeFix) else write.fix.id
            fix = self.fixes.get((account_id, session_id, fix_id))
            taken = fix is None or fix.user_decision is not None or fix.superseded_at is not None
        else:
            raise AssertionError(f"the fake does not know {write!r}")
        if taken:
            raise ConditionFailed

    def _apply(self, account_id: str, session_id: str, write: Write) -> None:
        if isinstance(write, NewEvidence):
            self.evidence.setdefault((account_id, session_id), []).append(write.evidence)
        elif isinstance(write, NewFix):
            self.fixes[account_id, session_id, write.fix.id] = write.fix
        elif isinstance(write, NewDraft):
            self.drafts.setdefault(account_id, []).append(write.draft)
        elif isinstance(write, SupersedeFix):
            fix = self.fixes[account_id, session_id, write.fix_id]
            self.fixes[account_id, session_id, write.fix_id] = fix.model_copy(update={"superseded_at": write.at})
        elif isinstance(write, RecordDecision):
            self.fixes[account_id, session_id, write.fix.id] = write.fix

    # what tests do besides the domain (a write-back's lock and end, as the write-back's store does them)

    def lock(self, account_id: str, session_id: str, writeback_id: str) -> None:
        self.sessions[account_id, session_id].active_writeback_id = writeback_id

    def close(self, account_id: str, session_id: str, status: SessionStatus = SessionStatus.resolved) -> None:
        self.sessions[account_id, session_id].status = status


@dataclass
class FakeFixStore:
    """Reads fixes and templates from the session store's table; writes go through its transactions."""

    table: FakeSessionStore
    templates: dict[tuple[str, str], ScriptTemplate] = field(default_factory=dict)
    # Pure functions of the real store: the cursors' format is not the fake's business.
    fix_cursor = staticmethod(real_fix_store.fix_cursor)
    decode_fix_cursor = staticmethod(real_fix_store.decode_fix_cursor)

    def get_fix(self, account_id: str, session_id: str, fix_id: str) -> StoredFix | None:
        fix = self.table.fixes.get((account_id, session_id, fix_id))
        return fix.model_copy(deep=True) if fix else None

    def get_script_template(self, account_id: str, template_id: str) -> ScriptTemplate | None:
        return self.templates.get((account_id, template_id))

    def put_script_template(self, account_id: str, template: ScriptTemplate) -> None:
        self.templates[account_id, template.id] = template

    def undecided_fix_ids(self, account_id: str, session: StoredSession) -> list[str]:
        if session.undecided_fix_id is not None:
            return [session.undecided_fix_id] if session.undecided_fix_id else []
        return [
            fix.id
            for (account, session_id, _), fix in self.table.fixes.items()
            if (account, session_id) == (account_id, session.id)
            and fix.user_decision is None
            and fix.superseded_at is None
        ]

    def fixes_page(
        self, account_id: str, session_id: str, *, superseded: bool, after: str | None, limit: int
    ) -> tuple[list[StoredFix], str | None]:
        group = sorted(
            (
                fix
                for (account, sid, _), fix in self.table.fixes.items()
                if (account, sid) == (account_id, session_id) and (fix.superseded_at is not None) == superseded
            ),
            key=lambda fix: fix.id,
            reverse=True,
        )
        if after is not None:
            group = [fix for fix in group if fix.id < after]
        return (group[:limit], group[limit - 1].id) if len(group) > limit else (group, None)


# --- the preview cache -----------------------------------------------------------------------------------

_PreviewKey = tuple[str, str, PreviewKind, int]


@dataclass
class FakePreviewCache:
    entries: dict[_PreviewKey, CachedPreview | WriterLease] = field(default_factory=dict)
    clock: Callable[[], float] = time.time
    # Knob: refuse every put_preview as a throttled DynamoDB would.
    refuse_puts: bool = False
    released: list[str] = field(default_factory=list)

    def lookup(
        self, account_id: str, session_id: str, kind: PreviewKind, state_version: int
    ) -> CachedPreview | WriterLease | None:
        entry = self.entries.get((account_id, session_id, kind, state_version))
        if isinstance(entry, WriterLease) and entry.expires_at <= int(self.clock()):
            return None
        return entry

    def take_lease(
        self, account_id: str, session_id: str, kind: PreviewKind, state_version: int, *, holder: str, seconds: int
    ) -> bool:
        if self.lookup(account_id, session_id, kind, state_version) is not None:
            return False
        expires = math.ceil(self.clock()) + seconds
        self.entries[account_id, session_id, kind, state_version] = WriterLease(holder=holder, expires_at=expires)
        return True

    def release_lease(
        self, account_id: str, session_id: str, kind: PreviewKind, state_version: int, *, holder: str
    ) -> None:
        key = (account_id, session_id, kind, state_version)
        entry = self.entries.get(key)
        if isinstance(entry, WriterLease) and entry.holder == holder:
            del self.entries[key]
            self.released.append(holder)

    def put_preview(self, account_id: str, session_id: str, preview: CachedPreview) -> None:
        if self.refuse_puts:
            raise CacheWriteFailed("ProvisionedThroughputExceededException")
        self.entries[account_id, session_id, preview.kind, preview.state_version] = preview


# --- wiring ----------------------------------------------------------------------------------------------


@dataclass
class Stores:
    sessions: FakeSessionStore
    fixes: FakeFixStore
    previews: FakePreviewCache


def install(monkeypatch: pytest.MonkeyPatch) -> Stores:
    """Swap the domain's stores for fresh in-memory ones, each through the one name its module uses."""
    table = FakeSessionStore()
    stores = Stores(sessions=table, fixes=FakeFixStore(table), previews=FakePreviewCache())
    monkeypatch.setattr(sessions, "store", stores.sessions)
    monkeypatch.setattr(suggested_fixes, "store", stores.fixes)
    monkeypatch.setattr(previews, "session_store", stores.sessions)
    monkeypatch.setattr(previews, "preview_cache", stores.previews)
    return stores


def _conforms() -> None:
    """Never run: mypy fails here if a fake, or a real store, drifts from what the domain uses."""
    real: tuple[SessionStore, FixStore, PreviewCacheStore] = (sessions.store, real_fix_store, previews.preview_cache)
    fake: tuple[SessionStore, FixStore, PreviewCacheStore] = (
        FakeSessionStore(),
        FakeFixStore(FakeSessionStore()),
        FakePreviewCache(),
    )
    del real, fake
