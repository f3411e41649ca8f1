"""Browser tests of the console: `python -m devstack` on free ports, headless Chromium driven by Playwright.

One local stack and one browser for the whole module set; a fresh browser context (no storage) per test.
Every page records Content-Security-Policy violations and uncaught errors; a test that causes one fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.stack import free_port
from tests.web.static_proxy import CSP, ConsoleProxy

ROOT = Path(__file__).resolve().parents[2]
# Every run takes the screenshots; only `FLOWPILOT_UPDATE_SCREENSHOTS=1` replaces the committed ones in docs/.
SCREENSHOTS = (
    ROOT / "docs" / "screenshots"
    if os.environ.get("FLOWPILOT_UPDATE_SCREENSHOTS")
    else Path(tempfile.gettempdir()) / "flowpilot-screenshots"
)
AXE = Path(__file__).parent / "vendor" / "axe-core-4.14.1" / "axe.min.js"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Recorded in the page before any of its scripts run (DevTools' init scripts are not subject to the CSP).
WATCH_CSP = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  const where = [e.sourceFile, e.lineNumber, e.columnNumber].join(':');
  window.__cspViolations.push([e.violatedDirective, e.blockedURI, where, e.sample].join(' '));
});
"""


@dataclass
class Stack:
    api_url: str
    simulator_url: str
    console_url: str
    served_by: str  # "local stack" when GET / on the stack is the console, else "test proxy"

    def simulator_ticket(self, ticket_id: int) -> dict[str, Any]:
        response = httpx.get(f"{self.simulator_url}/__simulator/tickets/{ticket_id}", timeout=10)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def set_faults(self, ticket_id: int, **knobs: Any) -> None:
        response = httpx.post(f"{self.simulator_url}/__simulator/tickets/{ticket_id}/faults", json=knobs, timeout=10)
        response.raise_for_status()


def _wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the local stack exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/account-settings", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    pytest.fail(f"the local stack did not answer within 90 s:\n{log.read_text()[-3000:]}")


def _serves_console(api_url: str) -> bool:
    try:
        response = httpx.get(f"{api_url}/", timeout=5)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and "<title>FlowPilot console</title>" in response.text


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    api_port, sim_port, moto_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "CW_SIM_PORT": str(sim_port),
        "MOTO_PORT": str(moto_port),
        # Short waits: a slow post answers 202 (polled by the console); drift re-checks end quickly.
        "WRITEBACK_WAIT_SECONDS": "3",
        "DRIFT_CHECK_SECONDS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("ANTHROPIC_API_KEY", None)
    log = Path(tempfile.mkstemp(prefix="devstack-", suffix=".log")[1])
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "devstack", "--port", str(api_port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    api_url = f"http://127.0.0.1:{api_port}"
    proxy = None
    try:
        _wait_until_up(api_url, process, log)
        if _serves_console(api_url):
            console_url, served_by = api_url, "local stack"
        else:
            proxy = ConsoleProxy(api_url)
            proxy.start()
            console_url, served_by = proxy.url, "test proxy"
        print(f"\nconsole served by the {served_by} at {console_url}")
        yield Stack(api_url, f"http://127.0.0.1:{sim_port}", console_url, served_by)
    finally:
        if proxy is not None:
            proxy.stop()
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def api(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.api_url, timeout=60, headers={"X-Dev-Account-Id": "acct-dev"}) as client:
        yield client


def chromium_path() -> str | None:
    """The system's Chromium (Debian's package); None: Playwright's own (`playwright install chromium`)."""
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class PageProblems:
    errors: list[str] = field(default_factory=list)
    csp_console: list[str] = field(default_factory=list)


@pytest.fixture
def page(browser: Any, stack: Stack) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=stack.console_url)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=stack.console_url)
    context.add_init_script(WATCH_CSP)
    page = context.new_page()
    page.set_default_timeout(30_000)
    problems = PageProblems()
    page.on("pageerror", lambda error: problems.errors.append(str(error)))
    page.on(
        "console",
        lambda message: (
            problems.csp_console.append(message.text)
            if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text
            else None
        ),
    )
    page.problems = problems
    yield page
    violations = page.evaluate("window.__cspViolations || []") if not page.is_closed() else []
    context.close()
    assert violations == [], f"CSP violations: {violations}"
    assert problems.csp_console == [], f"CSP console errors: {problems.csp_console}"
    assert problems.errors == [], f"uncaught errors in the page: {problems.errors}"


def new_session(api: httpx.Client, title: str, ticket: int | None = None, problem: str | None = None) -> str:
    body: dict[str, Any] = {"title": title, "problem": problem or f"{title}: reported by the customer."}
    if ticket is not None:
        body["psa_ticket"] = {"provider": "connectwise", "ticket_id": str(ticket)}
    response = api.post("/ai-sessions", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def add_evidence(api: httpx.Client, session_id: str, kind: str, text: str, result: str | None = None) -> None:
    body = {"kind": kind, "text": text, **({"result": result} if result else {})}
    response = api.post(f"/ai-sessions/{session_id}/evidence", json=body)
    assert response.status_code == 201, response.text


def screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def run_axe(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result["violations"]
        if v["impact"] in {"serious", "critical"}
    ]


__all__ = ["CSP", "Stack", "add_evidence", "new_session", "run_axe", "screenshot"]
