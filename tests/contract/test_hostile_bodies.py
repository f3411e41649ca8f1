"""No body, however hostile, gets a 500 or changes anything: every route of template.yaml that takes a body.

The class, not the instance: JSON nested past any parser's recursion, numbers past what Python converts or
floats can hold, escaped lone surrogates (valid JSON, not valid Unicode), NUL and control characters, and
JSON that is not an object, sent to every body route; and every string field of the settings bodies filled
with such strings. Each must answer a 4xx JSON error and leave the tables and secrets as they were. Both on
the local stack (the gateway makes the claims from X-Dev headers, loopback PSA allowed) and as in AWS (JWT
claims, production URL rules).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from devstack import gateway, loopback, template
from devstack.gateway import ApiResponse
from devstack.sample_events import sample_body
from tests.helpers import table_items
from tests.leakcheck import scan_response

ACCOUNT, ENGINEER = "acct-hostile", "engineer-hostile"
BODY_ROUTES = [route for route in template.routes() if sample_body(route) is not None]
SETTINGS_ROUTES = [route for route in BODY_ROUTES if route.path.startswith("/account-settings/")]
PSA_CONNECTION_EXTRA = {"base_url": "https://api-na.myconnectwise.net/v4_6_release/apis/3.0"}


def _nested(depth: int, opening: str, closing: str, inner: str = "1") -> str:
    return opening * depth + inner + closing * depth


def _with_field(route: template.Route, raw_value: str) -> str:
    """The route's sample body as JSON text, its first string field (else first field) set to `raw_value` (JSON)."""
    body: dict[str, Any] = sample_body(route)
    key = next((k for k, v in body.items() if isinstance(v, str)), next(iter(body)))
    return _json_with(body, (key,), raw_value)


def _json_with(body: dict[str, Any], field: tuple[str, ...], raw_value: str) -> str:
    """`body` as JSON text with `field` (a path of keys) holding `raw_value`, JSON text json.dumps can't make."""
    marker = "@@HOSTILE-VALUE@@"
    out = copy.deepcopy(body)
    target = out
    for key in field[:-1]:
        target = target[key]
    target[field[-1]] = marker
    return json.dumps(out).replace(json.dumps(marker), raw_value)


# Raw JSON texts: what json.dumps can't make (depth, literal lone surrogates) is written by hand.
STRUCTURAL: dict[str, str] = {
    "arrays-10000-deep": _nested(10_000, "[", "]"),
    "objects-10000-deep": _nested(10_000, '{"a":', "}"),
    "mixed-10000-deep": _nested(5_000, '[{"a":', "}]"),
    "objects-100-deep": _nested(100, '{"a":', "}"),
    "integer-5000-digits": "9" * 5_000,
    "negative-integer-5000-digits": "-" + "9" * 5_000,
    "float-overflow": "1e999",
    "nan-literal": "NaN",
    "infinity-literal": "-Infinity",
    "null": "null",
    "true": "true",
    "number": "42",
    "string": '"text"',
    "empty-array": "[]",
    "array-of-objects": "[{}]",
    "lone-surrogate-string": '"\\ud800"',
    "nul-string": '"\\u0000"',
}
# Values put into a route's first string field (or its psa_ticket), as JSON text.
IN_A_FIELD: dict[str, str] = {
    "field-nested-10000": _nested(10_000, "[", "]"),
    "field-integer-5000-digits": "1" * 5_000,
    "field-float-overflow": "1e400",
    "field-lone-high-surrogate": '"\\ud800"',
    "field-lone-low-surrogate": '"x\\udfffy"',
    "field-reversed-pair": '"\\udc00\\ud800"',
    "field-object": '{"$ne": ""}',
}
# Strings no settings field may hold (JSON text of each).
HOSTILE_STRINGS: dict[str, str] = {
    "nul": '"\\u0000"',
    "embedded-nul": '"na\\u0000.myconnectwise.net"',
    "bell": '"\\u0007"',
    "ansi-escape": '"\\u001b[31mred"',
    "crlf": '"a\\r\\nb"',
    "tab": '"a\\tb"',
    "line-separator": '"a\\u2028b"',
    "lone-surrogate": '"\\ud800"',
    "del": '"\\u007f"',
}


@pytest.fixture(params=["local", "aws"])
def mode(request: pytest.FixtureRequest, aws_env: dict[str, str]) -> Iterator[str]:
    """The local stack's rules (X-Dev headers, loopback PSA allowed) or AWS's (JWT claims, public PSA only)."""
    if request.param == "local":
        with loopback.loopback_psa():
            yield request.param
    else:
        yield request.param


def call(mode: str, method: str, path: str, *, body: Any = None, raw_body: str | None = None) -> ApiResponse:
    if mode == "aws":
        identity: dict[str, Any] = {"account_id": ACCOUNT, "user_id": ENGINEER}
    else:
        identity = {"dev_identity": True, "headers": {"X-Dev-Account-Id": ACCOUNT, "X-Dev-User-Id": ENGINEER}}
    if raw_body is not None:
        headers = {**identity.pop("headers", {}), "Content-Type": "application/json"}
        response = gateway.call(method, path, raw_body=raw_body, headers=headers, **identity)
    else:
        response = gateway.call(method, path, body=body, **identity)
    scan_response(response.text, f"the response to {method} {path}")
    return response


