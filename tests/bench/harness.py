"""What the benchmarks run on and what they count with.

- `moto_stack()`: moto DynamoDB / Step Functions (the real ASL executed, its Lambda tasks dispatched to the
  real handlers in-process) / Secrets Manager, tables and state machines from template.yaml, the
  ConnectWise simulator on loopback, and the Claude writer (real `anthropic` SDK) talking to a fake
  Messages API through `httpx2.MockTransport`: the same set-up as tests/conftest.py, as a context manager.
- `AwsMeter`: botocore `before-send` hooks on the product's own clients (every request sent, retries
  included, by service and operation, and by who sent it: the API function or a write-back step), and an
  `after-call` hook on DynamoDB Query (items read: `Count` / `ScannedCount`).
- `StepMeter`: which write-back step ran, and how many PSA requests it made.
- `LoopbackOnly`: a socket guard: any connection or name lookup outside loopback is refused and recorded.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

from tests.helpers import anthropic_message

DDB_WRITE_OPS = frozenset({"PutItem", "UpdateItem", "TransactWriteItems", "DeleteItem", "BatchWriteItem"})
DDB_READ_OPS = frozenset({"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"})
# botocore's event names for the services the product uses.
SERVICE_NAMES = {"dynamodb": "dynamodb", "sfn": "stepfunctions", "secrets-manager": "secretsmanager"}
API_THREAD = "api"


class BenchError(RuntimeError):
    """The benchmark could not measure what it meant to (a route answered unexpectedly, a guard tripped)."""


# --- network guard -------------------------------------------------------------------------------


class LoopbackOnly:
    """Refuses (and records) every socket connection and name lookup that is not loopback."""

    def __init__(self) -> None:
        self.blocked: list[str] = []
        self.allowed_connections = 0

    @staticmethod
    def _loopback(host: str) -> bool:
        if host in {"localhost", "localhost.localdomain"}:
            return True
        try:
            return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
        except ValueError:
            return False

    def _check_address(self, address: Any) -> None:
        if isinstance(address, str | bytes):  # AF_UNIX: a path on this machine
            return
        host = address[0].decode() if isinstance(address[0], bytes) else str(address[0])
        if not self._loopback(host):
            self.blocked.append(f"connect {host}:{address[1]}")
            raise BenchError(f"network access outside loopback refused: {host}:{address[1]}")
        self.allowed_connections += 1

    @contextlib.contextmanager
    def active(self) -> Iterator[LoopbackOnly]:
        guard = self
        original_connect = socket.socket.connect
        original_connect_ex = socket.socket.connect_ex
        original_getaddrinfo = socket.getaddrinfo

        def connect(sock: socket.socket, address: Any) -> None:
            guard._check_address(address)
            original_connect(sock, address)

        def connect_ex(sock: socket.socket, address: Any) -> int:
            guard._check_address(address)
            return original_connect_ex(sock, address)

        def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            name = host.decode() if isinstance(host, bytes) else host
            if name is not None and not guard._loopback(str(name)):
                guard.blocked.append(f"resolve {name}")
                raise socket.gaierror(f"bench: name lookup outside loopback refused: {name}")
            return original_getaddrinfo(host, *args, **kwargs)

        with (
            mock.patch.object(socket.socket, "connect", connect),
            mock.patch.object(socket.socket, "connect_ex", connect_ex),
            mock.patch.object(socket, "getaddrinfo", getaddrinfo),
        ):
            yield self


@contextlib.contextmanager
def stdout_to_devnull() -> Iterator[None]:
    """The handlers' JSON logs and EMF metrics go to stdout (fd 1); keep them out of the table."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


# --- AWS requests --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AwsRequest:
    service: str  # dynamodb | stepfunctions | secretsmanager
    operation: str
    sender: str  # "api" (the route's function) or the write-back step that sent it


@dataclass(frozen=True)
class QueryRead:
    count: int
    scanned: int


@dataclass(frozen=True)
class Mark:
    aws: int
    queries: int
    psa: int
    model: int
    steps: int


