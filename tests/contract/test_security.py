"""Security checks: who the caller is (JWT claims only; the local gateway makes them from X-Dev headers), SSRF-safe
PSA URLs, no secrets out.

(a) An event without authorizer claims is a 401 on EVERY route of template.yaml, the X-Dev-* headers mean nothing
    to the functions, and malformed claims are a 401, never a 500; the template and the layer keep it that way.
(b) On the local stack the gateway turns the X-Dev-* headers into the claims, and malformed ones are a 401.
(c) The PSA connection refuses base URLs (or sites) that reach our own network: loopback, link-local (the metadata
    service), private and shared ranges, in every spelling a resolver accepts (decimal, hex, octal, short forms).
    Only the local stack's loopback allowance (`devstack/loopback.py`, never installed in AWS) lifts that.
    tests/integration/test_settings_api.py has the basic cases; these are the ones it does not.
(d) PSA keys never come back out: a sweep of every route after saving a connection, and validation errors that do
    not echo the rejected values. (tests/leakcheck.py checks every response and log line of the whole run too.)

Tenant isolation per route is tests/contract/test_tenant_isolation.py; this file does not repeat it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest

from devstack import aws, gateway, loopback, template
from devstack.events import LambdaContext, http_event
from devstack.gateway import ApiResponse
from devstack.sample_events import sample_body
from tests.conftest import Api, connect_psa
from tests.helpers import table_items
from tests.leakcheck import register_psa_credentials, scan_response

LOCAL_DEFAULT_ACCOUNT, LOCAL_DEFAULT_ENGINEER = "acct-dev", "engineer-dev"
DEV_HEADERS = {"X-Dev-Account-Id": LOCAL_DEFAULT_ACCOUNT, "X-Dev-User-Id": LOCAL_DEFAULT_ENGINEER}

PSA_KEYS = {"company_id": "contoso-sec", "public_key": "pubSEC-4f1c9a7e", "private_key": "privSEC-8d2b6e0f3a"}
register_psa_credentials(PSA_KEYS["company_id"], PSA_KEYS["public_key"], PSA_KEYS["private_key"], "security test")
CONNECTION = {
    "provider": "connectwise",
    "site": "na.myconnectwise.net",
    **PSA_KEYS,
    "client_id": "8c1f2e3d-4b5a-4c6d-8e7f-9a0b1c2d3e4f",
}


def raw_call(route: template.Route, event: dict[str, Any]) -> ApiResponse:
    """Invoke a route's real handler with a hand-made event (for claims `devstack.events` cannot express)."""
    result = aws.handler(route.function)(event, LambdaContext(function_name=template.physical_name(route.function)))
    response = ApiResponse(int(result["statusCode"]), {}, result.get("body") or "")
    scan_response(response.text, f"the response to {route.route_key}")
    return response


def call(method: str, path: str, **kw: Any) -> ApiResponse:
    response = gateway.call(method, path, **kw)
    scan_response(response.text, f"the response to {method} {path}")
    assert response.status != 500, f"{method} {path} answered 500: {response.text}"
    return response


def seed_world(api: Api) -> dict[str, str]:
    """An account's session with a fix, and a closed session with a write-back: real ids for every route."""
    session = api.new_session(title="Seeded session")
    fix_body = sample_body(
        next(r for r in template.routes() if r.route_key.endswith("/suggested-fixes") and r.method == "POST")
    )
    fix = api.post(f"/ai-sessions/{session['id']}/suggested-fixes", fix_body)
    assert fix.status == 201, fix.text
    closed = api.new_session(title="Closed session")
    posted = api.post(f"/ai-sessions/{closed['id']}/resolution-note/post", {"markdown": "Fixed."})
    assert posted.status == 200, posted.text
    return {
        "session_id": session["id"],
        "fix_id": fix.body["id"],
        "closed": closed["id"],
        "writeback_id": posted.body["writeback_id"],
    }