@pytest.fixture
def world(mode: str) -> dict[str, str]:
    """A session with an undecided fix: real ids, so a body that got past validation would reach the domain."""
    session = call(mode, "POST", "/ai-sessions", body={"title": "Hostile", "problem": "Bodies."})
    assert session.status == 201, session.text
    fix_route = next(r for r in BODY_ROUTES if r.route_key.endswith("/suggested-fixes"))
    fix = call(mode, "POST", f"/ai-sessions/{session.body['id']}/suggested-fixes", body=sample_body(fix_route))
    assert fix.status == 201, fix.text
    return {"session_id": session.body["id"], "fix_id": fix.body["id"]}


def stored_state() -> dict[str, Any]:
    """Everything a request could change: every table's items and the PSA secrets."""
    state: dict[str, Any] = {
        logical_id: [json.dumps(item, sort_keys=True, default=str) for item in table_items(logical_id)]
        for logical_id in template.tables()
    }
    secrets = boto3.client("secretsmanager", region_name=template.LOCAL_REGION)
    state["secrets"] = sorted(s["Name"] for s in secrets.list_secrets()["SecretList"])
    return state


def path_of(route: template.Route, world: dict[str, str]) -> str:
    return route.path.replace("{session_id}", world["session_id"]).replace("{fix_id}", world["fix_id"])


def assert_refused(response: ApiResponse, what: str) -> None:
    assert 400 <= response.status < 500, f"{what}: {response.status} {response.text[:300]}"
    assert response.headers.get("content-type", "").startswith("application/json"), f"{what}: {response.headers}"
    error = response.body["error"]
    assert isinstance(error["code"], str) and error["code"], f"{what}: {response.text[:300]}"
    assert isinstance(error["message"], str) and error["message"], f"{what}: {response.text[:300]}"


def test_hostile_bodies_on_every_body_route(mode: str, world: dict[str, str]) -> None:
    before = stored_state()
    for route in BODY_ROUTES:
        cases = {**STRUCTURAL, **{name: _with_field(route, value) for name, value in IN_A_FIELD.items()}}
        # The resolver took a list's first element as the body: [valid body] posted a note.
        cases["valid-body-in-a-list"] = json.dumps([sample_body(route)])
        for name, raw in cases.items():
            response = call(mode, route.method, path_of(route, world), raw_body=raw)
            assert_refused(response, f"{mode}: {route.route_key} with {name}")
    assert stored_state() == before, f"{mode}: a refused body changed stored data"


def test_deep_nesting_is_a_400_naming_the_problem(mode: str, world: dict[str, str]) -> None:
    """Nesting past the limit is refused before parsing goes deep, with the body's own error code."""
    route = next(r for r in BODY_ROUTES if r.route_key == "POST /ai-sessions")
    deep_title = _with_field(route, IN_A_FIELD["field-nested-10000"])
    for raw in (STRUCTURAL["arrays-10000-deep"], STRUCTURAL["objects-100-deep"], deep_title):
        response = call(mode, "POST", route.path, raw_body=raw)
        assert response.status == 400, response.text[:300]
        assert response.body["error"]["code"] == "invalid_json"
        assert "nested" in response.body["error"]["message"]


def test_ordinary_nesting_is_still_accepted(mode: str, world: dict[str, str]) -> None:
    """The depth limit is not a blanket ban: a fix's parameter map (three levels) still saves."""
    route = next(r for r in BODY_ROUTES if r.route_key.endswith("/suggested-fixes"))
    body = {**sample_body(route), "ai_drafted_parameters": {"adapter": "VPN", "emoji": "\U0001f600"}}
    response = call(mode, "POST", path_of(route, world), body=body)
    assert response.status == 201, response.text


def _string_fields(body: dict[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for key, value in body.items():
        if isinstance(value, str):
            yield (*prefix, key)
        elif isinstance(value, dict):
            yield from _string_fields(value, (*prefix, key))


@pytest.mark.parametrize("route", SETTINGS_ROUTES, ids=lambda r: r.route_key)
def test_hostile_strings_in_every_settings_field(mode: str, world: dict[str, str], route: template.Route) -> None:
    """Every string field of the settings bodies (and every field of preferences, given a string) refuses them."""
    body = {**sample_body(route), **(PSA_CONNECTION_EXTRA if route.path.endswith("psa-connection") else {})}
    fields = list(_string_fields(body)) or [(key,) for key in body]
    assert fields, f"{route.route_key} has no field to fill"
    before = stored_state()
    for field in fields:
        for name, raw in HOSTILE_STRINGS.items():
            response = call(mode, route.method, route.path, raw_body=_json_with(body, field, raw))
            assert_refused(response, f"{mode}: {route.route_key} with {name} in {'.'.join(field)}")
    assert stored_state() == before, f"{mode}: a refused settings body changed stored data"
