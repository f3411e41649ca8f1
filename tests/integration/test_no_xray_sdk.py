"""No X-Ray SDK: not required by the layer, not imported by any handler with tracing on, not in the built layer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.bench import built_layer, coldstart, lambda_site

ROOT = Path(__file__).resolve().parents[2]

# Imports every function as Lambda would (tracing on), then lists what got imported.
_LOAD_ALL = """
import json, sys
from devstack import aws, template
for logical_id in template.functions():
    aws.load_function_module(logical_id)
print(json.dumps(sorted(sys.modules)))
"""


def test_the_layer_requirements_bring_no_xray_sdk() -> None:
    requirements = lambda_site.layer_requirements()
    powertools = next(r for r in requirements if r.name == "aws-lambda-powertools")
    assert powertools.extras == set()  # [tracer] pulls aws-xray-sdk
    assert "aws-xray-sdk" not in lambda_site.closure(requirements)


def test_the_closure_would_show_the_sdk_with_the_tracer_extra() -> None:
    """The check above can fail: asking for the extra puts the SDK in the closure."""
    assert "aws-xray-sdk" in lambda_site.closure([Requirement("aws-lambda-powertools[tracer]")])


def _modules_imported(env: dict[str, str]) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", _LOAD_ALL],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_no_handler_imports_the_sdk_with_tracing_on() -> None:
    modules = _modules_imported(coldstart.lambda_environment("WritebacksFunction"))
    assert "flowpilot.writeback_steps" in modules and "aws_lambda_powertools.event_handler" in modules
    assert not {m for m in modules if m.split(".")[0] == "aws_xray_sdk"}


def test_a_layer_with_the_sdk_fails_the_built_layer_check(tmp_path: Path) -> None:
    (tmp_path / "aws_xray_sdk").mkdir()
    (tmp_path / "aws_xray_sdk" / "__init__.py").write_text("")
    assert built_layer.forbidden_in(tmp_path) == ["aws_xray_sdk"]
    assert built_layer.forbidden_in(tmp_path / "empty") == []


def test_the_built_layer_has_no_sdk() -> None:
    layers = built_layer.layer_dirs()
    if not layers:
        pytest.skip("no sam build output (make test runs `sam build` after pytest, then tests.bench.built_layer)")
    assert {logical_id: built_layer.forbidden_in(path) for logical_id, path in layers.items()} == {
        logical_id: [] for logical_id in layers
    }