class AwsMeter:
    """Counts the requests the product's boto3 clients send (one `before-send` per HTTP request)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent: list[AwsRequest] = []
        self.queries: list[QueryRead] = []
        self.local = threading.local()
        self._main = threading.main_thread()

    def instrument(self) -> None:
        """Hook the clients the stores use (call again after anything resets the cached clients)."""
        from flowpilot.store import dynamo, executions, secrets

        clients = (dynamo.client(), executions._client(), secrets.client())
        for client in clients:
            # First, so the count never depends on where moto's own `before-send` answer sits in the chain.
            client.meta.events.register_first("before-send", self._on_send, unique_id="flowpilot-bench-send")
        dynamo.client().meta.events.register(
            "after-call.dynamodb.Query", self._on_query, unique_id="flowpilot-bench-query"
        )

    def _sender(self) -> str:
        if threading.current_thread() is self._main:
            return API_THREAD
        return str(getattr(self.local, "step", None) or "background")

    def _on_send(self, event_name: str, **kwargs: Any) -> None:
        _, service, operation = event_name.split(".", 2)
        request = AwsRequest(SERVICE_NAMES.get(service, service), operation, self._sender())
        with self._lock:
            self.sent.append(request)

    def _on_query(self, parsed: dict[str, Any], **kwargs: Any) -> None:
        read = QueryRead(int(parsed.get("Count", 0)), int(parsed.get("ScannedCount", 0)))
        with self._lock:
            self.queries.append(read)


# --- write-back steps ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StepRun:
    action: str
    psa_requests: int
    seconds: float


class StepMeter:
    """Wraps each write-back step: names the thread's AWS requests after it, counts its PSA requests.

    Write-backs are measured one at a time, so the simulator's request count before and after a step is
    that step's PSA traffic.
    """

    def __init__(self, aws: AwsMeter, psa_count: Callable[[], int]) -> None:
        self.aws = aws
        self.psa_count = psa_count
        self.runs: list[StepRun] = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        from flowpilot import writeback_steps

        wrapped = {action: self._wrap(action, step) for action, step in writeback_steps.STEPS.items()}
        with mock.patch.dict(writeback_steps.STEPS, wrapped):
            yield

    def _wrap(self, action: str, step: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def run(state: Any) -> Any:
            before, started = self.psa_count(), time.perf_counter()
            self.aws.local.step = action
            try:
                return step(state)
            finally:
                self.aws.local.step = None
                elapsed = time.perf_counter() - started
                with self._lock:
                    self.runs.append(StepRun(action, self.psa_count() - before, elapsed))

        return run


# --- the model -----------------------------------------------------------------------------------

RESOLUTION_TEXT = (
    "VPN drops fixed by updating the client.\n\n## What we found\n- The client was outdated.\n\n"
    "## What we did\n- Updated the VPN client; the connection stayed up for 30 minutes.\n"
)
ESCALATION_TEXT = (
    "## Problem\nVPN drops every 10 minutes.\n\n## What we've confirmed\n- Happens on Wi-Fi and LAN.\n\n"
    "## What we've tried\n- Reinstalled the client: still drops.\n\n## Current hypothesis\n"
    "- Idle timeout on the firewall (unconfirmed).\n\n## Suggested next steps\n- Check the firewall logs.\n"
)


@dataclass
class FakeMessagesApi:
    """The Messages API behind `httpx2.MockTransport`: answers each document kind well-formed, records sizes."""

    request_chars: list[int] = field(default_factory=list)

    def __call__(self, request: Any) -> Any:
        import httpx2

        self.request_chars.append(len(request.content))
        system = json.loads(request.content)["system"][0]["text"]
        text = ESCALATION_TEXT if "escalation package" in system else RESOLUTION_TEXT
        return httpx2.Response(200, json=anthropic_message(text))

    @property
    def calls(self) -> int:
        return len(self.request_chars)


# --- the stack -----------------------------------------------------------------------------------


@dataclass
class Stack:
    machines: list[str]
    aws: AwsMeter
    steps: StepMeter
    model: FakeMessagesApi
    psa: Any  # a devstack.psa_sim.PSASimulator (ConnectWise unless asked)

    def mark(self) -> Mark:
        return Mark(
            aws=len(self.aws.sent),
            queries=len(self.aws.queries),
            psa=len(self.psa.requests),
            model=self.model.calls,
            steps=len(self.steps.runs),
        )

    def running_executions(self) -> list[str]:
        import boto3  # a client of our own: the meter only hooks the product's clients

        sfn = boto3.client("stepfunctions")
        return [
            e["executionArn"]
            for arn in self.machines
            for e in sfn.list_executions(stateMachineArn=arn, statusFilter="RUNNING")["executions"]
        ]

    def drain(self, timeout: float = 30.0) -> None:
        """Wait until no execution runs (drift re-checks finish after the post has answered)."""
        deadline = time.monotonic() + timeout
        while (running := self.running_executions()) and time.monotonic() < deadline:
            time.sleep(0.01)
        if running:
            raise BenchError(f"executions still running after {timeout:.0f} s: {running}")


def bench_environment() -> dict[str, str]:
    from devstack import aws

    env = aws.environment()
    env["DRIFT_CHECK_SECONDS"] = "0"  # the re-check runs right after the verified answer
    env["WRITEBACK_WAIT_SECONDS"] = "20"
    return env


@contextlib.contextmanager
def process_environment(env: dict[str, str]) -> Iterator[None]:
    """Set `env` (and drop anything that could point a client elsewhere) for the duration."""
    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith("ANTHROPIC_") or name == "AWS_ENDPOINT_URL" or name.startswith("AWS_ENDPOINT_URL_"):
            del os.environ[name]
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        os.environ.pop(name, None)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def moto_stack(provider: str = "connectwise") -> Iterator[Stack]:
    """moto with the real state machine, a fake Messages API, and `provider`'s simulator (demo seed)."""
    import httpx2

    from devstack import aws, demo_account, loopback
    from flowpilot import previews
    from flowpilot.writers.claude import ClaudeWriter

    # Powertools warns on every invocation that published no metric (a read): noise, not a finding.
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    model = FakeMessagesApi()
    http_client = httpx2.Client(transport=httpx2.MockTransport(model))
    meter = AwsMeter()
    sim = demo_account.new_simulator(provider)
    steps = StepMeter(meter, lambda: len(sim.requests))
    with (
        process_environment(bench_environment()),
        aws.emulated_aws() as machines,
        loopback.loopback_psa(),  # the simulator is on loopback
        steps.active(),
    ):
        # One writer for the whole run, as one per container in AWS: warm invocations reuse its client.
        writer = ClaudeWriter(api_key="sk-ant-bench", http_client=http_client)
        previews_patch = mock.patch.object(previews, "writer_factory", lambda: writer)
        previews_patch.start()
        meter.instrument()
        sim.start()
        zone_lookup = loopback.simulated_zone_lookup(sim)  # Autotask's: on the simulator
        zone_lookup.__enter__()
        try:
            sim.seed_demo()
            stack = Stack(machines=machines, aws=meter, steps=steps, model=model, psa=sim)
            try:
                yield stack
            finally:
                stack.drain()
        finally:
            zone_lookup.__exit__(None, None, None)
            sim.stop()
            previews_patch.stop()
            http_client.close()
