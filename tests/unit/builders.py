"""Sessions and evidence for the writer tests, built the same way everywhere."""

from __future__ import annotations

from flowpilot.models import Evidence, EvidenceKind, Session, SessionStatus


def make_session(*, title: str, problem: str, state_version: int = 1) -> Session:
    return Session(
        id="sess-1",
        title=title,
        problem=problem,
        status=SessionStatus.active,
        state_version=state_version,
        created_by="engineer-a",
        created_at="2024-05-01T09:00:00Z",
        updated_at="2024-05-01T09:00:00Z",
    )


def evidence(n: int, kind: EvidenceKind, text: str, result: str | None = None) -> Evidence:
    """The n-th evidence item of the session: ids, times and versions follow n."""
    return Evidence(
        id=f"ev-{n}",
        session_id="sess-1",
        kind=kind,
        text=text,
        result=result,
        created_by="engineer-a",
        created_at=f"2024-05-01T10:{n // 60 % 60:02d}:{n % 60:02d}Z",
        state_version=n + 1,
    )