def concrete_path(route: template.Route, world: dict[str, str]) -> str:
    session = world["closed"] if "{writeback_id}" in route.path else world["session_id"]
    return (
        route.path.replace("{session_id}", session)
        .replace("{fix_id}", world["fix_id"])
        .replace("{writeback_id}", world["writeback_id"])
    )


ROUTES = template.routes()
# Well-formed ids that exist nowhere: any identity wrongly accepted answers 404 or 2xx here, not 401.
_SAMPLE_WORLD = {"session_id": "ses_sample", "fix_id": "fix_sample", "closed": "ses_sample", "writeback_id": "wb_x"}


# ---------------------------------------------------------------------------------------------------------------
# (a) AWS: identity comes only from the JWT authorizer's claims


@pytest.fixture
def dev_world(aws_env: dict[str, str]) -> dict[str, str]:
    """Data of the local stack's default account: if a function ever fell back to the X-Dev defaults, it would show."""
    return seed_world(Api(LOCAL_DEFAULT_ACCOUNT, LOCAL_DEFAULT_ENGINEER))


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.route_key)
def test_every_route_refuses_an_event_without_claims(dev_world: dict[str, str], route: template.Route) -> None:
    """No authorizer claims: 401, with or without X-Dev headers naming the local default account (which has data)."""
    before = table_items()
    for headers in (None, DEV_HEADERS):
        response = call(
            route.method,
            concrete_path(route, dev_world),
            body=sample_body(route),
            headers=headers,
            account_id=None,
            user_id=None,
        )
        assert response.status == 401, f"{route.route_key} (headers {headers}): {response.status} {response.text}"
        assert response.body["error"]["code"] == "unauthorized"
    assert table_items() == before, f"{route.route_key} changed stored data without an identity"


def test_x_dev_headers_cannot_override_the_claims(api: Api, api_b: Api) -> None:
    """Claims for B plus X-Dev headers naming A: the call is B's, it cannot see A's, and what it makes is B's."""
    a_session = api.new_session(title="A's session")
    pretend_a = {"X-Dev-Account-Id": api.account_id, "X-Dev-User-Id": api.user_id}

    assert api_b.get(f"/ai-sessions/{a_session['id']}", headers=pretend_a).status == 404
    listed = api_b.get("/ai-sessions", headers=pretend_a)
    assert listed.status == 200 and a_session["id"] not in listed.text

    made = api_b.post("/ai-sessions", {"title": "Made by B", "problem": "p"}, headers=pretend_a)
    assert made.status == 201, made.text
    assert made.body["created_by"] == api_b.user_id
    assert api_b.get(f"/ai-sessions/{made.body['id']}").status == 200
    assert api.get(f"/ai-sessions/{made.body['id']}").status == 404

    api.put("/account-settings/preferences", {"cw_resolved_status_id": 5})
    b_settings = api_b.get("/account-settings", headers=pretend_a).body
    assert b_settings["preferences"]["cw_resolved_status_id"] is None


def _claims_event(route: template.Route, path: str, claims: Any, *, authorizer: Any = None) -> dict[str, Any]:
    event = http_event(route.method, path, body=sample_body(route), account_id="acct-a", user_id="engineer-a")
    if authorizer is not None:
        event["requestContext"]["authorizer"] = authorizer
    else:
        event["requestContext"]["authorizer"]["jwt"]["claims"] = claims
    return event


MALFORMED_IDS = [
    "acct#x",  # '#' separates key parts in DynamoDB
    "a" * 65,  # one over the id limit
    "a" * 200,
    "acct x",
    "acct/x",
    "acct-\u00e9",
    "../acct-b",
    "acct-a\n",
    "",
]
MALFORMED_CLAIMS: list[Any] = [
    *({"custom:account_id": bad, "sub": "engineer-a"} for bad in MALFORMED_IDS),
    *({"custom:account_id": "acct-a", "sub": bad} for bad in MALFORMED_IDS),
    {"sub": "engineer-a"},  # no account claim
    {"custom:account_id": "acct-a"},  # no subject
    {"custom:account_id": 42, "sub": "engineer-a"},
    {"custom:account_id": ["acct-a"], "sub": "engineer-a"},
    {"custom:account_id": None, "sub": None},
    {"custom:account_id": {"S": "acct-a"}, "sub": "engineer-a"},
    {},
    None,
]


