"""The cold-start benchmark's design floor and stage attribution (tests/bench/coldstart.py)."""

from __future__ import annotations

import sys

import pytest

from tests.bench import coldstart

THIRD_PARTY_OF_THE_FLOOR = {"boto3", "botocore", "pydantic", "pydantic_core", "aws_lambda_powertools"}


def _roots(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules} - set(sys.stdlib_module_names)


@pytest.fixture(scope="module")
def imported() -> dict[str, set[str]]:
    return {t.label: coldstart.imported_modules(t) for t in coldstart.targets() if t.label != coldstart.BOTO3}


def test_the_floor_is_part_of_every_function(imported: dict[str, set[str]]) -> None:
    """What makes it a floor: every function imports at least every third-party module the floor imports."""
    floor = {m for m in imported[coldstart.FLOOR] if m.split(".")[0] not in sys.stdlib_module_names}
    assert _roots(floor) >= THIRD_PARTY_OF_THE_FLOOR
    assert "flowpilot" not in _roots(floor)
    for label, modules in imported.items():
        assert floor - modules == set(), label


def test_the_floor_handler_parses_with_pydantic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    from pydantic import ValidationError

    from tests.bench import floor_handler

    ok = floor_handler.lambda_handler({"body": '{"text": " hi ", "kind": "resolution", "ticket_id": 7}'}, None)
    assert ok == {"statusCode": 204}
    with pytest.raises(ValidationError):
        floor_handler.lambda_handler({"body": '{"text": "hi", "kind": "resolution", "ticket_id": 0}'}, None)


def test_stage_plan_orders_the_stages_and_charges_pydantic_beyond_the_floor_to_its_caller() -> None:
    floor = {"boto3", "pydantic", "pydantic.main", "pydantic_core", "aws_lambda_powertools"}
    imported = floor | {
        "pydantic.json_schema",  # asked for by Powertools' validation, not by the floor
        "pydantic._internal._core_utils",  # private: imported by name it would be charged out of order
        coldstart.RESOLVER,
        "aws_lambda_powertools.event_handler.openapi.params",
        "httpx",
        "httpx._client",
        "flowpilot",
        "flowpilot.models",
        "json",
    }
    plan = coldstart.stage_plan(imported, floor)
    assert plan == [
        ("boto3", ["boto3"]),
        ("pydantic (as the design floor uses it)", ["pydantic", "pydantic.main", "pydantic_core"]),
        ("Powertools package (Logger, Metrics)", ["aws_lambda_powertools"]),
        ("Powertools event handler (resolver)", [coldstart.RESOLVER]),
        (
            "Powertools, the rest (OpenAPI validation, ...)",
            ["aws_lambda_powertools.event_handler.openapi.params"],
        ),
        ("other third-party packages", ["httpx"]),
        ("flowpilot.models (API and stored models)", ["flowpilot.models"]),
    ]


def test_stage_plan_leaves_out_what_a_function_does_not_import() -> None:
    floor = {"boto3", "pydantic", "aws_lambda_powertools"}
    labels = [label for label, _ in coldstart.stage_plan(floor | {"flowpilot", "flowpilot.models"}, floor)]
    assert labels == [
        "boto3",
        "pydantic (as the design floor uses it)",
        "Powertools package (Logger, Metrics)",
        "flowpilot.models (API and stored models)",
    ]


def test_increments_are_differences_of_median_cumulative_times_and_add_up_to_the_import() -> None:
    samples = [[0.100, 0.150, 0.300], [0.120, 0.160, 0.290], [0.110, 0.140, 0.310]]
    stages = coldstart.increments(["boto3", "pydantic", "app"], samples)
    assert stages == pytest.approx({"boto3": 110.0, "pydantic": 40.0, "app": 150.0})
    assert sum(stages.values()) == pytest.approx(300.0)  # the median import
    attribution = coldstart.Attribution("X", stages, stages["boto3"])
    assert attribution.total_ratio == pytest.approx(300 / 110)
    assert attribution.ratios["pydantic"] == pytest.approx(40 / 110)
