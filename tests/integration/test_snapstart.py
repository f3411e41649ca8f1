"""SnapStart: processes restored from one snapshot mint different ids, markers and tokens, and the
after-restore hook re-creates HTTP clients and reseeds `random`.

A restore is simulated with `os.fork()` after every handler was imported (the init a snapshot captures):
parent and child then share the whole memory of that init, as two restored execution environments do.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from devstack import aws

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "layers" / "flowpilot" / "flowpilot"

# Runs in a fresh interpreter: init every function, then fork; both sides report what they mint.
_RESTORED_TWICE = """
import json, os, random, secrets, sys
from devstack import aws, template
for logical_id in template.functions():
    aws.load_function_module(logical_id)
from flowpilot import snapstart
from flowpilot.clock import new_id
from flowpilot.psa.base import note_marker

read_end, write_end = os.pipe()
snapshot_random = random.getstate()
pid = os.fork()
if pid == 0:
    # CPython reseeds `random` in a forked child; a SnapStart restore does not: put the snapshot's back.
    random.setstate(snapshot_random)
writeback_id = new_id("wb")
figures = {
    "session_id": new_id("ses"),
    "writeback_id": writeback_id,
    "marker": note_marker(writeback_id),
    "token": secrets.token_urlsafe(16),
    "random_before_hook": random.random(),
}
snapstart.after_restore()
figures["random_after_hook"] = random.random()
if pid == 0:
    os.write(write_end, json.dumps(figures).encode())
    os._exit(0)
os.close(write_end)
os.waitpid(pid, 0)
child = json.loads(os.read(read_end, 65536))
print(json.dumps({"parent": figures, "child": child}))
"""


def _restored_twice() -> dict[str, dict[str, object]]:
    env = {**os.environ, **aws.environment(), "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", _RESTORED_TWICE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def restored() -> dict[str, dict[str, object]]:
    return _restored_twice()


@pytest.mark.parametrize("name", ["session_id", "writeback_id", "marker", "token"])
def test_copies_of_one_snapshot_mint_different_values(restored: dict[str, dict[str, object]], name: str) -> None:
    assert restored["parent"][name] != restored["child"][name]


def test_the_fork_really_shares_init_state(restored: dict[str, dict[str, object]]) -> None:
    """Without the hook, `random` gives both copies the same number: the test above can fail."""
    assert restored["parent"]["random_before_hook"] == restored["child"]["random_before_hook"]


def test_the_after_restore_hook_reseeds_random(restored: dict[str, dict[str, object]]) -> None:
    assert restored["parent"]["random_after_hook"] != restored["child"]["random_after_hook"]


def test_no_layer_module_draws_from_a_seeded_generator() -> None:
    """Ids, markers, jitter and tokens come from OS randomness at call time (`secrets`, `os.urandom`,
    `random.SystemRandom`), never from `random`'s generator seeded at init nor a time-based uuid; only the
    hook itself touches `random`'s generator (to reseed it)."""
    offenders = []
    for path in LAYER.rglob("*.py"):
        if path.name == "snapstart.py":
            continue
        where = path.relative_to(ROOT)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "random":
                offenders += [f"{where}: from random import {a.name}" for a in node.names if a.name != "SystemRandom"]
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                if node.value.id == "random" and node.attr != "SystemRandom":
                    offenders.append(f"{where}: random.{node.attr}")
                elif node.value.id == "uuid" and node.attr == "uuid1":
                    offenders.append(f"{where}: uuid.uuid1")
    assert offenders == []


def test_after_restore_recreates_the_psa_http_client() -> None:
    from flowpilot.psa import egress, factory

    factory.reset_caches()
    try:
        before = factory._http_client(egress.rules)
        assert factory._http_client(egress.rules) is before  # one pool per process between restores
        from flowpilot import snapstart

        snapstart.after_restore()
        assert factory._http_client(egress.rules) is not before
    finally:
        factory.reset_caches()


def test_after_restore_runs_every_registered_reset_hook() -> None:
    from flowpilot import resets, snapstart

    ran: list[str] = []

    def hook() -> None:
        ran.append("hook")

    resets.register(hook)
    resets.register(hook)  # registered once, however often
    try:
        snapstart.after_restore()
    finally:
        resets._hooks.remove(hook)
    assert ran == ["hook"]


def test_after_restore_recreates_the_claude_sdk_client() -> None:
    from flowpilot import snapstart
    from flowpilot.writers.claude import ClaudeWriter

    writer = ClaudeWriter(api_key="sk-ant-test", model="claude-sonnet-5-5")
    before = writer._sdk()
    assert writer._sdk() is before
    snapstart.after_restore()
    assert writer._sdk() is not before


def test_the_hook_is_registered_with_the_runtime_at_init() -> None:
    import snapshot_restore_py

    from flowpilot import observability, snapstart

    assert observability.logger is not None  # imported: its init registered the hook
    registered = [entry[0] for entry in snapshot_restore_py.get_after_restore()]
    assert snapstart.after_restore in registered


def test_without_the_runtime_hooks_module_nothing_is_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    from flowpilot import snapstart

    monkeypatch.setitem(sys.modules, "snapshot_restore_py", None)  # import of it raises ImportError
    assert snapstart.register() is False
