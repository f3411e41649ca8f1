"""Account settings API: preferences and the PSA connection (keys are write-only)."""

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body

from flowpilot import account_settings
from flowpilot.account_settings import AccountSettings, Preferences, PsaConnectionRequest
from flowpilot.api import BODY_ERRORS, caller, handler_for, responses

router = Router()


@router.get("/account-settings", responses=responses(AccountSettings))
def get_settings() -> AccountSettings:
    return account_settings.get_settings(caller())


@router.put("/account-settings/preferences", responses=responses(AccountSettings, *BODY_ERRORS))
def put_preferences(body: Preferences) -> AccountSettings:
    return account_settings.put_preferences(caller(), body)


@router.put("/account-settings/psa-connection", responses=responses(AccountSettings, *BODY_ERRORS))
def put_psa_connection(body: Annotated[PsaConnectionRequest, Body()]) -> AccountSettings:
    # One body per provider, told apart by `provider` (a discriminated union: Body() marks it as the body).
    return account_settings.put_psa_connection(caller(), body)


lambda_handler = handler_for(router)
