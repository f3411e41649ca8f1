"""Sessions API through the real handler and moto DynamoDB."""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from devstack import template
from devstack.events import LambdaContext, http_event
from flowpilot.store import dynamo
from flowpilot.store import sessions as session_store
from tests.conftest import Api

Request = tuple[str, str, str, dict[str, Any]]  # function, method, path, body


def race(requests: list[Request]) -> tuple[list[dict[str, Any]], int]:
    """Send `requests` at once, each through its function's real handler on its own thread, and hold every
    first DynamoDB transaction until all have read what they need: a true race. Returns the Lambda results
    in request order and how many transactions were sent in all (retries included).

    Powertools keeps the current event on a class (a Lambda runs one request at a time), so threads start one
    by one: the next once the previous has parsed its request and made its first DynamoDB call.
    """
    barrier = threading.Barrier(len(requests), timeout=60)
    started = [threading.Event() for _ in requests]
    mine = threading.local()
    transactions: list[int] = []

    def first_call(**_: Any) -> None:
        if hasattr(mine, "index"):  # one of ours, not a background thread of the emulator
            started[mine.index].set()

    def hold_first_transaction(**_: Any) -> None:
        if not hasattr(mine, "index"):
            return
        transactions.append(1)
        if not getattr(mine, "held", False):
            mine.held = True
            barrier.wait()

    # One container per request: its own copy of the function's module, router and resolver, as in Lambda.
    handlers = [container(function, n) for n, (function, *_) in enumerate(requests)]
    results: list[dict[str, Any]] = [{} for _ in requests]

    def send(i: int) -> None:
        mine.index = i
        _, method, path, body = requests[i]
        event = http_event(method, path, body=body, account_id="acct-a", user_id="engineer-a")
        try:
            results[i] = handlers[i](event, LambdaContext())
        finally:
            started[i].set()

    events = dynamo.client().meta.events
    events.register("before-call.dynamodb", first_call)
    events.register("before-call.dynamodb.TransactWriteItems", hold_first_transaction)
    try:
        threads = [threading.Thread(target=send, args=(i,)) for i in range(len(requests))]
        for t, ready in zip(threads, started, strict=True):
            t.start()
            assert ready.wait(timeout=60)
        for t in threads:
            t.join(timeout=120)
    finally:
        events.unregister("before-call.dynamodb", first_call)
        events.unregister("before-call.dynamodb.TransactWriteItems", hold_first_transaction)
    return results, len(transactions)


