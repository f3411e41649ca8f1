"""The Anthropic API key in AWS: read once per container from the Secrets Manager secret the template names.

`ANTHROPIC_API_KEY` in the environment (local stack, tests) wins; with neither, there is no key and the
offline writer is used. The key is never logged and never leaves this process except towards the model.
"""

from __future__ import annotations

import json
import os
import threading

from botocore.exceptions import BotoCoreError, ClientError

from flowpilot import resets
from flowpilot.config import settings
from flowpilot.errors import UpstreamUnavailable
from flowpilot.observability import logger
from flowpilot.store import secrets

# Keys a JSON secret may hold the API key under; a plain-string secret is the key itself.
_JSON_FIELDS = ("ANTHROPIC_API_KEY", "anthropic_api_key", "api_key")

_lock = threading.Lock()
_fetched: dict[str, str | None] = {}


@resets.register
def reset_caches() -> None:
    with _lock:
        _fetched.clear()


def _key_from_secret_string(value: str) -> str | None:
    value = value.strip()
    if value.startswith("{"):
        try:
            data = json.loads(value)
        except ValueError:
            return None
        found = next((data[f] for f in _JSON_FIELDS if isinstance(data.get(f), str) and data[f].strip()), None)
        return found.strip() if found else None
    return value or None


def anthropic_api_key() -> str | None:
    """The key from the environment, else from the configured secret (fetched once per container), else None.

    A configured secret that cannot be read is an outage of the model, not a reason to silently switch to
    the offline writer: it raises UpstreamUnavailable (503) and is retried on the next request.
    """
    if key := os.environ.get("ANTHROPIC_API_KEY"):
        return key
    name = settings().anthropic_api_key_secret
    if not name:
        return None
    with _lock:
        if name in _fetched:
            return _fetched[name]
    try:
        secret_string = secrets.client().get_secret_value(SecretId=name).get("SecretString") or ""
    except (ClientError, BotoCoreError) as error:
        code = error.response.get("Error", {}).get("Code") if isinstance(error, ClientError) else type(error).__name__
        logger.error("cannot read the Anthropic key secret", extra={"key_source": name, "error_code": code})
        raise UpstreamUnavailable(
            "The note writer's credentials are unavailable right now; try again shortly.",
            code="model_unavailable",
            retry_after=30,
        ) from None
    key = _key_from_secret_string(secret_string)
    if key is None:
        logger.warning("the Anthropic key secret holds no key; using the offline writer", extra={"key_source": name})
    with _lock:
        _fetched[name] = key
    return key
