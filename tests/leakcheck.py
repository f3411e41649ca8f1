"""Whole-run secret leak check: PSA and model secrets never appear in any captured output or API response.

A pytest plugin (``pytest_plugins = ["tests.leakcheck"]`` in tests/conftest.py). It keeps a registry of known
secret values: the ConnectWise simulator's default keys and its Basic token, the sample events' PSA keys, and
whatever test modules add with ``register_secret(...)`` at import time. Then, for the whole run:

- every test phase's captured stdout, stderr and log sections are scanned; a section carrying a secret turns
  that phase's report into a failure naming the secret's *kind*, and the secret is redacted from the report
  (so the terminal, junit XML and CI logs never show it);
- what a test reads back through ``capsys``/``capfd`` is scanned too (it never reaches the report sections);
- ``scan_response(text)`` scans an API response body (``tests.conftest.Api.call`` calls it for every response,
  the fuzz and security tests for theirs); a hit fails the phase it happened in;
- a failure's own message is redacted if it shows a secret (e.g. an assertion comparing against the key).

Only the kind of a leaked secret is ever printed, never the value. With ``-s`` (no capture) the sections are
empty, so only responses and ``capsys`` reads are checked.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Generator
from typing import Any
from urllib.parse import quote

import pytest

MIN_SECRET_LENGTH = 6  # shorter values would match ordinary text and make the check meaningless

_lock = threading.Lock()
_secrets: dict[str, str] = {}  # a form of a secret (raw, JSON-escaped, URL-encoded) -> its kind
_pending: list[tuple[str, str]] = []  # (kind, where) found outside report sections, not yet reported
_in_pytest = False
_stats = {"responses": 0, "leaks": 0}


class SecretLeak(AssertionError):
    """A registered secret showed up in output or a response (raised only outside a pytest run)."""


def register_secret(value: str, kind: str = "secret") -> None:
    """Watch `value` for the rest of the run; `kind` is what a failure names (never the value itself)."""
    if not isinstance(value, str) or len(value) < MIN_SECRET_LENGTH:
        raise ValueError(f"leakcheck: a {kind} to watch must be a string of at least {MIN_SECRET_LENGTH} chars")
    forms = {value, json.dumps(value)[1:-1], quote(value, safe="")}
    with _lock:
        for form in forms:
            _secrets.setdefault(form, kind)


def register_psa_credentials(company_id: str, public_key: str, private_key: str, label: str) -> None:
    """A ConnectWise key pair, plus the Basic token built from it (a logged Authorization header is a leak)."""
    register_secret(public_key, f"{label} PSA public key")
    register_secret(private_key, f"{label} PSA private key")
    token = base64.b64encode(f"{company_id}+{public_key}:{private_key}".encode()).decode()
    register_secret(token, f"{label} PSA Authorization token")


def registered_kinds() -> list[str]:
    with _lock:
        return sorted(set(_secrets.values()))


def find_secrets(text: str | bytes | None) -> list[str]:
    """The kinds of every registered secret `text` contains."""
    if not text:
        return []
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    with _lock:
        items = list(_secrets.items())
    return sorted({kind for form, kind in items if form in text})


def redact(text: str) -> str:
    with _lock:
        items = sorted(_secrets.items(), key=lambda item: -len(item[0]))  # longest first: tokens before keys
    for form, kind in items:
        if form in text:
            text = text.replace(form, f"[leakcheck: {kind} redacted]")
    return text


def scan_response(text: str | bytes | None, where: str = "an API response") -> None:
    """Check one response body; a leak fails the current test phase (outside pytest: raises SecretLeak)."""
    kinds = find_secrets(text)
    with _lock:
        _stats["responses"] += 1
    if not kinds:
        return
    if not _in_pytest:
        raise SecretLeak(f"{', '.join(kinds)} appeared in {where}")
    _record(kinds, where)


def _record(kinds: list[str], where: str) -> None:
    with _lock:
        _pending.extend((kind, where) for kind in kinds)


def _drain() -> list[tuple[str, str]]:
    with _lock:
        found, _pending[:] = list(_pending), []
    return found


def _builtin_secrets() -> None:
    from devstack import sample_events, template
    from devstack.autotask_simulator import AutotaskSimulator
    from devstack.cw_simulator import CWSimulator
    from devstack.halo_simulator import HaloSimulator

    sim = CWSimulator()  # not started: only its default credentials are read
    register_psa_credentials(sim.company_id, sim.public_key, sim.private_key, "CW simulator (default)")
    autotask = AutotaskSimulator()
    register_secret(autotask.secret, "Autotask simulator secret (default)")
    register_secret(autotask.integration_code, "Autotask simulator integration code (default)")
    register_secret(HaloSimulator().client_secret, "Halo simulator client secret (default)")
    route = next((r for r in template.routes() if r.route_key == "PUT /account-settings/psa-connection"), None)
    sample = sample_events.sample_body(route) if route is not None else None
    if isinstance(sample, dict) and {"company_id", "public_key", "private_key"} <= sample.keys():
        register_psa_credentials(sample["company_id"], sample["public_key"], sample["private_key"], "sample event")


def _wrap_capture_reads() -> None:
    """What `capsys.readouterr()`/`capfd.readouterr()` hand to a test never reaches the report: scan it there."""
    from _pytest.capture import CaptureFixture

    original = CaptureFixture.readouterr
    if getattr(original, "_leakcheck", False):
        return

    def readouterr(self: Any) -> Any:
        result = original(self)
        kinds = find_secrets(f"{result.out}\n{result.err}")
        if kinds:
            _record(kinds, "output read through capsys/capfd")
        return result

    readouterr._leakcheck = True  # type: ignore[attr-defined]
    CaptureFixture.readouterr = readouterr  # type: ignore[method-assign]


def pytest_configure(config: pytest.Config) -> None:
    global _in_pytest
    _in_pytest = True
    _builtin_secrets()
    _wrap_capture_reads()


def _scan_sections(report: Any, phase: str | None) -> list[tuple[str, str]]:
    """Redact every section of the report; return the leaks of the sections captured in `phase`."""
    leaks: list[tuple[str, str]] = []
    for index, (title, content) in enumerate(report.sections):
        kinds = find_secrets(content)
        if not kinds:
            continue
        report.sections[index] = (title, redact(content))
        if phase is None or title.endswith(f" {phase}"):
            leaks.extend((kind, title.lower()) for kind in kinds)
    return leaks


def _fail(report: Any, leaks: list[tuple[str, str]]) -> None:
    lines = sorted({f"  - {kind} in {where}" for kind, where in leaks})
    message = "leakcheck: a registered secret leaked (values redacted):\n" + "\n".join(lines)
    with _lock:
        _stats["leaks"] += len(lines)
    previous = _redacted_longrepr(report)
    if hasattr(report, "wasxfail"):
        del report.wasxfail  # an expected failure does not excuse a leak
    report.outcome = "failed"
    report.longrepr = f"{previous}\n\n{message}" if previous else message


def _redacted_longrepr(report: Any) -> str:
    if report.longrepr is None:
        return ""
    return redact(str(report.longrepr))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    leaks = [(kind, f"{where} ({call.when})") for kind, where in _drain()]
    leaks += _scan_sections(report, call.when)
    if leaks:
        _fail(report, leaks)
    elif report.longrepr is not None and find_secrets(str(report.longrepr)):
        report.longrepr = _redacted_longrepr(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    leaks = [(kind, f"{where} (collection)") for kind, where in _drain()]
    leaks += _scan_sections(report, None)
    if leaks:
        _fail(report, leaks)
    return report


_outside_phases: list[str] = []


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    leftover = _drain()  # e.g. from a session-scoped fixture's teardown, after the last report
    if leftover:
        _outside_phases.extend(sorted({kind for kind, _ in leftover}))
        _stats["leaks"] += len(leftover)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _outside_phases:
        terminalreporter.write_line(f"leakcheck: LEAK outside any test phase: {', '.join(_outside_phases)}", red=True)
    terminalreporter.write_line(
        f"leakcheck: {len(registered_kinds())} secret kinds watched, {_stats['responses']} responses scanned, "
        f"{_stats['leaks']} leak(s)"
    )