@pytest.mark.parametrize("claims", MALFORMED_CLAIMS, ids=lambda c: json.dumps(c)[:60])
def test_malformed_claims_are_401_on_every_route(aws_env: dict[str, str], claims: Any) -> None:
    for route in ROUTES:
        response = raw_call(route, _claims_event(route, concrete_path(route, _SAMPLE_WORLD), claims))
        assert response.status == 401, f"{route.route_key} with claims {claims!r}: {response.status} {response.text}"


@pytest.mark.parametrize(
    "authorizer",
    [{}, {"jwt": None}, {"jwt": {"claims": None}}, {"lambda": {"custom:account_id": "acct-a", "sub": "engineer-a"}}],
    ids=["empty", "jwt-null", "claims-null", "lambda-authorizer-context"],
)
def test_an_authorizer_without_jwt_claims_is_401(aws_env: dict[str, str], authorizer: dict[str, Any]) -> None:
    route = next(r for r in ROUTES if r.route_key == "GET /ai-sessions")
    assert raw_call(route, _claims_event(route, "/ai-sessions", None, authorizer=authorizer)).status == 401


def test_the_template_keeps_identity_behind_the_jwt_authorizer() -> None:
    """Deployed: every route behind the Cognito JWT authorizer; no function is given a dev-only switch."""
    resources = template.load()["Resources"]
    auth = resources["HttpApi"]["Properties"]["Auth"]
    assert auth.get("DefaultAuthorizer") in auth.get("Authorizers", {}), "HttpApi has no default JWT authorizer"
    assert "JwtConfiguration" in auth["Authorizers"][auth["DefaultAuthorizer"]]
    for name, res in template.resources("AWS::Serverless::Function").items():
        for event_name, event in res["Properties"].get("Events", {}).items():
            if event["Type"] == "HttpApi":
                override = (event["Properties"].get("Auth") or {}).get("Authorizer")
                assert override in (None, auth["DefaultAuthorizer"]), f"{name}.{event_name} bypasses the authorizer"
    environments = [template.load()["Globals"]["Function"].get("Environment", {}).get("Variables", {})]
    environments += [
        res["Properties"].get("Environment", {}).get("Variables", {})
        for res in template.resources("AWS::Serverless::Function").values()
    ]
    for variables in environments:
        assert "FLOWPILOT_IDENTITY_MODE" not in variables, "identity is the JWT claims only: no identity switch"
        assert "PSA_ALLOW_LOOPBACK" not in variables, "a deployed function may call a PSA on loopback"
        assert str(variables.get("POWERTOOLS_LOGGER_LOG_EVENT", "false")).lower() == "false", (
            "events carry PSA keys (PUT /account-settings/psa-connection): they must never be logged whole"
        )


LAYER = Path(__file__).resolve().parents[2] / "layers" / "flowpilot" / "flowpilot"


def test_the_layer_has_no_dev_only_switch() -> None:
    """The shipped layer reads identity from the claims only, never X-Dev headers or an identity/loopback switch;
    the PSA egress rules are replaced only from outside it (devstack), never assigned inside it."""
    offenders = []
    for path in LAYER.rglob("*.py"):
        text = path.read_text()
        where = path.relative_to(LAYER)
        for pattern in (r"(?i)[\"']x-dev-", r"(?i)identity_mode", r"(?i)allow_loopback\s*=\s*True", "ALLOW_LOOPBACK"):
            offenders += [f"{where}: {pattern}" for _ in re.finditer(pattern, text)]
        if path.name != "egress.py":
            offenders += [f"{where}: assigns egress.rules" for _ in re.finditer(r"egress\.rules\s*=[^=]", text)]
    assert offenders == []


