"""Runtime settings: the environment parsed once into one model, validated at cold start.

Every field's alias is its environment variable. The names of the stack's resources have no default:
a function without them must fail its cold start, not answer requests against a guessed table. What only
some functions are given (the write-back state machine, in the writebacks function) is optional in the
model and required where it is read, and by the functions that declare they need it (`require`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flowpilot import resets


class ConfigurationError(RuntimeError):
    """A setting the function needs is missing or invalid: a deployment error, never a client's."""


class Settings(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    # Globals of template.yaml: every function has them.
    stage: str = Field(alias="FLOWPILOT_STAGE", min_length=1)
    sessions_table: str = Field(alias="SESSIONS_TABLE", min_length=1)
    preview_cache_table: str = Field(alias="PREVIEW_CACHE_TABLE", min_length=1)
    secret_prefix: str = Field(alias="PSA_SECRET_PREFIX", min_length=1)
    # The writebacks function's own (read through `writeback_state_machine_arn`).
    state_machine_arn: str | None = Field(default=None, alias="WRITEBACK_STATE_MACHINE_ARN")
    preview_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60, alias="PREVIEW_TTL_SECONDS")
    writeback_wait_seconds: float = Field(default=20.0, ge=0, le=28, alias="WRITEBACK_WAIT_SECONDS")
    drift_check_seconds: int = Field(default=120, ge=0, le=3600, alias="DRIFT_CHECK_SECONDS")
    # The newest Sonnet the pinned SDK (anthropic 2.14.0) knows and does not list as deprecated
    # (claude-sonnet-4-5 retires on November 30th, 2026).
    anthropic_model: str = Field(default="claude-sonnet-5-5", alias="ANTHROPIC_MODEL")
    anthropic_timeout_seconds: float = Field(default=20.0, gt=0, le=25, alias="ANTHROPIC_TIMEOUT_SECONDS")
    anthropic_max_retries: int = Field(default=1, ge=0, le=3, alias="ANTHROPIC_MAX_RETRIES")
    # Name of a Secrets Manager secret holding the Anthropic key (AWS); empty: ANTHROPIC_API_KEY or offline.
    anthropic_api_key_secret: str = Field(default="", alias="ANTHROPIC_API_KEY_SECRET")
    template_builder_path: str = Field(default="/script-templates/builder", alias="TEMPLATE_BUILDER_PATH")
    # `sam local invoke` against the local stack's moto; empty in AWS (boto3's own endpoints).
    aws_endpoint_url: str = Field(default="", alias="FLOWPILOT_AWS_ENDPOINT_URL")

    @property
    def writeback_state_machine_arn(self) -> str:
        self.require("state_machine_arn")
        assert self.state_machine_arn is not None
        return self.state_machine_arn

    def require(self, *fields: str) -> None:
        """Raise ConfigurationError naming the environment variables of `fields` that are not set."""
        missing = [_variable(field) for field in fields if not getattr(self, field)]
        if missing:
            raise ConfigurationError(f"This function needs {', '.join(missing)} in its environment.")


def _variable(field: str) -> str:
    return Settings.model_fields[field].alias or field.upper()


def from_environment(environ: Mapping[str, str]) -> Settings:
    """The settings `environ` gives (empty values count as unset), or ConfigurationError naming what is wrong."""
    try:
        return Settings.model_validate({name: value for name, value in environ.items() if value})
    except ValidationError as error:
        # Names and rules only: the input is the whole environment, which may hold keys.
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise ConfigurationError(f"Invalid function configuration: {problems}") from None


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process's settings, read from the environment once (`resets.reset_all()` forgets them)."""
    return from_environment(os.environ)


resets.register(settings.cache_clear)


def aws_endpoint_url() -> str | None:
    """Where boto3 clients send requests: None (AWS, or boto3's own AWS_ENDPOINT_URL) unless configured."""
    return settings().aws_endpoint_url or None
