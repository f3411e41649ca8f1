"""Settings: required names fail the cold start loudly, optional ones are required where they are read."""

from __future__ import annotations

import pytest

from devstack import aws, template
from flowpilot.config import ConfigurationError, Settings, from_environment

REQUIRED = ("FLOWPILOT_STAGE", "SESSIONS_TABLE", "PREVIEW_CACHE_TABLE", "PSA_SECRET_PREFIX")


def globals_only() -> dict[str, str]:
    """What every function is given: template.yaml's Globals, as the local stage resolves them."""
    variables = template.load()["Globals"]["Function"]["Environment"]["Variables"]
    return {name: str(template.resolve(value)) for name, value in variables.items()}


def test_every_function_of_the_template_has_valid_settings() -> None:
    for logical_id, function in template.functions().items():
        settings = from_environment({**aws.environment(), **function.environment})
        assert settings.sessions_table, logical_id


@pytest.mark.parametrize("variable", REQUIRED)
def test_a_missing_resource_name_is_a_configuration_error_naming_it(variable: str) -> None:
    env = {k: v for k, v in aws.environment().items() if k != variable}
    with pytest.raises(ConfigurationError, match=variable):
        from_environment(env)


@pytest.mark.parametrize("variable", REQUIRED)
def test_an_empty_resource_name_counts_as_missing(variable: str) -> None:
    with pytest.raises(ConfigurationError, match=variable):
        from_environment({**aws.environment(), variable: ""})


def test_the_error_names_the_rule_never_the_environment() -> None:
    env = {**aws.environment(), "PREVIEW_TTL_SECONDS": "5", "ANTHROPIC_API_KEY": "sk-ant-must-not-show"}
    with pytest.raises(ConfigurationError) as raised:
        from_environment(env)
    assert "PREVIEW_TTL_SECONDS" in str(raised.value)
    assert "sk-ant-must-not-show" not in str(raised.value)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_the_state_machine_arn_is_optional_until_read() -> None:
    """Only the writebacks function is given it: the others start without it, and reading it fails loudly."""
    settings = from_environment(globals_only())
    assert settings.state_machine_arn is None
    with pytest.raises(ConfigurationError, match="WRITEBACK_STATE_MACHINE_ARN"):
        _ = settings.writeback_state_machine_arn
    with pytest.raises(ConfigurationError, match="WRITEBACK_STATE_MACHINE_ARN"):
        settings.require("state_machine_arn")
    writebacks = template.functions()["WritebacksFunction"].environment
    arn = from_environment({**globals_only(), **writebacks}).writeback_state_machine_arn
    assert arn.startswith("arn:aws:states:")


def test_tunables_keep_their_defaults_and_their_bounds() -> None:
    settings = from_environment(globals_only())
    assert (settings.writeback_wait_seconds, settings.drift_check_seconds) == (20.0, 120)
    with pytest.raises(ConfigurationError, match="WRITEBACK_WAIT_SECONDS"):
        from_environment({**globals_only(), "WRITEBACK_WAIT_SECONDS": "29"})


def test_fields_take_their_names_too() -> None:
    settings = Settings(stage="s", sessions_table="t", preview_cache_table="p", secret_prefix="x/")
    assert settings.sessions_table == "t"


def test_a_handler_that_requires_a_missing_setting_fails_at_init(monkeypatch: pytest.MonkeyPatch) -> None:
    from aws_lambda_powertools.event_handler.api_gateway import Router

    from flowpilot import resets
    from flowpilot.api import handler_for

    for name, value in globals_only().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("WRITEBACK_STATE_MACHINE_ARN", raising=False)
    resets.reset_all()
    try:
        handler_for(Router())  # the globals are enough for a function that needs nothing else
        with pytest.raises(ConfigurationError, match="WRITEBACK_STATE_MACHINE_ARN"):
            handler_for(Router(), requires=("state_machine_arn",))
    finally:
        monkeypatch.undo()
        resets.reset_all()