def test_no_one_can_choose_their_own_account_id() -> None:
    """custom:account_id is the tenant boundary: a user must not be able to set it (sign-up or update).

    Cognito lets anyone holding the public app client id call SignUp unless AllowAdminCreateUserOnly is set, and
    an app client without WriteAttributes may write attributes at sign-up; either way a self-registered user
    could name another MSP's account_id and receive its data. The template must close one of the two doors
    explicitly (and keep the attribute immutable).
    """
    resources = template.load()["Resources"]
    pool = resources["UserPool"]["Properties"]
    attribute = next(a for a in pool.get("Schema", []) if a["Name"] == "account_id")
    assert attribute.get("Mutable") is False, "custom:account_id must be immutable"
    admin_only = (pool.get("AdminCreateUserConfig") or {}).get("AllowAdminCreateUserOnly") is True
    clients = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Cognito::UserPoolClient"]
    writes_explicit_without_account = all(
        "WriteAttributes" in c and "custom:account_id" not in c["WriteAttributes"] for c in clients
    )
    assert admin_only or writes_explicit_without_account, (
        "self sign-up is open (UserPool.AdminCreateUserConfig.AllowAdminCreateUserOnly is not true) and an app "
        "client does not restrict WriteAttributes: a new user could sign up with another MSP's custom:account_id"
    )


# ---------------------------------------------------------------------------------------------------------------
# (b) local stack: the gateway makes the claims from the X-Dev-* headers


@pytest.fixture
def local_mode(aws_env: dict[str, str]) -> None:
    """The local stack's gateway in front of the same functions (nothing in the functions changes)."""


def local_call(method: str, path: str, headers: dict[str, str] | None = None, body: Any = None) -> ApiResponse:
    # No authorizer on the local stack: the gateway takes the claims from the headers.
    return call(method, path, body=body, headers=headers, dev_identity=True)


def test_local_stack_takes_identity_from_x_dev_headers(local_mode: None) -> None:
    x = {"X-Dev-Account-Id": "acct-x", "X-Dev-User-Id": "engineer-x"}
    made = local_call("POST", "/ai-sessions", x, {"title": "Local", "problem": "p"})
    assert made.status == 201, made.text
    assert made.body["created_by"] == "engineer-x"
    path = f"/ai-sessions/{made.body['id']}"
    assert local_call("GET", path, {"x-dev-account-id": "acct-x", "x-dev-user-id": "someone-else"}).status == 200
    assert local_call("GET", path, {"X-Dev-Account-Id": "acct-y", "X-Dev-User-Id": "engineer-x"}).status == 404
    # No headers: the documented defaults (acct-dev / engineer-dev), which is another account.
    assert local_call("GET", path).status == 404
    default = local_call("POST", "/ai-sessions", None, {"title": "Default", "problem": "p"})
    assert default.status == 201 and default.body["created_by"] == LOCAL_DEFAULT_ENGINEER
    assert local_call("GET", f"/ai-sessions/{default.body['id']}", DEV_HEADERS).status == 200


@pytest.mark.parametrize("value", [v for v in MALFORMED_IDS if v and "\n" not in v], ids=lambda v: v[:20])
def test_local_stack_refuses_malformed_x_dev_identities(local_mode: None, value: str) -> None:
    before = table_items()
    for header in ("X-Dev-Account-Id", "X-Dev-User-Id"):
        headers = {**DEV_HEADERS, header: value}
        for route in ROUTES:
            response = local_call(route.method, concrete_path(route, _SAMPLE_WORLD), headers, sample_body(route))
            assert response.status == 401, f"{route.route_key}, {header}: {value!r}: {response.status} {response.text}"
    assert table_items() == before


