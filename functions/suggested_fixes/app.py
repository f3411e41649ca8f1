"""Suggested fixes API: add and list a session's fixes, decide on one, list the draft templates."""

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from flowpilot import suggested_fixes
from flowpilot.api import BODY_ERRORS, caller, handler_for, responses
from flowpilot.models import (
    ID_PATTERN,
    DraftTemplateList,
    SessionSuggestedFixCreateRequest,
    SessionSuggestedFixDecisionRequest,
    SessionSuggestedFixDecisionResponse,
    SessionSuggestedFixList,
    SessionSuggestedFixResponse,
)

router = Router()
SessionId = Annotated[str, Path(pattern=ID_PATTERN)]
FixId = Annotated[str, Path(pattern=ID_PATTERN)]


@router.post(
    "/ai-sessions/<session_id>/suggested-fixes",
    responses=responses(SessionSuggestedFixResponse, *BODY_ERRORS, 404, 409, status=201),
)
def add_fix(session_id: SessionId, body: SessionSuggestedFixCreateRequest) -> tuple[SessionSuggestedFixResponse, int]:
    return suggested_fixes.add_fix(caller(), session_id, body), 201


@router.get("/ai-sessions/<session_id>/suggested-fixes", responses=responses(SessionSuggestedFixList, 404))
def list_fixes(
    session_id: SessionId,
    include_superseded: Annotated[bool, Query()] = False,
    limit: Annotated[int, Query(ge=1, le=100)] = 25,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> SessionSuggestedFixList:
    return suggested_fixes.list_fixes(caller(), session_id, include_superseded, limit, cursor)


@router.post(
    "/ai-sessions/<session_id>/suggested-fixes/<fix_id>/decision",
    responses=responses(SessionSuggestedFixDecisionResponse, *BODY_ERRORS, 404, 409),
)
def decide(
    session_id: SessionId, fix_id: FixId, body: SessionSuggestedFixDecisionRequest
) -> SessionSuggestedFixDecisionResponse:
    return suggested_fixes.decide(caller(), session_id, fix_id, body)


@router.get("/draft-templates", responses=responses(DraftTemplateList))
def list_draft_templates(
    limit: Annotated[int, Query(ge=1, le=100)] = 25,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> DraftTemplateList:
    return suggested_fixes.list_draft_templates(caller(), limit, cursor)


lambda_handler = handler_for(router)
