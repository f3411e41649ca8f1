"""The PSA provider for an account: its saved connection, its credentials from Secrets Manager, and the
options its preferences give (Autotask note types and publish pins, Halo outcomes, customer notification)."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from flowpilot import resets
from flowpilot.errors import InvalidInput
from flowpilot.psa import egress
from flowpilot.psa.base import PSANotConfigured, PSAProvider
from flowpilot.store import account_settings, secrets

if TYPE_CHECKING:
    import httpx

    from flowpilot.account_settings import Preferences

_NAMES = {"connectwise": "ConnectWise Manage", "autotask": "Autotask", "halopsa": "HaloPSA"}


class PSAProviderMismatch(InvalidInput):
    code = "psa_provider_mismatch"


def check_configured(account_id: str, provider: str) -> dict[str, Any]:
    """The account's saved (non-secret) connection, or a clear 422: none saved, or another PSA than the ticket's."""
    psa: dict[str, Any] = account_settings.get(account_id).get("psa") or {}
    if not psa.get("configured"):
        raise PSANotConfigured(
            "The session's ticket is in a PSA, but this account has no PSA connection; "
            "save one with PUT /account-settings/psa-connection. Nothing was posted."
        )
    configured = str(psa.get("provider"))
    if provider != configured:
        raise PSAProviderMismatch(
            f"The session's ticket is in {_NAMES.get(provider, provider)} ({provider}), but this account is "
            f"connected to {_NAMES.get(configured, configured)} ({configured}). Relink the session to a "
            f"{configured} ticket or change the account's PSA connection. Nothing was posted.",
            details={"ticket_provider": provider, "account_provider": configured},
        )
    return psa


def provider_for_account(account_id: str, provider: str, preferences: Preferences) -> PSAProvider:
    psa = check_configured(account_id, provider)
    keys = secrets.get_psa_secret(account_id)
    if not keys or keys.get("provider", "connectwise") != provider:
        raise PSANotConfigured("The account's PSA credentials are missing; save the PSA connection again.")
    http = _http_client(egress.rules)
    options = preferences.provider_options(provider)
    if provider == "autotask":
        from flowpilot.psa.autotask import AutotaskConnection, AutotaskProvider

        at = AutotaskConnection(
            username=psa["username"],
            secret=keys["secret"],
            integration_code=keys["integration_code"],
            base_url=psa.get("base_url"),
        )
        return AutotaskProvider(at, http=http, **options)
    if provider == "halopsa":
        from flowpilot.psa.halo import HaloConnection, HaloProvider

        halo = HaloConnection(
            base_url=psa["base_url"],
            client_id=psa["client_id"],
            client_secret=keys["client_secret"],
            tenant=psa.get("tenant"),
        )
        return HaloProvider(halo, http=http, **options)
    from flowpilot.psa.connectwise import ConnectWiseConnection, ConnectWiseProvider

    cw = ConnectWiseConnection(
        site=psa["site"],
        company_id=psa["company_id"],
        public_key=keys["public_key"],
        private_key=keys["private_key"],
        client_id=psa["client_id"],
        base_url=psa.get("base_url"),
    )
    return ConnectWiseProvider(cw, http=http, **options)


@cache
def _http_client(rules: egress.EgressRules) -> httpx.Client:
    """One connection pool per process (and egress rules): a new client per step costs a CA-bundle load (~16 ms
    of CPU). Every new connection re-checks that the PSA host resolves to a public address (`egress.rules`)."""
    import httpx

    return httpx.Client(follow_redirects=False, transport=rules.transport(), trust_env=False)


@resets.register
def reset_caches() -> None:
    _http_client.cache_clear()
