"""Growth: a list page with 100 vs 10,000 sessions in the account, and a preview with 10 vs 5,000 evidence items.

List pages: items DynamoDB read per page come from the Query's own `Count` / `ScannedCount` (an
`after-call` hook); latency is in-process on moto, whose Query walks the whole partition in Python, so its
latency grows with the account where DynamoDB's does not: the items read is the figure that carries over.

Prompts: `build_prompt(...).estimated_tokens` for both document kinds, and (end to end) the size of the
request the model actually received for a preview miss through the route.
"""

from __future__ import annotations

import inspect
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.bench.harness import Stack
from tests.bench.report import latency_ms
from tests.bench.routes import Api

PAGE_SIZE = 25
LIST_SIZES = (100, 10_000)
EVIDENCE_SIZES = (10, 5_000)
_EPOCH = datetime(2025, 1, 6, 8, 0, tzinfo=UTC)
_KINDS = ("confirmed", "tried", "hypothesis", "next_step", "message")


def _iso(offset_seconds: int) -> str:
    return (_EPOCH + timedelta(seconds=offset_seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def seed_sessions(account_id: str, count: int) -> None:
    """`count` sessions written straight to the table (batch writes of the store's own item layout)."""
    from flowpilot.models import Session, SessionStatus
    from flowpilot.store import dynamo
    from flowpilot.store.sessions import session_item

    with dynamo.sessions_table().batch_writer() as batch:
        for i in range(count):
            stamp = _iso(i)
            session = Session(
                id=f"s_growth{i:07d}",
                title=f"Growth session {i}",
                problem="Printer offline on the 3rd floor.",
                status=SessionStatus.active,
                state_version=1,
                created_by="engineer-bench",
                created_at=stamp,
                updated_at=stamp,
            )
            batch.put_item(Item=session_item(account_id, session))


def seed_evidence_session(account_id: str, session_id: str, size: int) -> str:
    """An active session holding `size` evidence items (one batch write), for preview-miss measurements."""
    from flowpilot.models import Session, SessionStatus
    from flowpilot.store import dynamo
    from flowpilot.store.sessions import evidence_item, session_item

    session = Session(
        id=session_id,
        title="VPN drops every 10 minutes",
        problem="User reports VPN drops on Wi-Fi and LAN.",
        status=SessionStatus.active,
        state_version=size,
        created_by="engineer-bench",
        created_at=_iso(0),
        updated_at=_iso(size),
    )
    with dynamo.sessions_table().batch_writer() as batch:
        batch.put_item(Item=session_item(account_id, session))
        for evidence in _evidence_models(session, size):
            batch.put_item(Item=evidence_item(account_id, evidence))
    return session.id


def _evidence_models(session: Any, count: int) -> list[Any]:
    from flowpilot.models import Evidence, EvidenceKind

    out = []
    for i in range(count):
        kind = EvidenceKind(_KINDS[i % len(_KINDS)])
        out.append(
            Evidence(
                id=f"ev_growth{i:07d}",
                session_id=session.id,
                kind=kind,
                text=f"Step {i}: checked the event log on LAPTOP-{i % 40:02d}; error 0x80070005 in the VPN service.",
                result="No change: the tunnel still drops after ten minutes." if kind is EvidenceKind.tried else None,
                created_by="engineer-bench",
                created_at=_iso(i),
                state_version=i + 1,
            )
        )
    return out


def list_growth(stack: Stack, iterations: int) -> list[dict[str, Any]]:
    out = []
    for size in LIST_SIZES:
        account = f"acct-growth-{size}"
        started = time.perf_counter()
        seed_sessions(account, size)
        seeded_in = time.perf_counter() - started
        api = Api(stack, account_id=account, user_id="engineer-bench")
        first = api.call("GET", "/ai-sessions", 200, query={"limit": str(PAGE_SIZE)})
        cursor = first["next_cursor"]
        pages = {
            "first page": {"limit": str(PAGE_SIZE)},
            "next page (cursor)": {"limit": str(PAGE_SIZE), "cursor": cursor},
            "status=active": {"limit": str(PAGE_SIZE), "status": "active"},
        }
        for name, query in pages.items():
            api.call("GET", "/ai-sessions", 200, query=query)  # warm
            for _ in range(iterations):
                api.timed(name, "GET", "/ai-sessions", 200, query=query)
            result = api.results[("GET /ai-sessions", name)]
            counts = [c for s in result.samples for c, _ in s.queries]
            scanned = [sc for s in result.samples for _, sc in s.queries]
            out.append(
                {
                    "sessions_in_account": size,
                    "page": name,
                    "page_size": PAGE_SIZE,
                    "iterations": len(result.samples),
                    "queries_per_page": max(len(s.queries) for s in result.samples),
                    "items_read_max": max(counts),
                    "scanned_max": max(scanned),
                    "items_returned": PAGE_SIZE,
                    **latency_ms([s.seconds for s in result.samples]),
                    "seed_seconds": round(seeded_in, 2),
                }
            )
    return out


def prompt_growth() -> list[dict[str, Any]]:
    from flowpilot.models import PreviewKind, Session, SessionStatus
    from flowpilot.writers.prompt import build_prompt

    budget = int(inspect.signature(build_prompt).parameters["max_tokens_budget"].default)
    session = Session(
        id="s_prompt",
        title="VPN drops every 10 minutes",
        problem="User reports VPN drops on Wi-Fi and LAN.\nStarted after the client update.",
        status=SessionStatus.active,
        state_version=max(EVIDENCE_SIZES),
        created_by="engineer-bench",
        created_at=_iso(0),
        updated_at=_iso(0),
    )
    out = []
    for kind in PreviewKind:
        for size in EVIDENCE_SIZES:
            evidence = _evidence_models(session, size)
            started = time.perf_counter()
            prompt = build_prompt(kind, session, evidence)
            seconds = time.perf_counter() - started
            out.append(
                {
                    "kind": kind.value,
                    "evidence_items": size,
                    "estimated_tokens": prompt.estimated_tokens,
                    "budget_tokens": budget,
                    "trimmed_evidence": prompt.trimmed_evidence,
                    "build_ms": round(seconds * 1000, 2),
                }
            )
    return out


def preview_miss_growth(stack: Stack) -> list[dict[str, Any]]:
    """A preview miss through the route with 10 vs 5,000 evidence items: DynamoDB requests and the
    size of the request the model received (characters of the Messages API body)."""

    out = []
    for size in EVIDENCE_SIZES:
        account = f"acct-evidence-{size}"
        session_id = seed_evidence_session(account, f"s_evidence{size}", size)
        api = Api(stack, account_id=account, user_id="engineer-bench")
        for kind in ("resolution-note", "escalation-package"):
            before = len(stack.model.request_chars)
            api.timed(kind, "POST", f"/ai-sessions/{session_id}/{kind}/preview", 200)
            sample = api.results[("POST /ai-sessions/{session_id}/" + kind + "/preview", kind)].samples[-1]
            sent = stack.model.request_chars[before:]
            out.append(
                {
                    "kind": kind,
                    "evidence_items": size,
                    "latency_ms": round(sample.seconds * 1000, 1),
                    "dynamodb_requests": sample.ddb(),
                    "evidence_queries": len(sample.queries),
                    "evidence_items_read": sum(c for c, _ in sample.queries),
                    "model_calls": sample.model,
                    "model_request_chars": sent[-1] if sent else None,
                }
            )
    return out
