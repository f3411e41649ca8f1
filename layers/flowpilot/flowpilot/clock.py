"""Time and id minting in one place, so stored order and tests agree."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime


def now_iso() -> str:
    """UTC timestamp with microseconds; sorts lexically in time order."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_id(prefix: str) -> str:
    """A time-ordered id: prefix, milliseconds since epoch (base36, fixed width), random suffix."""
    millis = int(time.time() * 1000)
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    stamp = ""
    for _ in range(9):
        millis, rem = divmod(millis, 36)
        stamp = digits[rem] + stamp
    return f"{prefix}_{stamp}{secrets.token_hex(5)}"
