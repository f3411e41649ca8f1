"""`make dev`'s stack, booted for real: moto's threaded server, the simulator, the HTTP API on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from devstack import aws
from devstack.stack import LocalStack, free_port


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalStack]:
    saved = dict(os.environ)
    monkeypatch.setenv("DRIFT_CHECK_SECONDS", "1")  # an operator's setting wins over the template's 120
    local = LocalStack(api_port=free_port(), moto_port=free_port())
    local.start()
    try:
        yield local
    finally:
        local.stop()
        os.environ.clear()
        os.environ.update(saved)
        aws.reset_process_caches()


def test_local_stack_serves_a_verified_writeback_over_http(stack: LocalStack) -> None:
    api = httpx.Client(base_url=stack.api_url, timeout=30)
    assert api.get("/account-settings").json()["psa"]["configured"] is True  # the demo account
    created = api.post(
        "/ai-sessions",
        json={"title": "VPN drops", "problem": "Drops", "psa_ticket": {"provider": "connectwise", "ticket_id": "1001"}},
    )
    assert created.status_code == 201, created.text
    session_id = created.json()["id"]
    posted = api.post(f"/ai-sessions/{session_id}/resolution-note/post", json={"markdown": "Reinstalled the client."})
    assert posted.status_code == 200, posted.text
    assert posted.json()["verified_status_name"] == "Resolved"
    assert len(stack.parts["simulator"].notes(1001)) == 1
    assert api.get("/nowhere").status_code == 404
    assert api.post("/ai-sessions", content="x", headers={"content-type": "text/plain"}).status_code == 415
    assert os.environ["DRIFT_CHECK_SECONDS"] == "1"
    aws.drain_executions(list(stack.parts["state_machines"].values()))
