"""Shared fixtures: moto-backed AWS built from template.yaml, and an API client through the real handlers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from devstack import aws, gateway, loopback
from devstack.gateway import ApiResponse

# Fails any test whose captured output or API responses carry a known secret (tests/leakcheck.py).
pytest_plugins = ["tests.leakcheck"]

# Every test runs with fake credentials and the local stage's names, never a real account.
os.environ.update(aws.environment())


class Api:
    """Calls routes as API Gateway would, with the JWT claims of one account and engineer."""

    def __init__(self, account_id: str = "acct-a", user_id: str = "engineer-a"):
        self.account_id = account_id
        self.user_id = user_id

    def as_account(self, account_id: str, user_id: str | None = None) -> Api:
        return Api(account_id, user_id or f"engineer-of-{account_id}")

    def call(self, method: str, path: str, **kw: Any) -> ApiResponse:
        kw.setdefault("account_id", self.account_id)
        kw.setdefault("user_id", self.user_id)
        from tests.leakcheck import scan_response  # imported late: pytest rewrites the plugin's asserts first

        response = gateway.call(method, path, **kw)
        scan_response(response.text, f"the response to {method} {path}")
        assert response.status != 500, f"{method} {path} answered 500: {response.text}"
        return response

    def get(self, path: str, **kw: Any) -> ApiResponse:
        return self.call("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> ApiResponse:
        return self.call("POST", path, body=body, **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> ApiResponse:
        return self.call("PUT", path, body=body, **kw)

    def new_session(self, title: str = "VPN drops every 10 minutes", **fields: Any) -> dict[str, Any]:
        response = self.post("/ai-sessions", {"title": title, "problem": "User reports VPN drops.", **fields})
        assert response.status == 201, response.text
        return response.body  # type: ignore[no-any-return]


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """moto DynamoDB, Step Functions (real ASL executed), Secrets Manager; tables from template.yaml.

    No execution may outlive its test: leaving the fixture waits for stragglers (drift re-checks).
    """
    env = aws.environment()
    env["DRIFT_CHECK_SECONDS"] = "0"
    env["WRITEBACK_WAIT_SECONDS"] = "20"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with aws.emulated_aws() as machines:
        env["state_machines"] = ",".join(machines)
        yield env


@pytest.fixture
def api(aws_env: dict[str, str]) -> Api:
    return Api()


@pytest.fixture
def api_b(aws_env: dict[str, str]) -> Api:
    return Api("acct-b", "engineer-b")


@pytest.fixture
def cw(aws_env: dict[str, str]) -> Iterator[Any]:
    """The ConnectWise simulator on loopback, seeded with the demo boards and tickets 1001-1006.

    With it, the local stack's loopback allowance for PSA URLs (`devstack/loopback.py`); without it, a test
    runs under AWS's egress rules.
    """
    from devstack.cw_simulator import CWSimulator

    sim = CWSimulator()
    sim.start()
    sim.demo = sim.seed_demo()  # type: ignore[attr-defined]
    try:
        with loopback.loopback_psa():
            yield sim
            aws.drain_executions(aws_env["state_machines"].split(","))
    finally:
        sim.stop()


PROVIDERS = ("connectwise", "autotask", "halopsa")


def start_simulator(provider: str, **kw: Any) -> Any:
    """A started simulator of `provider`, seeded with the demo tickets 1001-1006 (`sim.demo`)."""
    from devstack.demo_account import new_simulator

    if provider == "halopsa":
        from tests.leakcheck import register_secret

        kw.setdefault("on_token_issued", lambda token: register_secret(token, "Halo simulator access token"))
    sim = new_simulator(provider, **kw)
    sim.start()
    sim.demo = sim.seed_demo()  # type: ignore[attr-defined]
    return sim


@contextmanager
def simulated_psa(provider: str, aws_env: dict[str, str], **kw: Any) -> Iterator[Any]:
    """The simulator, reachable as the local stack reaches it (loopback allowed, Autotask's zone lookup on it)."""
    sim = start_simulator(provider, **kw)
    try:
        with loopback.loopback_psa(), loopback.simulated_zone_lookup(sim):
            yield sim
            aws.drain_executions(aws_env["state_machines"].split(","))
    finally:
        sim.stop()


@pytest.fixture(params=PROVIDERS)
def any_psa(request: pytest.FixtureRequest, api: Api, aws_env: dict[str, str]) -> Iterator[Any]:
    """Each provider's simulator in turn, with account A connected to it (the demo account's preferences)."""
    with simulated_psa(request.param, aws_env) as sim:
        connect_simulator(api, sim)
        sim.clear_requests()
        yield sim


def connect_simulator(api: Api, sim: Any, **preferences: Any) -> None:
    """Save the simulator as the account's PSA connection, with its demo preferences (overridden by `preferences`)."""
    response = api.put("/account-settings/psa-connection", sim.connection_settings())
    assert response.status == 200, response.text
    response = api.put("/account-settings/preferences", {**sim.preferences(), **preferences})
    assert response.status == 200, response.text


def connect_psa(api: Api, sim: Any, *, resolved: int | None = 5, escalated: int | None = 6) -> None:
    """Save the simulator as the account's PSA connection, with status preferences."""
    response = api.put("/account-settings/psa-connection", sim.connection_settings())
    assert response.status == 200, response.text
    prefs: dict[str, Any] = {}
    if resolved is not None:
        prefs["cw_resolved_status_id"] = resolved
    if escalated is not None:
        prefs["cw_escalated_status_id"] = escalated
    assert api.put("/account-settings/preferences", prefs).status == 200


@pytest.fixture
def psa(api: Api, cw: Any) -> Any:
    """Account A connected to the simulator (resolve → status 5, escalate → status 6)."""
    connect_psa(api, cw)
    cw.clear_requests()
    return cw
