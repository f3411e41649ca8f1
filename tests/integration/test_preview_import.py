"""The previews function loads without `anthropic` (~1.2 s of cold start): only a model call may import it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from devstack import aws

ROOT = Path(__file__).resolve().parents[2]

_LOAD = "from devstack import aws; aws.load_function_module('PreviewsFunction')"


def _imported_modules(code: str) -> set[str]:
    """Every module `python -X importtime -c code` imported, read from its import log."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}, **aws.environment()}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("import time:")]
    return {line.rsplit("|", 1)[-1].strip() for line in lines[1:]}


def test_previews_handler_does_not_import_anthropic() -> None:
    modules = _imported_modules(_LOAD)
    # The handler and its whole chain were really imported, writers included...
    assert {
        "flowpilot.previews",
        "flowpilot.writers",
        "flowpilot.scanner",
        "flowpilot.store.preview_cache",
    } <= modules
    # ...but not the SDK, nor the module that imports it.
    assert not {m for m in modules if m == "anthropic" or m.startswith("anthropic.")}
    assert "flowpilot.writers.claude" not in modules


def test_the_import_log_would_show_anthropic() -> None:
    """The check above can fail: the same log names `anthropic` once the Claude writer is used."""
    modules = _imported_modules(
        _LOAD + "; from flowpilot.writers.claude import ClaudeWriter; ClaudeWriter(api_key='sk-ant-test')._sdk()"
    )
    assert "anthropic" in modules
