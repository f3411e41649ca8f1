"""A preview miss with 10 vs 5,000 evidence items, through the route on the emulated AWS of `harness.moto_stack`
(the Claude writer, real SDK, mock Messages API): median latency over a few misses, and what DynamoDB read.

Each run removes the cached preview first (untimed), so every timed call is a miss. The target is the
5,000-item miss within 1.5x of the 10-item one. On moto, the latency of each Query grows with the whole
table (it sorts every item of it) and with every item it returns (serialised in Python), so the items read
and queries sent are the figures that carry over to DynamoDB.
"""

from __future__ import annotations

import statistics
import time

from tests.bench.growth import EVIDENCE_SIZES, seed_evidence_session
from tests.bench.harness import Stack, moto_stack
from tests.bench.routes import Api

RUNS = 5
TARGET_RATIO = 1.5
KINDS = ("resolution-note", "escalation-package")


def _seed(account_id: str, size: int) -> str:
    return seed_evidence_session(account_id, f"s_miss{size}", size)


def _misses(stack: Stack, size: int, runs: int) -> dict[str, float]:
    from flowpilot.models import PreviewKind
    from flowpilot.store import dynamo, preview_cache

    account = f"acct-miss-{size}"
    session_id = _seed(account, size)
    api = Api(stack, account_id=account, user_id="engineer-bench")
    # Items each Query returned (a `Select=COUNT` query returns none: its Count is what it counted).
    returned: list[int] = []
    # Time inside DynamoDB calls (moto's work, which real DynamoDB does elsewhere), from request to parsed answer.
    in_dynamodb = [0.0]
    call_started: list[float] = []
    events = dynamo.client().meta.events
    hooks = {
        "after-call.dynamodb.Query": lambda parsed, **_: returned.append(len(parsed.get("Items", []))),
        "before-call.dynamodb": lambda **_: call_started.append(time.perf_counter()),
        "after-call.dynamodb": lambda **_: in_dynamodb.__setitem__(
            0, in_dynamodb[0] + time.perf_counter() - call_started.pop()
        ),
    }
    for event, hook in hooks.items():
        events.register(event, hook, unique_id=f"bench-preview-miss-{size}-{event}")
    seconds: list[float] = []
    dynamodb_seconds: list[float] = []
    items_read: list[int] = []
    queries: list[int] = []
    for _ in range(runs):
        for kind in KINDS:
            key = preview_cache.preview_key(account, session_id, PreviewKind(kind), size)
            dynamo.preview_cache_table().delete_item(Key=key)
            returned.clear()
            in_dynamodb[0] = 0.0
            started = time.perf_counter()
            body = api.call("POST", f"/ai-sessions/{session_id}/{kind}/preview", 200)
            seconds.append(time.perf_counter() - started)
            dynamodb_seconds.append(in_dynamodb[0])
            if body["from_cache"]:
                raise RuntimeError(f"a {kind} preview with {size} items was not a miss")
            items_read.append(sum(returned))
            queries.append(len(returned))
    for event in hooks:
        events.unregister(event, unique_id=f"bench-preview-miss-{size}-{event}")
    outside = [total - dynamodb for total, dynamodb in zip(seconds, dynamodb_seconds, strict=True)]
    return {
        "median_ms": round(statistics.median(seconds) * 1000, 1),
        "min_ms": round(min(seconds) * 1000, 1),
        "dynamodb_median_ms": round(statistics.median(dynamodb_seconds) * 1000, 1),
        "outside_dynamodb_median_ms": round(statistics.median(outside) * 1000, 1),
        "items_read_max": float(max(items_read)),
        "queries_max": float(max(queries)),
    }


def preview_miss_figures(runs: int = RUNS) -> dict[str, float]:
    """Median latency of a preview miss (both kinds) with 10 and with 5,000 evidence items, their ratio,
    and the most items / Query requests one miss read."""
    small_size, large_size = EVIDENCE_SIZES
    with moto_stack() as stack:
        small = _misses(stack, small_size, runs)
        large = _misses(stack, large_size, runs)
    figures = {f"miss_{small_size}_{name}": value for name, value in small.items()}
    figures |= {f"miss_{large_size}_{name}": value for name, value in large.items()}
    figures["ratio"] = round(large["median_ms"] / small["median_ms"], 2)
    # The same, leaving out the time inside DynamoDB calls: on moto a Query costs time in proportion to the
    # whole partition whatever its Limit, on DynamoDB in proportion to what it reads.
    figures["ratio_outside_dynamodb"] = round(
        large["outside_dynamodb_median_ms"] / small["outside_dynamodb_median_ms"], 2
    )
    figures["target_ratio"] = TARGET_RATIO
    return figures


if __name__ == "__main__":
    import json

    from tests.bench.harness import stdout_to_devnull

    with stdout_to_devnull():
        result = preview_miss_figures()
    print(json.dumps(result, indent=2))
