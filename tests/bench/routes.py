"""Every route of template.yaml on moto: AWS requests, PSA and model calls, and in-process latency.

Each call goes through `devstack.gateway.call` (API Gateway's part in-process) into the function's real
`lambda_handler`, warm (the module is loaded and the clients exist before the first timed call), as a
warm Lambda container would run it. Counts come from `harness.AwsMeter` (AWS), the simulator's request
log (PSA) and the fake Messages API (model); latency is wall time around `gateway.call`.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.bench.harness import (
    API_THREAD,
    DDB_READ_OPS,
    DDB_WRITE_OPS,
    BenchError,
    Mark,
    Stack,
    StepRun,
)

ACCOUNT, ENGINEER = "acct-bench", "engineer-bench"
NOTE = "Reinstalled the VPN client and reset the adapter.\n\nThe connection has been stable for 30 minutes."
ESCALATION = (
    "## Problem\nMailbox migration stuck at 95%.\n\n## What we've confirmed\n- Stuck for 2 days.\n\n"
    "## What we've tried\n- Restarted the move request: no change.\n\n## Current hypothesis\n"
    "- A corrupt item in the archive (unconfirmed).\n\n## Suggested next steps\n- Run a mailbox repair.\n"
)
FIX = {
    "title": "Restart the print spooler",
    "description": "The spooler hangs after the driver update.",
    "confidence_pct": 80,
    "ai_drafted_script": "Restart-Service -ComputerName {{host}} -Name {{service}}",
    "ai_drafted_parameters": {"host": "srv-01", "service": "Spooler"},
}
DECISIONS = ("one_off", "draft_template", "build_template", "dismissed")
# Post-step work of a write-back: the re-check runs after the verified answer was given.
AFTER_ANSWER_STEPS = frozenset({"drift_check", "record_drift_check_failure"})


@dataclass
class Sample:
    seconds: float
    aws: Counter[tuple[str, str, str]]  # (service, operation, sender) -> requests
    queries: list[tuple[int, int]]  # (Count, ScannedCount) of each Query
    psa: int
    model: int
    steps: list[StepRun] = field(default_factory=list)

    def ddb(self, ops: frozenset[str] | None = None, sender: str | None = None) -> int:
        return sum(
            n
            for (service, op, who), n in self.aws.items()
            if service == "dynamodb" and (ops is None or op in ops) and (sender is None or who == sender)
        )

    def query_items(self) -> int:
        return sum(scanned for _, scanned in self.queries)

    def other_aws(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for (service, op, _), n in self.aws.items():
            if service != "dynamodb":
                out[f"{service}:{op}"] += n
        return out

    def psa_before_answer(self) -> int:
        return sum(s.psa_requests for s in self.steps if s.action not in AFTER_ANSWER_STEPS)

    def psa_after_answer(self) -> int:
        return sum(s.psa_requests for s in self.steps if s.action in AFTER_ANSWER_STEPS)


@dataclass
class RouteResult:
    route: str  # the template's route key, e.g. "GET /ai-sessions/{session_id}"
    variant: str
    samples: list[Sample] = field(default_factory=list)
    note: str = ""

    @property
    def label(self) -> str:
        return f"{self.route} [{self.variant}]" if self.variant else self.route


class Api:
    """Calls routes as API Gateway would, as one engineer of one account, and meters each call."""

    def __init__(self, stack: Stack, account_id: str = ACCOUNT, user_id: str = ENGINEER) -> None:
        self.stack = stack
        self.account_id = account_id
        self.user_id = user_id
        self.results: dict[tuple[str, str], RouteResult] = {}

    def call(
        self, method: str, path: str, expect: int, *, body: Any = None, query: dict[str, str] | None = None
    ) -> Any:
        from devstack import gateway

        response = gateway.call(method, path, body=body, query=query, account_id=self.account_id, user_id=self.user_id)
        if response.status != expect:
            raise BenchError(f"{method} {path} answered {response.status}, expected {expect}: {response.text[:500]}")
        return response.body

    def timed(
        self,
        variant: str,
        method: str,
        path: str,
        expect: int,
        *,
        body: Any = None,
        query: dict[str, str] | None = None,
        after: Callable[[], None] | None = None,
    ) -> Any:
        """One metered call. `after` (untimed) runs before the counts are read: e.g. draining executions."""
        from devstack import template

        matched = template.match_route(method, path)
        if matched is None:
            raise BenchError(f"no route for {method} {path}")
        mark = self.stack.mark()
        started = time.perf_counter()
        result = self.call(method, path, expect, body=body, query=query)
        seconds = time.perf_counter() - started
        if after is not None:
            after()
        key = (matched[0].route_key, variant)
        self.results.setdefault(key, RouteResult(*key)).samples.append(self._since(mark, seconds))
        return result

    def _since(self, mark: Mark, seconds: float) -> Sample:
        stack = self.stack
        aws = Counter((r.service, r.operation, r.sender) for r in stack.aws.sent[mark.aws :])
        queries = [(q.count, q.scanned) for q in stack.aws.queries[mark.queries :]]
        return Sample(
            seconds=seconds,
            aws=aws,
            queries=queries,
            psa=len(stack.psa.requests) - mark.psa,
            model=stack.model.calls - mark.model,
            steps=list(stack.steps.runs[mark.steps :]),
        )

    # --- helpers that set things up (untimed) ---

    def new_session(self, ticket_id: int | None = None, title: str = "VPN drops every 10 minutes") -> str:
        body: dict[str, Any] = {"title": title, "problem": "User reports VPN drops on Wi-Fi and LAN."}
        if ticket_id is not None:
            body["psa_ticket"] = {"provider": self.stack.psa.provider, "ticket_id": str(ticket_id)}
        return str(self.call("POST", "/ai-sessions", 201, body=body)["id"])


def _progress(message: str) -> None:
    print(f"  … {message}", file=sys.stderr, flush=True)


PREFERENCES = {"cw_resolved_status_id": 5, "cw_escalated_status_id": 6}


def _evidence(i: int) -> dict[str, Any]:
    kinds = ("confirmed", "tried", "hypothesis", "next_step", "message")
    kind = kinds[i % len(kinds)]
    body: dict[str, Any] = {"kind": kind, "text": f"Step {i}: checked the VPN client logs on the laptop ({kind})."}
    if kind == "tried":
        body["result"] = "No change: the tunnel still drops after about 10 minutes."
    return body


def run_routes(stack: Stack, iterations: int, writebacks: int) -> tuple[list[RouteResult], dict[str, Any]]:
    """Measure every route; returns the results and what the write-back warm-up saw (statuses not cached)."""
    api = Api(stack)
    n = iterations
    sim = stack.psa

    # Warm every function (module loaded, clients created), untimed: the first call of a process is a cold
    # start, measured separately. The PSA connection is saved here once so later routes find it.
    api.call("PUT", "/account-settings/psa-connection", 200, body=sim.connection_settings())
    api.call("PUT", "/account-settings/preferences", 200, body=PREFERENCES)
    warm = api.new_session()
    api.call("GET", "/account-settings", 200)
    api.call("GET", f"/ai-sessions/{warm}/suggested-fixes", 200)
    api.call("POST", f"/ai-sessions/{warm}/resolution-note/preview", 200)  # imports `anthropic` once
    api.call("POST", f"/ai-sessions/{warm}/escalation-package/preview", 200)

    _progress("sessions routes")
    for i in range(n):
        api.timed("", "POST", "/ai-sessions", 201, body={"title": f"Session {i}", "problem": "VPN drops."})
    read = api.new_session()
    for _ in range(n):
        api.timed("", "GET", f"/ai-sessions/{read}", 200)
    for _ in range(n):
        api.timed("", "GET", "/ai-sessions", 200, query={"limit": "25"})
    evidence_session = api.new_session()
    for i in range(n):
        api.timed("", "POST", f"/ai-sessions/{evidence_session}/evidence", 201, body=_evidence(i))
    linked = api.new_session()
    for i in range(n):
        body = {"provider": "connectwise", "ticket_id": str(1001 + i % 6)}
        api.timed("", "PUT", f"/ai-sessions/{linked}/psa-ticket", 200, body=body)

    _progress("settings routes")
    for _ in range(n):
        api.timed("", "GET", "/account-settings", 200)
    for i in range(n):
        prefs = {**PREFERENCES, "cw_resolved_status_ids_by_board": {"2": 25}} if i % 2 else PREFERENCES
        api.timed("", "PUT", "/account-settings/preferences", 200, body=prefs)
    for _ in range(n):
        api.timed("", "PUT", "/account-settings/psa-connection", 200, body=sim.connection_settings())
    api.call("PUT", "/account-settings/preferences", 200, body=PREFERENCES)

    _progress("suggested-fixes routes")
    fixes_session = api.new_session()
    for _ in range(n):  # each new fix supersedes the previous undecided one
        api.timed("supersedes one", "POST", f"/ai-sessions/{fixes_session}/suggested-fixes", 201, body=FIX)
    listed = api.new_session()
    for _ in range(3):
        api.call("POST", f"/ai-sessions/{listed}/suggested-fixes", 201, body=FIX)
    for _ in range(n):
        api.timed("3 fixes", "GET", f"/ai-sessions/{listed}/suggested-fixes", 200)
    per_decision = max(3, n // len(DECISIONS))
    decided = api.new_session()
    for decision in itertools.chain.from_iterable(itertools.repeat(DECISIONS, per_decision)):
        fix = api.call("POST", f"/ai-sessions/{decided}/suggested-fixes", 201, body=FIX)
        api.timed(
            decision,
            "POST",
            f"/ai-sessions/{decided}/suggested-fixes/{fix['id']}/decision",
            200,
            body={"decision": decision},
        )
    for _ in range(n):
        api.timed("", "GET", "/draft-templates", 200)

    _progress("preview routes")
    for kind in ("resolution-note", "escalation-package"):
        session = api.new_session()
        for i in range(n):
            api.call("POST", f"/ai-sessions/{session}/evidence", 201, body=_evidence(i))  # a new state
            api.timed("miss", "POST", f"/ai-sessions/{session}/{kind}/preview", 200)
            api.timed("hit", "POST", f"/ai-sessions/{session}/{kind}/preview", 200)

    _progress("write-back routes")
    warmup = _writeback_warmup(api)
    ticket_ids = itertools.count(3001)
    posts = (
        ("resolution-note", {"markdown": NOTE}),
        ("escalation-package", {"markdown": ESCALATION, "escalation_reason": "Needs an Exchange admin"}),
    )
    for kind, body in posts:
        for _ in range(writebacks):
            tid = next(ticket_ids)
            sim.add_ticket(tid, board_id=1, status_id=2, summary=f"Bench ticket {tid}")
            session = api.new_session(ticket_id=tid)
            api.timed("PSA, verified", "POST", f"/ai-sessions/{session}/{kind}/post", 200, body=body, after=stack.drain)
    last = None
    for _ in range(writebacks):
        session = api.new_session()
        last = api.timed(
            "no ticket, local",
            "POST",
            f"/ai-sessions/{session}/resolution-note/post",
            200,
            body={"markdown": NOTE},
            after=stack.drain,
        )
        if last["outcome"] != "resolved_local":
            raise BenchError(f"expected a local resolve, got {last}")
    assert last is not None
    wb_session, wb_id = session, last["writeback_id"]
    for _ in range(n):
        api.timed("", "GET", f"/ai-sessions/{wb_session}/writebacks/{wb_id}", 200)

    return list(api.results.values()), warmup


def _writeback_warmup(api: Api) -> dict[str, Any]:
    """The first PSA write-back of the process: board statuses not cached yet. Counted, not in the rows."""
    sim, stack = api.stack.psa, api.stack
    sim.add_ticket(3000, board_id=1, status_id=2, summary="Bench warm-up ticket")
    from flowpilot.psa import connectwise

    connectwise.reset_caches()
    session = api.new_session(ticket_id=3000)
    mark = stack.mark()
    started = time.perf_counter()
    body = api.call("POST", f"/ai-sessions/{session}/resolution-note/post", 200, body={"markdown": NOTE})
    seconds = time.perf_counter() - started
    stack.drain()
    sample = api._since(mark, seconds)
    if body.get("verified_status_id") != 5:
        raise BenchError(f"warm-up write-back not verified: {body}")
    return {
        "seconds": round(seconds, 4),
        "psa_before_answer": sample.psa_before_answer(),
        "psa_after_answer": sample.psa_after_answer(),
        "psa_requests": [f"{r.method} {r.path.removeprefix(sim.base_path)}" for r in sim.requests[mark.psa :]],
    }


def summarize(result: RouteResult) -> dict[str, Any]:
    """The JSON form of one route's measurements (counts per sample as min/max/mean)."""
    from tests.bench.report import latency_ms, spread

    samples = result.samples
    ops: Counter[str] = Counter()
    for s in samples:
        for (service, op, sender), count in s.aws.items():
            ops[f"{sender}:{service}:{op}"] += count
    out: dict[str, Any] = {
        "route": result.route,
        "variant": result.variant,
        "iterations": len(samples),
        **latency_ms([s.seconds for s in samples]),
        "dynamodb_requests": spread([s.ddb() for s in samples]),
        "dynamodb_reads": spread([s.ddb(DDB_READ_OPS) for s in samples]),
        "dynamodb_writes": spread([s.ddb(DDB_WRITE_OPS) for s in samples]),
        "aws_requests_per_call": {k: round(v / len(samples), 2) for k, v in sorted(ops.items())},
        "query_items_read": spread([s.query_items() for s in samples]),
        "psa_calls": spread([s.psa for s in samples]),
        "model_calls": spread([s.model for s in samples]),
    }
    if any(s.steps for s in samples):
        out["api_function"] = {
            "dynamodb_requests": spread([s.ddb(sender=API_THREAD) for s in samples]),
        }
        out["state_machine_steps"] = {
            "dynamodb_requests": spread([s.ddb() - s.ddb(sender=API_THREAD) for s in samples]),
            "psa_calls_before_answer": spread([s.psa_before_answer() for s in samples]),
            "psa_calls_after_answer": spread([s.psa_after_answer() for s in samples]),
            "steps": [s.action for s in samples[-1].steps],
        }
    if result.note:
        out["note"] = result.note
    return out
