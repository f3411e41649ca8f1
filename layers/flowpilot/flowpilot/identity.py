"""Who is calling: the account (MSP) and engineer, from the JWT authorizer's claims and nowhere else.

The local stack's gateway turns its X-Dev-* headers into these same claims (`devstack/gateway.py`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from flowpilot.errors import Unauthorized
from flowpilot.models import ID_PATTERN

_ID = re.compile(ID_PATTERN)
ACCOUNT_CLAIM = "custom:account_id"
ENGINEER_CLAIM = "sub"


@dataclass(frozen=True, slots=True)
class Caller:
    account_id: str
    engineer_id: str


def caller_from_event(event: dict[str, Any]) -> Caller:
    claims = (((event.get("requestContext") or {}).get("authorizer") or {}).get("jwt") or {}).get("claims") or {}
    account, engineer = claims.get(ACCOUNT_CLAIM), claims.get(ENGINEER_CLAIM)
    if not isinstance(account, str) or not isinstance(engineer, str):
        raise Unauthorized("The request carries no account or engineer identity.")
    if not _ID.fullmatch(account) or not _ID.fullmatch(engineer):
        raise Unauthorized("The request's account or engineer identity is malformed.")
    return Caller(account_id=account, engineer_id=engineer)
