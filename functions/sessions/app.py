"""Sessions API: create, read and list sessions, add evidence, link a PSA ticket."""

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from flowpilot import sessions
from flowpilot.api import BODY_ERRORS, caller, handler_for, responses
from flowpilot.models import (
    EVIDENCE_PAGE_MAX,
    ID_PATTERN,
    Evidence,
    EvidenceCreateRequest,
    EvidenceList,
    LinkTicketRequest,
    Session,
    SessionCreateRequest,
    SessionList,
    SessionStatus,
)

router = Router()
SessionId = Annotated[str, Path(pattern=ID_PATTERN)]


@router.post("/ai-sessions", responses=responses(Session, *BODY_ERRORS, status=201))
def create_session(body: SessionCreateRequest) -> tuple[Session, int]:
    return sessions.create_session(caller(), body), 201


@router.get("/ai-sessions/<session_id>", responses=responses(Session, 404))
def get_session(session_id: SessionId) -> Session:
    return sessions.get_session(caller(), session_id)


@router.get("/ai-sessions", responses=responses(SessionList))
def list_sessions(
    status: Annotated[SessionStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 25,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> SessionList:
    return sessions.list_sessions(caller(), status, limit, cursor)


@router.post("/ai-sessions/<session_id>/evidence", responses=responses(Evidence, *BODY_ERRORS, 404, 409, status=201))
def add_evidence(session_id: SessionId, body: EvidenceCreateRequest) -> tuple[Evidence, int]:
    return sessions.add_evidence(caller(), session_id, body), 201


@router.get("/ai-sessions/<session_id>/evidence", responses=responses(EvidenceList, 404))
def list_evidence(
    session_id: SessionId,
    limit: Annotated[int, Query(ge=1, le=EVIDENCE_PAGE_MAX)] = EVIDENCE_PAGE_MAX,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> EvidenceList:
    return sessions.list_evidence(caller(), session_id, limit, cursor)


@router.put("/ai-sessions/<session_id>/psa-ticket", responses=responses(Session, *BODY_ERRORS, 404, 409))
def link_ticket(session_id: SessionId, body: LinkTicketRequest) -> Session:
    return sessions.link_ticket(caller(), session_id, body)


lambda_handler = handler_for(router)
