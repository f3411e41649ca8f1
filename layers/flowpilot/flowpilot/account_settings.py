"""Account settings: write-back preferences and the PSA connection (credentials go to Secrets Manager).

One PSA per account: ConnectWise Manage, Autotask or HaloPSA. Each provider has its own connection body;
its secrets (keys, secret, integration code, client secret) go to Secrets Manager and are never returned or
logged; `GET /account-settings` shows the non-secret fields.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    SerializerFunctionWrapHandler,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_serializer,
)

from flowpilot.clock import now_iso
from flowpilot.errors import InvalidInput
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


PositiveInt = Annotated[int, Field(strict=True, ge=0, le=2_147_483_647)]

# The preference each provider reads for a kind's target status (per-board maps are ConnectWise's only).
STATUS_SETTINGS: dict[str, dict[str, str]] = {
    "connectwise": {"resolve": "cw_resolved_status_id", "escalate": "cw_escalated_status_id"},
    "autotask": {"resolve": "autotask_resolved_status_id", "escalate": "autotask_escalated_status_id"},
    "halopsa": {"resolve": "halo_resolved_status_id", "escalate": "halo_escalated_status_id"},
}


class Preferences(Strict):
    """What a resolve or escalate does in the account's PSA: the target status (ConnectWise: per board first,
    then the account default), Autotask's note types and pinned `publish` values, Halo's outcomes, and
    whether a resolution notifies the customer."""

    cw_resolved_status_id: StatusId | None = None
    cw_escalated_status_id: StatusId | None = None
    cw_resolved_status_ids_by_board: BoardStatusMap = Field(default_factory=dict)
    cw_escalated_status_ids_by_board: BoardStatusMap = Field(default_factory=dict)
    autotask_resolved_status_id: StatusId | None = None
    autotask_escalated_status_id: StatusId | None = None
    autotask_resolution_note_type_id: StatusId | None = None
    autotask_escalation_note_type_id: StatusId | None = None
    # Autotask's `publish` values differ per tenant; pin them when the picklist labels are ambiguous.
    autotask_public_publish_value: PositiveInt | None = None
    autotask_internal_publish_value: PositiveInt | None = None
    halo_resolved_status_id: StatusId | None = None
    halo_escalated_status_id: StatusId | None = None
    # Halo refuses an action without an outcome: one for each note, or the write-back is a 422.
    halo_resolution_outcome_id: StatusId | None = None
    halo_escalation_outcome_id: StatusId | None = None
    # ConnectWise `processNotifications`, Halo `sendemail` on the resolution; escalations never notify.
    notify_customer_on_resolve: Annotated[bool, Field(strict=True)] = True

    def target_status(self, provider: str, kind: str, board_id: int | None) -> int | None:
        if provider == "connectwise":
            by_board = (
                self.cw_resolved_status_ids_by_board if kind == "resolve" else self.cw_escalated_status_ids_by_board
            )
            if board_id is not None and str(board_id) in by_board:
                return by_board[str(board_id)]
        value: int | None = getattr(self, status_setting(provider, kind))
        return value

    def provider_options(self, provider: str) -> dict[str, Any]:
        """The keyword arguments this account's preferences give the provider's constructor."""
        if provider == "autotask":
            return {
                "resolution_note_type_id": self.autotask_resolution_note_type_id,
                "escalation_note_type_id": self.autotask_escalation_note_type_id,
                "public_publish_value": self.autotask_public_publish_value,
                "internal_publish_value": self.autotask_internal_publish_value,
            }
        if provider == "halopsa":
            return {
                "resolution_outcome_id": self.halo_resolution_outcome_id,
                "escalation_outcome_id": self.halo_escalation_outcome_id,
                "notify_customer_on_resolve": self.notify_customer_on_resolve,
            }
        return {"notify_customer_on_resolve": self.notify_customer_on_resolve}


def status_setting(provider: str, kind: str) -> str:
    """The preference holding the provider's target status for `kind` (`resolve`/`escalate`)."""
    return STATUS_SETTINGS[provider][kind]


Printable = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
SecretValue = Annotated[SecretStr, Field(min_length=1, max_length=500)]
OptionalUrl = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None


class _Connection(Strict):
    @field_validator("*", mode="after")
    @classmethod
    def _printable(cls, value: object, info: ValidationInfo) -> object:
        if info.field_name == "base_url":
            return value  # URLs get the egress check's own answer (`invalid_base_url`) when saved
        # Secrets included, but the message never shows a value: it names the rule only.
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(raw, str) and not raw.isprintable():
            raise ValueError("must be printable text")
        return value

    def secrets(self) -> dict[str, str]:
        """The fields that go to Secrets Manager (never stored with the settings, never returned)."""
        return {name: value.get_secret_value() for name, value in self if isinstance(value, SecretStr)}

    def urls(self) -> list[str]:
        """Every URL the provider may call from this connection, each checked by the egress rules."""
        raise NotImplementedError

    def view_fields(self) -> dict[str, Any]:
        """The non-secret fields, as saved (URLs normalised by the egress check)."""
        return {name: value for name, value in self if not isinstance(value, SecretStr) and value is not None}


