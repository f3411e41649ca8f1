"""The PSA provider for an account: its saved connection plus its credentials from Secrets Manager."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from flowpilot import resets
from flowpilot.errors import InvalidInput
from flowpilot.psa import egress
from flowpilot.psa.base import PSAProvider
from flowpilot.store import account_settings, secrets

if TYPE_CHECKING:
    import httpx


class PSANotConfigured(InvalidInput):
    code = "psa_not_configured"


def check_configured(account_id: str, provider: str) -> dict[str, Any]:
    """The account's saved (non-secret) connection, or a clear 422 saying what is missing."""
    psa: dict[str, Any] = account_settings.get(account_id).get("psa") or {}
    if not psa.get("configured"):
        raise PSANotConfigured(
            "The session's ticket is in a PSA, but this account has no PSA connection; "
            "save one with PUT /account-settings/psa-connection."
        )
    if provider != "connectwise" or psa.get("provider") != "connectwise":
        raise InvalidInput(
            f"Write-back to {provider} is not supported yet (ConnectWise Manage only).",
            code="psa_provider_not_supported",
        )
    return psa


def provider_for_account(account_id: str, provider: str) -> PSAProvider:
    psa = check_configured(account_id, provider)
    keys = secrets.get_psa_secret(account_id)
    if not keys:
        raise PSANotConfigured("The account's PSA credentials are missing; save the PSA connection again.")
    from flowpilot.psa.connectwise import ConnectWiseConnection, ConnectWiseProvider

    return ConnectWiseProvider(
        ConnectWiseConnection(
            site=psa["site"],
            company_id=psa["company_id"],
            public_key=keys["public_key"],
            private_key=keys["private_key"],
            client_id=psa["client_id"],
            base_url=psa.get("base_url"),
        ),
        http=_http_client(egress.rules),
    )


@cache
def _http_client(rules: egress.EgressRules) -> httpx.Client:
    """One connection pool per process (and egress rules): a new client per step costs a CA-bundle load (~16 ms
    of CPU). Every new connection re-checks that the PSA host resolves to a public address (`egress.rules`)."""
    import httpx

    return httpx.Client(follow_redirects=False, transport=rules.transport(), trust_env=False)


@resets.register
def reset_caches() -> None:
    _http_client.cache_clear()