def test_the_longest_valid_local_identity_is_accepted(local_mode: None) -> None:
    headers = {"X-Dev-Account-Id": "a" * 64, "X-Dev-User-Id": "e" * 64}
    assert local_call("GET", "/ai-sessions", headers).status == 200


# ---------------------------------------------------------------------------------------------------------------
# (c) the PSA connection cannot point into our own network (SSRF), outside the local stack

REFUSED_BASE_URLS = [
    # private ranges not covered by test_settings_api
    "https://172.16.0.1/apis/3.0",
    "https://172.31.255.254/apis/3.0",
    "https://100.64.0.1/apis/3.0",  # carrier-grade NAT (shared address space)
    "https://0.0.0.0/apis/3.0",
    # IPv6: unique local (fc00::/7), link-local, the AWS metadata service's IPv6 address, v4-mapped loopback
    "https://[fd00::1]/apis/3.0",
    "https://[fc00::1]/apis/3.0",
    "https://[fd00:ec2::254]/latest/meta-data",
    "https://[fe80::1]/apis/3.0",
    "https://[::ffff:127.0.0.1]/apis/3.0",
    "https://[::ffff:169.254.169.254]/latest",
    "https://[::]/apis/3.0",
    # IPv4 in the spellings inet_aton (and so httpx's resolver) accepts: all reach 127.0.0.1 / 169.254.169.254
    "https://2130706433/apis/3.0",  # decimal 127.0.0.1
    "https://0x7f000001/apis/3.0",  # hex
    "https://017700000001/apis/3.0",  # octal
    "https://127.1/apis/3.0",  # short form
    "https://127.0.1/apis/3.0",
    "https://0x7f.0.0.1/apis/3.0",
    "https://0177.0.0.1/apis/3.0",
    "https://127.000.000.001/apis/3.0",
    "https://0/apis/3.0",  # 0.0.0.0
    "https://2852039166/latest",  # decimal 169.254.169.254
    "https://0xa9fea9fe/latest",
    "https://10.1/apis/3.0",  # 10.0.0.1
    "https://3232235777/apis/3.0",  # 192.168.1.1
    # fully qualified (trailing-dot) names of blocked hosts
    "https://localhost./apis/3.0",
    "https://metadata.google.internal./x",
    "https://127.0.0.1./apis/3.0",
    "https://169.254.169.254./latest",
    # case and port variants
    "https://LOCALHOST/apis/3.0",
    "https://127.0.0.1:8443/apis/3.0",
    "HTTPS://169.254.169.254/latest",
]
REFUSED_SITES = [
    *("2130706433", "127.1", "0x7f000001", "10.0.0.5", "169.254.169.254", "localhost", "0"),
    *("na.myconnectwise.net:0", "na.myconnectwise.net:65536", "na.myconnectwise.net:99999"),
]
# URLs two parsers could read two ways, or that smuggle an address: refused as invalid_base_url in AWS mode and on
# the local stack alike (tests/unit/test_egress.py has the full list against check_url itself).
MALFORMED_BASE_URLS = [
    "https://[::127.0.0.1]/apis/3.0",  # IPv4-compatible IPv6
    "https://[::7f00:1]/apis/3.0",
    "https://api-na.myconnectwise.net:0/apis/3.0",
    "https://api-na.myconnectwise.net:65536/apis/3.0",
    "https://api-na.myconnectwise.net:44x3/apis/3.0",
    "https://api-na.myconnectwise.net\x00.evil.com/apis/3.0",  # NUL: inet_aton raised ValueError, a 500
    "https://127.0.0.1\x00/apis/3.0",
    "https://api-na.myconnect\twise.net/apis/3.0",
    "https://api-na.myconnectwise.net/apis/3.0\r\nX-Injected: 1",
    "https://api-na.myconnectwise.net/apis 3.0",
    "https://@api-na.myconnectwise.net/apis/3.0",
    "https://api-na.myconnectwise.net/apis/3.0?company=other",
    "https://api-na.myconnectwise.net#@127.0.0.1/apis/3.0",
]


