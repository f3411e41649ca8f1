"""Write-back API: post the resolution note or escalation package to the PSA; read a write-back's ledger."""

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path

from flowpilot import writeback
from flowpilot.api import BODY_ERRORS, caller, handler_for, responses
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
_POST_RESPONSES = responses(
    ResolutionPostResponse,
    *BODY_ERRORS,
    404,
    409,
    502,
    503,
    504,
    more={
        202: {
            "description": "Still working (PSA retries, rate limits): poll status_url",
            "content": {"application/json": {"model": WritebackAccepted}},
        }
    },
)


@router.post("/ai-sessions/<session_id>/resolution-note/post", responses=_POST_RESPONSES)
def post_resolution_note(
    session_id: SessionId, body: ResolutionNotePostRequest
) -> tuple[ResolutionPostResponse | WritebackAccepted, int]:
    return _answer(writeback.post(caller(), session_id, body))


@router.post("/ai-sessions/<session_id>/escalation-package/post", responses=_POST_RESPONSES)
def post_escalation_package(
    session_id: SessionId, body: EscalationPackagePostRequest
) -> tuple[ResolutionPostResponse | WritebackAccepted, int]:
    return _answer(writeback.post(caller(), session_id, body))


@router.get("/ai-sessions/<session_id>/writebacks/<writeback_id>", responses=responses(WritebackLedgerEntry, 404))
def get_writeback(session_id: SessionId, writeback_id: WritebackId) -> WritebackLedgerEntry:
    return writeback.get_entry(caller(), session_id, writeback_id)


def _answer(outcome: writeback.PostOutcome) -> tuple[ResolutionPostResponse | WritebackAccepted, int]:
    return outcome.answer, 200 if outcome.finished else 202


lambda_handler = handler_for(router, requires=("state_machine_arn",))
