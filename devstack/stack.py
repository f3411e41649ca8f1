"""The whole local stack on one machine: moto (threaded server), the ConnectWise simulator, the HTTP API.

No Docker, no AWS account, no API keys. `make dev` runs `python -m devstack`.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any

from devstack import aws, template

OPERATOR_SETTINGS = (
    "DRIFT_CHECK_SECONDS",
    "WRITEBACK_WAIT_SECONDS",
    "PREVIEW_TTL_SECONDS",
    "ANTHROPIC_MODEL",
    "ANTHROPIC_TIMEOUT_SECONDS",
    "POWERTOOLS_LOG_LEVEL",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalStack:
    api_port: int = 3000
    moto_port: int = 0
    with_simulator: bool = True
    parts: dict[str, Any] = field(default_factory=dict)

    def start(self) -> None:
        from moto.core.config import default_user_config
        from moto.server import ThreadedMotoServer

        self.moto_port = self.moto_port or int(os.environ.get("MOTO_PORT") or 0) or free_port()
        os.environ["MOTO_PORT"] = str(self.moto_port)
        for service, config in aws.MOTO_CONFIG.items():
            default_user_config.setdefault(service, {}).update(config)  # type: ignore[misc]
        import logging

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")  # EMF lines would drown the console
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=self.moto_port, verbose=False)
        moto.start()
        self.parts["moto"] = moto
        env = aws.environment(identity_mode="local", endpoint_url=self.moto_url)
        # What the operator sets wins over the template's defaults (e.g. DRIFT_CHECK_SECONDS=5 make dev).
        env.update({name: os.environ[name] for name in OPERATOR_SETTINGS if os.environ.get(name)})
        aws.apply_environment(env)
        for name, context in (("dispatch", aws.lambda_dispatch()), ("atomic", aws.atomic_dynamodb())):
            context.__enter__()
            self.parts[name] = context
        aws.create_tables()
        self.parts["state_machines"] = aws.create_state_machines()
        if self.with_simulator:
            self._start_simulator()
        from devstack.server import LocalApi

        api = LocalApi(port=self.api_port)
        api.start()
        self.parts["api"] = api

    @property
    def moto_url(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    @property
    def api_url(self) -> str:
        return str(self.parts["api"].url)

    def _start_simulator(self) -> None:
        from devstack import demo_account

        self.parts.update(demo_account.start_simulator_and_configure())

    def stop(self) -> None:
        if "api" in self.parts:
            self.parts["api"].stop()
        if "simulator" in self.parts:
            self.parts["simulator"].stop()
        for name in ("atomic", "dispatch"):
            if name in self.parts:
                self.parts[name].__exit__(None, None, None)
        if "moto" in self.parts:
            self.parts["moto"].stop()

    def describe(self) -> str:
        lines = [
            "FlowPilot Writeback local stack is running.",
            f"  HTTP API        {self.api_url}   (routes of template.yaml, real lambda handlers)",
            f"  moto            {self.moto_url}   (DynamoDB, Step Functions, Secrets Manager; MOTO_PORT)",
        ]
        for name, arn in self.parts.get("state_machines", {}).items():
            lines.append(f"  state machine   {name}: {arn}")
        if "simulator" in self.parts:
            lines.append(f"  ConnectWise     {self.parts['simulator'].base_url}   (simulator, demo tickets 1001-1006)")
        writer = "Claude (ANTHROPIC_API_KEY set)" if os.environ.get("ANTHROPIC_API_KEY") else "offline writer"
        lines += [
            f"  writer          {writer}",
            f"  routes          {len(template.routes())}; identity from X-Dev-Account-Id / X-Dev-User-Id "
            "(default acct-dev / engineer-dev)",
            "",
            "Try:",
            f"  curl -s -X POST {self.api_url}/ai-sessions -H 'Content-Type: application/json' \\",
            '       -d \'{"title": "VPN drops", "problem": "User VPN disconnects every 10 minutes"}\'',
            f"  curl -s {self.api_url}/ai-sessions",
            "  make demo     # the whole flow against this stack, in another terminal",
            "Ctrl-C stops everything.",
        ]
        return "\n".join(lines)
