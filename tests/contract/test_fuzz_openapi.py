"""Property-based fuzzing of every operation in the OpenAPI document, through the REAL handlers in-process.

schemathesis generates valid and invalid requests from the document (examples, boundary "coverage" cases and
random fuzzing); each one goes through `devstack.gateway.call` exactly as API Gateway would hand it to the
function's `lambda_handler`, with JWT claims of a fuzz account. Every response must:

- not be a server error (5xx) -- "no request, however malformed, gets a 500";
- have a documented content type and match the documented schema for its status code;
- reject data the document calls invalid (a 4xx), and use a status code the document lists, or one of the
  4xx codes in UNDOCUMENTED_4XX below (empty now: every code must be documented).

Path ids are real part of the time: a fresh little world (sessions, fixes, a write-back) is seeded for each
operation and two out of three cases aim at it, so handlers get past "not found" into the domain code.
Generation is deterministic (derandomized, no example database), bounded per operation, and needs no network:
outbound HTTP is refused, and the fuzzed PSA connection lives in its own account, so no write-back of the fuzz
account ever tries to reach a fuzzed URL.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    is_unexpected_http_status_case,
    negative_data_rejection,
    response_schema_conformance,
)

from devstack import aws, gateway, openapi, template
from tests.leakcheck import scan_response

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

# Per operation, for the random fuzzing phase (examples and boundary cases come on top); raise it locally for a
# deeper run, e.g. FUZZ_MAX_EXAMPLES=300 (about a minute more on two cores). Statistics: `pytest -rA`.
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "40"))
BASE_URL = "https://api.flowpilot.local"
FUZZ_ACCOUNT, FUZZ_ENGINEER = "acct-fuzz", "engineer-fuzz"
# PUT /account-settings/psa-connection is fuzzed in an account of its own (see the module docstring).
SETTINGS_ACCOUNT = "acct-fuzz-settings"
PSA_CONNECTION = "PUT /account-settings/psa-connection"

# 4xx codes an operation may answer without its `responses=` listing them. Every route now documents its
# codes (flowpilot.api.responses), so this is empty: any undocumented status fails the fuzz.
UNDOCUMENTED_4XX: dict[str, set[int]] = {
    "POST /ai-sessions": set(),
    "GET /ai-sessions": set(),
    "GET /ai-sessions/{session_id}": set(),
    "POST /ai-sessions/{session_id}/evidence": set(),
    "GET /ai-sessions/{session_id}/evidence": set(),
    "PUT /ai-sessions/{session_id}/psa-ticket": set(),
    "POST /ai-sessions/{session_id}/suggested-fixes": set(),
    "GET /ai-sessions/{session_id}/suggested-fixes": set(),
    "POST /ai-sessions/{session_id}/suggested-fixes/{fix_id}/decision": set(),
    "POST /ai-sessions/{session_id}/resolution-note/preview": set(),
    "POST /ai-sessions/{session_id}/escalation-package/preview": set(),
    "POST /ai-sessions/{session_id}/resolution-note/post": set(),
    "POST /ai-sessions/{session_id}/escalation-package/post": set(),
    "GET /ai-sessions/{session_id}/writebacks/{writeback_id}": set(),
    "GET /draft-templates": set(),
    "GET /account-settings": set(),
    "PUT /account-settings/preferences": set(),
    "PUT /account-settings/psa-connection": set(),
}


def _document() -> dict[str, Any]:
    """The committed document clients see; generated from the resolvers until docs/openapi.json exists."""
    committed = template.ROOT / "docs" / "openapi.json"
    if committed.exists():
        return json.loads(committed.read_text())
    return openapi.document()


CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
        "phases": {"stateful": {"enabled": False}},
    }
)
DOCUMENT = _document()
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG)
CHECKS = [not_a_server_error, content_type_conformance, response_schema_conformance, negative_data_rejection]

# What the run saw, per operation label: statuses, cases, undocumented codes (printed at the end).
STATS: dict[str, Counter[int]] = defaultdict(Counter)
UNDOCUMENTED_SEEN: dict[str, set[int]] = defaultdict(set)


def _refuse_network(self: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError(f"network is off during the fuzz: {request.method} {request.url.host}", request=request)


@pytest.fixture(scope="module")
def fuzz_env() -> Iterator[None]:
    """conftest's `aws_env`, module-scoped: moto AWS from template.yaml, the real state machine, no sleeps.

    Production URL rules for the PSA connection (no loopback exception), and no outbound network at all.
    """
    env = aws.environment()
    env.update(DRIFT_CHECK_SECONDS="0", WRITEBACK_WAIT_SECONDS="20")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        mp.delenv("AWS_ENDPOINT_URL", raising=False)
        mp.delenv("ANTHROPIC_API_KEY", raising=False)
        mp.setattr(httpx.HTTPTransport, "handle_request", _refuse_network)
        with aws.emulated_aws():
            started = time.monotonic()
            yield
        _print_stats(time.monotonic() - started)


def _call(method: str, path: str, body: Any = None, account: str = FUZZ_ACCOUNT) -> Any:
    response = gateway.call(method, path, body=body, account_id=account, user_id=FUZZ_ENGINEER)
    assert response.status < 300, f"seeding {method} {path}: {response.status} {response.text}"
    return response.body


@pytest.fixture
def world(fuzz_env: None) -> dict[str, list[str]]:
    """Fresh real resources for one operation: ids its cases can aim at (pairs for the nested routes)."""
    fix = {"title": "Restart the adapter", "confidence_pct": 70, "ai_drafted_script": "Restart-NetAdapter -Name VPN"}
    active = _call("POST", "/ai-sessions", {"title": "Fuzz: active", "problem": "VPN drops."})["id"]
    _call("POST", f"/ai-sessions/{active}/evidence", {"kind": "tried", "text": "Reinstalled the client"})
    decided = _call("POST", f"/ai-sessions/{active}/suggested-fixes", fix)["id"]
    _call("POST", f"/ai-sessions/{active}/suggested-fixes/{decided}/decision", {"decision": "draft_template"})
    undecided = _call("POST", f"/ai-sessions/{active}/suggested-fixes", {**fix, "title": "Flush DNS"})["id"]
    fresh = _call("POST", "/ai-sessions", {"title": "Fuzz: fresh", "problem": "Outlook crashes."})["id"]
    linked = _call(
        "POST",
        "/ai-sessions",
        {
            "title": "Fuzz: linked",
            "problem": "Printer.",
            "psa_ticket": {"provider": "connectwise", "ticket_id": "1001"},
        },
    )["id"]
    closed = _call("POST", "/ai-sessions", {"title": "Fuzz: closed", "problem": "Disk full."})["id"]
    writeback = _call("POST", f"/ai-sessions/{closed}/resolution-note/post", {"markdown": "Freed disk space."})
    return {
        "session_id": [active, fresh, linked, closed],
        "fix_id": [undecided, decided],
        "writeback_id": [writeback["writeback_id"]],
        # Sessions owning the ids above, for routes that take both.
        "fix_session": [active],
        "writeback_session": [closed],
    }


_counters: Counter[str] = Counter()
_aimed: Counter[str] = Counter()


def _aim_at_real_ids(case: schemathesis.Case, world: dict[str, list[str]]) -> None:
    """Two valid cases out of three address real resources (deterministically, by a per-operation counter).

    Invalid (negative) cases keep their generated ids: replacing one could make the case valid behind the
    back of the negative-data check.
    """
    params = case.path_parameters
    if "session_id" not in params or case.meta is None or not case.meta.generation.mode.is_positive:
        return
    label = case.operation.label
    n = _counters[label]
    _counters[label] += 1
    if n % 3 == 2:
        return
    m = _aimed[label]
    _aimed[label] += 1
    if "fix_id" in params:
        params.update(session_id=world["fix_session"][0], fix_id=world["fix_id"][m % len(world["fix_id"])])
    elif "writeback_id" in params:
        params.update(session_id=world["writeback_session"][0], writeback_id=world["writeback_id"][0])
    else:
        params["session_id"] = world["session_id"][m % len(world["session_id"])]


def send(case: schemathesis.Case) -> schemathesis.Response:
    """The case as a client would put it on the wire, handed to API Gateway's part and the real handler."""
    prepared = requests.Request(**case.as_transport_kwargs(base_url=BASE_URL)).prepare()
    url = urlsplit(str(prepared.url))
    raw = prepared.body if isinstance(prepared.body, (str, bytes)) else None
    if isinstance(raw, bytes):
        with contextlib.suppress(UnicodeDecodeError):  # else sent base64-encoded, as API Gateway sends binary
            raw = raw.decode("utf-8")
    account = SETTINGS_ACCOUNT if case.operation.label == PSA_CONNECTION else FUZZ_ACCOUNT
    started = time.monotonic()
    answer = gateway.call(
        str(prepared.method),
        url.path,
        raw_body=raw,
        query=dict(parse_qsl(url.query, keep_blank_values=True)) or None,
        headers={name: value if isinstance(value, str) else value.decode() for name, value in prepared.headers.items()},
        account_id=account,
        user_id=FUZZ_ENGINEER,
    )
    scan_response(answer.text, f"the response to {case.operation.label}")
    return schemathesis.Response(
        status_code=answer.status,
        headers={name: [value] for name, value in answer.headers.items()},
        content=answer.text.encode(),
        request=prepared,
        elapsed=time.monotonic() - started,
        verify=True,
        message=http.client.responses.get(answer.status, ""),
        encoding="utf-8",
    )


