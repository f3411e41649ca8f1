"""The local stack's demo account: the ConnectWise simulator, and acct-dev configured against it."""

from __future__ import annotations

import os
from typing import Any

from devstack import gateway
from devstack.cw_simulator import CWSimulator
from devstack.gateway import DEFAULT_DEV_ACCOUNT, DEFAULT_DEV_ENGINEER

DEMO_HEADERS = {"x-dev-account-id": DEFAULT_DEV_ACCOUNT, "x-dev-user-id": DEFAULT_DEV_ENGINEER}


def configure_account(sim: CWSimulator, headers: dict[str, str] = DEMO_HEADERS) -> None:
    """Save the simulator as the account's PSA and map resolve/escalate statuses per board."""
    connection = gateway.call(
        "PUT",
        "/account-settings/psa-connection",
        body=sim.connection_settings(),
        headers=headers,
        dev_identity=True,
    )
    preferences = gateway.call(
        "PUT",
        "/account-settings/preferences",
        body={
            "cw_resolved_status_id": 5,
            "cw_escalated_status_id": 6,
            "cw_resolved_status_ids_by_board": {"2": 25},
            "cw_escalated_status_ids_by_board": {"2": 23},
        },
        headers=headers,
        dev_identity=True,
    )
    for response in (connection, preferences):
        if response.status != 200:
            raise RuntimeError(f"could not configure the demo account: {response.status} {response.text}")


def start_simulator_and_configure() -> dict[str, Any]:
    sim = CWSimulator(port=int(os.environ.get("CW_SIM_PORT") or 0))
    sim.start()
    sim.seed_demo()
    configure_account(sim)
    return {"simulator": sim}
