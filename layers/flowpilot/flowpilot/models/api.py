"""The API contract: request and response shapes. Field names here are what clients rely on.

What the store persists is in `models.stored`; an item's shape there may grow without changing these.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, model_validator

from flowpilot import text

# Ids we mint and accept: letters, digits, '-' and '_' only, so no value can forge a storage key.
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]


def _visible(value: str) -> str:
    # Whitespace, control and invisible format characters only: nothing a reader (or a writer) could use.
    if text.is_blank(value):
        raise ValueError("is blank once control and invisible characters are removed")
    return value


Text200 = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), AfterValidator(_visible)
]
Text10k = Annotated[str, StringConstraints(min_length=1, max_length=10_000), AfterValidator(_visible)]


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


_TICKET_ID_DIGITS = 12


def canonical_ticket_id(value: object) -> str:
    """A PSA ticket id in its one stored spelling: `" 01005"` and `"1005"` are the same ticket, `"1005"`.

    PSA ticket ids are positive integers; anything else (signs, zero, letters, spaces inside) is refused,
    so no two spellings of one ticket can ever look like two tickets to the resume logic.
    """
    if not isinstance(value, str):
        raise ValueError("ticket_id must be a string of digits")
    digits = value.strip()
    if not digits.isascii() or not digits.isdigit() or len(digits) > 32:
        raise ValueError("ticket_id must be a positive integer written with digits 0-9")
    canonical = digits.lstrip("0")
    if not canonical:
        raise ValueError("ticket_id must be a positive integer, not zero")
    if len(canonical) > _TICKET_ID_DIGITS:
        raise ValueError(f"ticket_id must have at most {_TICKET_ID_DIGITS} digits")
    return canonical


TicketId = Annotated[
    str,
    BeforeValidator(canonical_ticket_id),
    Field(description='A positive integer as a string; stored in canonical form (" 01005" is stored "1005").'),
]


class PsaTicketRef(Strict):
    provider: PsaProvider
    ticket_id: TicketId


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
    state_version: int = Field(
        description=(
            "In the 201: the session's state_version read right after this evidence was stored, so any preview "
            "at this version or later includes it. As stored (later reads): the session's version when the write "
            "began, plus one. The two differ only when other changes landed at the same moment."
        )
    )


class EvidenceList(BaseModel):
    """A page of a session's evidence, in the order it was added."""

    items: list[Evidence]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null when the listing is complete."
    )


# Worst case of one evidence item in a response: 14,000 characters (text + result) of up to 14 bytes each
# (JSON-escaped), plus its other fields; a page of EVIDENCE_PAGE_MAX stays under Lambda's 6 MB by construction.
EVIDENCE_PAGE_MAX = 25


class LinkTicketRequest(PsaTicketRef):
    pass


# --- suggested fixes ---


class UserDecision(StrEnum):
    one_off = "one_off"
    draft_template = "draft_template"
    build_template = "build_template"
    dismissed = "dismissed"


class ScriptLanguage(StrEnum):
    """How parameter values are quoted: PowerShell single-quoted literals, or POSIX shell ones."""

    powershell = "powershell"
    posix = "posix"


ParameterName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
# Any text but NUL, which no shell can carry in an argument.
ParameterValue = Annotated[str, StringConstraints(max_length=4_000, pattern=r"^[^\x00]*$")]
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _no_bidi_controls(value: str) -> str:
    # An embedding, override or isolate makes a script display in another order than the shell reads it.
    if not _BIDI_CONTROLS.isdisjoint(value):
        raise ValueError("holds a bidi control character (U+202A-U+202E, U+2066-U+2069), which shows text out of order")
    return value


Parameters = Annotated[
    dict[ParameterName, Annotated[ParameterValue, AfterValidator(_no_bidi_controls)]], Field(max_length=50)
]
Confidence = Annotated[int, Field(ge=0, le=100, strict=True)]
ScriptBody = Annotated[str, StringConstraints(min_length=1, max_length=50_000)]
DraftedScript = Annotated[ScriptBody, AfterValidator(_no_bidi_controls)]


class SessionSuggestedFixCreateRequest(Strict):
    """A fix the AI proposes: a script template reference, or a script it drafted, never both."""

    title: Text200
    description: Annotated[str, StringConstraints(max_length=10_000)] = ""
    confidence_pct: Confidence
    script_template_id: Id | None = None
    ai_drafted_script: DraftedScript | None = None
    # repr=False: values may be secrets, and request models reach debug logs (Powertools logs route args).
    ai_drafted_parameters: Parameters = Field(default_factory=dict, repr=False)
    script_language: ScriptLanguage | None = Field(
        default=None, description="Drafted scripts only (default powershell); a template carries its own."
    )
    sensitive_parameters: Annotated[list[ParameterName], Field(max_length=50)] = Field(
        default_factory=list, description="Parameters to treat as secrets besides those named like one."
    )

    @model_validator(mode="after")
    def _one_script_source(self) -> SessionSuggestedFixCreateRequest:
        if (self.script_template_id is None) == (self.ai_drafted_script is None):
            raise ValueError("give exactly one of script_template_id or ai_drafted_script")
        if self.script_template_id is not None and self.script_language is not None:
            raise ValueError("script_language applies to ai_drafted_script only; the template sets its own")
        return self