def _documented(case: schemathesis.Case) -> set[str]:
    return set(case.operation.definition.raw.get("responses", {}))


@schema.parametrize()
@settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=MAX_EXAMPLES,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_survives_fuzzing(case: schemathesis.Case, world: dict[str, list[str]]) -> None:
    _aim_at_real_ids(case, world)
    response = send(case)
    label = case.operation.label
    STATS[label][response.status_code] += 1
    case.validate_response(response, checks=CHECKS)
    status = response.status_code
    if is_unexpected_http_status_case(case):
        # A request-shape probe (e.g. a method the route does not have): API Gateway's own 404, never a 5xx.
        return
    documented = _documented(case)
    if str(status) not in documented and f"{str(status)[0]}XX" not in documented and "default" not in documented:
        UNDOCUMENTED_SEEN[label].add(status)
        assert status in UNDOCUMENTED_4XX.get(label, set()), (
            f"{label} answered {status}, which the OpenAPI document does not list "
            f"(documented: {sorted(documented)}): {response.content[:500]!r}"
        )


def test_every_template_route_is_fuzzed() -> None:
    """The fuzz covers every deployed route, and each has its row in the table of undocumented codes."""
    labels = {f"{method.upper()} {path}" for path, operations in DOCUMENT["paths"].items() for method in operations}
    assert labels == {r.route_key for r in template.routes()}, labels ^ {r.route_key for r in template.routes()}
    assert labels == set(UNDOCUMENTED_4XX), labels ^ set(UNDOCUMENTED_4XX)


def _print_stats(elapsed: float) -> None:
    total = sum(sum(c.values()) for c in STATS.values())
    print(f"\nfuzz: {len(STATS)} operations, {total} requests, {elapsed:.1f} s")
    for label in sorted(STATS):
        statuses = ", ".join(f"{code}x{n}" for code, n in sorted(STATS[label].items()))
        undocumented = sorted(UNDOCUMENTED_SEEN.get(label, ()))
        print(f"  {label}: {statuses}" + (f"  (undocumented: {undocumented})" if undocumented else ""))