@pytest.fixture
def production_url_rules(aws_env: dict[str, str]) -> None:
    """AWS's PSA URL rules: what the layer applies unless devstack installs the loopback allowance (not here)."""
    from flowpilot.psa import egress

    assert type(egress.rules) is egress.EgressRules


def _assert_refused(api: Api, connection: dict[str, Any]) -> None:
    response = api.put("/account-settings/psa-connection", connection)
    assert response.status == 422, f"accepted {connection.get('base_url') or connection['site']!r}: {response.text}"
    assert response.body["error"]["code"] in {"invalid_base_url", "validation_error"}, response.text
    assert api.get("/account-settings").body["psa"]["configured"] is False


@pytest.mark.parametrize("base_url", REFUSED_BASE_URLS)
def test_psa_base_url_cannot_reach_internal_addresses(api: Api, production_url_rules: None, base_url: str) -> None:
    _assert_refused(api, {**CONNECTION, "base_url": base_url})


@pytest.mark.parametrize("site", REFUSED_SITES)
def test_psa_site_cannot_reach_internal_addresses(api: Api, production_url_rules: None, site: str) -> None:
    _assert_refused(api, {**CONNECTION, "site": site})


@pytest.mark.parametrize(
    ("where", "base_url"),
    [("aws", url) for url in MALFORMED_BASE_URLS] + [("local", url) for url in MALFORMED_BASE_URLS if "[::" not in url],
    ids=repr,
)
def test_malformed_base_urls_are_invalid_base_url(aws_env: dict[str, str], where: str, base_url: str) -> None:
    """AWS (JWT claims, production URL rules) and the local stack (X-Dev headers made claims, loopback allowed)
    alike; the local stack may point anywhere (the simulator), so only the shape rules apply there."""
    url = base_url if where == "aws" else base_url.replace("https://", "http://")
    identity: dict[str, Any] = (
        {"account_id": "acct-a", "user_id": "engineer-a"}
        if where == "aws"
        else {"dev_identity": True, "headers": {"X-Dev-Account-Id": "acct-a"}}
    )
    with loopback.loopback_psa() if where == "local" else nullcontext():
        response = call("PUT", "/account-settings/psa-connection", body={**CONNECTION, "base_url": url}, **identity)
    assert response.status == 422, f"{url!r}: {response.status} {response.text}"
    assert response.body["error"]["code"] == "invalid_base_url", response.text
    assert call("GET", "/account-settings", **identity).body["psa"]["configured"] is False


@pytest.mark.parametrize("site", ["127.0.0.1", "10.0.0.5", "na.myconnectwise.net:0", "na.myconnectwise.net:99999"])
def test_site_is_checked_even_with_a_public_base_url(api: Api, production_url_rules: None, site: str) -> None:
    public = "https://api-na.myconnectwise.net/v4_6_release/apis/3.0"
    _assert_refused(api, {**CONNECTION, "site": site, "base_url": public})


def test_public_psa_hosts_stay_accepted(api: Api, production_url_rules: None) -> None:
    """The refusals above must not be a blanket ban: real ConnectWise hosts (and public IPs) still work."""
    for base_url in ("https://api-eu.myconnectwise.net/v4_6_release/apis/3.0", "https://8.8.8.8/apis/3.0"):
        response = api.put("/account-settings/psa-connection", {**CONNECTION, "base_url": base_url})
        assert response.status == 200, response.text


def test_local_stack_may_use_the_simulator_on_loopback(api: Api) -> None:
    """The one exception (the loopback allowance, installed only by devstack): http to the ConnectWise simulator."""
    simulator = {**CONNECTION, "base_url": "http://127.0.0.1:8089/apis/3.0"}
    assert api.put("/account-settings/psa-connection", simulator).status == 422  # not installed: AWS's rules
    with loopback.loopback_psa():
        response = api.put("/account-settings/psa-connection", simulator)
    assert response.status == 200, response.text


