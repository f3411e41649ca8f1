"""PSA calls per write-back, for each provider: from the post to the verified answer, with the PSA's
configuration cached (board statuses, picklists, Halo's token, Autotask's zone), and the drift re-check after.

Each provider runs on its simulator through the real handlers and the executed state machine (moto); the
first resolve and escalation of the process warm the caches and are reported apart, with what they cost.
Run alone: `python -m tests.bench.provider_calls`.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from typing import Any

from tests.bench.harness import BenchError, moto_stack
from tests.bench.routes import ESCALATION, NOTE, Api

PROVIDERS = ("connectwise", "autotask", "halopsa")
POSTS = 6
KINDS = {"resolve": ("resolution-note/post", NOTE, "1001"), "escalate": ("escalation-package/post", ESCALATION, "1002")}
CONFIG_PATHS = ("/auth/token", "zoneinformation")  # per-process (or per-hour) costs, counted apart


def _label(provider: str, method: str, path: str) -> str:
    """`GET /tickets/{id}` style, whatever the vendor's base path."""
    for marker in ("/apis/3.0", "/v1.0", "/api"):
        at = path.lower().find(marker)
        if at >= 0:
            path = path[at + len(marker) :]
            break
    return f"{method} " + re.sub(r"/\d+(?=/|$)", "/{id}", path)


def measure(provider: str, posts: int = POSTS) -> dict[str, Any]:
    with moto_stack(provider) as stack:
        sim = stack.psa
        api = Api(stack)
        api.call("PUT", "/account-settings/psa-connection", 200, body=sim.connection_settings())
        api.call("PUT", "/account-settings/preferences", 200, body=sim.preferences())
        out: dict[str, Any] = {"provider": provider}
        for phase, count in (("first", 1), ("warm", posts)):
            per_kind: dict[str, Any] = {}
            for kind, (path, markdown, ticket) in KINDS.items():
                before_answer: list[int] = []
                after_answer: list[int] = []
                seconds: list[float] = []
                requests: list[str] = []
                for _ in range(count):
                    session = api.new_session(ticket_id=int(ticket))
                    mark = stack.mark()
                    started = time.perf_counter()
                    body = api.call("POST", f"/ai-sessions/{session}/{path}", 200, body={"markdown": markdown})
                    elapsed = time.perf_counter() - started
                    stack.drain()
                    if body.get("verified_status_id") is None:
                        raise BenchError(f"{provider} {kind}: not verified: {body}")
                    sample = api._since(mark, elapsed)
                    before_answer.append(sample.psa_before_answer())
                    after_answer.append(sample.psa_after_answer())
                    seconds.append(elapsed)
                    requests = [_label(provider, r.method, r.path) for r in sim.requests[mark.psa :]]
                per_kind[kind] = {
                    "psa_calls_to_answer": max(before_answer),
                    "psa_calls_to_answer_min": min(before_answer),
                    "psa_calls_after_answer": max(after_answer),
                    "post_to_answer_median_s": round(sorted(seconds)[len(seconds) // 2], 4),
                    "requests": requests,
                }
            out[phase] = per_kind
        config = Counter(
            next(p for p in CONFIG_PATHS if p in r.path.lower())
            for r in sim.requests
            if any(p in r.path.lower() for p in CONFIG_PATHS)
        )
        out["config_requests_whole_run"] = dict(config)
        out["writebacks"] = 2 * (1 + posts)
        return out


def provider_call_figures(posts: int = POSTS) -> dict[str, Any]:
    return {provider: measure(provider, posts) for provider in PROVIDERS}


if __name__ == "__main__":
    print(json.dumps(provider_call_figures(), indent=2))