class ConnectWiseConnectionRequest(_Connection):
    provider: Literal["connectwise"]
    site: Hostname
    company_id: Printable
    # SecretStr: no repr, log line or error message can show the keys.
    public_key: Annotated[SecretStr, Field(min_length=1, max_length=200)]
    private_key: Annotated[SecretStr, Field(min_length=1, max_length=200)]
    client_id: Printable
    base_url: OptionalUrl = None

    def urls(self) -> list[str]:
        # The site is checked even with a base_url: the provider may fall back to it.
        return [f"https://{self.site}", *([self.base_url] if self.base_url else [])]


class AutotaskConnectionRequest(_Connection):
    provider: Literal["autotask"]
    # The API user's email (Autotask's `UserName` header and zone lookup key); not a secret.
    username: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=254)]
    secret: SecretValue
    # The API tracking identifier; treated as a secret.
    integration_code: SecretValue
    # A zone URL (e.g. https://webservices5.autotask.net/ATServicesRest/) instead of the zone lookup.
    base_url: OptionalUrl = None

    def urls(self) -> list[str]:
        return [self.base_url] if self.base_url else []


class HaloConnectionRequest(_Connection):
    provider: Literal["halopsa"]
    # The instance root (e.g. https://acme.halopsa.com): the API is {base_url}/api, the token {base_url}/auth.
    base_url: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
    client_id: Printable
    client_secret: SecretValue
    tenant: (
        Annotated[
            str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")
        ]
        | None
    ) = None

    def urls(self) -> list[str]:
        return [self.base_url]


PsaConnectionRequest = Annotated[
    ConnectWiseConnectionRequest | AutotaskConnectionRequest | HaloConnectionRequest,
    Field(discriminator="provider"),
]


class PsaConnectionView(BaseModel):
    """The saved connection without its secrets. Which fields are set depends on the provider."""

    provider: str | None = None
    site: str | None = None
    company_id: str | None = None
    client_id: str | None = None
    username: str | None = None
    tenant: str | None = None
    base_url: str | None = None
    configured: bool = False
    updated_at: str | None = None

    @model_serializer(mode="wrap")
    def _provider_fields(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # DESIGN §3's keys for every provider (null where a provider has no such field), and each provider's
        # own fields beside them; ConnectWise's view keeps the shape it always had.
        data: dict[str, Any] = handler(self)
        shown = _SHOWN.get(self.provider or "connectwise", _CONNECTION_FIELDS) | CONTRACT_FIELDS
        return {name: value for name, value in data.items() if name in shown or name not in _CONNECTION_FIELDS}


def _shown_fields(request: type[_Connection]) -> frozenset[str]:
    """A provider's connection fields that are not secrets: what its view shows."""
    return frozenset(name for name, info in request.model_fields.items() if info.annotation is not SecretStr)


_SHOWN: dict[str, frozenset[str]] = {
    "connectwise": _shown_fields(ConnectWiseConnectionRequest),
    "autotask": _shown_fields(AutotaskConnectionRequest),
    "halopsa": _shown_fields(HaloConnectionRequest),
}
# Fields some provider shows: a view hides those its own provider does not have, except the contract's.
_CONNECTION_FIELDS = frozenset().union(*_SHOWN.values())
# `GET /account-settings` → `psa: {provider, site, company_id, client_id, configured}` (DESIGN §3).
CONTRACT_FIELDS = frozenset({"provider", "site", "company_id", "client_id", "configured"})


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
    # Checked here, not on the model: preferences stored before the check must still load.
    public, internal = preferences.autotask_public_publish_value, preferences.autotask_internal_publish_value
    if public is not None and public == internal:
        raise InvalidInput(
            "autotask_public_publish_value and autotask_internal_publish_value must differ: one publish value "
            "cannot make a note both customer-visible and internal.",
            code="validation_error",
        )
    store.put_field(caller.account_id, "preferences", preferences.model_dump(mode="json"), now_iso())
    return _view(caller.account_id)


def put_psa_connection(caller: Caller, request: PsaConnectionRequest) -> AccountSettings:
    fields = request.view_fields()
    for url in request.urls():
        checked = check_base_url(url)
        if url == fields.get("base_url"):
            fields["base_url"] = checked
    secret_arn = secrets.put_psa_secret(caller.account_id, {"provider": request.provider, **request.secrets()})
    now = now_iso()
    view = PsaConnectionView(**fields, configured=True, updated_at=now)
    store.put_field(caller.account_id, "psa", {**view.model_dump(exclude_none=True), "secret_arn": secret_arn}, now)
    logger.info("PSA connection saved", extra={"provider": request.provider})
    return _view(caller.account_id)
