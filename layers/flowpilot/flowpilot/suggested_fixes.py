"""Suggested fixes: add (superseding the undecided one), list, and the engineer's decision and its effects.

Secrets: a parameter that is sensitive (by name, or marked by the fix or its template) is stored masked.
Its real value can only arrive in the decision request's `parameters`, which are used for that one render
and never stored; without it the parameter is reported missing. The rendered script in the decision
response carries the value (the engineer runs it); evidence and drafts never do.

A fix that names a script template must name one of the caller's account: checked when the fix is added
and again when it is decided (404 `script_template_not_found`).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlencode

from flowpilot import scripts
from flowpilot.clock import new_id
from flowpilot.config import settings
from flowpilot.errors import Conflict, NotFound
from flowpilot.identity import Caller
from flowpilot.models import (
    DraftTemplate,
    DraftTemplateList,
    Evidence,
    EvidenceKind,
    ScriptLanguage,
    ScriptTemplate,
    Session,
    SessionSuggestedFixCreateRequest,
    SessionSuggestedFixDecisionRequest,
    SessionSuggestedFixDecisionResponse,
    SessionSuggestedFixList,
    SessionSuggestedFixResponse,
    UserDecision,
)
from flowpilot.observability import metrics
from flowpilot.sessions import change_with_version_bump, get_session
from flowpilot.store import sessions as session_store
from flowpilot.store import suggested_fixes as store

Writes = list[dict[str, object] | session_store.ConditionalUpdate]


def _template(caller: Caller, template_id: str) -> ScriptTemplate:
    template = store.get_script_template(caller.account_id, template_id)
    if template is None:
        raise NotFound(f"Script template {template_id} not found.", code="script_template_not_found")
    return template


def _script_of(caller: Caller, fix: SessionSuggestedFixResponse) -> tuple[str, ScriptLanguage, ScriptTemplate | None]:
    if fix.script_template_id is not None:
        template = _template(caller, fix.script_template_id)
        return template.body, template.language, template
    assert fix.ai_drafted_script is not None  # the create request requires exactly one source
    return fix.ai_drafted_script, fix.script_language, None


def add_fix(caller: Caller, session_id: str, request: SessionSuggestedFixCreateRequest) -> SessionSuggestedFixResponse:
    template = _template(caller, request.script_template_id) if request.script_template_id else None
    body = template.body if template else request.ai_drafted_script
    language = template.language if template else (request.script_language or ScriptLanguage.powershell)
    assert body is not None
    scripts.check_placeholders(body, language)
    marked = [*request.sensitive_parameters, *(template.sensitive_parameters if template else [])]
    sensitive = scripts.sensitive_names([*scripts.placeholders(body), *request.ai_drafted_parameters], marked)
    parameters = {k: scripts.MASK if k in sensitive else v for k, v in request.ai_drafted_parameters.items()}

    def build(session: Session, now: str) -> tuple[Writes, SessionSuggestedFixResponse]:
        fix = SessionSuggestedFixResponse(
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
        # The newest suggestion takes over from any still undecided one.
        writes: Writes = [
            store.fix_update(caller.account_id, session.id, old.id, superseded_at=now)
            for old in store.list_fixes(caller.account_id, session.id)
            if old.user_decision is None and old.superseded_at is None
        ]
        writes.append(store.fix_item(caller.account_id, fix))
        return writes, fix

    fix = change_with_version_bump(caller, session_id, build)
    metrics.add_metric(name="SuggestedFixAdded", unit="Count", value=1)
    return fix


def list_fixes(caller: Caller, session_id: str, include_superseded: bool) -> SessionSuggestedFixList:
    get_session(caller, session_id)
    fixes = store.list_fixes(caller.account_id, session_id)
    if not include_superseded:
        fixes = [f for f in fixes if f.superseded_at is None]
    # Current (not superseded) first, each group newest first (the list is newest first; sort is stable).
    fixes.sort(key=lambda f: f.superseded_at is not None)
    return SessionSuggestedFixList(items=fixes)


def _require_undecided(caller: Caller, session_id: str, fix_id: str) -> SessionSuggestedFixResponse:
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
    fix: SessionSuggestedFixResponse,
    template: ScriptTemplate | None,
    given: Mapping[str, str],
    sensitive: set[str],
) -> dict[str, str]:
    """Template defaults, then the fix's parameters, then the decision's (the only source of secrets)."""
    stored = {**(template.parameters if template else {}), **fix.ai_drafted_parameters}
    values = {k: v for k, v in stored.items() if v is not None and k not in sensitive}
    return values | dict(given)


def decide(
    caller: Caller, session_id: str, fix_id: str, request: SessionSuggestedFixDecisionRequest
) -> SessionSuggestedFixDecisionResponse:
    decision = request.decision

    def build(session: Session, now: str) -> tuple[Writes, SessionSuggestedFixDecisionResponse]:
        fix = _require_undecided(caller, session.id, fix_id)
        decided = {"user_decision": decision.value, "decided_at": now, "decided_by": caller.engineer_id}
        if decision is UserDecision.dismissed:
            decided["superseded_at"] = now
        writes: Writes = [store.fix_update(caller.account_id, session.id, fix.id, **decided)]
        rendered = draft_id = redirect = None
        result: str | None = None

        if decision in (UserDecision.one_off, UserDecision.draft_template):
            body, language, template = _script_of(caller, fix)
            sensitive = set(scripts.sensitive_names(scripts.placeholders(body), fix.sensitive_parameters))
            if template:
                sensitive |= set(template.sensitive_parameters)
            rendered = scripts.render(body, language, _render_values(fix, template, request.parameters, sensitive))
            # What was run; its result is the engineer's to record (rendering a script is not a result).
            kind, text = EvidenceKind.tried, f"Ran suggested fix: {fix.title}"
            if decision is UserDecision.draft_template:
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
                writes.append(store.draft_item(caller.account_id, draft))
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
            state_version=session.state_version + 1,
        )
        writes.append(session_store.evidence_item(caller.account_id, evidence))
        response = SessionSuggestedFixDecisionResponse(
            fix=fix.model_copy(update=decided | {"user_decision": decision}),
            decision=decision,
            state_version=session.state_version + 1,
            rendered_script=rendered,
            draft_template_id=draft_id,
            redirect_path=redirect,
        )
        return writes, response

    response = change_with_version_bump(caller, session_id, build)
    metrics.add_metric(name=f"SuggestedFixDecision_{decision.value}", unit="Count", value=1)
    return response


def list_draft_templates(caller: Caller, limit: int, cursor: str | None) -> DraftTemplateList:
    items, next_cursor = store.list_drafts(caller.account_id, limit, cursor)
    return DraftTemplateList(items=items, next_cursor=next_cursor)
