"""The whole local stack on one machine: moto (threaded server), the PSA simulators, the HTTP API.

No Docker, no AWS account, no API keys. `make dev` runs `python -m devstack`. State lives in memory:
a restart starts empty and reseeds the demo account and tickets. Logs: one line per request and one per
write-back step; the functions' JSON lines, moto's and Werkzeug's at `LOG_LEVEL=DEBUG`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

from devstack import aws, loopback, template

OPERATOR_SETTINGS = (
    "DRIFT_CHECK_SECONDS",
    "WRITEBACK_WAIT_SECONDS",
    "PREVIEW_TTL_SECONDS",
    "ANTHROPIC_MODEL",
    "ANTHROPIC_TIMEOUT_SECONDS",
    "POWERTOOLS_LOG_LEVEL",
)


step_log = logging.getLogger("devstack.step")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalStack:
    api_port: int = 3000
    moto_port: int = 0
    with_simulator: bool = True
    with_api: bool = True
    log_level: str = field(default_factory=lambda: os.environ.get("LOG_LEVEL", "INFO").upper())
    parts: dict[str, Any] = field(default_factory=dict)

    def start(self) -> None:
        """Start everything; if any part fails, what did start is stopped and the process is as before."""
        self.parts["environ"] = dict(os.environ)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        from moto.core.config import default_user_config
        from moto.server import ThreadedMotoServer

        self.moto_port = self.moto_port or int(os.environ.get("MOTO_PORT") or 0) or free_port()
        # Checked before anything starts: moto's server thread would wait forever on a busy port.
        _require_free_port(self.moto_port, "MOTO_PORT")
        if self.with_api:
            _require_free_port(self.api_port, "API_PORT")
        os.environ["MOTO_PORT"] = str(self.moto_port)
        for service, config in aws.MOTO_CONFIG.items():
            default_user_config.setdefault(service, {}).update(config)  # type: ignore[misc]
        operator = {name: os.environ[name] for name in OPERATOR_SETTINGS if os.environ.get(name)}
        self._quiet_libraries()
        os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")  # EMF lines would drown the console
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=self.moto_port, verbose=False)
        moto.start()
        self.parts["moto"] = moto
        env = aws.environment(endpoint_url=self.moto_url)
        # What the operator sets wins over the template's defaults (e.g. DRIFT_CHECK_SECONDS=5 make dev).
        env.update(operator)
        aws.apply_environment(env)
        # The simulator (and any PSA a developer points the stack at) may be on loopback.
        self.parts["egress"] = loopback.allow_loopback_psa()
        self._quiet_functions(operator.get("POWERTOOLS_LOG_LEVEL"))
        steps = mock.patch.object(aws, "invoke_function", _logged_steps(aws.invoke_function))
        for name, context in (
            ("dispatch", aws.lambda_dispatch()),
            ("atomic", aws.atomic_dynamodb()),
            ("step_log", steps),
        ):
            context.__enter__()
            self.parts[name] = context
        aws.create_tables()
        self.parts["state_machines"] = aws.create_state_machines()
        if self.with_simulator:
            self._start_simulator()
        if self.with_api:
            from devstack.server import LocalApi

            about = {"moto_endpoint": self.moto_url}
            for provider, sim in self.parts.get("simulators", {}).items():
                about[provider] = sim.site_url  # the simulator root: its API and its control endpoint
            api = LocalApi(port=self.api_port, about=about)
            api.start()
            self.parts["api"] = api

    def _quiet_libraries(self) -> None:
        debug = self.log_level == "DEBUG"
        logging.getLogger("werkzeug").setLevel(logging.DEBUG if debug else logging.WARNING)
        # moto's interpreter logs a ~1.5 KB repr of the state for every failed execution; the step line says it.
        logging.getLogger("moto.stepfunctions.parser").setLevel(logging.DEBUG if debug else logging.CRITICAL)

    def _quiet_functions(self, operator_level: str | None) -> None:
        """The functions' JSON log lines: what the operator asked for, else only at LOG_LEVEL=DEBUG."""
        from devstack import gateway
        from flowpilot.observability import logger

        gateway.isolate_logger_keys()
        logger.setLevel(operator_level or ("DEBUG" if self.log_level == "DEBUG" else "CRITICAL"))

    @property
    def moto_url(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    @property
    def api_url(self) -> str:
        return str(self.parts["api"].url) if "api" in self.parts else ""

    def _start_simulator(self) -> None:
        from devstack import demo_account

        self.parts.update(demo_account.start_simulators_and_configure())

    def stop(self, drain_seconds: float | None = None) -> None:
        """Stop everything; the HTTP API first, letting requests in flight finish (bounded)."""
        if "api" in self.parts:
            if drain_seconds is None:
                self.parts["api"].stop()
            else:
                self.parts["api"].stop(drain_seconds)
        from devstack import demo_account

        demo_account.stop_simulators(self.parts)
        for name in ("step_log", "atomic", "dispatch"):
            if name in self.parts:
                self.parts[name].__exit__(None, None, None)
        if "moto" in self.parts:
            _reset_moto(self.moto_url)  # moto's backends are the process's: the next stack starts empty
            self.parts.pop("moto").stop()
        if "egress" in self.parts:
            loopback.restore(self.parts.pop("egress"))
        if "environ" in self.parts:
            # What start() set (ports, the template's variables, metrics off) leaves with the stack.
            os.environ.clear()
            os.environ.update(self.parts.pop("environ"))
            aws.reset_process_caches()

    def describe(self) -> str:
        lines = [
            "FlowPilot Writeback local stack is running.",
            f"  HTTP API        {self.api_url}   (routes of template.yaml, real lambda handlers)",
            f"  moto            {self.moto_url}   (DynamoDB, Step Functions, Secrets Manager; MOTO_PORT)",
        ]
        for name, arn in self.parts.get("state_machines", {}).items():
            lines.append(f"  state machine   {name}: {arn}")
        if "simulators" in self.parts:
            from devstack import demo_account

            lines += demo_account.describe(self.parts["simulators"])
        writer = "Claude (ANTHROPIC_API_KEY set)" if os.environ.get("ANTHROPIC_API_KEY") else "offline writer"
        lines += [
            f"  writer          {writer}",
            f"  routes          {len(template.routes())}; identity from X-Dev-Account-Id / X-Dev-User-Id "
            "(default acct-dev / engineer-dev; acct-autotask and acct-halo use the other two PSAs)",
            "",
            "Try:",
            f"  curl -s -X POST {self.api_url}/ai-sessions -H 'Content-Type: application/json' \\",
            '       -d \'{"title": "VPN drops", "problem": "User VPN disconnects every 10 minutes"}\'',
            f"  curl -s {self.api_url}/ai-sessions",
            "  make demo     # the whole flow against this stack, in another terminal (PSA=autotask|halopsa too)",
            f"  the web console: {self.api_url}/",
            "State lives in memory: a restart starts empty and reseeds the demo. Ctrl-C stops everything.",
        ]
        return "\n".join(lines)


def _reset_moto(url: str) -> None:
    with contextlib.suppress(OSError):
        urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"), timeout=10).close()


def _require_free_port(port: int, knob: str) -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as error:
            raise OSError(f"port {port} is in use ({error.strerror}): choose another with {knob}=<port>") from error


def _logged_steps(invoke: Callable[[str, Any], tuple[Any, str | None]]) -> Callable[[str, Any], tuple[Any, str | None]]:
    """`aws.invoke_function`, logging one line per state-machine step (step, write-back, outcome, ms)."""

    def logged(logical_id: str, payload: Any) -> tuple[Any, str | None]:
        started = time.perf_counter()
        result, error_type = invoke(logical_id, payload)
        elapsed_ms = (time.perf_counter() - started) * 1000
        if isinstance(payload, dict) and "action" in payload:
            state = payload.get("state") or {}
            writeback_id = state.get("writeback_id", "-") if isinstance(state, dict) else "-"
            outcome = f"failed {error_type}" if error_type else "ok"
            step_log.info("%s %s %s %.0f ms", payload["action"], writeback_id, outcome, elapsed_ms)
        else:
            step_log.info("%s %s %.0f ms", logical_id, f"failed {error_type}" if error_type else "ok", elapsed_ms)
        return result, error_type

    return logged
