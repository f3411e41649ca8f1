"""Write-back API: post the resolution note or escalation package to the PSA; read a write-back's ledger."""

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

from flowpilot import writeback
from flowpilot.api import caller, handler_for
from flowpilot.models import (
    ID_PATTERN,
    EscalationPackagePostRequest,
    ResolutionNotePostRequest,
    ResolutionPostResponse,
)
from flowpilot.writeback import WritebackAccepted, WritebackLedgerEntry

router = Router()
SessionId = Annotated[str, Path(pattern=ID_PATTERN)]
WritebackId = Annotated[str, Path(pattern=ID_PATTERN)]
_RESPONSES: dict[int, OpenAPIResponse] = {
    202: {
        "description": "Still working; poll the status_url",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/WritebackAccepted"}}},
    },
}


@router.post("/ai-sessions/<session_id>/resolution-note/post", responses=_RESPONSES)
def post_resolution_note(
    session_id: SessionId, body: ResolutionNotePostRequest
) -> tuple[ResolutionPostResponse | WritebackAccepted, int]:
    return writeback.post(caller(), session_id, body)


@router.post("/ai-sessions/<session_id>/escalation-package/post", responses=_RESPONSES)
def post_escalation_package(
    session_id: SessionId, body: EscalationPackagePostRequest
) -> tuple[ResolutionPostResponse | WritebackAccepted, int]:
    return writeback.post(caller(), session_id, body)


@router.get("/ai-sessions/<session_id>/writebacks/<writeback_id>")
def get_writeback(session_id: SessionId, writeback_id: WritebackId) -> WritebackLedgerEntry:
    return writeback.get_entry(caller(), session_id, writeback_id)


lambda_handler = handler_for(router)