def container(logical_id: str, n: int) -> Callable[..., dict[str, Any]]:
    """A fresh import of a function's handler module, like a separate Lambda container."""
    function = template.functions()[logical_id]
    module_file, entry = function.handler.rsplit(".", 1)
    spec = importlib.util.spec_from_file_location(f"race_{logical_id}_{n}", function.code_dir / f"{module_file}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, entry)  # type: ignore[no-any-return]


def evidence_request(session_id: str, text: str) -> Request:
    return ("SessionsFunction", "POST", f"/ai-sessions/{session_id}/evidence", {"kind": "tried", "text": text})


def test_create_and_get_session(api: Api) -> None:
    created = api.new_session(psa_ticket={"provider": "connectwise", "ticket_id": "1001"})
    assert created["status"] == "active"
    assert created["state_version"] == 1
    assert created["created_by"] == "engineer-a"
    assert created["psa_ticket"] == {"provider": "connectwise", "ticket_id": "1001"}
    fetched = api.get(f"/ai-sessions/{created['id']}")
    assert fetched.status == 200
    assert fetched.body == created


def test_evidence_bumps_state_version(api: Api) -> None:
    session = api.new_session()
    response = api.post(
        f"/ai-sessions/{session['id']}/evidence",
        {"kind": "tried", "text": "Reinstalled VPN client", "result": "Still drops"},
    )
    assert response.status == 201, response.text
    assert response.body["state_version"] == 2
    assert response.body["kind"] == "tried"
    assert api.get(f"/ai-sessions/{session['id']}").body["state_version"] == 2


def test_link_ticket_bumps_state_version(api: Api) -> None:
    session = api.new_session()
    response = api.put(f"/ai-sessions/{session['id']}/psa-ticket", {"provider": "connectwise", "ticket_id": "42"})
    assert response.status == 200, response.text
    assert response.body["psa_ticket"] == {"provider": "connectwise", "ticket_id": "42"}
    assert response.body["state_version"] == 2


def test_pagination_over_250_sessions_returns_each_once_newest_first(api: Api) -> None:
    from flowpilot.identity import Caller
    from flowpilot.models import SessionCreateRequest
    from flowpilot.sessions import create_session

    caller = Caller("acct-a", "engineer-a")
    created = [create_session(caller, SessionCreateRequest(title=f"s{i}", problem="p")).id for i in range(250)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = {"limit": "40"} | ({"cursor": cursor} if cursor else {})
        page = api.get("/ai-sessions", query=query)
        assert page.status == 200, page.text
        seen += [s["id"] for s in page.body["items"]]
        pages += 1
        cursor = page.body["next_cursor"]
        if not cursor:
            break
    assert pages == 7
    assert seen == list(reversed(created))
    assert len(set(seen)) == 250


def test_status_filter_and_cursor_bound_to_its_listing(api: Api) -> None:
    for i in range(3):
        api.new_session(title=f"s{i}")
    page = api.get("/ai-sessions", query={"status": "active", "limit": "1"})
    assert page.status == 200 and len(page.body["items"]) == 1
    cursor = page.body["next_cursor"]
    assert api.get("/ai-sessions", query={"status": "resolved", "cursor": cursor}).status == 422
    assert api.get("/ai-sessions", query={"status": "escalated"}).body["items"] == []


def test_another_accounts_cursor_cannot_reach_its_sessions(api: Api, api_b: Api) -> None:
    for i in range(3):
        api.new_session(title=f"a{i}")
    cursor = api.get("/ai-sessions", query={"limit": "1"}).body["next_cursor"]
    page = api_b.get("/ai-sessions", query={"cursor": cursor})
    assert page.status == 200
    assert page.body["items"] == []


@pytest.mark.parametrize(
    ("method", "path", "kw"),
    [
        ("POST", "/ai-sessions", {"body": {"problem": "missing title"}}),
        ("POST", "/ai-sessions", {"body": {"title": 5, "problem": "wrong type"}}),
        ("POST", "/ai-sessions", {"body": {"title": "x" * 201, "problem": "oversized"}}),
        ("POST", "/ai-sessions", {"body": {"title": "t", "problem": "p", "extra": 1}}),
        (
            "POST",
            "/ai-sessions",
            {"body": {"title": "t", "problem": "p", "psa_ticket": {"provider": "jira", "ticket_id": "1"}}},
        ),
        ("POST", "/ai-sessions", {"raw_body": "{not json", "headers": {"content-type": "application/json"}}),
        ("POST", "/ai-sessions", {"body": ["a", "list"]}),
        ("GET", "/ai-sessions", {"query": {"limit": "0"}}),
        ("GET", "/ai-sessions", {"query": {"limit": "abc"}}),
        ("GET", "/ai-sessions", {"query": {"status": "deleted"}}),
        ("GET", "/ai-sessions", {"query": {"cursor": "not-a-cursor"}}),
        ("GET", "/ai-sessions/bad$id", {}),
    ],
)
def test_invalid_input_is_a_4xx_json_error(api: Api, method: str, path: str, kw: dict) -> None:
    response = api.call(method, path, **kw)
    assert 400 <= response.status < 500, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert isinstance(response.body["error"]["code"], str) and response.body["error"]["message"], response.text


def test_non_json_content_type_is_415(api: Api) -> None:
    response = api.call(
        "POST",
        "/ai-sessions",
        raw_body="title=x&problem=y",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status == 415
    assert response.body["error"]["code"] == "unsupported_media_type"


@pytest.mark.parametrize(
    "content_type",
    ["APPLICATION/JSON", "Application/Json; charset=UTF-8", "application/merge-patch+json", "application/vnd.api+json"],
)
def test_every_json_media_type_is_taken_as_json(api: Api, content_type: str) -> None:
    """Media types are case-insensitive, and a `+json` type is JSON: the body is read, not refused."""
    body = json.dumps({"title": "Printer offline", "problem": "spooler"})
    response = api.call("POST", "/ai-sessions", raw_body=body, headers={"content-type": content_type})
    assert response.status == 201, response.text
    assert api.get(f"/ai-sessions/{response.body['id']}").body["title"] == "Printer offline"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_an_empty_body_of_another_media_type_is_a_415_in_the_error_shape(api: Api, content_type: str) -> None:
    response = api.call("POST", "/ai-sessions", raw_body="", headers={"content-type": content_type})
    assert response.status in {415, 422}, response.text
    assert set(response.body["error"]) == {"code", "message"}
    assert api.get("/ai-sessions").body["items"] == []


def test_invalid_evidence_kind_and_oversized_text(api: Api) -> None:
    session = api.new_session()
    bad_kind = api.post(f"/ai-sessions/{session['id']}/evidence", {"kind": "guess", "text": "x"})
    assert bad_kind.status == 422
    too_long = api.post(f"/ai-sessions/{session['id']}/evidence", {"kind": "tried", "text": "x" * 10_001})
    assert too_long.status == 422
    assert api.get(f"/ai-sessions/{session['id']}").body["state_version"] == 1


def test_unknown_route_is_404_json(api: Api) -> None:
    response = api.get("/ai-sessions/x/nothing-here")
    assert response.status == 404
    assert response.body["error"]["code"] == "route_not_found"


def test_closed_session_refuses_evidence_and_ticket_link(api: Api) -> None:
    session = api.new_session()
    assert api.post(f"/ai-sessions/{session['id']}/resolution-note/post", {"markdown": "Done."}).status == 200
    evidence = api.post(f"/ai-sessions/{session['id']}/evidence", {"kind": "tried", "text": "late"})
    assert evidence.status == 409
    assert evidence.body["error"]["code"] == "session_already_closed"
    link = api.put(f"/ai-sessions/{session['id']}/psa-ticket", {"provider": "connectwise", "ticket_id": "9"})
    assert link.status == 409


def test_missing_identity_is_401(aws_env: dict) -> None:
    from devstack import gateway

    response = gateway.call("GET", "/ai-sessions")
    assert response.status == 401
    assert response.body["error"]["code"] == "unauthorized"


# --- concurrent writers: state_version is bumped atomically, not compared ---


def test_twelve_concurrent_evidence_adds_all_land_and_move_the_version_by_twelve(api: Api) -> None:
    sid = api.new_session()["id"]
    texts = [f"Checked relay {n}" for n in range(12)]
    results, transactions = race([evidence_request(sid, t) for t in texts])

    assert [r["statusCode"] for r in results] == [201] * 12, [r["body"] for r in results if r["statusCode"] != 201]
    assert transactions == 12  # nobody lost a compare and had to go again
    session = api.get(f"/ai-sessions/{sid}").body
    assert session["state_version"] == 13
    stored = {e.text: e for e in session_store.iter_evidence("acct-a", sid)}
    assert sorted(stored) == sorted(texts)
    answered = {json.loads(r["body"])["text"]: json.loads(r["body"])["state_version"] for r in results}
    # Each answer is a version read after its own write; stored versions never exceed it.
    assert all(2 <= v <= 13 for v in answered.values()) and max(answered.values()) == 13
    assert all(stored[t].state_version <= answered[t] for t in texts)
    # A preview at the answered version (the current one) holds every piece of evidence.
    preview = api.post(f"/ai-sessions/{sid}/escalation-package/preview").body
    assert preview["state_version"] == 13
    assert all(t in preview["markdown"] for t in texts)


def test_a_transaction_dynamodb_cancels_for_a_conflict_is_sent_again(api: Api) -> None:
    sid = api.new_session()["id"]
    cancelled: list[int] = []

    def conflict_once(**_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        # What DynamoDB answers when another transaction holds the session item at that moment.
        if cancelled:
            return None
        cancelled.append(1)
        body = {
            "Error": {"Code": "TransactionCanceledException", "Message": "Transaction cancelled"},
            "CancellationReasons": [{"Code": "None"}, {"Code": "TransactionConflict"}],
        }
        return AWSResponse("https://dynamodb", 400, {}, None), body

    events = dynamo.client().meta.events
    events.register_first("before-call.dynamodb.TransactWriteItems", conflict_once)
    try:
        response = api.post(f"/ai-sessions/{sid}/evidence", {"kind": "tried", "text": "Swapped the cable"})
    finally:
        events.unregister("before-call.dynamodb.TransactWriteItems", conflict_once)
    assert cancelled == [1]
    assert response.status == 201, response.text
    assert response.body["state_version"] == 2
    assert [e.text for e in session_store.iter_evidence("acct-a", sid)] == ["Swapped the cable"]


def test_evidence_for_a_session_closed_meanwhile_is_refused(api: Api) -> None:
    sid = api.new_session()["id"]
    session_store.update_session(
        "acct-a", sid, set_values={"status": "escalated"}, condition="attribute_exists(PK)", values={}
    )
    response = api.post(f"/ai-sessions/{sid}/evidence", {"kind": "tried", "text": "late"})
    assert response.status == 409
    assert response.body["error"]["code"] == "session_already_closed"
    assert list(session_store.iter_evidence("acct-a", sid)) == []


def test_the_version_bump_never_creates_a_session(aws_env: dict[str, str]) -> None:
    # An ADD on a missing item would create it; the bump's condition refuses instead.
    with pytest.raises(session_store.ConditionFailed):
        session_store.put_with_version_bump("acct-a", "ses_nothere", "2025-01-01T00:00:00.000000Z", [])
    assert session_store.get_session_item("acct-a", "ses_nothere") is None


def test_concurrent_requests_through_the_gateway_each_keep_their_own_body(api: Api) -> None:
    """The local stack runs requests as threads of one process; each must see its own event, as in Lambda."""
    sid = api.new_session()["id"]
    texts = [f"Swapped cable {n}" for n in range(16)]
    gate = threading.Barrier(len(texts), timeout=60)
    answers: dict[str, Any] = {}

    def add(text: str) -> None:
        gate.wait()
        answers[text] = api.post(f"/ai-sessions/{sid}/evidence", {"kind": "tried", "text": text})

    threads = [threading.Thread(target=add, args=(t,)) for t in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(answers) == sorted(texts)
    assert {t: r.status for t, r in answers.items()} == dict.fromkeys(texts, 201)
    assert all(r.body["text"] == t for t, r in answers.items())
    assert sorted(e.text for e in session_store.iter_evidence("acct-a", sid)) == sorted(texts)


def test_evidence_lists_in_the_order_added_page_by_page(api: Api) -> None:
    sid = api.new_session()["id"]
    texts = [f"Step {n}: checked the switch port" for n in range(30)]
    for text in texts:
        assert api.post(f"/ai-sessions/{sid}/evidence", {"kind": "tried", "text": text}).status == 201
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = {"limit": "7", **({"cursor": cursor} if cursor else {})}
        page = api.get(f"/ai-sessions/{sid}/evidence", query=query)
        assert page.status == 200, page.text
        assert len(page.body["items"]) <= 7
        seen += [item["text"] for item in page.body["items"]]
        pages += 1
        cursor = page.body["next_cursor"]
        if cursor is None:
            break
    assert seen == texts and pages == 5
    assert api.get(f"/ai-sessions/{sid}/evidence").body["next_cursor"] is not None  # default page: 25


def test_evidence_cursor_is_bound_to_its_session_and_limit_bounded(api: Api) -> None:
    first, second = api.new_session()["id"], api.new_session()["id"]
    for sid in (first, second):
        for n in range(3):
            api.post(f"/ai-sessions/{sid}/evidence", {"kind": "confirmed", "text": f"fact {n}"})
    cursor = api.get(f"/ai-sessions/{first}/evidence", query={"limit": "1"}).body["next_cursor"]
    foreign = api.get(f"/ai-sessions/{second}/evidence", query={"cursor": cursor})
    assert foreign.status == 422 and foreign.body["error"]["code"] == "invalid_cursor"
    for bad in ("x", "eyJ2IjoxfQ", cursor[:-3]):
        assert api.get(f"/ai-sessions/{first}/evidence", query={"cursor": bad}).status == 422
    assert api.get(f"/ai-sessions/{first}/evidence", query={"limit": "26"}).status == 422
    assert api.get("/ai-sessions/ses_missing/evidence").status == 404


def test_a_full_evidence_page_stays_under_lambdas_response_limit_by_construction() -> None:
    from flowpilot.models import EVIDENCE_PAGE_MAX, EvidenceCreateRequest

    schema = EvidenceCreateRequest.model_json_schema()
    text_max = schema["properties"]["text"]["maxLength"]
    result_max = schema["properties"]["result"]["anyOf"][0]["maxLength"]
    worst_item = (text_max + result_max) * 14 + 2_000  # 14 bytes: the longest JSON escape of one character
    assert EVIDENCE_PAGE_MAX * worst_item + 4_096 < 6 * 1024 * 1024


@pytest.mark.parametrize("blank", ["   ", "\n\t", "\u0000\u0000", "\x1b[0m", "\u200b\u200b", "\u00a0\u3000"])
def test_blank_text_is_422_and_changes_nothing(api: Api, blank: str) -> None:
    """Text that is only whitespace, control or invisible characters is no evidence, title or problem."""
    session = api.new_session()
    evidence = api.post(f"/ai-sessions/{session['id']}/evidence", {"kind": "tried", "text": blank})
    assert evidence.status == 422, evidence.text
    assert evidence.body["error"]["code"] == "validation_error" and "text" in evidence.body["error"]["message"]
    assert api.get(f"/ai-sessions/{session['id']}").body["state_version"] == session["state_version"]
    assert api.get(f"/ai-sessions/{session['id']}/evidence").body["items"] == []
    for body in ({"title": blank, "problem": "p"}, {"title": "t", "problem": blank}):
        assert api.post("/ai-sessions", body).status == 422, body
    assert [s["id"] for s in api.get("/ai-sessions").body["items"]] == [session["id"]]


def test_text_with_something_visible_is_kept_as_sent(api: Api) -> None:
    session = api.new_session()
    sent = "  \u200bRebooted\x00 the router  "
    evidence = api.post(f"/ai-sessions/{session['id']}/evidence", {"kind": "tried", "text": sent})
    assert evidence.status == 201, evidence.text
    assert evidence.body["text"] == sent
