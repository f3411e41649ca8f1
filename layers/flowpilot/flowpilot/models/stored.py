"""What the store persists: sessions, evidence, fixes and cached previews as their items hold them.

These are not the API's shapes (`models.api`): an item carries what only the back end sees (the session's
write-back lock, its undecided fix) and a response shows what the client may see. The store turns items
into these models and back; the domain turns them into responses (`to_session`, `to_response`, …).
The write-back's own attributes on the session item are modelled in `writeback_state`.
"""

from __future__ import annotations

from pydantic import BaseModel

from flowpilot.models.api import (
    Evidence,
    PreviewKind,
    PreviewUsage,
    Session,
    SessionSuggestedFixResponse,
)


class StoredSession(Session):
    """The session item: the session's fields, and the back end's own (never in a response)."""

    # The write-back holding the session's lock, if one runs.
    active_writeback_id: str | None = None
    # The session's one undecided fix: its id, "" for none; None only on sessions stored before it was kept.
    undecided_fix_id: str | None = None

    @classmethod
    def new(cls, session: Session) -> StoredSession:
        return cls.model_validate(session.model_dump())

    def to_session(self) -> Session:
        return Session.model_validate(self.model_dump(include=set(Session.model_fields)))


class StoredEvidence(Evidence):
    """An evidence item. `state_version`: the session's version when its write began, plus one."""

    @classmethod
    def of(cls, evidence: Evidence) -> StoredEvidence:
        return cls.model_validate(evidence.model_dump())

    def to_evidence(self) -> Evidence:
        return Evidence.model_validate(self.model_dump())


class StoredFix(SessionSuggestedFixResponse):
    """A suggested fix item. Sensitive parameter values are stored masked (`scripts.MASK`), never in clear."""

    @classmethod
    def of(cls, fix: SessionSuggestedFixResponse) -> StoredFix:
        return cls.model_validate(fix.model_dump())

    def to_response(self) -> SessionSuggestedFixResponse:
        return SessionSuggestedFixResponse.model_validate(self.model_dump())


class CachedPreview(BaseModel):
    """A preview cache item: a complete document as the writer produced it, and what producing it cost."""

    kind: PreviewKind
    state_version: int
    markdown: str
    writer: str
    usage: PreviewUsage | None = None
    generated_at: str
