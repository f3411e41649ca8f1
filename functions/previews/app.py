"""Previews API: the resolution note and the escalation package of a session's current state (cached)."""

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path

from flowpilot import previews
from flowpilot.api import BODY_ERRORS, caller, handler_for, responses
from flowpilot.models import ID_PATTERN, PreviewKind, ResolutionNotePreviewResponse

router = Router()
SessionId = Annotated[str, Path(pattern=ID_PATTERN)]
_RESPONSES = responses(ResolutionNotePreviewResponse, *BODY_ERRORS, 404, 502, 503, 504)


@router.post("/ai-sessions/<session_id>/resolution-note/preview", responses=_RESPONSES)
def preview_resolution_note(session_id: SessionId) -> ResolutionNotePreviewResponse:
    return previews.get_or_write(caller(), session_id, PreviewKind.resolution_note)


@router.post("/ai-sessions/<session_id>/escalation-package/preview", responses=_RESPONSES)
def preview_escalation_package(session_id: SessionId) -> ResolutionNotePreviewResponse:
    return previews.get_or_write(caller(), session_id, PreviewKind.escalation_package)


lambda_handler = handler_for(router)
