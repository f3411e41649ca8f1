"""Runtime settings, parsed once from the environment into one model."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, Field


class Settings(BaseModel):
    stage: str = "dev"
    # "local" only on the dev stack: enables X-Dev-* identity headers and loopback PSA URLs.
    identity_mode: Literal["jwt", "local"] = "jwt"
    sessions_table: str = "flowpilot-sessions"
    preview_cache_table: str = "flowpilot-preview-cache"
    writeback_state_machine_arn: str = ""
    secret_prefix: str = "flowpilot/dev/psa/"
    preview_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    writeback_wait_seconds: float = Field(default=20.0, ge=0, le=28)
    drift_check_seconds: int = Field(default=120, ge=0, le=3600)
    # The newest Sonnet the pinned SDK (anthropic 2.14.0) lists in types/model_param.py (sonnet-5-5 >
    # sonnet-5 > sonnet-4-6 > sonnet-4-5) and not in its _data/deprecated_models.py, which retires
    # claude-sonnet-4-5 on November 30th, 2026.
    anthropic_model: str = "claude-sonnet-5-5"
    anthropic_timeout_seconds: float = Field(default=20.0, gt=0, le=25)
    anthropic_max_retries: int = Field(default=1, ge=0, le=3)
    # Name of a Secrets Manager secret holding the Anthropic key (AWS); empty: ANTHROPIC_API_KEY or offline.
    anthropic_api_key_secret: str = ""
    template_builder_path: str = "/script-templates/builder"
    # Only the local stack and tests talk to a PSA on loopback (the ConnectWise simulator).
    psa_allow_loopback: bool = False
    # `sam local invoke` against the local stack's moto; empty in AWS (boto3's own endpoints).
    aws_endpoint_url: str = ""


_ENV = {
    "stage": "FLOWPILOT_STAGE",
    "identity_mode": "FLOWPILOT_IDENTITY_MODE",
    "sessions_table": "SESSIONS_TABLE",
    "preview_cache_table": "PREVIEW_CACHE_TABLE",
    "writeback_state_machine_arn": "WRITEBACK_STATE_MACHINE_ARN",
    "secret_prefix": "PSA_SECRET_PREFIX",
    "preview_ttl_seconds": "PREVIEW_TTL_SECONDS",
    "writeback_wait_seconds": "WRITEBACK_WAIT_SECONDS",
    "drift_check_seconds": "DRIFT_CHECK_SECONDS",
    "anthropic_model": "ANTHROPIC_MODEL",
    "anthropic_timeout_seconds": "ANTHROPIC_TIMEOUT_SECONDS",
    "anthropic_max_retries": "ANTHROPIC_MAX_RETRIES",
    "anthropic_api_key_secret": "ANTHROPIC_API_KEY_SECRET",
    "template_builder_path": "TEMPLATE_BUILDER_PATH",
    "psa_allow_loopback": "PSA_ALLOW_LOOPBACK",
    "aws_endpoint_url": "FLOWPILOT_AWS_ENDPOINT_URL",
}


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process's settings. Tests that change the environment call `settings.cache_clear()`."""
    values = {field: os.environ[var] for field, var in _ENV.items() if os.environ.get(var)}
    return Settings.model_validate(values)


def aws_endpoint_url() -> str | None:
    """Where boto3 clients send requests: None (AWS, or boto3's own AWS_ENDPOINT_URL) unless configured."""
    return settings().aws_endpoint_url or None