# ---------------------------------------------------------------------------------------------------------------
# (d) PSA secrets never come back out


@pytest.fixture
def keyed_psa(api: Api, aws_env: dict[str, str]) -> Iterator[Any]:
    """The ConnectWise simulator with this file's (registered) keys, saved as account A's PSA connection."""
    from devstack.cw_simulator import CWSimulator

    with (
        CWSimulator(
            company_id=PSA_KEYS["company_id"],
            public_key=PSA_KEYS["public_key"],
            private_key=PSA_KEYS["private_key"],
            client_id=CONNECTION["client_id"],
        ) as sim,
        loopback.loopback_psa(),
    ):
        sim.seed_demo()
        connect_psa(api, sim)
        yield sim
        aws.drain_executions(aws_env["state_machines"].split(","))


def test_no_route_ever_returns_the_psa_keys(api: Api, keyed_psa: Any) -> None:
    """Every route, with the keys in use: a write-back to the PSA, then the same with the keys refused by the PSA."""
    world = seed_world(api)
    texts = [api.get("/account-settings").text]
    for route in ROUTES:  # includes linking ticket 1001 and posting the note to it through the simulator
        # (saving the sample connection would replace the simulator's; it is re-saved with the keys below)
        if route.route_key != "PUT /account-settings/psa-connection":
            texts.append(api.call(route.method, concrete_path(route, world), body=sample_body(route)).text)
    assert keyed_psa.notes(1001), "the sweep did not reach the PSA"
    texts.append(api.put("/account-settings/psa-connection", {**CONNECTION, "base_url": keyed_psa.base_url}).text)

    keyed_psa.revoke_credentials()
    failing = api.new_session(title="PSA refuses our keys", psa_ticket={"provider": "connectwise", "ticket_id": "1002"})
    refused = api.post(f"/ai-sessions/{failing['id']}/resolution-note/post", {"markdown": "Fixed."})
    assert refused.status >= 400, refused.text
    texts += [refused.text, api.get(f"/ai-sessions/{failing['id']}").text]
    writeback_id = (refused.body.get("error", {}).get("details") or {}).get("writeback_id")
    if writeback_id:
        texts.append(api.get(f"/ai-sessions/{failing['id']}/writebacks/{writeback_id}").text)
    for text in texts:
        for secret in (PSA_KEYS["public_key"], PSA_KEYS["private_key"]):
            assert secret not in text, "a response carries a PSA key"


@pytest.mark.parametrize(
    "change",
    [
        {"private_key": PSA_KEYS["private_key"] * 20},  # too long
        {"public_key": PSA_KEYS["public_key"] * 20},
        {"private_key": [PSA_KEYS["private_key"]]},  # wrong type
        {"private_key_2": PSA_KEYS["private_key"]},  # unknown field
        {"provider": PSA_KEYS["private_key"]},  # not an allowed provider
        {"site": PSA_KEYS["private_key"] + "/x"},  # not a host
        {"base_url": f"https://{PSA_KEYS['public_key']}:{PSA_KEYS['private_key']}@example.com/"},
        {"base_url": f"ftp://{PSA_KEYS['private_key']}.example.com/"},
    ],
    ids=["long-private", "long-public", "list", "extra-field", "provider", "site", "userinfo", "scheme"],
)
def test_a_refused_connection_does_not_echo_the_keys(api: Api, change: dict[str, Any]) -> None:
    response = api.put("/account-settings/psa-connection", {**CONNECTION, **change})
    assert response.status == 422, response.text
    for secret in (PSA_KEYS["public_key"], PSA_KEYS["private_key"]):
        assert secret not in response.text, "the validation error echoes a PSA key"
