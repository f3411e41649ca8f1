"""Suggested fixes: add (superseding the undecided one), list, and the engineer's decision and its effects.

Secrets: a parameter that is sensitive (by name, or marked by the fix or its template) is stored masked.
Its real value can only arrive in the decision request's `parameters`, which are used for that one render
and never stored; without it the parameter is reported missing. The rendered script in the decision
response carries the value (the engineer runs it); evidence and drafts never do.

A fix that names a script template must name one of the caller's account: checked when the fix is added
and again when it is decided (404 `script_template_not_found`).

Sizes: every response stays under Lambda's 6 MB by construction. A fix is refused (422 `fix_too_large`)
when it would take more than MAX_FIX_BYTES of a response, decided or not; a list page stops before its
items pass PAGE_BUDGET_BYTES; a rendered script longer than MAX_RENDERED_SCRIPT_CHARS is refused (422
`rendered_script_too_large`). Adding or deciding reads the session, the fix it changes and nothing else
(the undecided fix's id is kept on the session item, in the same transaction as every change to it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from urllib.parse import urlencode

from pydantic import BaseModel

from flowpilot import scanner, scripts
from flowpilot.clock import new_id
from flowpilot.config import settings
from flowpilot.errors import Conflict, InvalidInput, NotFound
from flowpilot.identity import Caller
from flowpilot.models import (
    DraftTemplate,
    DraftTemplateList,
    Evidence,
    EvidenceKind,
    ScriptLanguage,
    ScriptTemplate,
    SessionSuggestedFixCreateRequest,
    SessionSuggestedFixDecisionRequest,
    SessionSuggestedFixDecisionResponse,
    SessionSuggestedFixList,
    SessionSuggestedFixResponse,
    StoredFix,
    StoredSession,
    UserDecision,
)
from flowpilot.observability import metrics
from flowpilot.sessions import Change, change_with_version_bump, get_session
from flowpilot.store import suggested_fixes as store
from flowpilot.store.sessions import NewEvidence, SetUndecidedFix, Write
from flowpilot.store.suggested_fixes import NewDraft, NewFix, RecordDecision, SupersedeFix

# Lambda returns at most 6 MB (6 * 2**20 bytes) of response payload.
LAMBDA_RESPONSE_LIMIT_BYTES = 6 * 1024 * 1024
# What a response holds besides its fixes or drafts (status, headers, brackets, next_cursor), at most.
ENVELOPE_BYTES = 4_096
# A fix, as any response carries it (decided and superseded included), in payload bytes (see payload_bytes).
# Payload bytes are never fewer than the UTF-8 bytes DynamoDB counts, so the item also fits its 400 KB.
MAX_FIX_BYTES = 380_000
# A page of fixes or drafts ends before its items pass this; one item is always below it.
PAGE_BUDGET_BYTES = 5_000_000
# One character takes at most 14 payload bytes: an astral one is `\udXXX\udXXX` in the JSON body, whose
# two backslashes are escaped again when the body is a string in Lambda's response.
MAX_PAYLOAD_BYTES_PER_CHAR = 14
MAX_RENDERED_SCRIPT_CHARS = 350_000


def payload_bytes(model: BaseModel) -> int:
    """Bytes `model` takes in the Lambda response: ASCII JSON as the resolver writes it, then escaped once more
    as the string `body` of the response (each quote and backslash gains a backslash)."""
    body = json.dumps(model.model_dump(mode="json"), separators=(",", ":"))
    return len(body) + body.count('"') + body.count("\\")


def within_budget[M: BaseModel](items: Sequence[M], budget: int = PAGE_BUDGET_BYTES) -> list[M]:
    """The longest prefix of `items` whose payload stays within `budget` (at least one item)."""
    kept: list[M] = []
    used = 0
    for item in items:
        used += payload_bytes(item)
        if kept and used > budget:
            break
        kept.append(item)
    return kept


def _template(caller: Caller, template_id: str) -> ScriptTemplate:
    template = store.get_script_template(caller.account_id, template_id)
    if template is None:
        raise NotFound(f"Script template {template_id} not found.", code="script_template_not_found")
    return template


def _script_of(caller: Caller, fix: StoredFix) -> tuple[str, ScriptLanguage, ScriptTemplate | None]:
    if fix.script_template_id is not None:
        template = _template(caller, fix.script_template_id)
        return template.body, template.language, template
    assert fix.ai_drafted_script is not None  # the create request requires exactly one source
    return fix.ai_drafted_script, fix.script_language, None


def _refuse_if_too_large(fix: SessionSuggestedFixResponse) -> None:
    # Measured as it will be at its largest: decided (longest decision, longest engineer id) and superseded.
    longest = max(UserDecision, key=len)
    decided = fix.model_copy(
        update={
            "user_decision": longest,
            "decided_at": fix.created_at,
            "decided_by": "x" * 64,
            "superseded_at": fix.created_at,
        }
    )
    size = payload_bytes(decided)
    if size > MAX_FIX_BYTES:
        raise InvalidInput(
            f"This suggested fix is too large: {size} bytes once serialised, at most {MAX_FIX_BYTES}. "
            "Shorten the script, the description or the parameter values.",
            code="fix_too_large",
            details={"bytes": size, "max_bytes": MAX_FIX_BYTES},
        )


def add_fix(caller: Caller, session_id: str, request: SessionSuggestedFixCreateRequest) -> SessionSuggestedFixResponse:
    template = _template(caller, request.script_template_id) if request.script_template_id else None
    body = template.body if template else request.ai_drafted_script
    language = template.language if template else (request.script_language or ScriptLanguage.powershell)
    assert body is not None
    scripts.check_placeholders(body, language)
    # Sensitive by name, by mark, or by value: "/password:..." is a secret whatever its parameter is called.
    looks_secret = [name for name, value in request.ai_drafted_parameters.items() if scanner.scan(value)]
    marked = [*request.sensitive_parameters, *(template.sensitive_parameters if template else []), *looks_secret]
    sensitive = scripts.sensitive_names([*scripts.placeholders(body), *request.ai_drafted_parameters], marked)
    parameters = {k: scripts.MASK if k in sensitive else v for k, v in request.ai_drafted_parameters.items()}

    def build(session: StoredSession, now: str) -> Change[SessionSuggestedFixResponse]:
        fix = StoredFix(
            id=new_id("fix"),
            session_id=session.id,
            title=request.title,
            description=request.description,
            confidence_pct=request.confidence_pct,
            script_template_id=request.script_template_id,
            ai_drafted_script=request.ai_drafted_script,
            ai_drafted_parameters=parameters,
            script_language=language,
            sensitive_parameters=sensitive,
            created_by=caller.engineer_id,
            created_at=now,
        )
        response = fix.to_response()
        _refuse_if_too_large(response)
        # The newest suggestion takes over from the undecided one, if any.
        writes: list[Write] = [
            SupersedeFix(session.id, old, at=now) for old in store.undecided_fix_ids(caller.account_id, session)
        ]
        writes.append(NewFix(fix))
        return Change(writes, response, SetUndecidedFix(was=session.undecided_fix_id, fix_id=fix.id))

    fix = change_with_version_bump(caller, session_id, build).result
    metrics.add_metric(name="SuggestedFixAdded", unit="Count", value=1)
    return fix


def list_fixes(
    caller: Caller, session_id: str, include_superseded: bool, limit: int, cursor: str | None
) -> SessionSuggestedFixList:
    """Current (not superseded) fixes first, then, if asked, superseded ones; each group newest first.

    The undecided fix is always the newest (each new fix supersedes it), so it leads the first page.
    A page holds at most `limit` fixes and stays within PAGE_BUDGET_BYTES; it may be shorter than `limit`
    (even empty) with a `next_cursor`: the listing ends when `next_cursor` is null.
    """
    get_session(caller, session_id)
    groups = [False, True] if include_superseded else [False]  # superseded or not
    group, after = store.decode_fix_cursor(cursor, session_id, include_superseded, len(groups)) if cursor else (0, None)
    page: list[SessionSuggestedFixResponse] = []
    used = 0

    def answer(next_group: int, next_after: str | None) -> SessionSuggestedFixList:
        return SessionSuggestedFixList(
            items=page, next_cursor=store.fix_cursor(session_id, include_superseded, next_group, next_after)
        )

    while True:
        fixes, resume = store.fixes_page(
            caller.account_id, session_id, superseded=groups[group], after=after, limit=limit - len(page)
        )
        for fix in (stored.to_response() for stored in fixes):
            used += payload_bytes(fix)
            if page and used > PAGE_BUDGET_BYTES:
                return answer(group, after)
            page.append(fix)
            after = fix.id
        if resume is not None:
            return answer(group, resume)
        group, after = group + 1, None
        if group == len(groups):
            return SessionSuggestedFixList(items=page, next_cursor=None)
        if len(page) == limit:
            # Full at the end of a group: point at the next group only if it holds anything.
            ahead, more = store.fixes_page(caller.account_id, session_id, superseded=groups[group], after=None, limit=1)
            return answer(group, None) if ahead or more else SessionSuggestedFixList(items=page, next_cursor=None)


def _require_undecided(caller: Caller, session_id: str, fix_id: str) -> StoredFix:
    fix = store.get_fix(caller.account_id, session_id, fix_id)
    if fix is None:
        raise NotFound(f"Suggested fix {fix_id} not found in session {session_id}.", code="fix_not_found")
    if fix.user_decision is not None:
        raise Conflict(
            f"Suggested fix {fix_id} was already decided ({fix.user_decision.value}); a fix is decided once.",
            code="fix_already_decided",
        )
    if fix.superseded_at is not None:
        raise Conflict(
            f"Suggested fix {fix_id} was superseded by a newer suggestion at {fix.superseded_at}; "
            "decide on the current one.",
            code="fix_superseded",
        )
    return fix


def _render_values(
    fix: StoredFix,
    template: ScriptTemplate | None,
    given: Mapping[str, str],
    sensitive: set[str],
) -> dict[str, str]:
    """Template defaults, then the fix's parameters, then the decision's (the only source of secrets)."""
    stored = {**(template.parameters if template else {}), **fix.ai_drafted_parameters}
    values = {k: v for k, v in stored.items() if v is not None and k not in sensitive}
    return values | dict(given)


def _refuse_long_render(body: str, language: ScriptLanguage, values: Mapping[str, str]) -> None:
    """Count the rendered length before rendering: a short body repeating a long value can be huge."""
    quoted = {name: len(scripts.quote(value, language)) for name, value in values.items()}
    length = len(body) + sum(
        quoted[m.group(1)] - len(m.group(0)) for m in scripts.PLACEHOLDER.finditer(body) if m.group(1) in quoted
    )
    if length > MAX_RENDERED_SCRIPT_CHARS:
        raise InvalidInput(
            f"The rendered script would be {length} characters, at most {MAX_RENDERED_SCRIPT_CHARS}.",
            code="rendered_script_too_large",
            details={"characters": length, "max_characters": MAX_RENDERED_SCRIPT_CHARS},
        )


def decide(
    caller: Caller, session_id: str, fix_id: str, request: SessionSuggestedFixDecisionRequest
) -> SessionSuggestedFixDecisionResponse:
    decision = request.decision

    def build(session: StoredSession, now: str) -> Change[SessionSuggestedFixDecisionResponse]:
        fix = _require_undecided(caller, session.id, fix_id)
        decided = fix.model_copy(
            update={
                "user_decision": decision,
                "decided_at": now,
                "decided_by": caller.engineer_id,
                # A dismissed fix steps aside, so a fresh suggestion can take over.
                "superseded_at": now if decision is UserDecision.dismissed else None,
            }
        )
        writes: list[Write] = [RecordDecision(decided)]
        rendered = draft_id = redirect = None
        result: str | None = None

        if decision in (UserDecision.one_off, UserDecision.draft_template):
            body, language, template = _script_of(caller, fix)
            sensitive = set(scripts.sensitive_names(scripts.placeholders(body), fix.sensitive_parameters))
            if template:
                sensitive |= set(template.sensitive_parameters)
            values = _render_values(fix, template, request.parameters, sensitive)
            _refuse_long_render(body, language, values)
            rendered = scripts.render(body, language, values)
            # What was run; its result is the engineer's to record (rendering a script is not a result).
            kind, text = EvidenceKind.tried, f"Ran suggested fix: {fix.title}"
            if decision is UserDecision.draft_template:
                _refuse_shared_secrets(body, fix.description)
                draft = DraftTemplate(
                    id=new_id("dt"),
                    name=fix.title,
                    description=fix.description,
                    body=body,
                    language=language,
                    parameter_names=scripts.placeholders(body),
                    sensitive_parameters=sorted(sensitive),
                    source_session_id=session.id,
                    source_fix_id=fix.id,
                    source_script_template_id=fix.script_template_id,
                    created_by=caller.engineer_id,
                    created_at=now,
                )
                writes.append(NewDraft(draft))
                draft_id = draft.id
        elif decision is UserDecision.build_template:
            query = urlencode({"session_id": session.id, "fix_id": fix.id})
            redirect = f"{settings().template_builder_path}?{query}"
            kind, text = EvidenceKind.message, f"Sent suggested fix to the template builder: {fix.title}"
        else:
            kind, text = EvidenceKind.message, f"Rejected suggested fix: {fix.title}"
            if fix.description:
                text += f" — {fix.description[:200]}"

        evidence = Evidence(
            id=new_id("ev"),
            session_id=session.id,
            kind=kind,
            text=text,
            result=result,
            created_by=caller.engineer_id,
            created_at=now,
            state_version=session.state_version + 1,  # never above the version this write produces
        )
        writes.append(NewEvidence(evidence))
        response = SessionSuggestedFixDecisionResponse(
            id=fix.id,
            user_decision=decision,
            rendered_script=rendered,
            redirect_path=redirect,
            fix=decided.to_response(),
            decision=decision,
            state_version=session.state_version + 1,
            draft_template_id=draft_id,
        )
        # The fix is no longer undecided; the record follows, unless a newer fix already took its place.
        record = session.undecided_fix_id
        change = SetUndecidedFix(was=record, fix_id=None) if record == fix.id else None
        return Change(writes, response, change)

    committed = change_with_version_bump(caller, session_id, build)
    metrics.add_metric(name=f"SuggestedFixDecision_{decision.value}", unit="Count", value=1)
    return committed.result.model_copy(update={"state_version": committed.state_version})


def _refuse_shared_secrets(body: str, description: str) -> None:
    """A draft template is shared with the whole account: no literal secret may go into one."""
    scanner.refuse_secrets(
        "The script or its description holds what looks like a secret, and a draft template is shared with "
        "the whole account. Decide one_off to run it here, or have the secret made a parameter.",
        {"script": body, "description": description},
    )


def list_draft_templates(caller: Caller, limit: int, cursor: str | None) -> DraftTemplateList:
    items, next_cursor = store.list_drafts(caller.account_id, limit, cursor)
    kept = within_budget(items)
    if len(kept) < len(items):
        next_cursor = store.draft_cursor(kept[-1].id)
    return DraftTemplateList(items=kept, next_cursor=next_cursor)
