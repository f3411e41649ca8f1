"""The local stack's demo accounts: one PSA simulator per provider, and an account configured against each.

    acct-dev       ConnectWise Manage  (CW_SIM_PORT)
    acct-autotask  Autotask            (AUTOTASK_SIM_PORT; zone lookup answered by the simulator)
    acct-halo      HaloPSA             (HALO_SIM_PORT)

Each simulator is seeded with tickets 1001-1006 for the same stories (1001 resolve, 1002 escalate,
1003 a status change the PSA silently ignores, 1004 a workflow that reverts it after a second).
"""

from __future__ import annotations

import os
from typing import Any

from devstack import gateway, loopback
from devstack.gateway import DEFAULT_DEV_ACCOUNT, DEFAULT_DEV_ENGINEER
from devstack.psa_sim import PSASimulator

DEMO_HEADERS = {"x-dev-account-id": DEFAULT_DEV_ACCOUNT, "x-dev-user-id": DEFAULT_DEV_ENGINEER}
# provider -> (demo account, the environment variable that pins its simulator's port)
DEMO_ACCOUNTS: dict[str, tuple[str, str]] = {
    "connectwise": (DEFAULT_DEV_ACCOUNT, "CW_SIM_PORT"),
    "autotask": ("acct-autotask", "AUTOTASK_SIM_PORT"),
    "halopsa": ("acct-halo", "HALO_SIM_PORT"),
}
NAMES = {"connectwise": "ConnectWise", "autotask": "Autotask", "halopsa": "HaloPSA"}


def headers_for(provider: str) -> dict[str, str]:
    return {"x-dev-account-id": DEMO_ACCOUNTS[provider][0], "x-dev-user-id": DEFAULT_DEV_ENGINEER}


def new_simulator(provider: str, **kw: Any) -> PSASimulator:
    """A simulator of `provider` (not started); `kw` goes to its constructor (port, tenant variant, ...)."""
    if provider == "autotask":
        from devstack.autotask_simulator import AutotaskSimulator

        return AutotaskSimulator(**kw)
    if provider == "halopsa":
        from devstack.halo_simulator import HaloSimulator

        return HaloSimulator(**kw)
    from devstack.cw_simulator import CWSimulator

    return CWSimulator(**kw)


def configure_account(sim: PSASimulator, headers: dict[str, str] = DEMO_HEADERS) -> None:
    """Save the simulator as the account's PSA, with the simulator's demo preferences (statuses, outcomes)."""
    for path, body in (
        ("/account-settings/psa-connection", sim.connection_settings()),
        ("/account-settings/preferences", sim.preferences()),
    ):
        response = gateway.call("PUT", path, body=body, headers=headers, dev_identity=True)
        if response.status != 200:
            raise RuntimeError(f"could not configure the demo account: {response.status} {response.text}")


def start_simulators_and_configure() -> dict[str, Any]:
    """Start the three simulators (stopping any started if one fails) and configure their demo accounts."""
    simulators: dict[str, PSASimulator] = {}
    parts: dict[str, Any] = {"simulators": simulators}
    try:
        for provider, (_, port_knob) in DEMO_ACCOUNTS.items():
            sim = new_simulator(provider, port=int(os.environ.get(port_knob) or 0))
            sim.start()
            simulators[provider] = sim
            sim.seed_demo()
            zone_lookup = getattr(sim, "zone_lookup_url", None)  # Autotask's: in AWS a fixed Autotask URL
            if zone_lookup is not None:
                parts["zone_lookup"] = loopback.point_zone_lookup(str(zone_lookup))
            configure_account(sim, headers_for(provider))
    except BaseException:
        stop_simulators(parts)
        raise
    parts["simulator"] = simulators["connectwise"]
    return parts


def stop_simulators(parts: dict[str, Any]) -> None:
    for sim in parts.get("simulators", {}).values():
        sim.stop()
    if "zone_lookup" in parts:
        loopback.point_zone_lookup(parts.pop("zone_lookup"))


def describe(simulators: dict[str, PSASimulator]) -> list[str]:
    lines = []
    for provider, sim in simulators.items():
        account = DEMO_ACCOUNTS[provider][0]
        url = getattr(sim, "base_url", None) or getattr(sim, "zone_url", sim.site_url)
        lines.append(f"  {NAMES[provider]:<15} {url}   ({account}; simulator, demo tickets 1001-1006)")
    return lines
