"""The API contract (DESIGN §3) as pydantic models. Field names here are what clients rely on."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# Ids we mint and accept: letters, digits, '-' and '_' only, so no value can forge a storage key.
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
Text200 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Text10k = Annotated[str, StringConstraints(min_length=1, max_length=10_000)]


class Strict(BaseModel):
    """Request bodies: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class SessionStatus(StrEnum):
    active = "active"
    resolved = "resolved"
    escalated = "escalated"


class PsaProvider(StrEnum):
    connectwise = "connectwise"
    autotask = "autotask"
    halopsa = "halopsa"


class PsaTicketRef(Strict):
    provider: PsaProvider
    ticket_id: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,12}$")]


class SessionCreateRequest(Strict):
    title: Text200
    problem: Text10k
    psa_ticket: PsaTicketRef | None = None


class WritebackKind(StrEnum):
    resolve = "resolve"
    escalate = "escalate"


class WritebackSummary(BaseModel):
    """What the session shows of its newest write-back (the ledger entry has the rest)."""

    writeback_id: str
    kind: WritebackKind
    state: str
    outcome: str | None = None
    external_id: str | None = None
    verified_status_id: int | None = None
    verified_status_name: str | None = None
    drift_detected: bool = False
    error_code: str | None = None
    updated_at: str


class Session(BaseModel):
    id: str
    title: str
    problem: str
    status: SessionStatus
    state_version: int
    psa_ticket: PsaTicketRef | None = None
    resolution_summary: str | None = None
    escalation_reason: str | None = None
    last_writeback: WritebackSummary | None = None
    created_by: str
    created_at: str
    updated_at: str


class SessionList(BaseModel):
    items: list[Session]
    next_cursor: str | None = None


class EvidenceKind(StrEnum):
    confirmed = "confirmed"
    tried = "tried"
    hypothesis = "hypothesis"
    next_step = "next_step"
    message = "message"


class EvidenceCreateRequest(Strict):
    kind: EvidenceKind
    text: Text10k
    result: Annotated[str, StringConstraints(max_length=4000)] | None = None


class Evidence(BaseModel):
    id: str
    session_id: str
    kind: EvidenceKind
    text: str
    result: str | None = None
    created_by: str
    created_at: str
    state_version: int = Field(description="The session's state_version after this evidence was added.")


class LinkTicketRequest(PsaTicketRef):
    pass


# --- suggested fixes (issue 3) ---


class UserDecision(StrEnum):
    one_off = "one_off"
    draft_template = "draft_template"
    build_template = "build_template"
    dismissed = "dismissed"


# --- previews and write-back ---


class PreviewKind(StrEnum):
    resolution_note = "resolution-note"
    escalation_package = "escalation-package"


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, Any] | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
