"""Write-back answer latency: from the post to its answer, and how long the answer lags the write-back's end.

The post endpoint polls a tiny end-of-write-back item every `writeback.POLL_INTERVAL_SECONDS`; the lag is
the time from that item being written (the state machine's last recording step) to the answer leaving the
handler, so it shows the polling bound itself, apart from the PSA and state-machine work before it.
Run alone: `python -m tests.bench.writeback_latency`.
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any
from unittest import mock

from tests.bench.harness import BenchError, Stack, moto_stack
from tests.bench.routes import NOTE, Api

POSTS = 20
LAG_BUDGET_SECONDS = 0.1


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def measure(stack: Stack, posts: int = POSTS) -> dict[str, Any]:
    from flowpilot.store import writebacks as ledger

    api = Api(stack)
    api.call("PUT", "/account-settings/psa-connection", 200, body=stack.psa.connection_settings())
    api.call("PUT", "/account-settings/preferences", 200, body={"cw_resolved_status_id": 5})
    ended: dict[str, float] = {}
    mark_finished = ledger.mark_finished

    def timed_mark(account_id: str, session_id: str, writeback_id: str, state: str) -> None:
        mark_finished(account_id, session_id, writeback_id, state)
        ended[writeback_id] = time.perf_counter()

    totals: list[float] = []
    lags: list[float] = []
    polls: list[int] = []
    with mock.patch.object(ledger, "mark_finished", timed_mark):
        for i in range(posts):
            session = api.new_session(ticket_id=1001 + i % 2)
            mark = stack.mark()
            started = time.perf_counter()
            body = api.call("POST", f"/ai-sessions/{session}/resolution-note/post", 200, body={"markdown": NOTE})
            answered = time.perf_counter()
            if body.get("verified_status_id") != 5:
                raise BenchError(f"write-back not verified: {body}")
            totals.append(answered - started)
            lags.append(answered - ended[body["writeback_id"]])
            polls.append(sum(1 for r in stack.aws.sent[mark.aws :] if r.operation == "GetItem" and r.sender == "api"))
            stack.drain()
    return {
        "posts": posts,
        "post_to_answer_p50_s": round(statistics.median(totals), 4),
        "post_to_answer_p95_s": round(_percentile(totals, 0.95), 4),
        "answer_lag_p50_s": round(statistics.median(lags), 4),
        "answer_lag_p95_s": round(_percentile(lags, 0.95), 4),
        "answer_lag_max_s": round(max(lags), 4),
        "answer_lag_budget_s": LAG_BUDGET_SECONDS,
        "api_get_items_per_post_median": statistics.median(polls),
    }


def writeback_latency_figures() -> dict[str, Any]:
    with moto_stack() as stack:
        return measure(stack)


if __name__ == "__main__":
    print(json.dumps(writeback_latency_figures(), indent=2))