class SessionSuggestedFixResponse(BaseModel):
    id: str
    session_id: str
    title: str
    description: str
    confidence_pct: int = Field(ge=0, le=100)
    script_template_id: str | None = None
    ai_drafted_script: str | None = None
    ai_drafted_parameters: dict[str, str] = Field(
        default_factory=dict,
        description="Values of sensitive parameters are masked; supply them when deciding.",
    )
    user_decision: UserDecision | None = None
    superseded_at: str | None = None
    created_at: str
    script_language: ScriptLanguage
    sensitive_parameters: list[str] = Field(default_factory=list)
    created_by: str
    decided_at: str | None = None
    decided_by: str | None = None


class SessionSuggestedFixList(BaseModel):
    items: list[SessionSuggestedFixResponse]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null when the listing is complete."
    )


class SessionSuggestedFixDecisionRequest(Strict):
    decision: UserDecision
    parameters: Parameters = Field(
        default_factory=dict,
        repr=False,
        description="Values for this render only (sensitive ones must come here); never stored nor logged.",
    )


class SessionSuggestedFixDecisionResponse(BaseModel):
    """The seed contract's four fields at the top level, exactly as named; the rest is additive."""

    id: str = Field(description="The decided fix's id.")
    user_decision: UserDecision
    rendered_script: str | None = Field(default=None, repr=False)  # may carry secrets given at decision time
    redirect_path: str | None = None
    fix: SessionSuggestedFixResponse
    decision: UserDecision = Field(description="The same as user_decision.")
    state_version: int = Field(description="The session's state_version read right after the decision was stored.")
    draft_template_id: str | None = None


class ScriptTemplate(BaseModel):
    """One of the account's script templates. `parameters` maps each name to its default (None: none)."""

    id: Id
    name: Text200
    body: ScriptBody
    language: ScriptLanguage = ScriptLanguage.powershell
    parameters: dict[ParameterName, ParameterValue | None] = Field(default_factory=dict)
    sensitive_parameters: list[ParameterName] = Field(default_factory=list)

    @model_validator(mode="after")
    def _no_stored_secrets(self) -> ScriptTemplate:
        with_default = [n for n in self.sensitive_parameters if self.parameters.get(n) is not None]
        if with_default:
            raise ValueError(f"sensitive parameters cannot have a stored default: {', '.join(with_default)}")
        return self


class DraftTemplate(BaseModel):
    """A template queued by a `draft_template` decision: unrendered body and parameter names, no values."""

    id: str
    name: str
    description: str
    body: str
    language: ScriptLanguage
    parameter_names: list[str]
    sensitive_parameters: list[str]
    source_session_id: str
    source_fix_id: str
    source_script_template_id: str | None = None
    created_by: str
    created_at: str


class DraftTemplateList(BaseModel):
    items: list[DraftTemplate]
    next_cursor: str | None = None


# --- previews and write-back ---


class PreviewKind(StrEnum):
    resolution_note = "resolution-note"
    escalation_package = "escalation-package"


class SecretWarning(BaseModel):
    """A likely secret found in a document: what kind, and where (1-based line and column)."""

    kind: str
    line: int
    column: int
    excerpt: str


class PreviewUsage(BaseModel):
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0


class ResolutionNotePreviewResponse(BaseModel):
    markdown: str
    target_ticket_ref: PsaTicketRef | None
    state_version: int
    from_cache: bool
    kind: PreviewKind
    writer: str
    warnings: list[SecretWarning] = Field(default_factory=list)
    usage: PreviewUsage | None = None
    generated_at: str


def _postable(value: str) -> str:
    # Control characters never reach a ticket; text that is blank once cleaned is not a note.
    cleaned = text.clean(value)
    if text.is_blank(cleaned):
        raise ValueError("markdown is blank; write the note before posting it")
    return cleaned


Markdown = Annotated[str, StringConstraints(min_length=1, max_length=20_000), AfterValidator(_postable)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500), AfterValidator(text.clean)]


# A JSON boolean and nothing else: "yes", "1" or 1 would pass the secret check under lax parsing.
Acknowledge = Annotated[
    bool,
    Field(strict=True, description="Post customer-visible text even though the secret scanner found something."),
]


class ResolutionNotePostRequest(Strict):
    markdown: Markdown
    resolution_summary: Reason | None = None
    acknowledge_warnings: Acknowledge = False


class EscalationPackagePostRequest(Strict):
    markdown: Markdown
    escalation_reason: Reason | None = None
    acknowledge_warnings: Acknowledge = False


class WritebackOutcome(StrEnum):
    resolved = "resolved"
    escalated = "escalated"
    resolved_local = "resolved_local"
    escalated_local = "escalated_local"


class ResolutionPostResponse(BaseModel):
    outcome: WritebackOutcome
    session_status: SessionStatus
    external_id: str | None = None
    posted_at: str | None = None
    verified_status_id: int | None = None
    verified_status_name: str | None = None
    status_transition_skipped_reason: str | None = None
    writeback_id: str
    drift_check: str | None = None
    note_amended: bool = Field(
        default=False,
        description="True when a re-post changed the text of the note an earlier attempt left on the ticket.",
    )


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, Any] | None = None


class ValidationDetail(BaseModel):
    loc: list[str | int]
    type: str | None = None
    msg: str | None = None


class ErrorResponse(BaseModel):
    """Every error: a machine code and a human message; request validation errors add `detail`."""

    error: ErrorBody
    detail: list[ValidationDetail] | None = None
