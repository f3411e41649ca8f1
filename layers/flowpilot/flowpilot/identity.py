"""Who is calling: the account (MSP) and engineer. JWT claims in AWS; X-Dev-* headers on the local stack only."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from flowpilot.config import settings
from flowpilot.errors import Unauthorized
from flowpilot.models import ID_PATTERN

_ID = re.compile(ID_PATTERN)
DEV_ACCOUNT_HEADER = "x-dev-account-id"
DEV_USER_HEADER = "x-dev-user-id"
DEFAULT_DEV_ACCOUNT = "acct-dev"
DEFAULT_DEV_ENGINEER = "engineer-dev"


@dataclass(frozen=True, slots=True)
class Caller:
    account_id: str
    engineer_id: str


def caller_from_event(event: dict[str, Any]) -> Caller:
    if settings().identity_mode == "local":
        headers = {str(k).lower(): v for k, v in (event.get("headers") or {}).items()}
        account = headers.get(DEV_ACCOUNT_HEADER) or DEFAULT_DEV_ACCOUNT
        engineer = headers.get(DEV_USER_HEADER) or DEFAULT_DEV_ENGINEER
    else:
        claims = (((event.get("requestContext") or {}).get("authorizer") or {}).get("jwt") or {}).get("claims") or {}
        account, engineer = claims.get("custom:account_id"), claims.get("sub")
    if not isinstance(account, str) or not isinstance(engineer, str):
        raise Unauthorized("The request carries no account or engineer identity.")
    if not _ID.fullmatch(account) or not _ID.fullmatch(engineer):
        raise Unauthorized("The request's account or engineer identity is malformed.")
    return Caller(account_id=account, engineer_id=engineer)
