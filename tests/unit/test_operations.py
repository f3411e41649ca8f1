"""What operators rely on: timed PSA and model calls, SnapStart wiring in the template, and a dashboard that
shows only metrics the code emits."""

from __future__ import annotations

import json
import logging
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from devstack import template

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "layers" / "flowpilot" / "flowpilot"


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _timed_call_record(caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    (record,) = [r for r in caplog.records if r.getMessage() == "timed call"]
    return record


def test_timed_call_emits_its_latency_with_its_dimensions_and_logs_it(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    from flowpilot.observability import timed_call

    with timed_call("PsaCallLatency", {"provider": "connectwise", "operation": "GET /service/tickets/{id}"}) as call:
        call["psa_status"] = 200
    lines = _json_lines(capsys.readouterr().out)
    (emf,) = [line for line in lines if "_aws" in line]
    (directive,) = emf["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "FlowPilot"
    assert directive["Metrics"] == [{"Name": "PsaCallLatency", "Unit": "Milliseconds"}]
    assert set(directive["Dimensions"][0]) == {"service", "provider", "operation"}
    assert emf["provider"] == "connectwise" and emf["operation"] == "GET /service/tickets/{id}"
    log = _timed_call_record(caplog).__dict__
    assert log["psa_status"] == 200 and log["outcome"] == "ok" and log["call"] == "PsaCallLatency"
    assert log["operation"] == "GET /service/tickets/{id}"
    assert log["latency_ms"] == emf["PsaCallLatency"][0] >= 0


def test_a_call_that_raises_is_timed_as_an_error(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    from flowpilot.observability import timed_call

    with pytest.raises(TimeoutError), timed_call("ModelCallLatency", {"model": "claude-sonnet-5-5"}):
        raise TimeoutError
    lines = _json_lines(capsys.readouterr().out)
    assert any("ModelCallLatency" in line for line in lines if "_aws" in line)
    log = _timed_call_record(caplog).__dict__
    assert log["outcome"] == "error" and log["model"] == "claude-sonnet-5-5"


# --- SnapStart wiring --------------------------------------------------------------------------------


def test_snapstart_is_a_parameter_on_in_prod_and_off_in_dev() -> None:
    doc = template.load()
    assert doc["Parameters"]["EnableSnapStart"]["Default"] == "false"
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    overrides = {env: config[env]["deploy"]["parameters"]["parameter_overrides"] for env in ("default", "prod")}
    assert "EnableSnapStart=true" in overrides["prod"].split()
    assert "EnableSnapStart=false" in overrides["default"].split()
    condition = doc["Conditions"]["SnapStartOn"]
    assert condition == {"Fn::Equals": [{"Ref": "EnableSnapStart"}, "true"]}


def test_every_function_publishes_an_alias_with_snapstart_behind_the_condition() -> None:
    glob = template.load()["Globals"]["Function"]
    assert glob["SnapStart"] == {"Fn::If": ["SnapStartOn", {"ApplyOn": "PublishedVersions"}, {"Ref": "AWS::NoValue"}]}
    for logical_id in template.functions():
        assert template.function_alias(logical_id) == "live", logical_id


def test_the_state_machine_invokes_the_alias() -> None:
    machine = template.load()["Resources"]["WritebackStateMachine"]["Properties"]
    assert machine["DefinitionSubstitutions"]["WritebackStepsFunctionArn"] == {"Ref": "WritebackStepsFunction.Alias"}
    definition = (ROOT / machine["DefinitionUri"]).read_text()
    # every Lambda task names the function through that substitution, none by a literal ARN
    names = re.findall(r'"FunctionName":\s*"([^"]+)"', definition)
    assert names and set(names) == {"${WritebackStepsFunctionArn}"}


def test_the_local_stack_resolves_the_alias_and_evaluates_conditions() -> None:
    resolved = template.resolve({"Ref": "WritebackStepsFunction.Alias"})
    assert resolved == template.function_arn("WritebackStepsFunction")  # no versions locally
    assert template.condition("SnapStartOn") is False and template.condition("IsProd") is False
    assert template.resolve(template.load()["Globals"]["Function"]["SnapStart"]) is template.NO_VALUE
    assert "SnapStart" not in template.resolve(template.load()["Globals"]["Function"])
    with pytest.raises(KeyError):
        template.function_alias_arn("NoSuchFunction")


# --- the dashboard ----------------------------------------------------------------------------------

# Emitted by writeback_steps once it reports each write-back's outcome and provider (observability.emit).
NOT_EMITTED_YET: set[str] = set()


def _dashboard() -> dict[str, Any]:
    body = template.load()["Resources"]["OperationsDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    return json.loads(re.sub(r"\$\{[^}]+\}", "x", body))


def _emitted_metric_names() -> set[str]:
    names: set[str] = set()
    for path in LAYER.rglob("*.py"):
        text = path.read_text()
        for expression in re.findall(r"add_metric\(\s*name=([^,]+),", text):  # also `"A" if x else "B"`
            names |= set(re.findall(r'"(\w+)"', expression))
        names |= set(re.findall(r'timed_call\(\s*"(\w+)"', text))
        names |= set(re.findall(r'emit\(\s*"(\w+)"', text))
    return names


def test_the_dashboard_shows_only_metrics_the_code_emits() -> None:
    shown: set[str] = set()
    for widget in _dashboard()["widgets"]:
        for metric in widget.get("properties", {}).get("metrics", []):
            if isinstance(metric[0], dict):
                shown |= set(re.findall(r"\{FlowPilot,[^}]*\} MetricName=\\?\"(\w+)", metric[0]["expression"]))
            elif metric[0] == "FlowPilot":
                shown.add(metric[1])
    assert {"PsaCallLatency", "ModelCallLatency", "StatusDrift", "PreviewCacheHit"} <= shown
    assert shown - NOT_EMITTED_YET <= _emitted_metric_names()


def test_the_dashboard_covers_cold_starts_of_every_function() -> None:
    queries = " ".join(w["properties"].get("query", "") for w in _dashboard()["widgets"] if w["type"] == "log")
    body = template.load()["Resources"]["OperationsDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    for logical_id in template.functions():
        assert f"${{{logical_id}Logs}}" in body, logical_id
    assert "@initDuration" in queries and "Restore Duration" in queries
