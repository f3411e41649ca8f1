"""Account settings: write-back preferences and the PSA connection (credentials go to Secrets Manager)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, StringConstraints, field_validator

from flowpilot.clock import now_iso
from flowpilot.identity import Caller
from flowpilot.models import Strict
from flowpilot.observability import logger
from flowpilot.psa import egress
from flowpilot.store import account_settings as store
from flowpilot.store import secrets

StatusId = Annotated[int, Field(strict=True, ge=1, le=2_147_483_647)]
BoardStatusMap = Annotated[
    dict[Annotated[str, StringConstraints(pattern=r"^[0-9]{1,10}$")], StatusId], Field(max_length=200)
]
Hostname = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, to_lower=True, pattern=r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?(:[0-9]{1,5})?$"
    ),
]


class Preferences(Strict):
    """Which CW status a resolve or escalate moves the ticket to; per board first, then the account default."""

    cw_resolved_status_id: StatusId | None = None
    cw_escalated_status_id: StatusId | None = None
    cw_resolved_status_ids_by_board: BoardStatusMap = Field(default_factory=dict)
    cw_escalated_status_ids_by_board: BoardStatusMap = Field(default_factory=dict)
    notify_customer_on_resolve: bool = True

    def target_status(self, kind: str, board_id: int | None) -> int | None:
        by_board = self.cw_resolved_status_ids_by_board if kind == "resolve" else self.cw_escalated_status_ids_by_board
        if board_id is not None and str(board_id) in by_board:
            return by_board[str(board_id)]
        return self.cw_resolved_status_id if kind == "resolve" else self.cw_escalated_status_id


class PsaConnectionRequest(Strict):
    provider: Literal["connectwise"]
    site: Hostname
    company_id: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    # SecretStr: no repr, log line or error message can show the keys.
    public_key: Annotated[SecretStr, Field(min_length=1, max_length=200)]
    private_key: Annotated[SecretStr, Field(min_length=1, max_length=200)]
    client_id: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    base_url: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None = None

    @field_validator("company_id", "client_id")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.isprintable():
            raise ValueError("must be printable text")
        return value

    @field_validator("public_key", "private_key")
    @classmethod
    def _printable_key(cls, value: SecretStr) -> SecretStr:
        # The message never shows the key: it names the rule only.
        if not value.get_secret_value().isprintable():
            raise ValueError("must be printable text")
        return value


class PsaConnectionView(BaseModel):
    provider: str | None = None
    site: str | None = None
    company_id: str | None = None
    client_id: str | None = None
    base_url: str | None = None
    configured: bool = False
    updated_at: str | None = None


class AccountSettings(BaseModel):
    preferences: Preferences
    psa: PsaConnectionView


def check_base_url(url: str) -> str:
    """Refuse PSA URLs that could reach our own network (SSRF): only https to public hosts (`egress.rules`)."""
    return egress.rules.check_url(url)


def _view(account_id: str) -> AccountSettings:
    item = store.get(account_id)
    return AccountSettings(
        preferences=Preferences.model_validate(item.get("preferences") or {}),
        psa=PsaConnectionView.model_validate(item.get("psa") or {}),
    )


def get_settings(caller: Caller) -> AccountSettings:
    return _view(caller.account_id)


def preferences_for(account_id: str) -> Preferences:
    return _view(account_id).preferences


def put_preferences(caller: Caller, preferences: Preferences) -> AccountSettings:
    store.put_field(caller.account_id, "preferences", preferences.model_dump(mode="json"), now_iso())
    return _view(caller.account_id)


def put_psa_connection(caller: Caller, request: PsaConnectionRequest) -> AccountSettings:
    check_base_url(f"https://{request.site}")  # checked even with a base_url: the provider may fall back to it
    base_url = check_base_url(request.base_url) if request.base_url else None
    secret_arn = secrets.put_psa_secret(
        caller.account_id,
        {
            "public_key": request.public_key.get_secret_value(),
            "private_key": request.private_key.get_secret_value(),
        },
    )
    now = now_iso()
    view = PsaConnectionView(
        provider=request.provider,
        site=request.site,
        company_id=request.company_id,
        client_id=request.client_id,
        base_url=base_url,
        configured=True,
        updated_at=now,
    )
    store.put_field(caller.account_id, "psa", {**view.model_dump(exclude_none=True), "secret_arn": secret_arn}, now)
    logger.info("PSA connection saved", extra={"provider": request.provider, "site": request.site})
    return _view(caller.account_id)
